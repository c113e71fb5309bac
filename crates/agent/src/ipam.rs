//! Pod IP allocation that survives restarts: one file per allocated address in
//! `<data_dir>/ipam/`, holding the owning pod's UID. Creating the file with
//! `create_new` is the allocation, so an address is never handed out twice while
//! its file exists; allocation continues after the last address handed out, so a
//! freed address is not reused at once (connections to a dead pod stay dead).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::net::Cidr;

pub struct Ipam {
    dir: PathBuf,
    subnet: Cidr,
    last: Mutex<u32>,
}

impl Ipam {
    pub fn open(dir: &Path, subnet: Cidr) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let last = std::fs::read_to_string(dir.join("last"))
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .filter(|ip| subnet.contains(*ip))
            .map(|ip| u32::from(ip) - u32::from(subnet.addr))
            .unwrap_or(1);
        Ok(Self {
            dir: dir.to_path_buf(),
            subnet,
            last: Mutex::new(last),
        })
    }

    /// The address `owner` already holds, or a new one.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr> {
        if let Some(ip) = self.owned_by(owner) {
            return Ok(ip);
        }
        let mut last = self
            .last
            .lock()
            .map_err(|_| anyhow::anyhow!("ipam lock poisoned"))?;
        // Usable host addresses: 2 ..= size-2 (.0 network, .1 gateway, last broadcast).
        let size = self.subnet.size();
        let usable = size.saturating_sub(3);
        for step in 1..=usable {
            let index = 2 + (*last - 1 + step - 1) % usable;
            let ip = self.subnet.nth(index);
            let path = self.dir.join(ip.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(owner.as_bytes())?;
                    *last = index;
                    let _ = std::fs::write(self.dir.join("last"), ip.to_string());
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
            }
        }
        bail!("no free pod address left in {}", self.subnet)
    }

    /// Frees `ip` only while `owner` holds it (it may have been handed on).
    pub fn release_owned(&self, ip: Ipv4Addr, owner: &str) {
        let path = self.dir.join(ip.to_string());
        if std::fs::read_to_string(&path).is_ok_and(|o| o == owner) {
            let _ = std::fs::remove_file(path);
        }
    }

    pub fn release(&self, ip: Ipv4Addr) {
        let _ = std::fs::remove_file(self.dir.join(ip.to_string()));
    }

    /// Every allocation: address -> owner.
    pub fn allocations(&self) -> BTreeMap<Ipv4Addr, String> {
        let mut out = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for e in entries.flatten() {
            let Some(ip) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.insert(ip, owner);
        }
        out
    }

    fn owned_by(&self, owner: &str) -> Option<Ipv4Addr> {
        self.allocations()
            .into_iter()
            .find(|(_, o)| o == owner)
            .map(|(ip, _)| ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_distinct_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = Cidr::parse("10.244.0.0/24").unwrap();
        let ipam = Ipam::open(dir.path(), subnet).unwrap();
        let a = ipam.allocate("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(b, Ipv4Addr::new(10, 244, 0, 3));
        assert_eq!(ipam.allocate("a").unwrap(), a, "idempotent per owner");
        ipam.release_owned(a, "b");
        assert_eq!(ipam.allocations().len(), 2, "not b's to free");
        ipam.release_owned(a, "a");
        // Not reused at once, and a reopened allocator continues after the last one.
        let again = Ipam::open(dir.path(), subnet).unwrap();
        let c = again.allocate("c").unwrap();
        assert_eq!(c, Ipv4Addr::new(10, 244, 0, 4));
        assert_eq!(again.allocations().len(), 2);
    }

    #[test]
    fn exhausts_and_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = Cidr::parse("10.0.0.0/29").unwrap(); // .2 ..= .6 usable
        let ipam = Ipam::open(dir.path(), subnet).unwrap();
        let mut got: Vec<_> = (0..5)
            .map(|i| ipam.allocate(&i.to_string()).unwrap())
            .collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 5);
        assert!(ipam.allocate("x").is_err());
        ipam.release(Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(ipam.allocate("x").unwrap(), Ipv4Addr::new(10, 0, 0, 3));
    }
}

//! The address and port pools behind Service allocation: an IPv4 CIDR or a port
//! range mapped onto slot numbers, and a bitmap of taken slots that also records
//! which service holds each one (so a release can never free another service's
//! slot, and a slot still held by a deleted service can be told apart).

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::Rng;

/// An IPv4 network, e.g. `10.96.0.0/12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: u32,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`; host bits are masked off, as Go's `ParseCIDR` does.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ip, bits) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (expected e.g. 10.96.0.0/12)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| {
            if ip.contains(':') {
                format!("{s:?}: only IPv4 is supported")
            } else {
                format!("{s:?} is not a CIDR (expected e.g. 10.96.0.0/12)")
            }
        })?;
        let prefix: u8 = bits
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Self {
            network: u32::from(ip) & mask,
            prefix,
        })
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The first slot's distance from the network address: the network address
    /// itself is not handed out (nor the broadcast address), except in /31 and /32.
    fn skip(&self) -> u64 {
        u64::from(self.prefix <= 30)
    }

    /// How many addresses can be handed out.
    pub fn slots(&self) -> u32 {
        let n = self.size() - 2 * self.skip();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The slot of `ip`, if it is an address this range hands out.
    pub fn index_of(&self, ip: Ipv4Addr) -> Option<u32> {
        let off = u64::from(u32::from(ip)).checked_sub(u64::from(self.network))?;
        let idx = off.checked_sub(self.skip())?;
        (idx < u64::from(self.slots())).then_some(idx as u32)
    }

    pub fn addr(&self, idx: u32) -> Ipv4Addr {
        Ipv4Addr::from(
            self.network
                .wrapping_add(idx)
                .wrapping_add(self.skip() as u32),
        )
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        let end = |c: &Cidr| u64::from(c.network) + c.size();
        u64::from(self.network) < end(other) && u64::from(other.network) < end(self)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// An inclusive port range, e.g. `30000-32767`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    base: u16,
    last: u16,
}

impl PortRange {
    /// `FROM-TO`, `FROM+COUNT` (upstream's forms) or a single port.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a port range (expected e.g. 30000-32767)");
        let num = |p: &str| p.trim().parse::<u16>().ok().filter(|n| *n > 0);
        let (base, last) = if let Some((a, b)) = s.split_once('-') {
            (num(a).ok_or_else(bad)?, num(b).ok_or_else(bad)?)
        } else if let Some((a, n)) = s.split_once('+') {
            let a = num(a).ok_or_else(bad)?;
            let n: u16 = n.trim().parse().map_err(|_| bad())?;
            (a, a.checked_add(n).ok_or_else(bad)?)
        } else {
            let a = num(s).ok_or_else(bad)?;
            (a, a)
        };
        if last < base {
            return Err(format!("{s:?}: the range ends before it starts"));
        }
        Ok(Self { base, last })
    }

    pub fn slots(&self) -> u32 {
        u32::from(self.last - self.base) + 1
    }

    pub fn index_of(&self, port: i64) -> Option<u32> {
        (i64::from(self.base)..=i64::from(self.last))
            .contains(&port)
            .then(|| (port - i64::from(self.base)) as u32)
    }

    pub fn port(&self, idx: u32) -> i64 {
        i64::from(self.base) + i64::from(idx)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.base, self.last)
    }
}

/// Who holds a slot: one incarnation of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `metadata.uid`: a service deleted and created again is a new owner.
    pub uid: Arc<str>,
    /// `namespace/name`, to look the holder up in the store.
    pub key: Arc<str>,
}

/// Why a slot could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    By(Owner),
    /// Kept for a built-in service.
    Reserved,
}

/// Upstream's allocators hand out dynamic values from the upper part of a range
/// first, leaving the lower part to values users ask for by number.
pub fn dynamic_band(slots: u32, step: u32, max: u32) -> u32 {
    const MIN: u32 = 16;
    if slots < MIN {
        return 0;
    }
    (slots / step).clamp(MIN, max)
}

/// A bitmap of slots with the owner of each taken slot.
#[derive(Debug)]
pub struct Pool {
    bits: Vec<u64>,
    slots: u32,
    band: u32,
    owners: HashMap<u32, Owner>,
    reserved: HashMap<u32, Arc<str>>,
}

impl Pool {
    pub fn new(slots: u32, band: u32) -> Self {
        Self {
            bits: vec![0; slots.div_ceil(64) as usize],
            slots,
            band: band.min(slots),
            owners: HashMap::new(),
            reserved: HashMap::new(),
        }
    }

    /// Keeps `idx` for the service `key` alone, even while that service is absent.
    pub fn reserve_for(&mut self, idx: u32, key: &str) {
        if idx < self.slots {
            self.reserved.insert(idx, key.into());
        }
    }

    fn is_set(&self, idx: u32) -> bool {
        self.bits[(idx / 64) as usize] & (1 << (idx % 64)) != 0
    }

    fn set(&mut self, idx: u32, on: bool) {
        let w = &mut self.bits[(idx / 64) as usize];
        if on {
            *w |= 1 << (idx % 64);
        } else {
            *w &= !(1 << (idx % 64));
        }
    }

    pub fn owner(&self, idx: u32) -> Option<&Owner> {
        self.owners.get(&idx)
    }

    pub fn used(&self) -> usize {
        self.owners.len()
    }

    /// Takes a slot that is free (even one's own slot counts as taken: a second
    /// request for it must not succeed while the first is in flight).
    pub fn take(&mut self, idx: u32, owner: &Owner) -> Result<(), Taken> {
        if let Some(holder) = self.owners.get(&idx) {
            return Err(Taken::By(holder.clone()));
        }
        if self.reserved.get(&idx).is_some_and(|k| **k != *owner.key) {
            return Err(Taken::Reserved);
        }
        self.set(idx, true);
        self.owners.insert(idx, owner.clone());
        Ok(())
    }

    /// Records a slot a stored service holds, reserved or not: what is stored wins.
    pub fn take_stored(&mut self, idx: u32, owner: &Owner) -> Result<(), Taken> {
        if let Some(holder) = self.owners.get(&idx) {
            return Err(Taken::By(holder.clone()));
        }
        self.set(idx, true);
        self.owners.insert(idx, owner.clone());
        Ok(())
    }

    /// Records who holds `idx` according to the store, over whatever this
    /// server believed: the claim in the store is the truth.
    pub fn set_owner(&mut self, idx: u32, owner: &Owner) {
        if idx < self.slots {
            self.set(idx, true);
            self.owners.insert(idx, owner.clone());
        }
    }

    /// Takes a random free slot, from the dynamic band first.
    pub fn take_next(&mut self, owner: &Owner) -> Option<u32> {
        let mut rng = rand::rng();
        let (lo, hi) = (self.band, self.slots);
        let found = if lo < hi {
            let start = rng.random_range(lo..hi);
            self.scan(start, hi).or_else(|| self.scan(lo, start))
        } else {
            None
        };
        let idx = found.or_else(|| {
            let start = if lo > 0 { rng.random_range(0..lo) } else { 0 };
            self.scan(start, lo).or_else(|| self.scan(0, start))
        })?;
        self.set(idx, true);
        self.owners.insert(idx, owner.clone());
        Some(idx)
    }

    /// The first free, unreserved slot in `from..to`.
    fn scan(&self, from: u32, to: u32) -> Option<u32> {
        let mut i = from;
        while i < to {
            if self.bits[(i / 64) as usize] == u64::MAX {
                i = (i / 64 + 1) * 64;
                continue;
            }
            if !self.is_set(i) && !self.reserved.contains_key(&i) {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// Frees `idx` if `uid` holds it.
    pub fn release(&mut self, idx: u32, uid: &str) -> bool {
        if self.owners.get(&idx).is_some_and(|o| &*o.uid == uid) {
            self.owners.remove(&idx);
            self.set(idx, false);
            return true;
        }
        false
    }

    /// Frees every slot `uid` holds; returns how many.
    pub fn release_all(&mut self, uid: &str) -> usize {
        let gone: Vec<u32> = self
            .owners
            .iter()
            .filter(|(_, o)| &*o.uid == uid)
            .map(|(i, _)| *i)
            .collect();
        for i in &gone {
            self.owners.remove(i);
            self.set(*i, false);
        }
        gone.len()
    }

    /// Every taken slot and its holder.
    pub fn held(&self) -> impl Iterator<Item = (u32, &Owner)> {
        self.owners.iter().map(|(i, o)| (*i, o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(n: &str) -> Owner {
        Owner {
            uid: n.into(),
            key: format!("default/{n}").into(),
        }
    }

    #[test]
    fn cidr_slots_skip_network_and_broadcast() {
        let c = Cidr::parse("10.96.0.0/12").unwrap();
        assert_eq!(c.to_string(), "10.96.0.0/12");
        assert_eq!(c.slots(), (1 << 20) - 2);
        assert_eq!(c.addr(0), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(c.addr(9), Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!(c.index_of(Ipv4Addr::new(10, 96, 0, 1)), Some(0));
        assert_eq!(c.index_of(Ipv4Addr::new(10, 96, 0, 0)), None);
        assert_eq!(c.index_of(Ipv4Addr::new(10, 111, 255, 255)), None);
        assert_eq!(
            c.index_of(Ipv4Addr::new(10, 111, 255, 254)),
            Some(c.slots() - 1)
        );
        assert_eq!(c.index_of(Ipv4Addr::new(10, 0, 0, 1)), None);
        assert_eq!(Cidr::parse("10.96.7.9/12").unwrap(), c);
        let one = Cidr::parse("198.51.100.7/32").unwrap();
        assert_eq!(
            (one.slots(), one.addr(0)),
            (1, Ipv4Addr::new(198, 51, 100, 7))
        );
        assert!(Cidr::parse("10.96.0.0/24")
            .unwrap()
            .overlaps(&Cidr::parse("10.96.0.128/25").unwrap()));
        assert!(!c.overlaps(&Cidr::parse("198.51.100.0/24").unwrap()));
        for bad in [
            "10.96.0.0",
            "10.96.0.0/33",
            "fd00::/64",
            "x/8",
            "10.96.0.0/",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_ranges_as_upstream_writes_them() {
        let r = PortRange::parse("30000-32767").unwrap();
        assert_eq!(
            (r.to_string(), r.slots()),
            ("30000-32767".to_string(), 2768)
        );
        assert_eq!(PortRange::parse("30000+2767").unwrap(), r);
        assert_eq!(PortRange::parse("8080").unwrap().slots(), 1);
        assert_eq!(r.index_of(30000), Some(0));
        assert_eq!(r.index_of(32768), None);
        assert_eq!(r.port(2767), 32767);
        for bad in ["", "0-10", "5-3", "30000-70000", "a-b", "65535+1"] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pool_takes_releases_and_respects_owners() {
        let mut p = Pool::new(100, dynamic_band(100, 16, 256));
        let (a, b) = (owner("a"), owner("b"));
        p.take(5, &a).unwrap();
        assert_eq!(p.take(5, &b), Err(Taken::By(a.clone())));
        assert_eq!(p.take(5, &a), Err(Taken::By(a.clone())));
        assert!(!p.release(5, "b"));
        assert!(p.release(5, "a"));
        p.take(5, &b).unwrap();
        p.reserve_for(0, "default/kubernetes");
        assert_eq!(p.take(0, &a), Err(Taken::Reserved));
        let k = Owner {
            uid: "k".into(),
            key: "default/kubernetes".into(),
        };
        p.take(0, &k).unwrap();
        // Dynamic values come from above the band while it has room.
        for _ in 0..50 {
            let i = p.take_next(&a).unwrap();
            assert!(i >= 16, "{i}");
        }
        assert_eq!(p.release_all("a"), 50);
        assert_eq!(p.used(), 2);
    }

    #[test]
    fn pool_fills_exactly_and_never_hands_out_a_slot_twice() {
        let mut p = Pool::new(130, 16);
        p.reserve_for(3, "kube-system/kube-dns");
        let a = owner("a");
        let mut seen = std::collections::HashSet::new();
        while let Some(i) = p.take_next(&a) {
            assert!(seen.insert(i), "slot {i} handed out twice");
        }
        assert_eq!(seen.len(), 129);
        assert!(!seen.contains(&3));
        assert!(p.release(77, "a"));
        assert_eq!(p.take_next(&a), Some(77));
    }
}

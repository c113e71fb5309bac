//! kubelet's atomic writer for volumes whose files the agent writes (configMap,
//! secret, downwardAPI, projected), so that a container reading them during an
//! update sees the old set of files or the new one, never a mix:
//!
//! ```text
//! <volume>/..2026_12_06_18_20_00.123456789/key   the payload, one directory per version
//! <volume>/..data -> ..2026_12_06_18_20_00.123456789
//! <volume>/key -> ..data/key                     what the container opens
//! ```
//!
//! A new version is written into a fresh directory and published by renaming a
//! new `..data` link over the old one (one atomic `rename(2)`); the visible names
//! are links through `..data`, so they follow. The volume directory itself is the
//! bind-mount source, so containers see every version; a `subPath` mount binds
//! one resolved file and keeps the version it started with, as upstream's does.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The files of one version of a volume: relative path -> (content, mode).
pub type Payload = BTreeMap<PathBuf, (Vec<u8>, u32)>;

/// The link that names the current version's directory.
const DATA_DIR: &str = "..data";
/// Where the next `..data` link is made before it is renamed into place.
const DATA_DIR_TMP: &str = "..data_tmp";

/// Publishes `payload` in `dir` unless it is what `dir` shows already.
/// `Ok(true)`: a new version was published.
pub fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join(DATA_DIR);
    let old = std::fs::read_link(&data).ok();
    if old.is_some() && read_version(&data)? == *payload {
        return Ok(false);
    }

    let version = new_version_dir(dir)?;
    for (rel, (bytes, mode)) in payload {
        let path = version.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777))?;
    }
    let tmp = dir.join(DATA_DIR_TMP);
    let _ = std::fs::remove_file(&tmp);
    let version_name = version
        .file_name()
        .ok_or_else(|| io::Error::other("version directory without a name"))?;
    std::os::unix::fs::symlink(version_name, &tmp)?;
    std::fs::rename(&tmp, &data)?;

    // The visible names: one link per top-level entry, through `..data`.
    let wanted: BTreeSet<&std::ffi::OsStr> = payload
        .keys()
        .filter_map(|p| p.components().next())
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for name in &wanted {
        let link = dir.join(name);
        let target = Path::new(DATA_DIR).join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let hidden = name.to_string_lossy().starts_with("..");
        if !hidden && !wanted.contains(name.as_os_str()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        let old = dir.join(old);
        if old != version {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(true)
}

/// A fresh `..<timestamp>` directory in `dir`, named as kubelet names them.
fn new_version_dir(dir: &Path) -> io::Result<PathBuf> {
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    for n in 0u32.. {
        let path = if n == 0 {
            dir.join(&stamp)
        } else {
            dir.join(format!("{stamp}{n}"))
        };
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free version directory name"))
}

/// The payload a version directory holds.
fn read_version(version: &Path) -> io::Result<Payload> {
    let mut out = Payload::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(version.join(&rel))? {
            let entry = entry?;
            let rel = rel.join(entry.file_name());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(rel);
            } else {
                let bytes = std::fs::read(entry.path())?;
                out.insert(rel, (bytes, meta.permissions().mode() & 0o777));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(entries: &[(&str, &str, u32)]) -> Payload {
        entries
            .iter()
            .map(|(p, v, m)| (PathBuf::from(p), (v.as_bytes().to_vec(), *m)))
            .collect()
    }

    fn read(dir: &Path, rel: &str) -> Option<String> {
        std::fs::read_to_string(dir.join(rel)).ok()
    }

    fn versions(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.starts_with("..") && n != DATA_DIR
            })
            .count()
    }

    #[test]
    fn publishes_versions_through_data_link() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let v1 = payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]);
        assert!(write(&dir, &v1).unwrap());
        assert_eq!(read(&dir, "a").as_deref(), Some("1"));
        assert_eq!(read(&dir, "sub/b").as_deref(), Some("2"));
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        let mode = std::fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        // The same payload again: nothing is written.
        assert!(!write(&dir, &v1).unwrap());

        // A key changes, one goes, one comes: the visible names follow and the
        // old version directory is removed.
        let v2 = payload(&[("a", "one", 0o644), ("c", "3", 0o644)]);
        assert!(write(&dir, &v2).unwrap());
        assert_eq!(read(&dir, "a").as_deref(), Some("one"));
        assert_eq!(read(&dir, "c").as_deref(), Some("3"));
        assert!(!dir.join("sub").exists());
        assert_eq!(versions(&dir), 1);
        assert!(!dir.join(DATA_DIR_TMP).exists());
    }

    #[test]
    fn a_file_opened_before_an_update_keeps_its_version() {
        // What a subPath bind mount holds: the resolved file of the version it saw.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        write(&dir, &payload(&[("k", "old", 0o644)])).unwrap();
        let resolved = std::fs::canonicalize(dir.join("k")).unwrap();
        let held = std::fs::File::open(&resolved).unwrap();
        write(&dir, &payload(&[("k", "new", 0o644)])).unwrap();
        assert_eq!(read(&dir, "k").as_deref(), Some("new"));
        assert_eq!(io::read_to_string(held).unwrap(), "old");
    }

    #[test]
    fn an_empty_payload_is_a_version_too() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        assert!(write(&dir, &Payload::new()).unwrap());
        assert!(dir.join(DATA_DIR).exists());
        assert!(!write(&dir, &Payload::new()).unwrap());
        assert!(write(&dir, &payload(&[("x", "1", 0o644)])).unwrap());
        assert_eq!(read(&dir, "x").as_deref(), Some("1"));
    }
}

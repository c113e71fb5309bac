//! Unpacking one layer (tar, tar+gzip or tar+zstd) into its own directory, in the
//! form overlayfs reads as a lower layer: OCI whiteouts become overlay whiteouts
//! (a 0/0 character device) and opaque markers the `trusted.overlay.opaque`
//! xattr. Both need root, as does keeping file owners.
//!
//! The stream is hashed as it is read: the compressed bytes give the blob digest,
//! the uncompressed ones the diff ID; the caller compares them with what the
//! manifest and config promise before the directory is put in place.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::PullError;

/// What a finished unpack measured.
#[derive(Debug, Clone)]
pub(crate) struct Unpacked {
    /// `sha256:` of the bytes as given (the blob digest).
    pub digest: String,
    /// `sha256:` of the uncompressed tar (the diff ID).
    pub diff_id: String,
    /// Bytes of regular files written (hard links count once).
    pub size: u64,
}

/// A reader that hashes (and counts) what passes through it.
pub(crate) struct Hashing<R> {
    inner: R,
    hash: Sha256,
    pub count: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }

    /// `sha256:<hex>` of everything read so far.
    pub fn digest(self) -> String {
        format!("sha256:{}", hex::encode(self.hash.finalize()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// `sha256:<hex>` of a byte slice.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Unpacks the layer read from `raw` into `dest` (an existing, empty directory).
/// The compression is recognised by its magic bytes, so a layer mislabelled by
/// its media type still unpacks. Errors reading the stream are `CorruptLayer`;
/// errors writing are local (`DiskFull`, `Other`).
pub(crate) fn unpack_layer(raw: impl Read, dest: &Path) -> Result<Unpacked, PullError> {
    let corrupt = |e: io::Error| PullError::CorruptLayer(format!("reading the layer: {e}"));
    let mut raw = BufReader::with_capacity(1 << 20, Hashing::new(raw));
    let head = raw.fill_buf().map_err(corrupt)?.to_vec();
    let decoded: Box<dyn Read + '_> = if head.starts_with(GZIP_MAGIC) {
        Box::new(flate2::bufread::MultiGzDecoder::new(&mut raw))
    } else if head.starts_with(ZSTD_MAGIC) {
        let d = ruzstd::decoding::StreamingDecoder::new(&mut raw)
            .map_err(|e| PullError::CorruptLayer(format!("reading the zstd layer: {e}")))?;
        Box::new(d)
    } else {
        Box::new(&mut raw)
    };
    let mut tar_stream = Hashing::new(BufReader::with_capacity(1 << 16, decoded));
    let size = extract(&mut tar_stream, dest)?;
    // The diff ID covers the whole stream, including the end-of-archive blocks
    // the tar reader stops before.
    io::copy(&mut tar_stream, &mut io::sink()).map_err(corrupt)?;
    let diff_id = tar_stream.digest();
    io::copy(&mut raw, &mut io::sink()).map_err(corrupt)?;
    let digest = raw.into_inner().digest();
    Ok(Unpacked {
        digest,
        diff_id,
        size,
    })
}

/// The entry's path inside the layer, or an error for one that climbs out.
/// `None` is the layer root itself (`./`).
fn clean(path: &Path) -> Result<Option<PathBuf>, PullError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(PullError::CorruptLayer(format!(
                    "layer entry {} escapes the layer",
                    path.display()
                )))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

struct Extractor<'a> {
    dest: &'a Path,
    /// Directories already known to be real directories (not symlinks) in `dest`.
    dirs: HashSet<PathBuf>,
    size: u64,
}

fn local(what: &str, path: &Path, e: &io::Error) -> PullError {
    PullError::from_io(&format!("{what} {}", path.display()), e)
}

impl Extractor<'_> {
    /// Makes sure every parent of `rel` is a directory inside the layer, creating
    /// missing ones, and refuses to go through a symlink: a layer's own entries
    /// never need to (a tar of a tree lists real paths), and following one could
    /// write outside the layer.
    fn parent(&mut self, rel: &Path) -> Result<PathBuf, PullError> {
        let mut cur = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                cur.push(c);
                if self.dirs.contains(&cur) {
                    continue;
                }
                let full = self.dest.join(&cur);
                match fs::symlink_metadata(&full) {
                    Ok(m) if m.is_dir() => {}
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(PullError::CorruptLayer(format!(
                            "layer entry {} goes through the symlink {}",
                            rel.display(),
                            cur.display()
                        )))
                    }
                    Ok(_) => {
                        return Err(PullError::CorruptLayer(format!(
                            "layer entry {} is below the non-directory {}",
                            rel.display(),
                            cur.display()
                        )))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        fs::create_dir(&full).map_err(|e| local("creating", &full, &e))?;
                        fs::set_permissions(&full, fs::Permissions::from_mode(0o755))
                            .map_err(|e| local("chmod", &full, &e))?;
                    }
                    Err(e) => return Err(local("checking", &full, &e)),
                }
                self.dirs.insert(cur.clone());
            }
        }
        Ok(self.dest.join(rel))
    }

    /// Clears the way for a new non-directory entry at `full`.
    fn replace(&mut self, full: &Path) -> Result<(), PullError> {
        match fs::symlink_metadata(full) {
            Ok(m) if m.is_dir() => {
                fs::remove_dir_all(full).map_err(|e| local("removing", full, &e))?;
                // Rare; forget what we knew rather than track the subtree.
                self.dirs.clear();
            }
            Ok(_) => fs::remove_file(full).map_err(|e| local("removing", full, &e))?,
            Err(_) => {}
        }
        Ok(())
    }
}

/// Owner first, then mode: chown clears set-user-ID bits.
fn attrs(full: &Path, h: &tar::Header, mode: bool) -> Result<(), PullError> {
    let (uid, gid) = (h.uid().unwrap_or(0), h.gid().unwrap_or(0));
    let (uid, gid) = (
        u32::try_from(uid).unwrap_or(0),
        u32::try_from(gid).unwrap_or(0),
    );
    lchown(full, Some(uid), Some(gid)).map_err(|e| local("chown", full, &e))?;
    if mode {
        let m = h.mode().unwrap_or(0o644) & 0o7777;
        fs::set_permissions(full, fs::Permissions::from_mode(m))
            .map_err(|e| local("chmod", full, &e))?;
    }
    Ok(())
}

fn whiteout(full: &Path) -> Result<(), PullError> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        full,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .map_err(|e| {
        local(
            "creating the whiteout (needs root)",
            full,
            &io::Error::from(e),
        )
    })
}

fn set_opaque(dir: &Path) -> Result<(), PullError> {
    rustix::fs::lsetxattr(
        dir,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(|e| local("marking opaque (needs root)", dir, &io::Error::from(e)))
}

/// Writes every entry of the tar read from `stream` under `dest`; returns the
/// bytes of regular files written.
fn extract(stream: &mut impl Read, dest: &Path) -> Result<u64, PullError> {
    let corrupt = |e: io::Error| PullError::CorruptLayer(format!("reading the layer: {e}"));
    let mut archive = tar::Archive::new(stream);
    let mut x = Extractor {
        dest,
        dirs: HashSet::new(),
        size: 0,
    };
    let mut buf = vec![0u8; 1 << 16];
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let Some(rel) = clean(&path)? else {
            // `./`: the layer root's owner and mode, which become the container's `/`.
            let h = entry.header().clone();
            if h.entry_type().is_dir() {
                attrs(dest, &h, true)?;
            }
            continue;
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let full = x.parent(&rel)?;
            let dir = full.parent().unwrap_or(dest).to_path_buf();
            if hidden == ".wh..opq" {
                set_opaque(&dir)?;
            } else if !hidden.starts_with(".wh.") {
                let target = dir.join(hidden);
                x.replace(&target)?;
                whiteout(&target)?;
            }
            // Other `.wh..wh.` names are aufs bookkeeping, meaningless here.
            continue;
        }
        let xattrs: Vec<(String, Vec<u8>)> = match entry.pax_extensions().map_err(corrupt)? {
            Some(exts) => exts
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let key = e.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string();
                    Some((key, e.value_bytes().to_vec()))
                })
                .collect(),
            None => Vec::new(),
        };
        let h = entry.header().clone();
        let kind = h.entry_type();
        let full = x.parent(&rel)?;
        if kind.is_dir() {
            match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                _ => {
                    x.replace(&full)?;
                    fs::create_dir(&full).map_err(|e| local("creating", &full, &e))?;
                }
            }
            x.dirs.insert(rel.clone());
            attrs(&full, &h, true)?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous || kind.is_gnu_sparse() {
            x.replace(&full)?;
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&full)
                .map_err(|e| local("creating", &full, &e))?;
            let mut out = io::BufWriter::with_capacity(1 << 16, &file);
            loop {
                let n = entry.read(&mut buf).map_err(corrupt)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])
                    .map_err(|e| local("writing", &full, &e))?;
                x.size += n as u64;
            }
            out.flush().map_err(|e| local("writing", &full, &e))?;
            drop(out);
            if let Ok(mtime) = h.mtime() {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
                // Best effort: only tools comparing timestamps care.
                let _ = file.set_modified(t);
            }
            attrs(&full, &h, true)?;
        } else if kind.is_symlink() {
            let target = entry.link_name().map_err(corrupt)?.ok_or_else(|| {
                PullError::CorruptLayer(format!("symlink {} has no target", rel.display()))
            })?;
            x.replace(&full)?;
            // The target is stored as is: it is resolved inside the container's
            // root at run time, never while unpacking.
            symlink(&target, &full).map_err(|e| local("creating the symlink", &full, &e))?;
            attrs(&full, &h, false)?;
        } else if kind.is_hard_link() {
            let target = entry.link_name().map_err(corrupt)?.ok_or_else(|| {
                PullError::CorruptLayer(format!("hard link {} has no target", rel.display()))
            })?;
            let target_rel = clean(&target)?.ok_or_else(|| {
                PullError::CorruptLayer(format!("hard link {} to the layer root", rel.display()))
            })?;
            let target_full = x.parent(&target_rel)?;
            match fs::symlink_metadata(&target_full) {
                Ok(m) if !m.is_dir() => {}
                _ => {
                    return Err(PullError::CorruptLayer(format!(
                        "hard link {} to {}, which is not an earlier file of the layer",
                        rel.display(),
                        target.display()
                    )))
                }
            }
            x.replace(&full)?;
            fs::hard_link(&target_full, &full).map_err(|e| local("linking", &full, &e))?;
        } else if kind == tar::EntryType::Fifo {
            x.replace(&full)?;
            let mode = rustix::fs::Mode::from_bits_truncate(h.mode().unwrap_or(0o644) & 0o777);
            rustix::fs::mknodat(rustix::fs::CWD, &full, rustix::fs::FileType::Fifo, mode, 0)
                .map_err(|e| local("creating the fifo", &full, &io::Error::from(e)))?;
            attrs(&full, &h, true)?;
        } else {
            // Device nodes (a container gets its /dev from the runtime) and
            // anything unknown are skipped rather than created on the node.
            tracing::debug!(path = %rel.display(), ?kind, "skipping layer entry");
            continue;
        }
        for (key, value) in xattrs {
            // Best effort, as containerd: a filesystem without user xattrs or a
            // namespace we may not write should not fail the image.
            if let Err(e) =
                rustix::fs::lsetxattr(&full, key.as_str(), &value, rustix::fs::XattrFlags::empty())
            {
                tracing::debug!(path = %rel.display(), key, error = %e, "xattr not set");
            }
        }
    }
    Ok(x.size)
}

/// A fresh directory for an unpack in progress, world-readable (the layer root
/// becomes the container's `/`, which every user must be able to enter).
pub(crate) fn fresh_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Total bytes of regular files under `dir` (for layers unpacked by an older version).
pub(crate) fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = HashSet::new();
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                use std::os::unix::fs::MetadataExt;
                if seen.insert(m.ino()) {
                    total += m.len();
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(data.len() as u64);
            if !link.is_empty() {
                h.set_link_name(link).expect("link name");
            }
            // set_path refuses `..`; write the raw name so escapes can be tested.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn refuses_escapes() {
        for entries in [
            vec![("../x", tar::EntryType::Regular, &b"x"[..], "")],
            vec![
                ("l", tar::EntryType::Symlink, &b""[..], "/etc"),
                ("l/passwd", tar::EntryType::Regular, &b"x"[..], ""),
            ],
            vec![("h", tar::EntryType::Link, &b""[..], "../../etc/passwd")],
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let t = tar_of(&entries);
            let e = unpack_layer(&t[..], dir.path()).expect_err("must refuse");
            assert!(matches!(e, PullError::CorruptLayer(_)), "{e}");
        }
    }

    #[test]
    fn digests_plain_and_gzip() {
        let t = tar_of(&[
            ("a/", tar::EntryType::Directory, &b""[..], ""),
            ("a/f", tar::EntryType::Regular, &b"hello"[..], ""),
            ("a/g", tar::EntryType::Link, &b""[..], "a/f"),
            ("a/s", tar::EntryType::Symlink, &b""[..], "/nowhere"),
        ]);
        let dir = tempfile::tempdir().expect("tempdir");
        let u = unpack_layer(&t[..], dir.path()).expect("unpack");
        assert_eq!(u.diff_id, sha256(&t));
        assert_eq!(u.digest, sha256(&t));
        assert_eq!(u.size, 5);
        assert_eq!(fs::read(dir.path().join("a/g")).expect("link"), b"hello");
        assert_eq!(
            fs::read_link(dir.path().join("a/s")).expect("symlink"),
            Path::new("/nowhere")
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let dir = tempfile::tempdir().expect("tempdir");
        let u = unpack_layer(&gz[..], dir.path()).expect("unpack gzip");
        assert_eq!(u.diff_id, sha256(&t));
        assert_eq!(u.digest, sha256(&gz));

        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        bad[mid..].iter_mut().for_each(|b| *b ^= 0x55);
        let dir = tempfile::tempdir().expect("tempdir");
        let e = unpack_layer(&bad[..], dir.path()).expect_err("corrupt");
        assert!(matches!(e, PullError::CorruptLayer(_)), "{e}");
    }
}

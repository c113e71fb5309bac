//! The content-addressed store on disk:
//!
//! ```text
//! <root>/blobs/sha256/<hex>      manifests and configs, by digest (verified before rename)
//! <root>/layers/sha256/<hex>/    one unpacked layer, by diff ID (renamed in when complete)
//! <root>/tmp/                    downloads and unpacks in progress (emptied at open)
//! <root>/index.json              references -> manifest digest, images, layer sizes, last use
//! <root>/index.lock              serialises index updates between processes
//! ```
//!
//! The index is rewritten whole (write + rename) under an exclusive lock, so a
//! `skiff image import` and the agent can share a store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::RegistryConfig;
use crate::image::{Image, ImageSummary, RawConfig};
use crate::{normalize, Error, Result};

/// Lookups within this many seconds of the last recorded use do not rewrite the
/// index: a container start should not cost a disk write.
const TOUCH_SECS: u64 = 60;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Index {
    /// Normalized reference -> manifest digest.
    #[serde(default)]
    pub refs: BTreeMap<String, String>,
    /// Manifest digest -> what the image is made of.
    #[serde(default)]
    pub images: BTreeMap<String, ImageRecord>,
    /// Diff ID -> bytes of the unpacked layer: every layer directory in place.
    #[serde(default)]
    pub layers: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub config: String,
    /// Diff IDs, bottom first.
    pub layers: Vec<String>,
    pub last_used: u64,
}

/// Images on local disk, pulled from registries or imported; see the crate docs.
pub struct ImageStore {
    pub(crate) root: PathBuf,
    pub(crate) registries: RegistryConfig,
    /// Serialises index updates inside this process (the file lock does across).
    index_lock: Mutex<()>,
    /// One async lock per blob or layer digest, so concurrent pulls of images
    /// sharing content download and unpack it once.
    digest_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Registry clients by endpoint and credential, keeping their bearer tokens.
    pub(crate) clients: Mutex<HashMap<crate::pull::ClientKey, oci_client::Client>>,
    tmp_seq: AtomicU64,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// A std mutex guard even if another thread panicked holding it: the data it
/// guards (maps of locks and clients) stays valid.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ImageStore {
    /// Opens (creating) the store under `root`, removing what an interrupted
    /// pull or import left in `tmp/`.
    pub fn open(root: &Path, registries: RegistryConfig) -> Result<Self> {
        // reqwest is built without a default crypto provider: the workspace uses ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for d in ["blobs/sha256", "layers/sha256", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p)
                .map_err(|e| Error::io(format!("creating {}", p.display()), e))?;
        }
        let store = Self {
            root: root.to_path_buf(),
            registries,
            index_lock: Mutex::new(()),
            digest_locks: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            tmp_seq: AtomicU64::new(0),
        };
        // Only when no other process holds the store: its tmp files are live.
        if let Ok(f) = store.lock_file() {
            if f.try_lock().is_ok() {
                if let Ok(rd) = fs::read_dir(root.join("tmp")) {
                    for e in rd.flatten() {
                        let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
                    }
                }
                store.adopt_layers();
            }
        }
        Ok(store)
    }

    /// Records layers that are in place but not in the index: a pull cancelled
    /// between the (verified) rename and the index update leaves one.
    fn adopt_layers(&self) {
        let known = self.read_index().layers;
        let Ok(rd) = fs::read_dir(self.root.join("layers/sha256")) else {
            return;
        };
        let orphans: Vec<(String, u64)> = rd
            .flatten()
            .filter_map(|e| {
                let id = format!("sha256:{}", e.file_name().to_string_lossy());
                (!known.contains_key(&id)).then(|| (id, crate::unpack::du(&e.path())))
            })
            .collect();
        if !orphans.is_empty() {
            let adopted = self.update_index(|i| i.layers.extend(orphans));
            if let Err(e) = adopted {
                tracing::warn!(error = %e, "recording unindexed layers");
            }
        }
    }

    fn lock_file(&self) -> Result<fs::File> {
        let p = self.root.join("index.lock");
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| Error::io(format!("opening {}", p.display()), e))
    }

    /// A new, unique path under `tmp/`.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}-{nanos}", std::process::id()))
    }

    pub(crate) fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_of(digest))
    }

    pub(crate) fn layer_path(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers/sha256").join(hex_of(diff_id))
    }

    /// The index as last written (empty if none or unreadable: a lost index
    /// loses the images, never the store).
    pub(crate) fn read_index(&self) -> Index {
        match fs::read(self.root.join("index.json")) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "image index unreadable; starting empty");
                Index::default()
            }),
            Err(_) => Index::default(),
        }
    }

    /// Runs `f` on the index under both locks and writes it back.
    pub(crate) fn update_index<T>(&self, f: impl FnOnce(&mut Index) -> T) -> Result<T> {
        let _g = lock(&self.index_lock);
        let file = self.lock_file()?;
        file.lock()
            .map_err(|e| Error::io("locking the image index", e))?;
        let mut index = self.read_index();
        let out = f(&mut index);
        let bytes = serde_json::to_vec(&index)
            .map_err(|e| Error::Invalid(format!("serializing the image index: {e}")))?;
        let tmp = self.tmp_path("index");
        let write = || -> std::io::Result<()> {
            let mut t = fs::File::create(&tmp)?;
            t.write_all(&bytes)?;
            t.sync_all()?;
            fs::rename(&tmp, self.root.join("index.json"))
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("writing the image index", e)
        })?;
        Ok(out)
    }

    /// The lock for one digest (a layer being unpacked, a blob being fetched).
    pub(crate) async fn digest_lock(&self, digest: &str) -> DigestGuard<'_> {
        let m = lock(&self.digest_locks)
            .entry(digest.to_string())
            .or_default()
            .clone();
        let guard = m.clone().lock_owned().await;
        DigestGuard {
            store: self,
            digest: digest.to_string(),
            _guard: guard,
            lock: m,
        }
    }

    /// Stores `bytes` as the blob `digest` after checking they hash to it.
    pub(crate) fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), crate::PullError> {
        let actual = crate::unpack::sha256(bytes);
        if actual != digest {
            return Err(crate::PullError::DigestMismatch(format!(
                "unexpected commit digest {actual}, expected {digest}: failed precondition"
            )));
        }
        let path = self.blob_path(digest);
        if path.exists() {
            return Ok(());
        }
        let tmp = self.tmp_path("blob");
        let write = || -> std::io::Result<()> {
            fs::write(&tmp, bytes)?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            crate::PullError::from_io("writing a blob", &e)
        })
    }

    /// Local lookup, no network: the image `reference` names, if it is here.
    /// A reference with a digest (or a bare `sha256:...`) matches by digest.
    pub fn get(&self, reference: &str) -> Option<Image> {
        let index = self.read_index();
        let (name, digest) = if reference.starts_with("sha256:") {
            (reference.to_string(), reference.to_string())
        } else {
            let r = normalize(reference).ok()?;
            let digest = match &r.digest {
                Some(d) => d.clone(),
                None => index.refs.get(&r.to_string())?.clone(),
            };
            (r.to_string(), digest)
        };
        let rec = index.images.get(&digest)?;
        let image = self.image(&name, &digest, rec)?;
        if now().saturating_sub(rec.last_used) > TOUCH_SECS {
            let touched = self.update_index(|i| {
                if let Some(r) = i.images.get_mut(&digest) {
                    r.last_used = now();
                }
            });
            if let Err(e) = touched {
                tracing::warn!(error = %e, "recording an image's last use");
            }
        }
        Some(image)
    }

    /// The image a record describes, if its config and layers are all on disk.
    pub(crate) fn image(&self, reference: &str, digest: &str, rec: &ImageRecord) -> Option<Image> {
        let bytes = fs::read(self.blob_path(&rec.config)).ok()?;
        let config = RawConfig::parse(&bytes).ok()?.image_config();
        let layers: Vec<PathBuf> = rec.layers.iter().map(|l| self.layer_path(l)).collect();
        if !layers.iter().all(|l| l.is_dir()) {
            return None;
        }
        Some(Image {
            reference: reference.to_string(),
            digest: digest.to_string(),
            config,
            layers,
        })
    }

    /// Records an image whose blobs and layers are in place, under `references`.
    /// Fails (so the caller unpacks again) if a layer vanished meanwhile, which a
    /// concurrent [`ImageStore::gc`] can do.
    pub(crate) fn commit(
        &self,
        references: &[String],
        digest: &str,
        config: &str,
        layers: &[String],
    ) -> Result<bool> {
        self.update_index(|i| {
            if !layers
                .iter()
                .all(|l| i.layers.contains_key(l) && self.layer_path(l).is_dir())
            {
                return false;
            }
            for r in references {
                i.refs.insert(r.clone(), digest.to_string());
            }
            i.images.insert(
                digest.to_string(),
                ImageRecord {
                    config: config.to_string(),
                    layers: layers.to_vec(),
                    last_used: now(),
                },
            );
            true
        })
    }

    /// Every image, with its references and size on disk.
    pub fn list(&self) -> Vec<ImageSummary> {
        let index = self.read_index();
        let mut refs: HashMap<&str, Vec<String>> = HashMap::new();
        for (r, d) in &index.refs {
            refs.entry(d.as_str()).or_default().push(r.clone());
        }
        index
            .images
            .iter()
            .map(|(digest, rec)| {
                let mut references = refs.remove(digest.as_str()).unwrap_or_default();
                references.sort();
                ImageSummary {
                    references,
                    digest: digest.clone(),
                    size: self.image_size(&index, digest, rec),
                    last_used: rec.last_used,
                }
            })
            .collect()
    }

    fn blob_size(&self, digest: &str) -> u64 {
        fs::metadata(self.blob_path(digest))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn image_size(&self, index: &Index, digest: &str, rec: &ImageRecord) -> u64 {
        let layers: u64 = rec.layers.iter().filter_map(|l| index.layers.get(l)).sum();
        layers + self.blob_size(digest) + self.blob_size(&rec.config)
    }

    /// Bytes the store holds: every layer once, every manifest and config.
    pub fn disk_usage(&self) -> u64 {
        let index = self.read_index();
        let layers: u64 = index.layers.values().sum();
        let blobs: u64 = fs::read_dir(self.root.join("blobs/sha256"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        layers + blobs
    }

    /// Removes unused images (named in `in_use` neither by a reference nor by
    /// digest), least recently used first, until the store holds at most
    /// `target_bytes`; layers and blobs no remaining image uses go with them.
    /// Returns the bytes freed.
    pub fn gc(&self, in_use: &HashSet<String>, target_bytes: u64) -> Result<u64> {
        let mut usage = self.disk_usage();
        let (doomed_layers, doomed_blobs) = self.update_index(|i| {
            let keep: HashSet<String> = in_use.iter().filter_map(|s| in_use_digest(i, s)).collect();
            let mut victims: Vec<(u64, String)> = i
                .images
                .iter()
                .filter(|(d, _)| !keep.contains(*d))
                .map(|(d, r)| (r.last_used, d.clone()))
                .collect();
            victims.sort();
            let mut layers = Vec::new();
            let mut blobs = Vec::new();
            let mut victims = victims.into_iter();
            loop {
                // Whatever no image uses any more goes first (and after each removal).
                let used_layers: HashSet<&String> =
                    i.images.values().flat_map(|r| r.layers.iter()).collect();
                let unused: Vec<String> = i
                    .layers
                    .keys()
                    .filter(|l| !used_layers.contains(l))
                    .cloned()
                    .collect();
                for l in unused {
                    usage = usage.saturating_sub(i.layers.remove(&l).unwrap_or(0));
                    layers.push(l);
                }
                if usage <= target_bytes {
                    break;
                }
                let Some((_, digest)) = victims.next() else {
                    break;
                };
                if let Some(rec) = i.images.remove(&digest) {
                    i.refs.retain(|_, d| *d != digest);
                    usage = usage.saturating_sub(self.blob_size(&digest));
                    blobs.push(digest);
                    if !i.images.values().any(|r| r.config == rec.config) {
                        usage = usage.saturating_sub(self.blob_size(&rec.config));
                        blobs.push(rec.config);
                    }
                }
            }
            (layers, blobs)
        })?;
        let before = usage;
        let mut freed = 0;
        for l in doomed_layers {
            let p = self.layer_path(&l);
            freed += crate::unpack::du(&p);
            // Renamed away first, so a half-deleted layer is never seen as one.
            let gone = self.tmp_path("gc");
            if fs::rename(&p, &gone).is_ok() {
                let _ = fs::remove_dir_all(&gone);
            }
        }
        for b in doomed_blobs {
            let p = self.blob_path(&b);
            freed += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            let _ = fs::remove_file(&p);
        }
        tracing::debug!(freed, usage = before, "image gc");
        Ok(freed)
    }
}

/// The manifest digest an `in_use` entry protects: a digest, `name@digest`, or a
/// reference known to the index.
fn in_use_digest(i: &Index, s: &str) -> Option<String> {
    if s.starts_with("sha256:") {
        return Some(s.to_string());
    }
    if let Some((_, d)) = s.rsplit_once('@') {
        return Some(d.to_string());
    }
    let r = normalize(s).ok()?;
    i.refs.get(&r.to_string()).cloned()
}

/// Holds one digest's lock; the map entry goes when nobody else wants it.
pub(crate) struct DigestGuard<'a> {
    store: &'a ImageStore,
    digest: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for DigestGuard<'_> {
    fn drop(&mut self) {
        let mut locks = lock(&self.store.digest_locks);
        // Ours, the map's and the guard's own: nobody else is waiting.
        if Arc::strong_count(&self.lock) <= 3 {
            locks.remove(&self.digest);
        }
    }
}

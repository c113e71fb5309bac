//! `skiff image import`: images from a `docker save` tarball (`manifest.json` +
//! layer tars) or an OCI image layout (`oci-layout`, `index.json`, `blobs/`), as
//! a directory or a tar of one (optionally gzip- or zstd-compressed), so a node
//! can run images with no network at all. Every layer is verified against the
//! diff IDs of its image config, as a pull verifies them.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::image::{
    select_platform, Descriptor, Manifest, RawConfig, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_TAR,
    OCI_MANIFEST,
};
use crate::unpack::{fresh_dir, sha256, unpack_layer};
use crate::{normalize, Error, ImageStore, Result};

/// The annotation containerd (and Docker 25+) put the full image name in.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI layout's own name annotation (skopeo writes the name given to `oci:DIR:NAME`).
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Loads every image in `file` and returns the references it holds
    /// (normalized), or the manifest digest of an image that has none.
    pub fn import(&self, file: &Path) -> Result<Vec<String>> {
        let meta =
            fs::metadata(file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        if meta.is_dir() {
            return self.import_dir(file);
        }
        let tmp = self.tmp_path("import");
        let result = extract_archive(file, &tmp).and_then(|()| self.import_dir(&tmp));
        let _ = fs::remove_dir_all(&tmp);
        result
    }

    fn import_dir(&self, dir: &Path) -> Result<Vec<String>> {
        let has = |n: &str| dir.join(n).is_file();
        if has("index.json") {
            let refs = self.import_oci(dir)?;
            // Docker 25+ writes both; an unnamed OCI index defers to manifest.json.
            if !(refs.iter().all(|r| r.starts_with("sha256:")) && has("manifest.json")) {
                return Ok(refs);
            }
        }
        if has("manifest.json") {
            return self.import_docker(dir);
        }
        Err(Error::Invalid(format!(
            "{}: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)",
            dir.display()
        )))
    }

    fn import_oci(&self, dir: &Path) -> Result<Vec<String>> {
        let index_bytes = read_inside(dir, "index.json")?;
        let index = Manifest::parse(&index_bytes)
            .map_err(|e| Error::Invalid(format!("index.json: {e}")))?;
        let mut out = Vec::new();
        for entry in index.manifests.unwrap_or_default() {
            let name = entry
                .annotations
                .get(CONTAINERD_NAME)
                .or_else(|| entry.annotations.get(OCI_REF_NAME))
                .cloned();
            let mut desc = entry;
            let mut bytes = read_blob(dir, &desc.digest)?;
            let mut manifest = Manifest::parse(&bytes).map_err(Error::Invalid)?;
            if let Some(list) = &manifest.manifests {
                desc = select_platform(list).cloned().ok_or_else(|| {
                    crate::PullError::NoMatchingPlatform(format!(
                        "{}: no match for platform in manifest: not found",
                        desc.digest
                    ))
                })?;
                bytes = read_blob(dir, &desc.digest)?;
                manifest = Manifest::parse(&bytes).map_err(Error::Invalid)?;
            }
            let config_desc = manifest.config.clone().ok_or_else(|| {
                Error::Invalid(format!("{}: manifest has no config", desc.digest))
            })?;
            let config_bytes = read_blob(dir, &config_desc.digest)?;
            let diff_ids = RawConfig::parse(&config_bytes)
                .map_err(Error::Invalid)?
                .diff_ids()
                .to_vec();
            if diff_ids.len() != manifest.layers.len() {
                return Err(Error::Invalid(format!(
                    "{}: config and manifest disagree on layers",
                    desc.digest
                )));
            }
            for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
                let path = blob_file(dir, &layer.digest)?;
                self.import_layer(&path, Some(&layer.digest), diff_id)?;
            }
            self.put_blob(&config_desc.digest, &config_bytes)?;
            self.put_blob(&desc.digest, &bytes)?;
            let references = match name.as_deref().map(normalize) {
                Some(Ok(r)) => vec![r.to_string()],
                Some(Err(e)) => {
                    tracing::warn!(error = %e, digest = %desc.digest, "imported image name ignored");
                    vec![]
                }
                None => vec![],
            };
            self.commit_imported(&references, &desc.digest, &config_desc.digest, &diff_ids)?;
            out.extend(if references.is_empty() {
                vec![desc.digest.clone()]
            } else {
                references
            });
        }
        Ok(out)
    }

    fn import_docker(&self, dir: &Path) -> Result<Vec<String>> {
        let entries: Vec<DockerEntry> = serde_json::from_slice(&read_inside(dir, "manifest.json")?)
            .map_err(|e| Error::Invalid(format!("manifest.json: {e}")))?;
        let mut out = Vec::new();
        for entry in entries {
            let config_bytes = read_inside(dir, &entry.config)?;
            let config_digest = sha256(&config_bytes);
            let diff_ids = RawConfig::parse(&config_bytes)
                .map_err(Error::Invalid)?
                .diff_ids()
                .to_vec();
            if diff_ids.len() != entry.layers.len() {
                return Err(Error::Invalid(format!(
                    "{}: config and manifest.json disagree on layers",
                    entry.config
                )));
            }
            let mut layers = Vec::new();
            for (layer, diff_id) in entry.layers.iter().zip(&diff_ids) {
                let path = resolve_inside(dir, layer)?;
                let digest = self.import_layer(&path, None, diff_id)?;
                let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let media_type = if digest == *diff_id {
                    OCI_LAYER_TAR
                } else {
                    OCI_LAYER_GZIP
                };
                layers.push(Descriptor {
                    media_type: media_type.into(),
                    digest,
                    size: i64::try_from(size).unwrap_or(i64::MAX),
                    ..Default::default()
                });
            }
            // docker save has no manifest: make the OCI one a registry would hold.
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": Descriptor {
                    media_type: OCI_CONFIG.into(),
                    digest: config_digest.clone(),
                    size: i64::try_from(config_bytes.len()).unwrap_or(i64::MAX),
                    ..Default::default()
                },
                "layers": layers,
            });
            let manifest_bytes = serde_json::to_vec(&manifest)
                .map_err(|e| Error::Invalid(format!("making a manifest: {e}")))?;
            let digest = sha256(&manifest_bytes);
            self.put_blob(&config_digest, &config_bytes)?;
            self.put_blob(&digest, &manifest_bytes)?;
            let mut references = Vec::new();
            for t in entry.repo_tags.unwrap_or_default() {
                match normalize(&t) {
                    Ok(r) => references.push(r.to_string()),
                    Err(e) => tracing::warn!(error = %e, "imported tag ignored"),
                }
            }
            self.commit_imported(&references, &digest, &config_digest, &diff_ids)?;
            out.extend(if references.is_empty() {
                vec![digest]
            } else {
                references
            });
        }
        Ok(out)
    }

    fn commit_imported(
        &self,
        references: &[String],
        digest: &str,
        config: &str,
        layers: &[String],
    ) -> Result<()> {
        if self.commit(references, digest, config, layers)? {
            Ok(())
        } else {
            Err(Error::Invalid(
                "a layer was removed while importing (concurrent gc); import again".into(),
            ))
        }
    }

    /// Unpacks the layer file `path` unless its diff ID is already here; returns
    /// the file's digest. `digest` is what the file must hash to, if known.
    fn import_layer(&self, path: &Path, digest: Option<&str>, diff_id: &str) -> Result<String> {
        if self.read_index().layers.contains_key(diff_id) && self.layer_path(diff_id).is_dir() {
            return match digest {
                Some(d) => Ok(d.to_string()),
                None => file_digest(path),
            };
        }
        let file = fs::File::open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let tmp = self.tmp_path("layer");
        fresh_dir(&tmp).map_err(|e| Error::io("creating a layer directory", e))?;
        let unpacked =
            unpack_layer(file, &tmp).map_err(|e| e.prefixed(&format!("layer {}", path.display())));
        let check = unpacked.and_then(|u| {
            if digest.is_some_and(|d| d != u.digest) || u.diff_id != diff_id {
                Err(crate::PullError::DigestMismatch(format!(
                    "layer {}: content {} / uncompressed {} is not the {} / {diff_id} the image names",
                    path.display(),
                    u.digest,
                    u.diff_id,
                    digest.unwrap_or("-")
                )))
            } else {
                Ok(u)
            }
        });
        match check {
            Ok(u) => {
                crate::pull::place_layer(&tmp, &self.layer_path(diff_id)).map_err(|e| {
                    let _ = fs::remove_dir_all(&tmp);
                    Error::io("placing a layer", e)
                })?;
                self.register_layer(diff_id, u.size)?;
                Ok(u.digest)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e.into())
            }
        }
    }
}

fn file_digest(path: &Path) -> Result<String> {
    let f =
        fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut h = crate::unpack::Hashing::new(BufReader::with_capacity(1 << 20, f));
    std::io::copy(&mut h, &mut std::io::sink())
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(h.digest())
}

/// `rel` inside `dir`, refusing `..` and symlinks that lead out of it (old
/// `docker save` archives link duplicate layers to each other).
fn resolve_inside(dir: &Path, rel: &str) -> Result<PathBuf> {
    let bad = || Error::Invalid(format!("{rel:?} points outside the archive"));
    let mut p = dir.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(x) => p.push(x),
            Component::CurDir => {}
            _ => return Err(bad()),
        }
    }
    let root = dir
        .canonicalize()
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    let real = p
        .canonicalize()
        .map_err(|e| Error::io(format!("reading {rel} in {}", dir.display()), e))?;
    if real.starts_with(&root) {
        Ok(real)
    } else {
        Err(bad())
    }
}

fn read_inside(dir: &Path, rel: &str) -> Result<Vec<u8>> {
    let p = resolve_inside(dir, rel)?;
    fs::read(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
}

fn blob_file(dir: &Path, digest: &str) -> Result<PathBuf> {
    let hex = crate::reference::parse_digest(digest)
        .map_err(|e| Error::Invalid(format!("{digest:?}: {e}")))?;
    resolve_inside(dir, &format!("blobs/sha256/{}", crate::store::hex_of(&hex)))
}

/// A small blob (manifest, config) of an OCI layout, checked against its digest.
fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>> {
    let p = blob_file(dir, digest)?;
    let b = fs::read(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    let actual = sha256(&b);
    if actual != digest {
        return Err(
            crate::PullError::DigestMismatch(format!("blob {digest} has digest {actual}")).into(),
        );
    }
    Ok(b)
}

/// Extracts an archive (tar, tar.gz, tar.zst) into `dest` with the tar crate's
/// own guard against paths that leave `dest`.
fn extract_archive(file: &Path, dest: &Path) -> Result<()> {
    let f =
        fs::File::open(file).map_err(|e| Error::io(format!("opening {}", file.display()), e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let head = r
        .fill_buf()
        .map_err(|e| Error::io(format!("reading {}", file.display()), e))?
        .to_vec();
    let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(r)
                .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?,
        )
    } else {
        Box::new(r)
    };
    fs::create_dir_all(dest).map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    archive.set_preserve_ownerships(false);
    archive.unpack(dest).map_err(|e| {
        Error::Invalid(format!(
            "{}: not a readable tar archive: {e}",
            file.display()
        ))
    })
}

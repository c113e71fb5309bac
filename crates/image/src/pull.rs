//! Pulling from registries with oci-client: endpoints (mirrors, then the registry)
//! tried in order, a manifest list / index resolved to this platform, the config
//! fetched and verified, and layers streamed straight from the network into the
//! unpacker (no compressed copy is kept), hashed on the way so nothing unverified
//! is ever renamed into place.

use std::io::{self, Read};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;

use crate::config::{credential_for, Credential, Endpoint};
use crate::image::{select_platform, Descriptor, Image, Manifest, RawConfig, MANIFEST_TYPES};
use crate::reference::Reference;
use crate::store::lock;
use crate::unpack::{fresh_dir, unpack_layer, Unpacked};
use crate::{normalize, ImageStore, PullError};

/// An unreachable registry fails in seconds, not minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A registry that stops sending mid-layer.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Layers downloaded and unpacked at once.
const PARALLEL_LAYERS: usize = 4;

/// Clients are cached per endpoint and credential: oci-client binds one
/// credential per registry per client and keeps its bearer tokens.
pub(crate) type ClientKey = (String, bool, Credential);

impl ImageStore {
    /// Pulls `reference` (unless every blob and layer is already here, in which
    /// case only the manifest is fetched) and records it; see the crate docs.
    /// `docker_configs` are the `.dockerconfigjson` of the pod's `imagePullSecrets`.
    pub async fn pull(
        &self,
        reference: &str,
        docker_configs: &[Vec<u8>],
    ) -> Result<Image, PullError> {
        let r = normalize(reference).map_err(|e| PullError::InvalidReference(e.to_string()))?;
        let what = format!("failed to pull and unpack image \"{r}\"");
        let mut best: Option<PullError> = None;
        for endpoint in self.registries.endpoints(&r) {
            match self.pull_from(&r, &endpoint, docker_configs).await {
                Ok(img) => return Ok(img),
                Err(e) => {
                    tracing::debug!(image = %r, host = %endpoint.host, error = %e, "pull from endpoint failed");
                    // Full disks and bad content are not fixed by another mirror.
                    let fatal = matches!(e, PullError::DiskFull(_));
                    if best.as_ref().is_none_or(|b| e.rank() > b.rank()) {
                        best = Some(e);
                    }
                    if fatal {
                        break;
                    }
                }
            }
        }
        Err(best
            .unwrap_or_else(|| PullError::Other("no endpoint to pull from".into()))
            .prefixed(&what))
    }

    fn client(
        &self,
        endpoint: &Endpoint,
        cred: &Credential,
    ) -> Result<oci_client::Client, PullError> {
        let key = (endpoint.host.clone(), endpoint.plain_http, cred.clone());
        if let Some(c) = lock(&self.clients).get(&key) {
            return Ok(c.clone());
        }
        let mut config = ClientConfig {
            protocol: if endpoint.plain_http {
                ClientProtocol::HttpsExcept(vec![endpoint.host.clone()])
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            max_concurrent_download: PARALLEL_LAYERS,
            ..Default::default()
        };
        if let Some(tls) = self
            .registries
            .host(&endpoint.host)
            .and_then(|h| h.tls.as_ref())
        {
            config.accept_invalid_certificates = tls.insecure_skip_verify;
            if tls.cert_file.is_some() || tls.key_file.is_some() {
                return Err(PullError::Other(format!(
                    "registries.yaml configs.{}.tls: client certificates are not supported",
                    endpoint.host
                )));
            }
            if let Some(ca) = &tls.ca_file {
                let data = std::fs::read(ca).map_err(|e| {
                    PullError::Other(format!("reading ca_file {}: {e}", ca.display()))
                })?;
                config
                    .extra_root_certificates
                    .push(oci_client::client::Certificate {
                        encoding: oci_client::client::CertificateEncoding::Pem,
                        data,
                    });
            }
        }
        let client = oci_client::Client::try_from(config)
            .map_err(|e| PullError::Other(format!("building the registry client: {e}")))?;
        lock(&self.clients).insert(key, client.clone());
        Ok(client)
    }

    async fn pull_from(
        &self,
        r: &Reference,
        endpoint: &Endpoint,
        docker_configs: &[Vec<u8>],
    ) -> Result<Image, PullError> {
        let cred = credential_for(&self.registries, docker_configs, endpoint, &r.registry);
        let client = self.client(endpoint, &cred)?;
        let auth = match &cred {
            Credential::Anonymous => RegistryAuth::Anonymous,
            Credential::Basic(u, p) => RegistryAuth::Basic(u.clone(), p.clone()),
            Credential::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        };
        client.store_auth_if_needed(&endpoint.host, &auth).await;
        let at = |tag: Option<&String>, digest: Option<&String>| match (tag, digest) {
            (_, Some(d)) => oci_client::Reference::with_digest(
                endpoint.host.clone(),
                endpoint.repository.clone(),
                d.clone(),
            ),
            (t, None) => oci_client::Reference::with_tag(
                endpoint.host.clone(),
                endpoint.repository.clone(),
                t.cloned().unwrap_or_else(|| "latest".into()),
            ),
        };
        let target = at(r.tag.as_ref(), r.digest.as_ref());
        let resolve = |e: OciDistributionError| {
            classify(e, &format!("failed to resolve reference \"{r}\""), r)
        };

        let (mut bytes, mut digest) = client
            .pull_manifest_raw(&target, &auth, MANIFEST_TYPES)
            .await
            .map_err(resolve)?;
        check_digest(&bytes, &digest, r.digest.as_deref())?;
        let mut manifest = Manifest::parse(&bytes).map_err(PullError::Other)?;
        if let Some(list) = &manifest.manifests {
            let chosen = select_platform(list).ok_or_else(|| {
                PullError::NoMatchingPlatform(format!(
                    "no match for platform in manifest: linux/{}: not found",
                    crate::image::host_arch()
                ))
            })?;
            let wanted = chosen.digest.clone();
            self.put_blob(&digest, &bytes)?;
            let (b, d) = client
                .pull_manifest_raw(&at(None, Some(&wanted)), &auth, MANIFEST_TYPES)
                .await
                .map_err(resolve)?;
            check_digest(&b, &d, Some(&wanted))?;
            (bytes, digest) = (b, wanted);
            manifest = Manifest::parse(&bytes).map_err(PullError::Other)?;
            if manifest.is_index() {
                return Err(PullError::Other("nested image index".into()));
            }
        }
        let config_desc = manifest
            .config
            .clone()
            .ok_or_else(|| PullError::Other("manifest has no config".into()))?;

        let config_bytes = match std::fs::read(self.blob_path(&config_desc.digest)) {
            Ok(b) => b,
            Err(_) => {
                let mut buf = Vec::new();
                client
                    .pull_blob(&target, &oci_descriptor(&config_desc), &mut buf)
                    .await
                    .map_err(|e| classify(e, "failed to fetch the image config", r))?;
                self.put_blob(&config_desc.digest, &buf)?;
                buf
            }
        };
        let config = RawConfig::parse(&config_bytes).map_err(PullError::Other)?;
        let diff_ids = config.diff_ids().to_vec();
        if diff_ids.len() != manifest.layers.len() {
            return Err(PullError::Other(format!(
                "image config lists {} layers, manifest {}",
                diff_ids.len(),
                manifest.layers.len()
            )));
        }
        for d in &manifest.layers {
            check_layer_type(&d.media_type)?;
        }
        self.put_blob(&digest, &bytes)?;

        let mut references = vec![match &r.digest {
            Some(_) => r.with_digest(&digest).to_string(),
            None => r.to_string(),
        }];
        if r.digest.is_some() && r.tag.is_some() {
            references.push(
                Reference {
                    digest: None,
                    ..r.clone()
                }
                .to_string(),
            );
        }
        // Twice at most: a layer removed by a concurrent gc between unpack and
        // commit is unpacked again.
        for _ in 0..2 {
            // Owned pairs, boxed: a closure over borrowed pairs makes the pull
            // future not `Send` for every lifetime, so it could not be spawned.
            let (client, target) = (&client, &target);
            let fetches: Vec<_> = manifest
                .layers
                .iter()
                .cloned()
                .zip(diff_ids.iter().cloned())
                .map(|(desc, diff_id)| {
                    Box::pin(async move { self.fetch_layer(client, target, &desc, &diff_id).await })
                })
                .collect();
            futures::stream::iter(fetches)
                .buffer_unordered(PARALLEL_LAYERS)
                .try_collect::<Vec<()>>()
                .await?;
            let committed = self
                .commit(&references, &digest, &config_desc.digest, &diff_ids)
                .map_err(|e| PullError::Other(e.to_string()))?;
            if committed {
                let image = self.read_index().images.get(&digest).cloned();
                return image
                    .and_then(|rec| self.image(&references[0], &digest, &rec))
                    .ok_or_else(|| PullError::Other("image vanished after commit".into()));
            }
        }
        Err(PullError::Other(
            "layers keep disappearing (concurrent garbage collection)".into(),
        ))
    }

    /// Makes sure the layer `diff_id` is unpacked, downloading it if not, once
    /// however many pulls want it.
    async fn fetch_layer(
        &self,
        client: &oci_client::Client,
        target: &oci_client::Reference,
        desc: &Descriptor,
        diff_id: &str,
    ) -> Result<(), PullError> {
        let _guard = self.digest_lock(diff_id).await;
        if self.read_index().layers.contains_key(diff_id) && self.layer_path(diff_id).is_dir() {
            return Ok(());
        }
        let stream = client
            .pull_blob_stream(target, &oci_descriptor(desc))
            .await
            .map_err(|e| {
                classify(
                    e,
                    &format!("failed to copy {}", desc.digest),
                    &Reference::default_for(target),
                )
            })?;
        let tmp = self.tmp_path("layer");
        fresh_dir(&tmp).map_err(|e| PullError::from_io("creating a layer directory", &e))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(64);
        // Verification, cleanup and the rename into place all happen on the
        // blocking thread: if this future is dropped (another layer failed, the
        // pull was cancelled), the unpacker still ends and leaves nothing behind.
        let (want_digest, want_diff_id) = (desc.digest.clone(), diff_id.to_string());
        let (work, dest) = (tmp.clone(), self.layer_path(diff_id));
        let unpack = tokio::task::spawn_blocking(move || {
            let result = unpack_layer(ChannelReader::new(rx), &work)
                .and_then(|u| verify(u, &want_digest, &want_diff_id))
                .and_then(|u| {
                    place_layer(&work, &dest)
                        .map_err(|e| PullError::from_io("placing a layer", &e))?;
                    Ok(u)
                });
            if result.is_err() {
                let _ = std::fs::remove_dir_all(&work);
            }
            result
        });
        let mut stream = stream.stream;
        let mut net_error: Option<PullError> = None;
        let mut unpacker_gone = false;
        while let Some(chunk) = stream.next().await {
            match chunk.map_err(|e| blob_stream_error(&desc.digest, e)) {
                Ok(b) if !unpacker_gone => {
                    // A failed send means the unpacker stopped on bad content.
                    // The rest is still read (and dropped) so oci-client can check
                    // the digest: a blob tampered with should say so rather than
                    // "corrupt layer".
                    unpacker_gone = tx.send(Ok(b)).await.is_err();
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                    net_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let result = unpack
            .await
            .map_err(|e| PullError::Other(format!("unpack task: {e}")))
            .and_then(|r| r);
        match (net_error, result) {
            // The network's error explains an unpacker that saw a cut stream.
            (Some(e), _) => Err(e),
            (None, Ok(u)) => self
                .register_layer(diff_id, u.size)
                .map_err(|e| PullError::Other(e.to_string())),
            (None, Err(e)) => Err(e),
        }
    }
}

/// The digests a finished unpack measured, against what the manifest and the
/// image config promise.
fn verify(u: Unpacked, digest: &str, diff_id: &str) -> Result<Unpacked, PullError> {
    if u.digest != digest {
        return Err(PullError::DigestMismatch(format!(
            "failed to copy {digest}: unexpected commit digest {}, expected {digest}: failed precondition",
            u.digest
        )));
    }
    if u.diff_id != diff_id {
        return Err(PullError::DigestMismatch(format!(
            "layer {digest}: uncompressed digest {} is not the diff ID {diff_id} the image config names",
            u.diff_id
        )));
    }
    Ok(u)
}

/// Renames a completely unpacked layer into place; if another pull or process
/// put the same layer there first, theirs is kept and ours removed.
pub(crate) fn place_layer(work: &std::path::Path, dest: &std::path::Path) -> std::io::Result<()> {
    match std::fs::rename(work, dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.is_dir() => std::fs::remove_dir_all(work),
        Err(e) => Err(e),
    }
}

impl ImageStore {
    /// Records a layer that is in place, so gc accounts for it.
    pub(crate) fn register_layer(&self, diff_id: &str, size: u64) -> crate::Result<()> {
        self.update_index(|i| {
            i.layers.insert(diff_id.to_string(), size);
        })
    }
}

trait DefaultFor {
    fn default_for(r: &oci_client::Reference) -> Reference;
}

impl DefaultFor for Reference {
    /// The reference as fetched, for messages about blobs.
    fn default_for(r: &oci_client::Reference) -> Reference {
        Reference {
            registry: r.registry().to_string(),
            repository: r.repository().to_string(),
            tag: r.tag().map(str::to_string),
            digest: r.digest().map(str::to_string),
        }
    }
}

fn oci_descriptor(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        ..Default::default()
    }
}

/// oci-client checks a manifest against the digest header and the digest asked
/// for; this checks again, since the digest it returns is what we store under.
fn check_digest(bytes: &[u8], digest: &str, wanted: Option<&str>) -> Result<(), PullError> {
    let actual = crate::unpack::sha256(bytes);
    if actual != digest || wanted.is_some_and(|w| w != actual) {
        return Err(PullError::DigestMismatch(format!(
            "manifest digest {actual} is not {}",
            wanted.unwrap_or(digest)
        )));
    }
    Ok(())
}

/// Layer media types we unpack; anything else (Helm charts, Wasm, signatures)
/// is refused up front rather than unpacked as garbage.
fn check_layer_type(media_type: &str) -> Result<(), PullError> {
    let ok = media_type.is_empty()
        || media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.");
    // Encrypted layers (ocicrypt) would need keys we do not have.
    if ok && !media_type.contains("+encrypted") {
        Ok(())
    } else {
        Err(PullError::CorruptLayer(format!(
            "unsupported layer media type {media_type:?}"
        )))
    }
}

/// The error a broken blob stream carries: oci-client reports a digest
/// mismatch as an IO error at the end of the stream.
fn blob_stream_error(digest: &str, e: io::Error) -> PullError {
    let text = e.to_string();
    let mismatch = e.get_ref().is_some_and(|i| {
        i.downcast_ref::<oci_client::errors::DigestError>()
            .is_some()
    }) || text.contains("igest");
    if mismatch {
        PullError::DigestMismatch(format!("failed to copy {digest}: {text}"))
    } else {
        PullError::Unreachable(format!("failed to copy {digest}: {text}"))
    }
}

/// The error's whole chain, as Go prints wrapped errors.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// oci-client's error as one of ours, with containerd's wording.
fn classify(e: OciDistributionError, context: &str, r: &Reference) -> PullError {
    use OciDistributionError as E;
    let not_found = || PullError::NotFound(format!("{context}: {r}: not found"));
    let denied = |detail: String| {
        PullError::Unauthorized(format!(
            "{context}: pull access denied, repository does not exist or may require authorization: {detail}"
        ))
    };
    match e {
        E::RequestError(ref re) if re.is_connect() || re.is_timeout() => {
            PullError::Unreachable(format!("{context}: failed to do request: {}", chain(&e)))
        }
        E::RequestError(_) => PullError::Unreachable(format!("{context}: {}", chain(&e))),
        E::ImageManifestNotFoundError(_) => not_found(),
        E::UnauthorizedError { url } => denied(format!(
            "unexpected status from GET request to {url}: 401 Unauthorized"
        )),
        E::AuthenticationFailure(m) => denied(format!("authorization failed: {m}")),
        E::RegistryError { envelope, url } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let msg = envelope
                .errors
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                denied(format!("server message: {msg}"))
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                not_found()
            } else {
                PullError::Other(format!("{context}: unexpected response from {url}: {msg}"))
            }
        }
        E::ServerError { code: 404, .. } => not_found(),
        E::ServerError {
            code: 401 | 403,
            url,
            ..
        } => denied(format!(
            "unexpected status from GET request to {url}: 401 Unauthorized"
        )),
        E::ServerError { code, url, message } => PullError::Other(format!(
            "{context}: unexpected status {code} from {url}: {message}"
        )),
        E::DigestError(d) => PullError::DigestMismatch(format!("{context}: {d}")),
        E::IoError(io) => PullError::from_io(context, &io),
        other => PullError::Other(format!("{context}: {}", chain(&other))),
    }
}

/// The synchronous side of the download-to-unpacker channel.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, io::Error>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: tokio::sync::mpsc::Receiver<Result<Bytes, io::Error>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            // Called on a blocking thread (spawn_blocking), never in async code.
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                // The sender is gone: end of the blob.
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

//! Pod volumes for image containers: each volume is a directory of the pod
//! (`<pod dir>/volumes/<name>`, or the node path of a `hostPath`) filled as kubelet
//! fills it, then bind-mounted at each container's `volumeMounts` (with `subPath`
//! and `readOnly`). configMap, secret, downwardAPI and projected volumes are
//! written through [`atomic_writer`] when the pod starts and again when their
//! sources change ([`refresh`]), and are always read-only in the container, as
//! upstream mounts them. Projected `serviceAccountToken` sources are bound
//! tokens from [`sa_token`], rewritten when they are due.

pub mod atomic_writer;
pub mod sa_token;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use atomic_writer::Payload;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume, VolumeProjection,
};
use kube::Api;

use crate::envvars::{field_ref, PodFacts};
use crate::oci::BindMount;

/// A prepared volume: where its files are on the node, and whether containers may
/// only read it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub path: PathBuf,
    pub read_only: bool,
    /// A tmpfs the agent mounted (`emptyDir.medium: Memory`), unmounted at teardown.
    pub tmpfs: bool,
}

/// Reads the ConfigMaps and Secrets volumes need.
pub struct Sources<'a> {
    pub client: &'a kube::Client,
    pub namespace: &'a str,
}

impl Sources<'_> {
    async fn config_map(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.namespace);
        let cm = api
            .get_opt(name)
            .await
            .map_err(|e| format!("configmap {name:?}: {e}"))?;
        Ok(cm.map(|cm| {
            let mut out: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                out.insert(k, v.0);
            }
            out
        }))
    }

    async fn secret(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace);
        let s = api
            .get_opt(name)
            .await
            .map_err(|e| format!("secret {name:?}: {e}"))?;
        Ok(s.map(|s| {
            let mut out: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in s.string_data.unwrap_or_default() {
                out.entry(k).or_insert_with(|| v.into_bytes());
            }
            out
        }))
    }
}

/// A relative path a volume may write (no `..`, not absolute), as upstream validates it.
fn safe_relative(p: &str) -> Result<&Path, String> {
    let path = Path::new(p);
    if p.is_empty() || path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "invalid path {p:?}: must be relative and may not contain '..'"
        ));
    }
    Ok(path)
}

/// Adds `data`'s keys (or only `items`) to `out`. `Err`: a key `items` names is missing.
fn add_keys(
    out: &mut Payload,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    what: &str,
) -> Result<(), String> {
    let mut add = |rel: &str, v: &Vec<u8>, mode: i32| -> Result<(), String> {
        out.insert(
            safe_relative(rel)?.to_path_buf(),
            (v.clone(), mode as u32 & 0o777),
        );
        Ok(())
    };
    match items {
        Some(items) => {
            for it in items {
                let v = data.get(&it.key).ok_or_else(|| {
                    format!("configuration of {what}: key {:?} not found", it.key)
                })?;
                add(&it.path, v, it.mode.unwrap_or(default_mode))?;
            }
        }
        None => {
            for (k, v) in data {
                add(k, v, default_mode)?;
            }
        }
    }
    Ok(())
}

fn add_downward(
    out: &mut Payload,
    items: &[DownwardAPIVolumeFile],
    facts: &PodFacts<'_>,
    default_mode: i32,
) -> Result<(), String> {
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            match f.field_path.as_str() {
                // Whole maps are written as `key="value"` lines, sorted, as kubelet does.
                "metadata.labels" | "metadata.annotations" => {
                    let m = if f.field_path == "metadata.labels" {
                        facts.pod.metadata.labels.clone()
                    } else {
                        facts.pod.metadata.annotations.clone()
                    };
                    m.unwrap_or_default()
                        .iter()
                        .map(|(k, v)| format!("{k}={v:?}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
                p => field_ref(p, facts).ok_or_else(|| format!("unsupported fieldRef {p:?}"))?,
            }
        } else if it.resource_field_ref.is_some() {
            // Limits are not known to the downward API here; 0 means "node allocatable".
            "0".to_string()
        } else {
            continue;
        };
        out.insert(
            safe_relative(&it.path)?.to_path_buf(),
            (
                value.into_bytes(),
                it.mode.unwrap_or(default_mode) as u32 & 0o777,
            ),
        );
    }
    Ok(())
}

/// What a configMap, secret, downwardAPI or projected volume holds now, read
/// from its sources; `Ok(None)`: `v` is another type of volume.
async fn payload(
    v: &Volume,
    facts: &PodFacts<'_>,
    sources: &Sources<'_>,
) -> Result<Option<Payload>, String> {
    let mut out = Payload::new();
    if let Some(c) = &v.config_map {
        match sources.config_map(&c.name).await? {
            Some(data) => add_keys(
                &mut out,
                &data,
                c.items.as_ref(),
                c.default_mode.unwrap_or(0o644),
                &c.name,
            )?,
            None if c.optional == Some(true) => {}
            None => return Err(format!("configmap \"{}\" not found", c.name)),
        }
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        match sources.secret(&name).await? {
            Some(data) => add_keys(
                &mut out,
                &data,
                s.items.as_ref(),
                s.default_mode.unwrap_or(0o644),
                &name,
            )?,
            None if s.optional == Some(true) => {}
            None => return Err(format!("secret \"{name}\" not found")),
        }
    } else if let Some(d) = &v.downward_api {
        add_downward(
            &mut out,
            d.items.as_deref().unwrap_or_default(),
            facts,
            d.default_mode.unwrap_or(0o644),
        )?;
    } else if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644);
        let projections: Vec<&VolumeProjection> = p.sources.iter().flatten().collect();
        // Every source's API read at once (a service-account token's TokenRequest
        // beside the kube-root-ca.crt read): a pod's start waits for the slowest,
        // not for their sum. Errors are still told in the sources' order.
        let fetched = futures::future::join_all(
            projections
                .iter()
                .map(|src| Fetched::of(src, facts.pod, sources)),
        )
        .await;
        for (src, got) in projections.into_iter().zip(fetched) {
            if let (Some(c), Some(data)) = (&src.config_map, got.config_map) {
                match data? {
                    Some(data) => add_keys(&mut out, &data, c.items.as_ref(), mode, &c.name)?,
                    None if c.optional == Some(true) => {}
                    None => return Err(format!("configmap \"{}\" not found", c.name)),
                }
            }
            if let (Some(s), Some(data)) = (&src.secret, got.secret) {
                match data? {
                    Some(data) => add_keys(&mut out, &data, s.items.as_ref(), mode, &s.name)?,
                    None if s.optional == Some(true) => {}
                    None => return Err(format!("secret \"{}\" not found", s.name)),
                }
            }
            if let Some(d) = &src.downward_api {
                add_downward(
                    &mut out,
                    d.items.as_deref().unwrap_or_default(),
                    facts,
                    mode,
                )?;
            }
            if let (Some(t), Some(token)) = (&src.service_account_token, got.token) {
                let token = token?;
                out.insert(
                    safe_relative(&t.path)?.to_path_buf(),
                    (token.into_bytes(), mode as u32 & 0o777),
                );
            }
        }
    } else {
        return Ok(None);
    }
    Ok(Some(out))
}

/// Keys of a ConfigMap or Secret, `None` when it does not exist.
type Data = Option<BTreeMap<String, Vec<u8>>>;

/// What one projected source reads through the API, read.
struct Fetched {
    config_map: Option<Result<Data, String>>,
    secret: Option<Result<Data, String>>,
    token: Option<Result<String, String>>,
}

impl Fetched {
    async fn of(src: &VolumeProjection, pod: &Pod, sources: &Sources<'_>) -> Self {
        let config_map = async {
            match &src.config_map {
                Some(c) => Some(sources.config_map(&c.name).await),
                None => None,
            }
        };
        let secret = async {
            match &src.secret {
                Some(s) => Some(sources.secret(&s.name).await),
                None => None,
            }
        };
        let token = async {
            match &src.service_account_token {
                Some(t) => Some(sa_token::get(sources.client, pod, t).await),
                None => None,
            }
        };
        let (config_map, secret, token) = tokio::join!(config_map, secret, token);
        Self {
            config_map,
            secret,
            token,
        }
    }
}

/// What a volume's content is read from, for deciding which volumes a change touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    ConfigMap(String),
    Secret(String),
    /// The pod's own metadata (downwardAPI files).
    PodMetadata,
    /// Its bound ServiceAccount tokens, due for a new one ([`sa_token`]).
    ServiceAccountToken,
}

/// Whether `v`'s content is read from `source`.
pub fn reads(v: &Volume, source: &Source) -> bool {
    let cm = |name: &str| *source == Source::ConfigMap(name.to_string());
    let secret = |name: &str| *source == Source::Secret(name.to_string());
    let downward = *source == Source::PodMetadata;
    let token = *source == Source::ServiceAccountToken;
    if let Some(c) = &v.config_map {
        return cm(&c.name);
    }
    if let Some(s) = &v.secret {
        return secret(s.secret_name.as_deref().unwrap_or_default());
    }
    if v.downward_api.is_some() {
        return downward;
    }
    v.projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .any(|s| {
            s.config_map.as_ref().is_some_and(|c| cm(&c.name))
                || s.secret.as_ref().is_some_and(|c| secret(&c.name))
                || (s.downward_api.is_some() && downward)
                || (s.service_account_token.is_some() && token)
        })
}

/// Rewrites the volumes of `pod` that read `source`, as kubelet's sync does when a
/// ConfigMap, Secret or the pod's labels change; a volume whose content is unchanged
/// is left as it is. Returns the volumes refreshed, and a `FailedMount`-style
/// message per volume that could not be (it keeps its last content, as upstream's).
pub async fn refresh(
    pod: &Pod,
    pod_dir: &Path,
    facts: &PodFacts<'_>,
    sources: &Sources<'_>,
    source: &Source,
) -> (Vec<String>, Vec<String>) {
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    let vols = pod.spec.as_ref().and_then(|s| s.volumes.as_deref());
    for v in vols.unwrap_or_default().iter().filter(|v| reads(v, source)) {
        let dir = pod_dir.join("volumes").join(&v.name);
        match payload(v, facts, sources).await {
            Ok(Some(p)) => match atomic_writer::write(&dir, &p) {
                Ok(true) => done.push(v.name.clone()),
                Ok(false) => {}
                Err(e) => failed.push(format!("volume {:?}: {}: {e}", v.name, dir.display())),
            },
            Ok(None) => {}
            Err(e) => failed.push(format!("volume {:?}: {e}", v.name)),
        }
    }
    (done, failed)
}

/// Prepares every volume of the pod under `pod_dir/volumes`. `Err` is the message of
/// a `FailedMount` event: the pod then waits in `ContainerCreating`.
pub async fn prepare(
    pod: &Pod,
    pod_dir: &Path,
    facts: &PodFacts<'_>,
    sources: &Sources<'_>,
) -> Result<HashMap<String, Prepared>, String> {
    let mut out = HashMap::new();
    let vols: &[Volume] = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for v in vols {
        let dir = pod_dir.join("volumes").join(&v.name);
        let prepared = prepare_one(v, &dir, facts, sources).await?;
        out.insert(v.name.clone(), prepared);
    }
    Ok(out)
}

async fn prepare_one(
    v: &Volume,
    dir: &Path,
    facts: &PodFacts<'_>,
    sources: &Sources<'_>,
) -> Result<Prepared, String> {
    let mkdir = |d: &Path| std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()));
    let ro = |path: &Path| Prepared {
        path: path.to_path_buf(),
        read_only: true,
        tmpfs: false,
    };
    if let Some(h) = &v.host_path {
        let p = PathBuf::from(&h.path);
        let ty = h.type_.as_deref().unwrap_or("");
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {} is not a {what}",
                    h.path
                ))
            }
        };
        match ty {
            "DirectoryOrCreate" => mkdir(&p)?,
            "Directory" => check(p.is_dir(), "directory")?,
            "FileOrCreate" if !p.exists() => {
                std::fs::write(&p, b"").map_err(|e| format!("{}: {e}", p.display()))?;
            }
            "File" => check(p.is_file(), "file")?,
            "Socket" | "CharDevice" | "BlockDevice" => check(p.exists(), ty)?,
            _ => {}
        }
        return Ok(Prepared {
            path: p,
            read_only: false,
            tmpfs: false,
        });
    }
    mkdir(dir)?;
    if let Some(e) = &v.empty_dir {
        let memory = e.medium.as_deref() == Some("Memory");
        if memory {
            let mut opts = "mode=1777".to_string();
            if let Some(limit) = e
                .size_limit
                .as_ref()
                .and_then(|q| crate::cgroup::parse_quantity_bytes(&q.0))
            {
                opts.push_str(&format!(",size={limit}"));
            }
            let st = tokio::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
                .arg(dir)
                .status()
                .await
                .map_err(|e| format!("mounting tmpfs: {e}"))?;
            if !st.success() {
                return Err(format!("mounting a tmpfs at {}", dir.display()));
            }
        } else {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
        }
        return Ok(Prepared {
            path: dir.to_path_buf(),
            read_only: false,
            tmpfs: memory,
        });
    }
    if let Some(p) = payload(v, facts, sources).await? {
        atomic_writer::write(dir, &p).map_err(|e| format!("{}: {e}", dir.display()))?;
        return Ok(ro(dir));
    }
    Err(format!(
        "volume {:?}: this volume type is not supported by skiff",
        v.name
    ))
}

/// The bind mounts of a container's `volumeMounts`.
pub fn mounts(c: &Container, vols: &HashMap<String, Prepared>) -> Result<Vec<BindMount>, String> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = vols
            .get(&m.name)
            .ok_or_else(|| format!("volume {:?} not found in the pod's volumes", m.name))?;
        let mut source = v.path.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(safe_relative(sub)?);
            if !source.exists() {
                // upstream creates a missing subPath as a directory.
                std::fs::create_dir_all(&source).map_err(|e| format!("subPath {sub:?}: {e}"))?;
            }
            source = resolve_inside(&v.path, &source, sub)?;
        }
        out.push(BindMount {
            source,
            destination: m.mount_path.clone(),
            read_only: v.read_only || m.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

/// `path` with every link resolved, refused unless it stays inside the volume
/// `root`: a container that can write its volume could otherwise plant a link
/// that a later `subPath` mount follows onto the node (upstream's CVE-2017-1002101).
/// Content volumes' keys are links through `..data`; this binds the file itself.
fn resolve_inside(root: &Path, path: &Path, sub: &str) -> Result<PathBuf, String> {
    let canon = |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("subPath {sub:?}: {e}"));
    let (root, resolved) = (canon(root)?, canon(path)?);
    if !resolved.starts_with(&root) {
        return Err(format!(
            "subPath {sub:?}: resolves to {} outside the volume",
            resolved.display()
        ));
    }
    Ok(resolved)
}

/// Unmounts what [`prepare`] mounted.
pub async fn release(vols: &HashMap<String, Prepared>) {
    for v in vols.values().filter(|v| v.tmpfs) {
        let _ = tokio::process::Command::new("umount")
            .arg("-l")
            .arg(&v.path)
            .status()
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        assert!(safe_relative("a/b").is_ok());
        assert!(safe_relative("../x").is_err());
        assert!(safe_relative("/etc").is_err());
        assert!(safe_relative("").is_err());
    }

    #[test]
    fn keys_and_items() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]
        .into();
        let mut all = Payload::new();
        add_keys(&mut all, &data, None, 0o600, "cm").unwrap();
        assert_eq!(all[Path::new("b")], (b"2".to_vec(), 0o600));
        let items = vec![KeyToPath {
            key: "a".into(),
            path: "sub/x".into(),
            mode: Some(0o400),
        }];
        let mut some = Payload::new();
        add_keys(&mut some, &data, Some(&items), 0o644, "cm").unwrap();
        assert_eq!(some.len(), 1);
        assert_eq!(some[Path::new("sub/x")], (b"1".to_vec(), 0o400));
        let missing = vec![KeyToPath {
            key: "zz".into(),
            path: "z".into(),
            mode: None,
        }];
        assert!(add_keys(&mut some, &data, Some(&missing), 0o644, "cm").is_err());
        let escaping = vec![KeyToPath {
            key: "a".into(),
            path: "../x".into(),
            mode: None,
        }];
        assert!(add_keys(&mut some, &data, Some(&escaping), 0o644, "cm").is_err());
    }

    #[test]
    fn sub_paths_resolve_inside_their_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        let p: Payload = [(PathBuf::from("k"), (b"v".to_vec(), 0o644))].into();
        atomic_writer::write(&vol, &p).unwrap();
        let resolved = resolve_inside(&vol, &vol.join("k"), "k").unwrap();
        assert!(resolved.starts_with(std::fs::canonicalize(&vol).unwrap()));
        assert!(!resolved.ends_with("..data/k"), "{}", resolved.display());
        std::os::unix::fs::symlink("/etc", vol.join("escape")).unwrap();
        let err = resolve_inside(&vol, &vol.join("escape"), "escape").unwrap_err();
        assert!(err.contains("outside the volume"), "{err}");
    }

    #[test]
    fn volumes_name_what_they_read() {
        let v: Volume = serde_json::from_value(serde_json::json!({
            "name": "p",
            "projected": {"sources": [
                {"configMap": {"name": "c"}},
                {"secret": {"name": "s"}},
            ]},
        }))
        .unwrap();
        assert!(reads(&v, &Source::ConfigMap("c".into())));
        assert!(reads(&v, &Source::Secret("s".into())));
        assert!(!reads(&v, &Source::Secret("c".into())));
        assert!(!reads(&v, &Source::PodMetadata));
    }
}

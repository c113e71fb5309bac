//! What an image is to its users (the agent): its config and its unpacked layers;
//! and the JSON documents it is made of (manifests, indexes, configs), read
//! leniently so Docker's and OCI's spellings both work.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// An image present in the store, ready to be mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The normalized reference it was asked for: `docker.io/library/busybox:latest`.
    pub reference: String,
    /// The manifest digest (`sha256:...`): what a pod's `imageID` names.
    pub digest: String,
    /// How to run it.
    pub config: ImageConfig,
    /// Unpacked layer directories, bottom layer first (overlayfs wants its
    /// `lowerdir` list top first: reverse it).
    pub layers: Vec<PathBuf>,
}

impl Image {
    /// The `imageID` kubelet reports: `docker.io/library/busybox@sha256:...`.
    pub fn image_id(&self) -> String {
        let name = crate::normalize(&self.reference)
            .map(|r| r.name())
            .unwrap_or_else(|_| self.reference.clone());
        format!("{name}@{}", self.digest)
    }
}

/// The parts of an OCI image config that decide how a container runs.
/// Empty strings and vectors mean "not set in the image".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `K=V` entries, in the image's order.
    pub env: Vec<String>,
    pub working_dir: String,
    /// `user`, `uid`, `user:group` or `uid:gid`, as the image says.
    pub user: String,
    /// `80/tcp`, sorted.
    pub exposed_ports: Vec<String>,
    /// The signal `docker stop` would send (`SIGTERM` when empty).
    pub stop_signal: String,
    pub labels: BTreeMap<String, String>,
}

/// One image in [`crate::ImageStore::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// Every reference that names this image (tags, and `name@digest` after a
    /// pull by digest), sorted.
    pub references: Vec<String>,
    /// The manifest digest.
    pub digest: String,
    /// Bytes on disk: its layers' files, config and manifest (shared layers
    /// count in every image that has them, as `crictl images` shows).
    pub size: u64,
    /// Seconds since the epoch of the last pull or lookup.
    pub last_used: u64,
}

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The manifest media types we can read, for the `Accept` header.
pub(crate) const MANIFEST_TYPES: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest or an index / manifest list: which one is told by
/// `manifests` being present (the media type is optional in OCI).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    #[serde(default)]
    pub schema_version: i64,
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    pub manifests: Option<Vec<Descriptor>>,
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("unreadable manifest: {e}"))?;
        if m.schema_version != 2 {
            return Err(format!(
                "unsupported manifest schema version {} (only schema 2 / OCI images)",
                m.schema_version
            ));
        }
        if m.manifests.is_none() && m.config.is_none() {
            return Err("manifest has no config".into());
        }
        Ok(m)
    }

    pub fn is_index(&self) -> bool {
        self.manifests.is_some()
    }
}

/// The Go architecture name of this machine, as image platforms spell it.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The index entry for linux on this machine's architecture (arm64 prefers
/// variant v8 or none), skipping attestation manifests as containerd does.
pub(crate) fn select_platform(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let arch = host_arch();
    let candidates = manifests.iter().filter(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            && d.annotations
                .get("vnd.docker.reference.type")
                .map(String::as_str)
                != Some("attestation-manifest")
    });
    let mut fallback = None;
    for d in candidates {
        let variant = d.platform.as_ref().and_then(|p| p.variant.as_deref());
        if arch != "arm64" || matches!(variant, None | Some("v8")) {
            return Some(d);
        }
        fallback.get_or_insert(d);
    }
    fallback
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RunConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    stop_signal: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

impl RawConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable image config: {e}"))
    }

    pub fn diff_ids(&self) -> &[String] {
        self.rootfs
            .as_ref()
            .map(|r| r.diff_ids.as_slice())
            .unwrap_or(&[])
    }

    pub fn image_config(self) -> ImageConfig {
        let c = self.config.unwrap_or_default();
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
            stop_signal: c.stop_signal.unwrap_or_default(),
            labels: c.labels.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(str::to_string),
            }),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn picks_the_host_platform() {
        let list = vec![
            entry("arm", Some("v7"), "a"),
            entry("arm64", Some("v8"), "b"),
            entry("amd64", None, "c"),
            entry("s390x", None, "d"),
        ];
        let want = match host_arch() {
            "amd64" => "c",
            "arm64" => "b",
            _ => return,
        };
        assert_eq!(
            select_platform(&list).map(|d| d.digest.as_str()),
            Some(want)
        );
        assert!(select_platform(&list[3..]).is_none() || host_arch() == "s390x");
    }

    #[test]
    fn reads_docker_and_oci_configs() {
        let c = RawConfig::parse(
            br#"{"architecture":"amd64","config":{"Entrypoint":null,"Cmd":["sh"],
                "Env":["A=1"],"WorkingDir":"/w","User":"1000:1000",
                "ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:x"]}}"#,
        )
        .expect("parse");
        assert_eq!(c.diff_ids(), ["sha256:x".to_string()]);
        let ic = c.image_config();
        assert_eq!(ic.cmd, vec!["sh".to_string()]);
        assert!(ic.entrypoint.is_empty());
        assert_eq!(ic.user, "1000:1000");
        assert_eq!(ic.exposed_ports, vec!["80/tcp".to_string()]);
    }
}

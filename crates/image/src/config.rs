//! Where an image is pulled from and with which credentials: k3s's
//! `registries.yaml` (mirrors, rewrites, per-host auth and TLS) and the
//! `.dockerconfigjson` of a pod's `imagePullSecrets`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::reference::{Reference, DOCKER_HUB};
use crate::{Error, Result};

/// Docker Hub's API host: `docker.io` is only a name.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed `registries.yaml`, the format k3s reads from
/// `/etc/rancher/k3s/registries.yaml`:
///
/// ```yaml
/// mirrors:
///   docker.io:
///     endpoint: ["http://10.0.0.1:5000"]
///     rewrite: {"^rancher/(.*)": "mirror/$1"}
/// configs:
///   "10.0.0.1:5000":
///     auth: {username: u, password: p}
///     tls: {insecure_skip_verify: true}
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RegistryConfig {
    /// Registry name (`docker.io`, `ghcr.io`, or `*` for every registry) -> mirrors.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Endpoint host (`host:port`) -> credentials and TLS settings.
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

/// The mirrors of one registry, tried in order before the registry itself.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Mirror {
    /// `http://host:port` (plain HTTP), `https://host` or a bare `host:port` (HTTPS).
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regular expression -> replacement (`$1`), applied to the repository path
    /// when it is fetched from a mirror endpoint (never from the registry itself),
    /// the first matching rule only, as k3s does.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

/// Credentials and TLS settings for one endpoint host.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// Credentials as both `registries.yaml` and `.dockerconfigjson` spell them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// base64 of `username:password`.
    #[serde(default)]
    pub auth: Option<String>,
    /// An OAuth refresh token; sent as the password of basic auth to the token
    /// server, which is what the registries that hand them out accept.
    #[serde(default)]
    pub identitytoken: Option<String>,
    /// A registry bearer token used as is (`registrytoken` in Docker's config).
    #[serde(default, alias = "registrytoken")]
    pub token: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct TlsConfig {
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Extra PEM CA certificates to trust for this host.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificates: accepted in the file, refused at pull time
    /// (oci-client cannot present one).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// The credential a request carries, in oci-client's terms but comparable so
/// clients can be cached by it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Credential {
    Anonymous,
    Basic(String, String),
    Bearer(String),
}

/// One place to fetch a repository from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as used in URLs and as the `configs` key.
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// The repository path at this endpoint (after rewrites).
    pub repository: String,
    /// True for the mirrors, false for the registry itself.
    pub mirror: bool,
}

impl RegistryConfig {
    /// Reads a `registries.yaml`. A missing file is an empty config (k3s runs
    /// without one); YAML that does not parse is an error naming the file and
    /// the field. Unknown fields are logged and ignored, as k3s does.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Self::parse(&text).map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses `registries.yaml` text; the error says which field is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: Self = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        for (registry, m) in &config.mirrors {
            for pattern in m.rewrite.keys() {
                regex::Regex::new(pattern).map_err(|e| {
                    format!("mirrors.{registry}.rewrite: bad regular expression {pattern:?}: {e}")
                })?;
            }
            for e in &m.endpoint {
                parse_endpoint(e)
                    .map_err(|msg| format!("mirrors.{registry}.endpoint: {e:?}: {msg}"))?;
            }
        }
        Ok(config)
    }

    /// Where to fetch `r` from, in order: its mirrors (or the `*` mirrors),
    /// then the registry itself, as containerd and k3s do.
    pub fn endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        let mut out = Vec::new();
        if let Some(m) = self
            .mirrors
            .get(&r.registry)
            .or_else(|| self.mirrors.get("*"))
        {
            let repository = rewrite(&m.rewrite, &r.repository);
            for e in &m.endpoint {
                // Validated by `parse`; a config built in code may still be wrong.
                if let Ok((host, plain_http)) = parse_endpoint(e) {
                    out.push(Endpoint {
                        host,
                        plain_http,
                        repository: repository.clone(),
                        mirror: true,
                    });
                }
            }
        }
        let host = if r.registry == DOCKER_HUB {
            DOCKER_HUB_API.to_string()
        } else {
            r.registry.clone()
        };
        // Loopback registries speak plain HTTP unless TLS is configured for
        // them, as Docker treats 127.0.0.0/8 as an insecure registry.
        let plain_http =
            is_loopback(&host) && self.host(&host).and_then(|c| c.tls.as_ref()).is_none();
        if !out.iter().any(|e| e.host == host) {
            out.push(Endpoint {
                host,
                plain_http,
                repository: r.repository.clone(),
                mirror: false,
            });
        }
        out
    }

    /// The `configs` entry for an endpoint host (Docker Hub's aliases folded).
    pub fn host(&self, host: &str) -> Option<&HostConfig> {
        self.configs.get(host).or_else(|| {
            self.configs
                .iter()
                .find(|(k, _)| same_host(k, host))
                .map(|(_, v)| v)
        })
    }
}

/// The first rewrite rule that matches, applied; the path unchanged otherwise.
fn rewrite(rules: &BTreeMap<String, String>, repository: &str) -> String {
    for (pattern, replacement) in rules {
        if let Ok(re) = regex::Regex::new(pattern) {
            if re.is_match(repository) {
                return re.replace(repository, replacement.as_str()).into_owned();
            }
        }
    }
    repository.to_string()
}

/// `http://h:p` -> (`h:p`, plain), `https://h` or `h` -> (`h`, TLS). A path after
/// the host is ignored with a warning: oci-client always talks to `/v2/` at the root.
fn parse_endpoint(e: &str) -> Result<(String, bool), String> {
    let (rest, plain) = if let Some(r) = e.strip_prefix("http://") {
        (r, true)
    } else if let Some(r) = e.strip_prefix("https://") {
        (r, false)
    } else if e.contains("://") {
        return Err("only http:// and https:// endpoints are supported".into());
    } else {
        (e, false)
    };
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, p),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if !path.is_empty() && path != "v2" && path != "v2/" {
        tracing::warn!(
            endpoint = e,
            "registries.yaml: endpoint paths are not supported; using the host's /v2/"
        );
    }
    Ok((host.to_string(), plain))
}

fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Docker config keys are URLs or hosts; Docker Hub goes by several names.
fn canonical_host(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB_API.to_string(),
        other => other.to_string(),
    }
}

fn same_host(a: &str, b: &str) -> bool {
    canonical_host(a) == canonical_host(b)
}

impl AuthConfig {
    /// The credential these fields describe, if any.
    pub fn credential(&self) -> Option<Credential> {
        if let Some(t) = self.token.as_ref().filter(|t| !t.is_empty()) {
            return Some(Credential::Bearer(t.clone()));
        }
        let (mut user, mut pass) = (self.username.clone(), self.password.clone());
        if let Some(a) = self.auth.as_ref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                user = Some(u.to_string());
                pass = Some(p.to_string());
            }
        }
        if let Some(t) = self.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Some(Credential::Basic(
                user.unwrap_or_else(|| "<token>".to_string()),
                t.clone(),
            ));
        }
        match (user, pass) {
            (Some(u), Some(p)) if !u.is_empty() => Some(Credential::Basic(u, p)),
            _ => None,
        }
    }
}

/// The `auths` of one `.dockerconfigjson` (or legacy `.dockercfg`, which is the
/// map without the `auths` wrapper).
pub fn parse_docker_config(bytes: &[u8]) -> Result<BTreeMap<String, AuthConfig>, String> {
    #[derive(Deserialize)]
    struct Wrapped {
        auths: BTreeMap<String, AuthConfig>,
    }
    if let Ok(w) = serde_json::from_slice::<Wrapped>(bytes) {
        return Ok(w.auths);
    }
    serde_json::from_slice::<BTreeMap<String, AuthConfig>>(bytes)
        .map_err(|e| format!("not a .dockerconfigjson: {e}"))
}

/// The credential for `endpoint`: a pull secret naming that host first (kubelet
/// gives the pod's secrets priority), then `registries.yaml` `configs`, then,
/// for a mirror, a pull secret for the registry the image is named after.
pub fn credential_for(
    config: &RegistryConfig,
    docker_configs: &[Vec<u8>],
    endpoint: &Endpoint,
    registry: &str,
) -> Credential {
    let secrets: Vec<BTreeMap<String, AuthConfig>> = docker_configs
        .iter()
        .filter_map(|b| match parse_docker_config(b) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an image pull secret");
                None
            }
        })
        .collect();
    let from_secrets = |host: &str| {
        secrets
            .iter()
            .flat_map(|m| m.iter())
            .filter(|(k, _)| same_host(k, host))
            .find_map(|(_, a)| a.credential())
    };
    from_secrets(&endpoint.host)
        .or_else(|| {
            config
                .host(&endpoint.host)
                .and_then(|c| c.auth.as_ref())
                .and_then(AuthConfig::credential)
        })
        .or_else(|| endpoint.mirror.then(|| from_secrets(registry)).flatten())
        .unwrap_or(Credential::Anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::normalize;

    const YAML: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://10.0.0.1:5000"
      - "https://mirror.example:8443"
    rewrite:
      "^rancher/(.*)": "mirror/$1"
  "*":
    endpoint: ["http://any.example:5000"]
configs:
  "10.0.0.1:5000":
    auth:
      username: u
      password: p
    tls:
      insecure_skip_verify: true
  "mirror.example:8443":
    auth:
      auth: dXNlcjpzZWNyZXQ=
"#;

    #[test]
    fn mirrors_in_order_then_the_registry() {
        let c = RegistryConfig::parse(YAML).expect("parses");
        let r = normalize("rancher/klipper:1").expect("ref");
        let e = c.endpoints(&r);
        let hosts: Vec<(&str, bool, &str, bool)> = e
            .iter()
            .map(|e| {
                (
                    e.host.as_str(),
                    e.plain_http,
                    e.repository.as_str(),
                    e.mirror,
                )
            })
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("10.0.0.1:5000", true, "mirror/klipper", true),
                ("mirror.example:8443", false, "mirror/klipper", true),
                ("registry-1.docker.io", false, "rancher/klipper", false),
            ]
        );
        // No rewrite matches: the path is kept.
        let e = c.endpoints(&normalize("busybox").expect("ref"));
        assert_eq!(e[0].repository, "library/busybox");
        // Other registries use the `*` mirror.
        let e = c.endpoints(&normalize("ghcr.io/a/b").expect("ref"));
        assert_eq!(e[0].host, "any.example:5000");
        assert_eq!(e[1].host, "ghcr.io");
        assert!(!e[1].plain_http);
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        let c = RegistryConfig::default();
        let e = c.endpoints(&normalize("127.0.0.1:5000/a").expect("ref"));
        assert_eq!(e.len(), 1);
        assert!(e[0].plain_http);
        assert!(c.endpoints(&normalize("localhost:5000/a").expect("ref"))[0].plain_http);
    }

    #[test]
    fn credentials_from_configs_and_secrets() {
        let c = RegistryConfig::parse(YAML).expect("parses");
        let r = normalize("busybox").expect("ref");
        let e = c.endpoints(&r);
        assert_eq!(
            credential_for(&c, &[], &e[0], &r.registry),
            Credential::Basic("u".into(), "p".into())
        );
        assert_eq!(
            credential_for(&c, &[], &e[1], &r.registry),
            Credential::Basic("user".into(), "secret".into())
        );
        assert_eq!(
            credential_for(&c, &[], &e[2], &r.registry),
            Credential::Anonymous
        );
        let secret = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnB3"}}}"#.to_vec();
        assert_eq!(
            credential_for(&c, std::slice::from_ref(&secret), &e[2], &r.registry),
            Credential::Basic("hub".into(), "pw".into())
        );
        // A secret for the mirror host beats registries.yaml.
        let mirror = br#"{"auths":{"10.0.0.1:5000":{"username":"s","password":"t"}}}"#.to_vec();
        assert_eq!(
            credential_for(&c, &[secret, mirror], &e[0], &r.registry),
            Credential::Basic("s".into(), "t".into())
        );
        let legacy = br#"{"ghcr.io":{"registrytoken":"tok"}}"#.to_vec();
        let g = normalize("ghcr.io/a/b").expect("ref");
        let eg = RegistryConfig::default().endpoints(&g);
        assert_eq!(
            credential_for(&RegistryConfig::default(), &[legacy], &eg[0], &g.registry),
            Credential::Bearer("tok".into())
        );
    }

    #[test]
    fn bad_yaml_names_the_field() {
        let e =
            RegistryConfig::parse("mirrors:\n  docker.io:\n    endpoint: 5\n").expect_err("bad");
        assert!(e.contains("endpoint"), "{e}");
        let e = RegistryConfig::parse("mirrors:\n  docker.io:\n    rewrite: {\"(\": x}\n")
            .expect_err("bad regex");
        assert!(e.contains("mirrors.docker.io.rewrite"), "{e}");
        let e = RegistryConfig::parse("mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n")
            .expect_err("bad scheme");
        assert!(e.contains("ftp://x"), "{e}");
        assert!(RegistryConfig::parse("").expect("empty").mirrors.is_empty());
    }

    #[test]
    fn missing_file_is_empty_and_bad_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = RegistryConfig::load(&dir.path().join("none.yaml")).expect("missing is ok");
        assert!(c.configs.is_empty());
        let p = dir.path().join("registries.yaml");
        std::fs::write(
            &p,
            "configs:\n  h:\n    tls:\n      insecure_skip_verify: maybe\n",
        )
        .expect("write");
        let e = RegistryConfig::load(&p).expect_err("bad").to_string();
        assert!(
            e.contains("registries.yaml") && e.contains("insecure_skip_verify"),
            "{e}"
        );
    }
}

//! Servers joining a cluster (issue #16). A second `skiff server` on the same
//! etcd must be the same cluster, not just read the same keys: the same CA (with
//! its key, so it can sign node certificates), admin token, cluster id (the
//! etcd prefix's owner, see `skiff server`'s `cluster-id` file) and default join
//! token. k3s keeps this bootstrap data in its datastore, encrypted with the
//! server token; skiff hands it over TLS, to a server that presents the token:
//!
//! - `<data-dir>/server-token`, `K10<sha256 of the CA>::server:<secret>` (k3s's
//!   format), made at the first start;
//! - `GET /skiff/v1/server-bootstrap` with `Authorization: Bearer server:<secret>`
//!   answers a [`Bootstrap`]; anything else gets 401 and nothing.
//!
//! The joining side verifies the CA against the token's hash before it sends the
//! secret (as an agent does), then writes the files with [`Bootstrap::write`].

use std::path::Path;

use anyhow::{bail, Context};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use skiff_api::StatusError;

use crate::authn::{ca_hash, ct_eq, JOIN_TOKEN_PREFIX};
use crate::join::NODE_TOKEN_FILE;
use crate::serviceaccount::keys::SA_KEY;
use crate::{pki, response};

pub const BOOTSTRAP_PATH: &str = "/skiff/v1/server-bootstrap";
/// Where `skiff server` writes the server token (k3s: `server/token`).
pub const SERVER_TOKEN_FILE: &str = "server-token";
/// The file naming the cluster that owns an etcd prefix.
pub const CLUSTER_ID_FILE: &str = "cluster-id";
/// Written by a server that runs its own etcd member (`skiff server
/// --cluster-init`, or one that joined such a cluster): the member's client URLs,
/// one a line. Its presence tells a joining server to become a member too.
pub const EMBEDDED_ETCD_FILE: &str = "embedded-etcd";
/// The user part of a server token (k3s's).
const SERVER_USER: &str = "server";
/// Hex digits of the secret: 128 bits, as the admin token's.
const SECRET_BYTES: usize = 16;

/// `K10<CA hash>::server:<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerToken {
    pub ca_hash: String,
    pub secret: String,
}

impl ServerToken {
    /// Parses a server token; `Err` says what is wrong with it, in a few words.
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s.trim().strip_prefix(JOIN_TOKEN_PREFIX).ok_or_else(|| {
            format!("a server token starts with {JOIN_TOKEN_PREFIX} (it is in the first server's <data-dir>/{SERVER_TOKEN_FILE})")
        })?;
        let (hash, creds) = rest
            .split_once("::")
            .ok_or("a server token is K10<CA hash>::server:<secret>; no '::' found")?;
        if hash.len() != 64 || !hash.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "the CA hash after K10 must be 64 hex digits (a sha256), not {hash:?}"
            ));
        }
        let secret = creds
            .strip_prefix(SERVER_USER)
            .and_then(|c| c.strip_prefix(':'))
            .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric()))
            .ok_or("after '::' a server token has server:<secret> (a node join token cannot add a server)")?;
        Ok(Self {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }

    pub fn matches_ca(&self, ca_pem: &[u8]) -> bool {
        ct_eq(ca_hash(ca_pem).as_bytes(), self.ca_hash.as_bytes())
    }

    /// What the joining server sends as its bearer token.
    pub fn bearer(&self) -> String {
        format!("{SERVER_USER}:{}", self.secret)
    }
}

impl std::fmt::Display for ServerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{JOIN_TOKEN_PREFIX}{}::{SERVER_USER}:{}",
            self.ca_hash, self.secret
        )
    }
}

/// Reads the data directory's server token, making it at the first start.
pub fn ensure_server_token(data_dir: &Path, ca_pem: &str) -> anyhow::Result<ServerToken> {
    let path = data_dir.join(SERVER_TOKEN_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let token =
            ServerToken::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if token.matches_ca(ca_pem.as_bytes()) {
            return Ok(token);
        }
        // The CA was made again (an old data directory): the hash follows it.
        let token = ServerToken {
            ca_hash: ca_hash(ca_pem.as_bytes()),
            secret: token.secret,
        };
        pki::write_private(&path, &format!("{token}\n"))?;
        return Ok(token);
    }
    let token = ServerToken {
        ca_hash: ca_hash(ca_pem.as_bytes()),
        secret: pki::random_hex(SECRET_BYTES),
    };
    pki::write_private(&path, &format!("{token}\n"))?;
    Ok(token)
}

/// What a joining server needs to be this cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrap {
    pub ca_cert: String,
    pub ca_key: String,
    pub admin_token: String,
    pub server_token: String,
    /// Absent when the cluster's store is not etcd (nothing shares it then).
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// The default node join token, if the server still has it.
    #[serde(default)]
    pub node_token: Option<String>,
    /// The server runs an embedded etcd member: a joining server adds one of its
    /// own (absent from older servers' answers: external etcd).
    #[serde(default)]
    pub embedded_etcd: bool,
    /// The client URLs of that member, where the joining server asks to be added.
    #[serde(default)]
    pub etcd_client_urls: Vec<String>,
    /// The key service-account tokens are signed with (PEM): a token one server
    /// issued must verify on every other.
    #[serde(default)]
    pub service_account_key: Option<String>,
}

impl Bootstrap {
    /// Gathers the bundle from a server's data directory.
    fn read(data_dir: &Path) -> anyhow::Result<Self> {
        let read = |f: &str| {
            std::fs::read_to_string(data_dir.join(f))
                .with_context(|| format!("cannot read {}", data_dir.join(f).display()))
        };
        let optional = |f: &str| {
            read(f)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let etcd_urls = optional(EMBEDDED_ETCD_FILE).map(|s| {
            s.lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
        });
        Ok(Self {
            ca_cert: read(pki::CA)?,
            ca_key: read(pki::CA_KEY)?,
            admin_token: read(pki::TOKEN)?.trim().to_string(),
            server_token: read(SERVER_TOKEN_FILE)?.trim().to_string(),
            cluster_id: optional(CLUSTER_ID_FILE),
            node_token: optional(NODE_TOKEN_FILE),
            embedded_etcd: etcd_urls.is_some(),
            etcd_client_urls: etcd_urls.unwrap_or_default(),
            service_account_key: optional(SA_KEY),
        })
    }

    /// Writes the bundle into a joining server's data directory. A directory
    /// that already belongs to another cluster (another CA) is refused rather
    /// than overwritten; one of this cluster is brought up to date.
    pub fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        if let Ok(have) = std::fs::read_to_string(data_dir.join(pki::CA)) {
            if have != self.ca_cert {
                bail!(
                    "{} belongs to another cluster (its CA differs from the server's): use an empty --data-dir to join",
                    data_dir.display()
                );
            }
        }
        pki::write_mode(&data_dir.join(pki::CA), &self.ca_cert, 0o644)?;
        pki::write_private(&data_dir.join(pki::CA_KEY), &self.ca_key)?;
        pki::write_private(&data_dir.join(pki::TOKEN), &self.admin_token)?;
        pki::write_private(
            &data_dir.join(SERVER_TOKEN_FILE),
            &format!("{}\n", self.server_token),
        )?;
        if let Some(id) = &self.cluster_id {
            pki::write_private(&data_dir.join(CLUSTER_ID_FILE), &format!("{id}\n"))?;
        }
        if let Some(t) = &self.node_token {
            pki::write_private(&data_dir.join(NODE_TOKEN_FILE), &format!("{t}\n"))?;
        }
        if let Some(k) = &self.service_account_key {
            pki::write_private(&data_dir.join(SA_KEY), &format!("{k}\n"))?;
        }
        Ok(())
    }
}

/// `GET /skiff/v1/server-bootstrap`, authenticated by the server token only
/// (never the admin token: that one is in the bundle, not the key to it).
pub fn serve(data_dir: &Path, method: &http::Method, headers: &http::HeaderMap) -> Response {
    if method != http::Method::GET {
        return response::error(&StatusError::method_not_allowed());
    }
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim();
    let own = match std::fs::read_to_string(data_dir.join(SERVER_TOKEN_FILE))
        .map_err(anyhow::Error::from)
        .and_then(|t| ServerToken::parse(&t).map_err(anyhow::Error::msg))
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "no server token: servers cannot join");
            return response::error(&StatusError::unauthorized());
        }
    };
    if !ct_eq(given.as_bytes(), own.bearer().as_bytes()) {
        return response::error(&StatusError::unauthorized());
    }
    match Bootstrap::read(data_dir) {
        Ok(b) => {
            tracing::info!("handed the cluster's bootstrap data to a joining server");
            response::json(200, &serde_json::json!(b))
        }
        Err(e) => response::error(&StatusError::internal(format!("{e:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_tokens_round_trip_and_node_tokens_are_refused() {
        let t = ServerToken {
            ca_hash: "ab".repeat(32),
            secret: "0123456789abcdef".into(),
        };
        assert_eq!(ServerToken::parse(&t.to_string()), Ok(t.clone()));
        assert_eq!(t.bearer(), "server:0123456789abcdef");
        let node = format!("K10{}::abcdef.0123456789abcdef", "ab".repeat(32));
        let err = ServerToken::parse(&node).unwrap_err();
        assert!(err.contains("node join token"), "{err}");
        assert!(ServerToken::parse("server:x").unwrap_err().contains("K10"));
        assert!(ServerToken::parse("K10abc::server:x")
            .unwrap_err()
            .contains("64 hex"));
    }

    #[test]
    fn the_token_is_made_once_and_follows_a_new_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ensure_server_token(dir.path(), "CA one").expect("made");
        let again = ensure_server_token(dir.path(), "CA one").expect("read");
        assert_eq!(a, again);
        assert!(a.matches_ca(b"CA one"));
        let b = ensure_server_token(dir.path(), "CA two").expect("rehashed");
        assert_eq!(b.secret, a.secret);
        assert!(b.matches_ca(b"CA two"));
    }

    #[test]
    fn the_bundle_says_whether_the_server_runs_its_own_etcd_member() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (f, text) in [
            (pki::CA, "CA"),
            (pki::CA_KEY, "key"),
            (pki::TOKEN, "admin"),
            (SERVER_TOKEN_FILE, "K10x::server:y"),
        ] {
            std::fs::write(dir.path().join(f), text).expect("write");
        }
        let b = Bootstrap::read(dir.path()).expect("read");
        assert!(!b.embedded_etcd && b.etcd_client_urls.is_empty());
        std::fs::write(
            dir.path().join(EMBEDDED_ETCD_FILE),
            "https://10.0.0.2:2379\n",
        )
        .expect("write");
        let b = Bootstrap::read(dir.path()).expect("read");
        assert!(b.embedded_etcd);
        assert_eq!(b.etcd_client_urls, ["https://10.0.0.2:2379"]);
        // An older server's answer has neither field.
        let old = r#"{"caCert":"CA","caKey":"k","adminToken":"a","serverToken":"t"}"#;
        let b: Bootstrap = serde_json::from_str(old).expect("old bundle");
        assert!(!b.embedded_etcd && b.etcd_client_urls.is_empty());
    }

    #[test]
    fn a_data_dir_of_another_cluster_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = Bootstrap {
            ca_cert: "CA one".into(),
            ca_key: "key".into(),
            admin_token: "admin".into(),
            server_token: "K10x::server:y".into(),
            cluster_id: Some("c1".into()),
            node_token: None,
            embedded_etcd: false,
            etcd_client_urls: vec![],
            service_account_key: Some("SA KEY".into()),
        };
        b.write(dir.path()).expect("fresh dir");
        let key = std::fs::read_to_string(dir.path().join(SA_KEY)).expect("sa.key");
        assert_eq!(key.trim(), "SA KEY");
        b.write(dir.path()).expect("same cluster again");
        let other = Bootstrap {
            ca_cert: "CA two".into(),
            ..b
        };
        let err = other.write(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another cluster"), "{err}");
        let id = std::fs::read_to_string(dir.path().join(CLUSTER_ID_FILE)).expect("id");
        assert_eq!(id.trim(), "c1");
    }
}

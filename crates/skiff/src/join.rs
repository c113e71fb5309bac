//! Joining a cluster: how a node trades a join token for credentials of its own
//! (the server side is `skiff_apiserver::join`).
//!
//! As k3s's secure token bootstrap: fetch the server's CA from `/cacerts`
//! without verification, check its sha256 against the hash in the join token
//! (so a node never sends its token to an impostor), then, over TLS verified
//! against that CA, post the node's name, addresses, clock and a CSR for a
//! serving key made here (the key never leaves the node). The server answers
//! with the node's own bearer token and its signed serving certificate.
//!
//! What a joined node keeps in its data directory: `node.kubeconfig` (server,
//! CA, node token; 0600), `agent-serving.crt`, `agent-serving.key` (0600) and
//! `ca.crt`. A node that has them, and whose token the server still accepts,
//! starts again without the join token (which may have expired since).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use skiff_apiserver::authn::JoinToken;
use skiff_apiserver::join::{JoinRequest, JoinResponse, CACERTS_PATH, JOIN_PATH};
use skiff_apiserver::pki;

/// The node's kubeconfig in its data directory.
pub const NODE_KUBECONFIG: &str = "node.kubeconfig";

/// What a joined node has, by path.
#[derive(Debug, Clone)]
pub struct NodeCredentials {
    /// Server URL, cluster CA and the node's own token (user `system:node:<name>`).
    pub kubeconfig: PathBuf,
    /// The agent's serving certificate, signed by the cluster CA for the node's
    /// name and addresses, and its key.
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// The cluster CA certificate.
    pub ca_cert: PathBuf,
    /// Whether credentials from an earlier join were reused (no join made now).
    pub reused: bool,
}

impl NodeCredentials {
    fn at(data_dir: &Path) -> Self {
        Self {
            kubeconfig: data_dir.join(NODE_KUBECONFIG),
            serving_cert: data_dir.join(pki::AGENT_SERVING_CERT),
            serving_key: data_dir.join(pki::AGENT_SERVING_KEY),
            ca_cert: data_dir.join(pki::CA),
            reused: false,
        }
    }

    fn all_exist(&self) -> bool {
        [
            &self.kubeconfig,
            &self.serving_cert,
            &self.serving_key,
            &self.ca_cert,
        ]
        .iter()
        .all(|p| p.exists())
    }

    /// The node agent's streaming endpoint credentials.
    pub fn agent_tls(&self) -> crate::components::AgentTls {
        crate::components::AgentTls {
            serving_cert: self.serving_cert.clone(),
            serving_key: self.serving_key.clone(),
            client_ca: self.ca_cert.clone(),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An HTTPS client: verifying the server against `ca_pem`, or (`None`) not at all.
pub(crate) fn client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let tls = match ca_pem {
        Some(pem) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(cert.context("the cluster CA certificate")?)
                    .context("the cluster CA certificate")?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(skiff_apiserver::proxy::AnyCertificate(
                provider(),
            )))
            .with_no_client_auth(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTPS client")
}

/// One line for a request that got no answer.
pub(crate) fn unreachable(server: &str, e: reqwest::Error) -> anyhow::Error {
    let mut msg = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(&e);
    while let Some(c) = cause {
        let s = c.to_string();
        if !msg.contains(&s) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&s);
        }
        cause = c.source();
    }
    anyhow!("cannot reach the server at {server}: {msg}")
}

/// The `message` of a Status body, or the body itself.
pub(crate) fn status_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// Whether `pem` (a certificate) names every address and is valid a while longer.
fn serving_cert_usable(pem: &str, addresses: &[IpAddr]) -> bool {
    let Ok(names) = pki::cert_names(pem) else {
        return false;
    };
    if !addresses.iter().all(|a| names.contains(&a.to_string())) {
        return false;
    }
    use rustls::pki_types::pem::PemObject;
    let Ok(der) = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    // A day's margin: an agent restarted near the end joins again for a new one.
    let soon = chrono::Utc::now().timestamp() + 24 * 3600;
    cert.validity().not_after.timestamp() > soon
}

/// The bearer token in a kubeconfig this module wrote.
pub(crate) fn kubeconfig_token(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Whether the credentials in `creds` still work against `server`: `Ok(false)`
/// when the server refuses the node token (revoked) or they no longer fit.
async fn still_valid(
    server: &str,
    token: Option<&JoinToken>,
    node_name: &str,
    addresses: &[IpAddr],
    creds: &NodeCredentials,
) -> Result<bool> {
    let ca = std::fs::read(&creds.ca_cert)
        .with_context(|| format!("reading {}", creds.ca_cert.display()))?;
    if token.is_some_and(|t| !t.matches_ca(&ca)) {
        tracing::info!("the join token is for another cluster's CA: joining again");
        return Ok(false);
    }
    let cert = std::fs::read_to_string(&creds.serving_cert).unwrap_or_default();
    if !serving_cert_usable(&cert, addresses) {
        tracing::info!("the serving certificate does not cover the node's addresses or expires soon: joining again");
        return Ok(false);
    }
    let kubeconfig = std::fs::read_to_string(&creds.kubeconfig)
        .with_context(|| format!("reading {}", creds.kubeconfig.display()))?;
    let Some(node_token) = kubeconfig_token(&kubeconfig) else {
        return Ok(false);
    };
    if kubeconfig_user(&kubeconfig) != format!("system:node:{node_name}") {
        tracing::info!("the credentials in the data directory are another node's: joining again");
        return Ok(false);
    }
    let resp = client(Some(&ca))?
        .get(format!("{server}/api"))
        .bearer_auth(&node_token)
        .send()
        .await
        .map_err(|e| unreachable(server, e))?;
    match resp.status().as_u16() {
        200 => {
            // The same credentials, perhaps for a server reached at a new URL.
            let ca = String::from_utf8_lossy(&ca).into_owned();
            let user = kubeconfig_user(&kubeconfig);
            let wanted = pki::kubeconfig_for(server, &ca, &user, &node_token);
            if wanted != kubeconfig {
                pki::write_private(&creds.kubeconfig, &wanted)?;
            }
            Ok(true)
        }
        401 => {
            tracing::info!(
                "the server no longer accepts this node's token (revoked): joining again"
            );
            Ok(false)
        }
        code => bail!(
            "checking this node's credentials at {server}: {code} {}",
            status_message(&resp.bytes().await.unwrap_or_default())
        ),
    }
}

fn kubeconfig_user(text: &str) -> String {
    text.lines()
        .skip_while(|l| l.trim() != "users:")
        .find_map(|l| l.trim().strip_prefix("- name:"))
        .map(|u| u.trim().to_string())
        .unwrap_or_else(|| "node".to_string())
}

/// The CA certificate `server` serves at `/cacerts` (unverified TLS: nothing is
/// trusted yet), refused unless its sha256 is `ca_hash`, the hash the token
/// (`what`, for the message) names.
pub(crate) async fn fetch_ca(server: &str, ca_hash: &str, what: &str) -> Result<Vec<u8>> {
    let resp = client(None)?
        .get(format!("{server}{CACERTS_PATH}"))
        .send()
        .await
        .map_err(|e| unreachable(server, e))?;
    if !resp.status().is_success() {
        bail!(
            "fetching the cluster CA from {server}{CACERTS_PATH}: {} (is --server a skiff server?)",
            resp.status()
        );
    }
    let ca = resp
        .bytes()
        .await
        .map_err(|e| unreachable(server, e))?
        .to_vec();
    let served = skiff_apiserver::authn::ca_hash(&ca);
    if !served.eq_ignore_ascii_case(ca_hash) {
        bail!(
            "the server's CA does not match {what}: token CA hash {ca_hash} != server CA hash {served} (is --server the cluster that made the token?)"
        );
    }
    Ok(ca)
}

/// Joins the cluster at `server` (`https://host:port`) as `node_name`, whose
/// agent the API server will reach at `addresses` (its InternalIP among them),
/// and writes the node's credentials to `data_dir`. Credentials from an earlier
/// join are reused while the server accepts them; `join_token` is needed only
/// to join (again). Each failure is one line: unreachable server, malformed
/// token, a server whose CA is not the token's, refused token (401), a live
/// node of that name (409), clock skew, invalid name or address (422).
pub async fn join(
    server: &str,
    join_token: Option<&str>,
    node_name: &str,
    addresses: &[IpAddr],
    data_dir: &Path,
) -> Result<NodeCredentials> {
    let server = server.trim_end_matches('/');
    if !server.starts_with("https://") {
        bail!("--server must be the API server's https:// URL, e.g. https://10.0.0.1:6443, not {server:?}");
    }
    let token = join_token
        .map(|t| JoinToken::parse(t).map_err(|e| anyhow!("invalid --token: {e}")))
        .transpose()?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let mut creds = NodeCredentials::at(data_dir);
    let had_credentials = creds.all_exist();
    if had_credentials && still_valid(server, token.as_ref(), node_name, addresses, &creds).await? {
        creds.reused = true;
        return Ok(creds);
    }
    let Some(token) = token else {
        if had_credentials {
            bail!("the credentials in {} are no longer accepted or do not fit this node: --token is required to join again", data_dir.display());
        }
        bail!("this node has not joined a cluster yet: --token is required (the join token `skiff server` printed, or one from `skiff token create`)");
    };

    // The server's CA, trusted only if it is the one the token names.
    let ca = fetch_ca(server, &token.ca_hash, "the join token (--token)").await?;

    // The serving key stays here; the server signs a certificate for it.
    let key = rcgen::KeyPair::generate().context("making the serving key")?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("system:node:{node_name}"),
    );
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .context("making the certificate signing request")?;
    let req = JoinRequest {
        node_name: node_name.to_string(),
        addresses: addresses.iter().map(IpAddr::to_string).collect(),
        csr,
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    let resp = client(Some(&ca))?
        .post(format!("{server}{JOIN_PATH}"))
        .bearer_auth(token.token.to_string())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&req)?)
        .send()
        .await
        .map_err(|e| unreachable(server, e))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| unreachable(server, e))?;
    let joined: JoinResponse = match status {
        200 => serde_json::from_slice(&body).context("the server's join answer")?,
        401 => bail!(
            "the server refused the join token (401 Unauthorized): it is wrong, has expired or was revoked (check --token)"
        ),
        403 => bail!(
            "the join token may not join nodes (403 Forbidden): {}",
            status_message(&body)
        ),
        409 => bail!(
            "cannot join as node {node_name:?} (409 Conflict): {}",
            status_message(&body)
        ),
        400 | 422 => bail!("the server refused to join this node ({status}): {}", status_message(&body)),
        _ => bail!("joining failed ({status}): {}", status_message(&body)),
    };
    if joined.ca_cert.as_bytes() != ca.as_slice() {
        bail!("the server answered the join with another CA than it serves at {CACERTS_PATH}");
    }
    let ca = String::from_utf8_lossy(&ca).into_owned();
    pki::write_mode(&creds.ca_cert, &ca, 0o644)?;
    pki::write_private(&creds.serving_key, &key.serialize_pem())?;
    pki::write_mode(&creds.serving_cert, &joined.serving_cert, 0o644)?;
    pki::write_private(
        &creds.kubeconfig,
        &pki::kubeconfig_for(
            server,
            &ca,
            &format!("system:node:{node_name}"),
            &joined.token,
        ),
    )?;
    tracing::info!(node = node_name, %server, "joined the cluster");
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_users_are_read_back_from_the_kubeconfig_written() {
        let kc = pki::kubeconfig_for(
            "https://10.0.0.1:6443",
            "CA",
            "system:node:n1",
            "skiff-node.n1.abc",
        );
        assert_eq!(kubeconfig_token(&kc).as_deref(), Some("skiff-node.n1.abc"));
        assert_eq!(kubeconfig_user(&kc), "system:node:n1");
    }

    #[test]
    fn status_messages_are_taken_from_status_bodies() {
        assert_eq!(
            status_message(br#"{"kind":"Status","message":"clock skew too large"}"#),
            "clock skew too large"
        );
        assert_eq!(status_message(b"plain\n"), "plain");
    }

    #[tokio::test]
    async fn malformed_tokens_and_urls_are_one_line_errors_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let e = join(
            "https://127.0.0.1:1",
            Some("abcdef.0123456789abcdef"),
            "n1",
            &[ip],
            dir.path(),
        )
        .await
        .unwrap_err();
        let text = format!("{e:#}");
        assert!(text.starts_with("invalid --token: "), "{text}");
        assert!(!text.contains('\n'), "{text}");
        let e = join("http://127.0.0.1:1", None, "n1", &[ip], dir.path())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("--server"), "{e:#}");
        // Nothing joined yet and no token: say which flag is missing.
        let e = join("https://127.0.0.1:1", None, "n1", &[ip], dir.path())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("--token is required"), "{e:#}");
    }
}

//! A joined node's component certificates (issue #17): its proxy, DNS and
//! NetworkPolicy enforcer each run as their own identity (`system:kube-proxy`,
//! `system:skiff:dns`, `system:skiff:netpol`), never as the node, whose own
//! token stays with the agent.
//!
//! Each component's key is made here and never leaves the node; the node asks
//! the API server to sign a CSR for it (`POST /skiff/v1/node-components`,
//! authenticated by the node's token; the server picks the subject). The
//! certificates live in the data directory (`<component>-client.crt`, the key
//! `<component>-client.key` 0600) and are asked for again at start when
//! missing, not signed by the cluster CA, or within [`RENEW_BEFORE`] of expiry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use skiff_apiserver::component_certs::{
    ComponentCertsRequest, ComponentCertsResponse, COMPONENTS, NODE_COMPONENTS_PATH,
};
use skiff_apiserver::pki;

use crate::join::{client, status_message, unreachable, NodeCredentials};

/// A certificate with less left than this is replaced at start.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// One component's client certificate and key (PEM).
#[derive(Debug, Clone)]
pub struct ComponentCert {
    pub cert_pem: String,
    pub key_pem: String,
}

fn paths(data_dir: &Path, component: &str) -> (PathBuf, PathBuf) {
    (
        data_dir.join(format!("{component}-client.crt")),
        data_dir.join(format!("{component}-client.key")),
    )
}

/// The stored certificate of `component`, if it is there, signed by `ca_pem`
/// and good for [`RENEW_BEFORE`] longer.
fn stored(data_dir: &Path, component: &str, ca_pem: &str) -> Option<ComponentCert> {
    let (cert, key) = paths(data_dir, component);
    let cert_pem = std::fs::read_to_string(cert).ok()?;
    let key_pem = std::fs::read_to_string(key).ok()?;
    let left = skiff_apiserver::x509::time_left(&cert_pem, ca_pem, SystemTime::now())?;
    (left > RENEW_BEFORE).then_some(ComponentCert { cert_pem, key_pem })
}

/// The certificates of the node's components (`proxy`, `dns`, `netpol`, `ingress`):
/// those stored and still good, the others signed now by the API server at
/// `url` (the forwarder), asked with the node's token from `creds`.
pub async fn ensure(
    url: &str,
    creds: &NodeCredentials,
    node_name: &str,
    data_dir: &Path,
) -> Result<BTreeMap<String, ComponentCert>> {
    let ca = std::fs::read_to_string(&creds.ca_cert)
        .with_context(|| format!("reading {}", creds.ca_cert.display()))?;
    let mut out = BTreeMap::new();
    let mut keys = BTreeMap::new();
    let mut csrs = BTreeMap::new();
    for (component, _) in COMPONENTS {
        if let Some(c) = stored(data_dir, component, &ca) {
            out.insert(component.to_string(), c);
            continue;
        }
        let key = rcgen::KeyPair::generate().context("making a component key")?;
        // The subject is the server's choice; the request names the component.
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, *component);
        let csr = params
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .context("making a certificate signing request")?;
        csrs.insert(component.to_string(), csr);
        keys.insert(component.to_string(), key.serialize_pem());
    }
    if csrs.is_empty() {
        return Ok(out);
    }
    let kubeconfig = std::fs::read_to_string(&creds.kubeconfig)
        .with_context(|| format!("reading {}", creds.kubeconfig.display()))?;
    let token =
        crate::join::kubeconfig_token(&kubeconfig).context("the node's kubeconfig has no token")?;
    let req = ComponentCertsRequest {
        node_name: node_name.to_string(),
        csrs,
    };
    let resp = client(Some(ca.as_bytes()))?
        .post(format!("{url}{NODE_COMPONENTS_PATH}"))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&req)?)
        .send()
        .await
        .map_err(|e| unreachable(url, e))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| unreachable(url, e))?;
    if status != 200 {
        bail!(
            "the API server did not sign this node's component certificates ({status}): {}",
            status_message(&body)
        );
    }
    let signed: ComponentCertsResponse =
        serde_json::from_slice(&body).context("the server's component certificates")?;
    for (component, key_pem) in keys {
        let Some(cert_pem) = signed.certificates.get(&component).cloned() else {
            bail!("the API server sent no certificate for the {component} component");
        };
        if skiff_apiserver::x509::time_left(&cert_pem, &ca, SystemTime::now()).is_none() {
            bail!("the {component} certificate the API server sent is not the cluster CA's");
        }
        let (cert, key) = paths(data_dir, &component);
        pki::write_private(&key, &key_pem)?;
        pki::write_mode(&cert, &cert_pem, 0o644)?;
        out.insert(component, ComponentCert { cert_pem, key_pem });
    }
    tracing::info!(node = node_name, "component certificates signed");
    Ok(out)
}

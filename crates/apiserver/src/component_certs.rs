//! `POST /skiff/v1/node-components`: client certificates for a joined node's
//! components (issue #17), so its proxy, DNS, NetworkPolicy enforcer and
//! ingress each run as their own identity, not as the node.
//!
//! Only a node may ask (`system:node:<name>` in `system:nodes`, with its own
//! token or certificate), and only for itself: the request names the node, and
//! a node that names another is refused. As for the join's serving
//! certificate, the node sends a CSR per component and keeps the keys; only
//! the public key is taken from a CSR, the subject is the server's choice:
//! `proxy` -> `system:kube-proxy`, `dns` -> `system:skiff:dns`, `netpol` ->
//! `system:skiff:netpol`, `ingress` -> `system:skiff:ingress` (see
//! [`crate::rbac_components`] for what they may do).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_api::{registry, StatusError};

use crate::rbac_components::{DNS_USER, INGRESS_USER, NETPOL_USER, PROXY_USER};
use crate::server::Api;
use crate::{authn, body, pki, response};

pub const NODE_COMPONENTS_PATH: &str = "/skiff/v1/node-components";
/// How long a component certificate is valid; the node asks again well before.
pub const COMPONENT_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The components a node may ask certificates for, and the user each is.
pub const COMPONENTS: &[(&str, &str)] = &[
    ("proxy", PROXY_USER),
    ("dns", DNS_USER),
    ("netpol", NETPOL_USER),
    ("ingress", INGRESS_USER),
];

/// What a node sends.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentCertsRequest {
    /// The node asking: it must be the authenticated node.
    pub node_name: String,
    /// A PEM certificate signing request per component (`proxy`, `dns`, `netpol`, `ingress`).
    #[serde(default)]
    pub csrs: BTreeMap<String, String>,
}

/// What it gets back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentCertsResponse {
    /// The signed certificate (PEM) per component asked for.
    pub certificates: BTreeMap<String, String>,
    /// The cluster CA (PEM).
    pub ca_cert: String,
}

fn nodes() -> Result<&'static registry::Resource, StatusError> {
    registry::lookup("", "v1", "nodes").ok_or_else(StatusError::no_such_resource)
}

/// Checks who asks and what; the (component, user) pairs to sign.
fn validate<'a>(
    user: &authn::User,
    req: &'a ComponentCertsRequest,
) -> Result<Vec<(&'a str, &'static str, &'a str)>, StatusError> {
    let nodes = nodes()?;
    let Some(node) = user.node_name() else {
        return Err(StatusError::forbidden(
            nodes,
            &req.node_name,
            &format!(
                "User {:?} is not a node: only nodes get component certificates",
                user.name
            ),
        ));
    };
    if node != req.node_name {
        return Err(StatusError::forbidden(
            nodes,
            &req.node_name,
            &format!("node {node:?} may only ask certificates for its own components"),
        ));
    }
    if req.csrs.is_empty() {
        return Err(StatusError::bad_request(
            "csrs: Required value: a certificate signing request per component (proxy, dns, netpol, ingress)",
        ));
    }
    req.csrs
        .iter()
        .map(|(component, csr)| {
            let user = COMPONENTS
                .iter()
                .find(|(c, _)| c == component)
                .map(|(_, u)| *u)
                .ok_or_else(|| {
                    StatusError::bad_request(format!(
                        "csrs: Unsupported value: {component:?}: supported values: \"dns\", \"ingress\", \"netpol\", \"proxy\""
                    ))
                })?;
            Ok((component.as_str(), user, csr.as_str()))
        })
        .collect()
}

/// `POST /skiff/v1/node-components`.
pub async fn serve(api: &Api, user: &authn::User, method: &http::Method, body: Body) -> Response {
    if method != http::Method::POST {
        return response::error(&StatusError::method_not_allowed());
    }
    match sign(api, user, body).await {
        Ok(r) => response::json(200, &json!(r)),
        Err(e) => response::error(&e),
    }
}

async fn sign(
    api: &Api,
    user: &authn::User,
    body: Body,
) -> Result<ComponentCertsResponse, StatusError> {
    let bytes = body::read(body).await?;
    let req: ComponentCertsRequest = serde_json::from_slice(&bytes)
        .map_err(|e| StatusError::bad_request(format!("the request is not valid JSON: {e}")))?;
    let wanted = validate(user, &req)?;
    let mut certificates = BTreeMap::new();
    for (component, who, csr) in wanted {
        let cert = api
            .ca
            .sign_client(csr, who, &[], COMPONENT_CERT_VALIDITY)
            .map_err(|e| match e {
                pki::SignError::BadRequest(_) => {
                    StatusError::bad_request(format!("csrs[{component}]: {e}"))
                }
                pki::SignError::Internal(_) => StatusError::internal(e.to_string()),
            })?;
        certificates.insert(component.to_string(), cert);
    }
    tracing::info!(node = %req.node_name, components = ?certificates.keys().collect::<Vec<_>>(), "component certificates signed");
    Ok(ComponentCertsResponse {
        certificates,
        ca_cert: api.ca.cert_pem.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(node: &str, components: &[&str]) -> ComponentCertsRequest {
        ComponentCertsRequest {
            node_name: node.into(),
            csrs: components
                .iter()
                .map(|c| (c.to_string(), "CSR".to_string()))
                .collect(),
        }
    }

    #[test]
    fn only_a_node_asking_for_itself_gets_the_servers_subjects() {
        let n1 = authn::User::new("system:node:n1", &[authn::NODES]);
        let all = req("n1", &["proxy", "dns", "netpol"]);
        let ok = validate(&n1, &all).unwrap();
        let users: Vec<_> = ok.iter().map(|(c, u, _)| (*c, *u)).collect();
        assert_eq!(
            users,
            [
                ("dns", DNS_USER),
                ("netpol", NETPOL_USER),
                ("proxy", PROXY_USER)
            ]
        );
        let e = validate(&n1, &req("n2", &["proxy"])).unwrap_err();
        assert_eq!(e.code, 403);
        assert!(e.message.contains("its own components"), "{}", e.message);
        // Not a node: a user named like one but outside system:nodes.
        let fake = authn::User::new("system:node:n1", &[]);
        assert_eq!(
            validate(&fake, &req("n1", &["proxy"])).unwrap_err().code,
            403
        );
        let e = validate(&n1, &req("n1", &["agent"])).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("Unsupported value"), "{}", e.message);
        assert_eq!(validate(&n1, &req("n1", &[])).unwrap_err().code, 400);
    }

    #[test]
    fn a_csr_gives_its_key_only_never_its_subject() {
        use rustls::pki_types::pem::PemObject;
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = pki::ensure_ca(dir.path()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:admin");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let cert = ca
            .sign_client(&csr, PROXY_USER, &[], COMPONENT_CERT_VALIDITY)
            .unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let user = crate::x509::user_of(&der, std::time::SystemTime::now()).unwrap();
        assert_eq!(user.name, PROXY_USER);
        assert!(!user.in_group(authn::MASTERS), "{:?}", user.groups);
        // The key is the node's: the certificate carries the CSR's public key.
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            parsed.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        assert!(ca
            .sign_client("junk", PROXY_USER, &[], COMPONENT_CERT_VALIDITY)
            .is_err());
    }
}

//! Joining nodes (issue #15), served by the API server beside the Kubernetes API:
//!
//! - `GET /cacerts`, unauthenticated, the CA certificate as k3s serves it: a
//!   joining node compares its sha256 with the hash in its join token before it
//!   trusts the server with anything;
//! - `POST /skiff/v1/join`, authenticated by a bootstrap token: validates the
//!   node name, the node's clock and that no live node has the name, signs the
//!   node's serving certificate from its CSR with the cluster CA, and issues the
//!   node's own bearer token (stored hashed in a Secret, see [`crate::authn`]).
//!
//! The default join token (one bootstrap token, no expiry) is made on the first
//! start of a store and written to `<data-dir>/node-token`.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use skiff_api::validation::{self, FieldError};
use skiff_api::{registry, StatusError};

use crate::authn::{self, BootstrapToken, JoinToken, NodeToken};
use crate::body::{self, FieldValidation};
use crate::request::Target;
use crate::rest::{self, WriteOptions};
use crate::server::Api;
use crate::{pki, response};

pub const JOIN_PATH: &str = "/skiff/v1/join";
pub const CACERTS_PATH: &str = "/cacerts";
/// Where `skiff server` writes the default join token (k3s: `server/node-token`).
pub const NODE_TOKEN_FILE: &str = "node-token";
pub const DEFAULT_TOKEN_DESCRIPTION: &str = "the default join token";
/// How far a joining node's clock may be from the server's.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// A node whose Lease was renewed this recently is alive (upstream's
/// `--node-monitor-grace-period` default): its name is taken.
pub const LIVE_LEASE: Duration = Duration::from_secs(40);

/// The join request a node sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    pub node_name: String,
    /// The node's addresses: the API server reaches the node's agent at its
    /// InternalIP, which must be one of them (its serving certificate names them).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// PEM certificate signing request for the node's serving key.
    #[serde(default)]
    pub csr: String,
    /// The node's clock (RFC 3339) when it sent the request.
    #[serde(default)]
    pub time: String,
}

/// What a joined node gets back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    /// The node's own bearer token (user `system:node:<name>`).
    pub token: String,
    /// The cluster CA (PEM).
    pub ca_cert: String,
    /// The node's serving certificate (PEM), signed by the cluster CA.
    pub serving_cert: String,
}

/// `GET /cacerts`: the CA certificate exactly as stored (its bytes are what the
/// join token's hash covers).
pub fn cacerts(api: &Api, method: &http::Method) -> Response {
    if method != http::Method::GET && method != http::Method::HEAD {
        return response::error(&StatusError::method_not_allowed());
    }
    let mut r = Response::new(Body::from(api.ca.cert_pem.clone()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn nodes() -> Result<&'static registry::Resource, StatusError> {
    registry::lookup("", "v1", "nodes").ok_or_else(StatusError::no_such_resource)
}

fn write_opts() -> WriteOptions {
    WriteOptions {
        dry_run: false,
        validation: FieldValidation::Strict,
        field_manager: None,
    }
}

/// How far `client` is from `server`, as `ahead`/`behind` and seconds.
fn skew_message(client: DateTime<Utc>, server: DateTime<Utc>) -> Option<String> {
    let skew = client.signed_duration_since(server);
    let secs = skew.num_milliseconds().abs() as f64 / 1000.0;
    if secs <= MAX_CLOCK_SKEW.as_secs_f64() {
        return None;
    }
    let way = if skew.num_milliseconds() > 0 {
        "ahead of"
    } else {
        "behind"
    };
    Some(format!(
        "clock skew too large: the node's clock is {secs:.1}s {way} the server's (at most {}s allowed); set the node's time (e.g. with NTP) and join again",
        MAX_CLOCK_SKEW.as_secs()
    ))
}

/// The longest node name whose credential Secret name is still a valid name.
const MAX_NODE_NAME: usize = 253 - authn::NODE_CREDENTIAL_PREFIX.len();

/// Checks a join request's fields; the parsed addresses on success.
fn validate(req: &JoinRequest, now: DateTime<Utc>) -> Result<Vec<IpAddr>, StatusError> {
    let nodes = nodes()?;
    let invalid = |errs: Vec<FieldError>| StatusError::invalid(nodes, &req.node_name, &errs);
    let name = req.node_name.as_str();
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push(FieldError::required("nodeName", ""));
    } else {
        for msg in validation::dns1123_subdomain(name) {
            errs.push(FieldError::invalid("nodeName", json!(name), &msg));
        }
        if errs.is_empty() && name.len() > MAX_NODE_NAME {
            errs.push(FieldError::invalid(
                "nodeName",
                json!(name),
                &format!("must be no more than {MAX_NODE_NAME} characters"),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(invalid(errs));
    }
    // The clock: a node far off the server's would see its certificate as not
    // yet (or no longer) valid, and its Lease as stale.
    let client = DateTime::parse_from_rfc3339(&req.time).map_err(|_| {
        invalid(vec![FieldError::invalid(
            "time",
            json!(req.time),
            "must be the node's current time in RFC 3339 form",
        )])
    })?;
    if let Some(msg) = skew_message(client.with_timezone(&Utc), now) {
        return Err(StatusError::bad_request(msg));
    }
    let mut ips = Vec::new();
    if req.addresses.is_empty() {
        errs.push(FieldError::required(
            "addresses",
            "the addresses the API server reaches the node's agent at",
        ));
    }
    for (i, a) in req.addresses.iter().enumerate() {
        match a.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() && !ip.is_multicast() => {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            _ => errs.push(FieldError::invalid(
                &format!("addresses[{i}]"),
                json!(a),
                "must be a valid unicast IP address",
            )),
        }
    }
    if req.addresses.len() > 16 {
        errs.push(FieldError::invalid(
            "addresses",
            json!(req.addresses.len()),
            "must have at most 16 items",
        ));
    }
    if req.csr.trim().is_empty() {
        errs.push(FieldError::required(
            "csr",
            "a PEM certificate signing request for the node's serving key",
        ));
    }
    if errs.is_empty() {
        Ok(ips)
    } else {
        Err(invalid(errs))
    }
}

/// 409 Conflict when a Node of this name exists and its Lease is being renewed:
/// a live node holds the name, and a second one would fight it for the Node.
async fn refuse_live_duplicate(
    api: &Api,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(), StatusError> {
    let nodes = nodes()?;
    if api.objects.get_opt(nodes, None, name).await?.is_none() {
        return Ok(());
    }
    let leases = registry::lookup("coordination.k8s.io", "v1", "leases")
        .ok_or_else(StatusError::no_such_resource)?;
    let Some(lease) = api
        .objects
        .get_opt(leases, Some("kube-node-lease"), name)
        .await?
    else {
        return Ok(());
    };
    let Some(renewed) = lease
        .pointer("/spec/renewTime")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    else {
        return Ok(());
    };
    let age = now.signed_duration_since(renewed.with_timezone(&Utc));
    let live =
        chrono::Duration::from_std(LIVE_LEASE).unwrap_or_else(|_| chrono::Duration::seconds(40));
    if age < live {
        let secs = age.num_seconds().max(0);
        return Err(StatusError::conflict(
            nodes,
            name,
            &format!(
                "a node of this name is running: its Lease in kube-node-lease was renewed {secs}s ago (within {}s); stop that node or join under another name",
                LIVE_LEASE.as_secs()
            ),
        ));
    }
    Ok(())
}

/// Stores the node's credential Secret, replacing an earlier one (a node that
/// joins again gets a new token; the old one stops working).
async fn store_credential(api: &Api, token: &NodeToken) -> Result<(), StatusError> {
    let secrets =
        registry::lookup("", "v1", "secrets").ok_or_else(StatusError::no_such_resource)?;
    let wanted = token.to_secret();
    let t = Target {
        resource: secrets,
        namespace: Some(authn::NAMESPACE.to_string()),
        name: None,
        subresource: None,
    };
    match rest::create(api, &t, wanted.clone(), &write_opts()).await {
        Ok(_) => return Ok(()),
        Err(e) if e.reason == "AlreadyExists" => {}
        Err(e) => return Err(e),
    }
    let t = Target {
        name: Some(token.secret_name()),
        ..t
    };
    rest::patch_with(api, &t, &write_opts(), |cur| {
        if cur.get("type") != wanted.get("type") {
            return Err(StatusError::conflict(
                secrets,
                &token.secret_name(),
                "the Secret exists and is not a node credential",
            ));
        }
        let mut new = cur.clone();
        new["data"] = wanted["data"].clone();
        new["metadata"]["labels"] = wanted["metadata"]["labels"].clone();
        Ok(new)
    })
    .await
    .map(|_| ())
}

/// `POST /skiff/v1/join`.
pub async fn serve(api: &Api, user: &authn::User, method: &http::Method, body: Body) -> Response {
    if method != http::Method::POST {
        return response::error(&StatusError::method_not_allowed());
    }
    match join(api, user, body).await {
        Ok(r) => response::json(200, &json!(r)),
        Err(e) => response::error(&e),
    }
}

async fn join(api: &Api, user: &authn::User, body: Body) -> Result<JoinResponse, StatusError> {
    let bytes = body::read(body).await?;
    let req: JoinRequest = serde_json::from_slice(&bytes).map_err(|e| {
        StatusError::bad_request(format!("the join request is not valid JSON: {e}"))
    })?;
    let now = Utc::now();
    let addresses = validate(&req, now)?;
    let name = req.node_name.as_str();
    refuse_live_duplicate(api, name, now).await?;
    let serving_cert = api
        .ca
        .sign_node_serving(&req.csr, name, &addresses)
        .map_err(|e| match e {
            pki::SignError::BadRequest(_) => StatusError::bad_request(e.to_string()),
            pki::SignError::Internal(_) => StatusError::internal(e.to_string()),
        })?;
    let token = NodeToken::generate(name);
    store_credential(api, &token).await?;
    tracing::info!(node = name, by = %user.name, addresses = ?addresses, "node joined");
    Ok(JoinResponse {
        token: token.to_string(),
        ca_cert: api.ca.cert_pem.clone(),
        serving_cert,
    })
}

/// Makes the default join token on the first start of a store (`fresh`) or of
/// a data directory without one, and writes it to `<data-dir>/node-token`.
/// Later starts give the token back while its Secret still authenticates; a
/// deleted (revoked) or expired default token is not made again: `None`.
pub async fn ensure_default_token(
    api: &Api,
    data_dir: &Path,
    fresh: bool,
) -> anyhow::Result<Option<String>> {
    let path = data_dir.join(NODE_TOKEN_FILE);
    let ca = api.ca.cert_pem.as_bytes();
    if !fresh && path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let Ok(old) = JoinToken::parse(&text) else {
            tracing::warn!(file = %path.display(), "not a join token; leaving it as it is");
            return Ok(None);
        };
        let secrets = registry::lookup("", "v1", "secrets").context("secrets resource")?;
        let secret = api
            .objects
            .get_opt(secrets, Some(authn::NAMESPACE), &old.token.secret_name())
            .await
            .map_err(|e| anyhow::anyhow!("reading the default join token: {e}"))?;
        let valid = secret
            .as_ref()
            .is_some_and(|s| authn::bootstrap_user(s, &old.token, Utc::now()).is_ok());
        if !valid {
            tracing::info!(
                file = %path.display(),
                "the default join token was deleted or has expired; make one with `skiff token create`"
            );
            return Ok(None);
        }
        let current = JoinToken::new(ca, old.token.clone());
        if current != old {
            // The CA changed (an older data directory got a new one).
            pki::write_private(&path, &format!("{current}\n"))?;
        }
        return Ok(Some(current.to_string()));
    }
    let token = BootstrapToken::generate();
    let secrets = registry::lookup("", "v1", "secrets").context("secrets resource")?;
    let t = Target {
        resource: secrets,
        namespace: Some(authn::NAMESPACE.to_string()),
        name: None,
        subresource: None,
    };
    rest::create(
        api,
        &t,
        token.to_secret(Some(DEFAULT_TOKEN_DESCRIPTION), None),
        &write_opts(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the default join token: {e}"))?;
    let join = JoinToken::new(ca, token).to_string();
    pki::write_private(&path, &format!("{join}\n"))?;
    Ok(Some(join))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn req(name: &str, addresses: &[&str], time: &str) -> JoinRequest {
        JoinRequest {
            node_name: name.into(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            csr: "-----BEGIN CERTIFICATE REQUEST-----".into(),
            time: time.into(),
        }
    }

    const NOW: &str = "2030-01-01T00:00:00Z";

    #[test]
    fn clock_skew_beyond_30s_is_refused_with_the_skew() {
        let now = at(NOW);
        assert_eq!(skew_message(at("2030-01-01T00:00:30Z"), now), None);
        assert_eq!(skew_message(at("2029-12-31T23:59:30Z"), now), None);
        let ahead = skew_message(at("2030-01-01T00:00:45.5Z"), now).unwrap();
        assert!(ahead.contains("45.5s ahead of the server's"), "{ahead}");
        let behind = skew_message(at("2029-12-31T23:59:00Z"), now).unwrap();
        assert!(behind.contains("60.0s behind the server's"), "{behind}");
        let e = validate(&req("n1", &["10.0.0.1"], "2030-01-01T00:02:00Z"), now).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("120.0s ahead"), "{}", e.message);
    }

    #[test]
    fn names_addresses_and_times_are_validated_as_fields() {
        let now = at(NOW);
        let ok = validate(
            &req("node-1.example", &["10.0.0.1", "fd00::1", "10.0.0.1"], NOW),
            now,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        let e = validate(&req("Node_1", &["10.0.0.1"], NOW), now).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(e.reason, "Invalid");
        assert!(
            e.message.starts_with(r#"Node "Node_1" is invalid: nodeName: Invalid value: "Node_1": a lowercase RFC 1123 subdomain"#),
            "{}",
            e.message
        );
        let e = validate(&req("", &["10.0.0.1"], NOW), now).unwrap_err();
        assert!(
            e.message.contains("nodeName: Required value"),
            "{}",
            e.message
        );
        let long = "n".repeat(240);
        let e = validate(&req(&long, &["10.0.0.1"], NOW), now).unwrap_err();
        assert!(
            e.message.contains("no more than 231 characters"),
            "{}",
            e.message
        );
        let e = validate(&req("n1", &["10.0.0.1", "nope", "0.0.0.0"], NOW), now).unwrap_err();
        assert!(
            e.message.contains("addresses[1]: Invalid value: \"nope\""),
            "{}",
            e.message
        );
        assert!(e.message.contains("addresses[2]"), "{}", e.message);
        let e = validate(&req("n1", &[], NOW), now).unwrap_err();
        assert!(
            e.message.contains("addresses: Required value"),
            "{}",
            e.message
        );
        let e = validate(&req("n1", &["10.0.0.1"], "yesterday"), now).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("time: Invalid value"), "{}", e.message);
    }
}

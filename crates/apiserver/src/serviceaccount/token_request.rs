//! `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: a TokenRequest
//! (`authentication.k8s.io/v1`) answered with a bound token, as upstream's
//! TokenREST does (what `kubectl create token` and the kubelet's projected
//! volumes call). Its checks and words are upstream's: the ServiceAccount must
//! exist (404), at least 10 minutes (422), a bound Pod, Secret or Node must
//! exist (404) with the given uid (409), and a Pod must run as that account.

use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use http::HeaderMap;
use serde_json::{json, Map, Value};
use skiff_api::{registry, FieldError, StatusError};

use super::discovery::TOKEN_REQUESTS;
use super::{bound, jwt, ISSUER};
use crate::body;
use crate::request::Target;
use crate::response;
use crate::server::Api;

/// Upstream's default and bounds for `spec.expirationSeconds`.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// What a TokenRequest asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound: Option<BoundRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundRef {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub uid: Option<String>,
}

fn invalid(name: &str, field: &str, value: Value, detail: &str) -> StatusError {
    let mut e = StatusError::invalid(
        &TOKEN_REQUESTS,
        name,
        &[FieldError::invalid(field, value, detail)],
    );
    // Upstream qualifies the kind with its group in this message.
    if let Some(rest) = e.message.strip_prefix("TokenRequest ") {
        e.message = format!("TokenRequest.authentication.k8s.io {rest}");
    }
    e
}

/// Reads and checks the request body for the account `name` in `namespace`.
pub fn parse(req: &Value, namespace: &str, name: &str) -> Result<Spec, StatusError> {
    let kind = req.get("kind").and_then(Value::as_str).unwrap_or_default();
    if !kind.is_empty() && kind != "TokenRequest" {
        return Err(StatusError::bad_request(format!(
            "the body of a token request must be a TokenRequest, not {kind}"
        )));
    }
    let meta = |k: &str| {
        req.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
    };
    if let Some(n) = meta("name").filter(|n| !n.is_empty() && *n != name) {
        return Err(invalid(
            name,
            "metadata.name",
            json!(n),
            "must match the service account name if specified",
        ));
    }
    if let Some(ns) = meta("namespace").filter(|ns| !ns.is_empty() && *ns != namespace) {
        return Err(invalid(
            name,
            "metadata.namespace",
            json!(ns),
            "must match the service account namespace if specified",
        ));
    }
    let spec = req.get("spec").cloned().unwrap_or(json!({}));
    let mut audiences = Vec::new();
    match spec.get("audiences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for v in a {
                let s = v.as_str().ok_or_else(|| {
                    StatusError::bad_request("spec.audiences must be a list of strings")
                })?;
                audiences.push(s.to_string());
            }
        }
        Some(_) => {
            return Err(StatusError::bad_request(
                "spec.audiences must be a list of strings",
            ))
        }
    }
    if audiences.is_empty() {
        audiences = super::api_audiences();
    }
    let expiration_seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| StatusError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            json!(expiration_seconds),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            json!(expiration_seconds),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let bound = match spec.get("boundObjectRef") {
        None | Some(Value::Null) => None,
        Some(r) => {
            let s = |k: &str| {
                r.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            Some(BoundRef {
                kind: s("kind"),
                api_version: s("apiVersion"),
                name: s("name"),
                uid: Some(s("uid")).filter(|u| !u.is_empty()),
            })
        }
    };
    Ok(Spec {
        audiences,
        expiration_seconds,
        bound,
    })
}

fn get_resource(plural: &str) -> Result<&'static registry::Resource, StatusError> {
    registry::lookup("", "v1", plural).ok_or_else(StatusError::no_such_resource)
}

fn uid_of(obj: &Value) -> String {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `{name, uid}` as the claim and references carry it.
fn name_uid(obj: &Value, name: &str) -> Value {
    json!({"name": name, "uid": uid_of(obj)})
}

/// The `kubernetes.io` claim for the account and the bound object: the
/// objects are read (404 when missing, 409 when the uid differs).
async fn private_claim(
    api: &Api,
    namespace: &str,
    sa_name: &str,
    sa: &Value,
    bound_ref: Option<&BoundRef>,
) -> Result<Value, StatusError> {
    let mut claim = json!({
        "namespace": namespace,
        "serviceaccount": name_uid(sa, sa_name),
    });
    let Some(r) = bound_ref else {
        return Ok(claim);
    };
    let (group, _) = registry::split_api_version(&r.api_version);
    let (plural, key, namespaced) = match (group, r.kind.as_str()) {
        ("", "Pod") => ("pods", "pod", true),
        ("", "Secret") => ("secrets", "secret", true),
        ("", "Node") => ("nodes", "node", false),
        _ => {
            return Err(StatusError::bad_request(format!(
                "cannot bind token to object of type {}, Kind={}",
                if r.api_version.is_empty() {
                    "/"
                } else {
                    &r.api_version
                },
                r.kind
            )))
        }
    };
    if r.name.is_empty() {
        return Err(invalid(
            sa_name,
            "spec.boundObjectRef.name",
            json!(""),
            "must be set",
        ));
    }
    let resource = get_resource(plural)?;
    let obj = api
        .objects
        .get(resource, namespaced.then_some(namespace), &r.name)
        .await?;
    if let Some(uid) = &r.uid {
        if *uid != uid_of(&obj) {
            return Err(StatusError::conflict(
                resource,
                &r.name,
                &format!("the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"),
            ));
        }
    }
    claim[key] = name_uid(&obj, &r.name);
    if key == "pod" {
        // Admission gives every pod an account; one stored without is `default`'s.
        let runs_as = obj
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        if runs_as != sa_name {
            return Err(StatusError::bad_request(format!(
                "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
            )));
        }
        // Upstream (ServiceAccountTokenPodNodeInfo) names the pod's node too. A
        // node that is gone is left out rather than failing the request.
        if let Some(node) = obj.pointer("/spec/nodeName").and_then(Value::as_str) {
            if !node.is_empty() {
                if let Some(n) = api
                    .objects
                    .get_opt(get_resource("nodes")?, None, node)
                    .await?
                {
                    claim["node"] = name_uid(&n, node);
                }
            }
        }
    }
    Ok(claim)
}

/// The claims of a token: upstream's registered and private claims.
pub fn claims(
    spec: &Spec,
    namespace: &str,
    name: &str,
    private: Value,
    now: DateTime<Utc>,
) -> Value {
    let iat = now.timestamp();
    json!({
        "aud": spec.audiences,
        "exp": iat + spec.expiration_seconds,
        "iat": iat,
        "iss": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": private,
        "nbf": iat,
        "sub": bound::service_account_user(namespace, name),
    })
}

pub async fn create(
    api: &Api,
    t: &Target,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, StatusError> {
    let namespace = t.namespace.as_deref().unwrap_or("default");
    let name = t.name.as_deref().unwrap_or_default();
    let req = body::decode_object(&body::content_type(headers), bytes)?;
    let spec = parse(&req, namespace, name)?;
    let sa = api
        .objects
        .get(get_resource("serviceaccounts")?, Some(namespace), name)
        .await?;
    let private = private_claim(api, namespace, name, &sa, spec.bound.as_ref()).await?;
    let now = Utc::now();
    let claims = claims(&spec, namespace, name, private, now);
    let token = jwt::encode(&api.service_account_keys, &claims)
        .map_err(|e| StatusError::internal(format!("failed to sign the token: {e}")))?;
    let expires = now + chrono::Duration::seconds(spec.expiration_seconds);
    // The answer is the request, defaulted, with the token: as upstream.
    let mut out = Map::new();
    out.insert("kind".into(), json!("TokenRequest"));
    out.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
    let mut meta = req.get("metadata").cloned().unwrap_or(json!({}));
    if !meta.is_object() {
        meta = json!({});
    }
    if meta.get("creationTimestamp").is_none() {
        meta["creationTimestamp"] = Value::Null;
    }
    out.insert("metadata".into(), meta);
    let mut spec_out = json!({
        "audiences": spec.audiences,
        "expirationSeconds": spec.expiration_seconds,
        "boundObjectRef": null,
    });
    if let Some(r) = req
        .pointer("/spec/boundObjectRef")
        .filter(|r| r.is_object())
    {
        spec_out["boundObjectRef"] = r.clone();
    }
    out.insert("spec".into(), spec_out);
    out.insert(
        "status".into(),
        json!({
            "token": token,
            "expirationTimestamp": expires.to_rfc3339_opts(SecondsFormat::Secs, true),
        }),
    );
    Ok(response::json(201, &Value::Object(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds_are_upstreams() {
        let s = parse(&json!({}), "ns", "web").unwrap();
        assert_eq!(s.audiences, [super::super::API_AUDIENCE]);
        assert_eq!(s.expiration_seconds, 3600);
        assert!(s.bound.is_none());
        let s = parse(
            &json!({"spec": {"audiences": ["vault"], "expirationSeconds": 600,
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"}}}),
            "ns",
            "web",
        )
        .unwrap();
        assert_eq!(s.audiences, ["vault"]);
        assert_eq!(s.bound.unwrap().uid.as_deref(), Some("u"));
        let e = parse(&json!({"spec": {"expirationSeconds": 599}}), "ns", "web").unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(e.reason, "Invalid");
        assert_eq!(
            e.message,
            r#"TokenRequest.authentication.k8s.io "web" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"#
        );
        let e = parse(&json!({"metadata": {"name": "other"}}), "ns", "web").unwrap_err();
        assert_eq!(e.code, 422);
        assert!(parse(&json!({"kind": "Pod"}), "ns", "web").is_err());
        assert!(parse(&json!({"spec": {"audiences": "x"}}), "ns", "web").is_err());
        assert!(parse(&json!({"spec": {"expirationSeconds": "1h"}}), "ns", "web").is_err());
    }

    #[test]
    fn claims_are_upstreams() {
        let spec = parse(&json!({}), "ns", "web").unwrap();
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = claims(&spec, "ns", "web", json!({"namespace": "ns"}), now);
        assert_eq!(c["iss"], ISSUER);
        assert_eq!(c["sub"], "system:serviceaccount:ns:web");
        assert_eq!(c["aud"], json!([ISSUER]));
        assert_eq!(c["exp"].as_i64(), Some(now.timestamp() + 3600));
        assert_eq!(c["iat"], c["nbf"]);
        assert_eq!(c["jti"].as_str().unwrap().len(), 36);
        assert_eq!(c["kubernetes.io"]["namespace"], "ns");
    }
}

//! certificates.k8s.io/v1 CertificateSigningRequests, as upstream's registry
//! (`pkg/registry/certificates`) and its `CertificateApproval` admission:
//!
//! - on create the requester's identity goes into `spec.username`, `uid`,
//!   `groups` and `extra`, whatever the client wrote, and the request is
//!   validated ([`validate_create`]);
//! - `PUT .../approval` (`kubectl certificate approve|deny`) changes only the
//!   Approved/Denied conditions, and only for a user allowed to `approve`
//!   the request's signer (`signers` in certificates.k8s.io, by name or
//!   `<domain>/*`);
//! - [`signer`] issues certificates for approved requests of the built-in
//!   signers from the cluster CA.

pub mod request;
pub mod signer;

use axum::response::Response;
use base64::Engine;
use http::HeaderMap;
use serde_json::{json, Value};
use skiff_api::validation::FieldError;
use skiff_api::StatusError;

use crate::authn::User;
use crate::authz::{policy, Attributes, RbacIndex};
use crate::request::{Query, Target};
use crate::rest::{self, WriteOptions};
use crate::server::Api;
use crate::{body, response};

/// Client certificates the API server accepts (CN user, O groups).
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// Kubelets' serving certificates.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// Upstream's `--cluster-signing-duration` default: a year.
pub const MAX_DURATION_SECONDS: i64 = 365 * 24 * 3600;

/// The groups and kinds of conditions (upstream `certificates.RequestConditionType`).
const APPROVED: &str = "Approved";
const DENIED: &str = "Denied";
const FAILED: &str = "Failed";
const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The PEM bytes of `spec.request` (base64 in JSON).
pub fn request_pem(csr: &Value) -> Option<Vec<u8>> {
    let b64 = csr.pointer("/spec/request").and_then(Value::as_str)?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Upstream's `ValidateCertificateSigningRequestCreate` (the parts clients hit).
pub fn validate_create(csr: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match csr.pointer("/spec/request") {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.request", "")),
        Some(v) => match request_pem(csr) {
            None => errs.push(FieldError::invalid(
                "spec.request",
                v.clone(),
                request::NOT_A_CSR,
            )),
            Some(pem) => {
                if let Err(e) = request::parse(&pem) {
                    errs.push(FieldError::invalid("spec.request", v.clone(), &e));
                }
            }
        },
    }
    let signer = csr
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if signer.is_empty() {
        errs.push(FieldError::required("spec.signerName", ""));
    } else if !signer.contains('/') {
        errs.push(FieldError::invalid(
            "spec.signerName",
            json!(signer),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
    }
    match csr.pointer("/spec/usages").and_then(Value::as_array) {
        None => errs.push(FieldError::required("spec.usages", "")),
        Some(usages) => {
            for (i, u) in usages.iter().enumerate() {
                let s = u.as_str().unwrap_or("");
                if !USAGES.contains(&s) {
                    errs.push(FieldError::not_supported(
                        &format!("spec.usages[{i}]"),
                        u.clone(),
                        USAGES,
                    ));
                }
            }
        }
    }
    if let Some(secs) = csr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
    {
        if secs < 600 {
            errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                json!(secs),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    errs
}

/// Create: the requester's identity replaces whatever the client wrote
/// (upstream `csrStrategy.PrepareForCreate`), then validation.
pub fn admit_create(
    user: &User,
    resource: &skiff_api::Resource,
    obj: &mut Value,
) -> Result<(), StatusError> {
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    spec["username"] = json!(user.name);
    spec["groups"] = json!(user.groups);
    match user.uid.as_str() {
        "" => _ = spec.as_object_mut().map(|s| s.remove("uid")),
        uid => spec["uid"] = json!(uid),
    }
    if user.extra.is_empty() {
        if let Some(s) = spec.as_object_mut() {
            s.remove("extra");
        }
    } else {
        spec["extra"] = json!(*user.extra);
    }
    let errs = validate_create(obj);
    if errs.is_empty() {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Err(StatusError::invalid(resource, name, &errs))
}

/// Upstream's `IsAuthorizedForSignerName`: `verb` on the signer by its
/// name, or on `<domain>/*`.
pub fn may_use_signer(index: Option<&RbacIndex>, user: &User, verb: &str, signer: &str) -> bool {
    let allowed = |name: &str| {
        let attrs =
            Attributes::resource(user.clone(), verb, "certificates.k8s.io", "signers").name(name);
        policy::decide(index, &attrs).is_allowed()
    };
    if allowed(signer) {
        return true;
    }
    match signer.split_once('/') {
        Some((domain, _)) => allowed(&format!("{domain}/*")),
        None => false,
    }
}

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn has(conds: &[Value], kind: &str) -> bool {
    conds.iter().any(|c| c["type"] == kind)
}

/// Upstream's approval-update checks of the new conditions against the old.
fn validate_approval(new: &[Value], old: &[Value]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = "status.conditions";
    if has(new, APPROVED) && has(new, DENIED) {
        errs.push(FieldError::invalid(
            path,
            Value::Array(new.to_vec()),
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    for kind in [APPROVED, DENIED] {
        if has(old, kind) && !has(new, kind) {
            errs.push(FieldError::forbidden(
                path,
                &format!("updates may not remove a condition of type \"{kind}\""),
            ));
        }
        if new.iter().filter(|c| c["type"] == kind).count() > 1 {
            errs.push(FieldError::forbidden(
                path,
                &format!("duplicate condition of type \"{kind}\""),
            ));
        }
    }
    for (i, c) in new.iter().enumerate() {
        let kind = c["type"].as_str().unwrap_or("");
        if (kind == APPROVED || kind == DENIED) && c["status"] != "True" {
            errs.push(FieldError::not_supported(
                &format!("{path}[{i}].status"),
                c["status"].clone(),
                &["True"],
            ));
        }
    }
    errs
}

/// `PUT certificatesigningrequests/<name>/approval`.
pub async fn approve(
    api: &Api,
    user: &User,
    index: Option<&RbacIndex>,
    t: &Target,
    headers: &HeaderMap,
    bytes: &[u8],
    q: &Query,
) -> Result<Response, StatusError> {
    let media = body::content_type(headers);
    let wanted = body::decode_object(&media, bytes)?;
    let name = t.name.clone().unwrap_or_default();
    let current = api.objects.get(t.resource, None, &name).await?;
    let signer = current
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !may_use_signer(index, user, "approve", &signer) {
        return Err(StatusError::forbidden(
            t.resource,
            &name,
            &format!("user not permitted to approve requests with signerName \"{signer}\""),
        ));
    }
    let now = crate::strategy::now_rfc3339();
    let new_conditions = conditions(&wanted);
    let status_target = Target {
        subresource: Some("status".into()),
        ..t.clone()
    };
    let opts = WriteOptions {
        dry_run: q.flag("dryRun"),
        validation: body::FieldValidation::Ignore,
        field_manager: None,
    };
    let resource = t.resource;
    let updated = rest::patch_with(api, &status_target, &opts, |cur| {
        let old = conditions(cur);
        let errs = validate_approval(&new_conditions, &old);
        if !errs.is_empty() {
            return Err(StatusError::invalid(resource, &name, &errs));
        }
        // Only Approved and Denied come from the request; the signer's
        // own conditions (Failed) stay as they were.
        let mut merged: Vec<Value> = old
            .iter()
            .filter(|c| c["type"] != APPROVED && c["type"] != DENIED)
            .cloned()
            .collect();
        for c in &new_conditions {
            let kind = c["type"].as_str().unwrap_or("");
            if kind != APPROVED && kind != DENIED {
                continue;
            }
            let mut c = c.clone();
            let prior = old.iter().find(|o| o["type"] == kind);
            for field in ["lastUpdateTime", "lastTransitionTime"] {
                if c.get(field).is_none_or(Value::is_null) {
                    c[field] = prior
                        .and_then(|p| p.get(field).cloned())
                        .unwrap_or_else(|| json!(now));
                }
            }
            merged.push(c);
        }
        let mut out = cur.clone();
        if !out["status"].is_object() {
            out["status"] = json!({});
        }
        out["status"]["conditions"] = Value::Array(merged);
        Ok(out)
    })
    .await?;
    Ok(response::json(200, &updated))
}

/// Whether a request is approved and not denied or failed.
pub fn approved(csr: &Value) -> bool {
    let c = conditions(csr);
    has(&c, APPROVED) && !has(&c, DENIED) && !has(&c, FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_checks_as_upstream() {
        let approved = json!({"type": "Approved", "status": "True"});
        let denied = json!({"type": "Denied", "status": "True"});
        assert!(validate_approval(std::slice::from_ref(&approved), &[]).is_empty());
        let e = validate_approval(&[approved.clone(), denied.clone()], &[]);
        assert!(
            e[0].message().contains("mutually exclusive"),
            "{}",
            e[0].message()
        );
        let e = validate_approval(&[], std::slice::from_ref(&approved));
        assert!(e[0]
            .message()
            .contains("updates may not remove a condition of type \"Approved\""));
    }

    #[test]
    fn creates_need_a_request_a_signer_and_usages() {
        let e = validate_create(&json!({"spec": {}}));
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.request", "spec.signerName", "spec.usages"]);
        let e = validate_create(&json!({"spec": {"request": "bm90IGEgY3Ny",
            "signerName": "x/y", "usages": ["client auth"], "expirationSeconds": 60}}));
        assert!(e[0].message().contains(request::NOT_A_CSR));
        assert!(e[1].message().contains("less than 600 seconds"));
    }
}

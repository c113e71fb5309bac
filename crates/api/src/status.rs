//! `Status` errors exactly as upstream returns them: kubectl builds its messages
//! from `reason`, `details.kind`, `details.name` and `details.causes`.

use serde_json::{json, Map, Value};

use crate::registry::Resource;
use crate::validation::FieldError;

/// An API failure; rendered as a `meta/v1 Status` with the matching HTTP code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// `Kind.group` as Go's `GroupKind.String()`; the bare kind for the core group.
fn qualified_kind(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.kind.to_string()
    } else {
        format!("{}.{}", resource.kind, resource.group)
    }
}

impl StatusError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    fn resource_details(resource: &Resource, name: &str) -> Value {
        let mut d = json!({"name": name, "kind": resource.plural});
        if !resource.group.is_empty() {
            d["group"] = json!(resource.group);
        }
        d
    }

    pub fn not_found(resource: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", resource.qualified_plural(), name),
        )
        .with_details(Self::resource_details(resource, name))
    }

    /// The URL names no resource this server knows.
    pub fn no_such_resource() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(resource: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!(
                "{} \"{}\" already exists",
                resource.qualified_plural(),
                name
            ),
        )
        .with_details(Self::resource_details(resource, name))
    }

    pub fn conflict(resource: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {}",
                resource.qualified_plural(),
                name,
                why
            ),
        )
        .with_details(Self::resource_details(resource, name))
    }

    /// A stale `resourceVersion` on update.
    pub fn stale(resource: &Resource, name: &str) -> Self {
        Self::conflict(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per field error, in upstream's aggregate message form.
    pub fn invalid(resource: &Resource, name: &str, errors: &[FieldError]) -> Self {
        let rendered: Vec<String> = errors.iter().map(FieldError::to_string).collect();
        let summary = match rendered.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.message(), "field": e.field}))
            .collect();
        let mut details = json!({"name": name, "kind": resource.kind, "causes": causes});
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        Self::new(
            422,
            "Invalid",
            // Upstream names the kind with its group (`Ingress.networking.k8s.io`).
            format!(
                "{} \"{}\" is invalid: {}",
                qualified_kind(resource),
                name,
                summary
            ),
        )
        .with_details(details)
    }

    pub fn forbidden(resource: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!(
                "{} \"{}\" is forbidden: {}",
                resource.qualified_plural(),
                name,
                why
            ),
        )
        .with_details(Self::resource_details(resource, name))
    }

    /// A patch that cannot be applied to the object.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// A server-side apply conflict; `message` is upstream's "Apply failed with ..." text.
    pub fn apply_conflict(resource: &Resource, name: &str, message: &str) -> Self {
        Self::new(409, "Conflict", message).with_details(Self::resource_details(resource, name))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// A watch or list from a resourceVersion the store has compacted away.
    pub fn expired(requested: i64, oldest: i64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The `Status` object, its fields in upstream's order (kind, apiVersion,
    /// metadata, status, message, reason, details, code), as clients compare it.
    pub fn to_json(&self) -> Value {
        let mut v = Map::new();
        v.insert("kind".into(), json!("Status"));
        v.insert("apiVersion".into(), json!("v1"));
        v.insert("metadata".into(), json!({}));
        v.insert("status".into(), json!("Failure"));
        v.insert("message".into(), json!(self.message));
        v.insert("reason".into(), json!(self.reason));
        if let Some(d) = &self.details {
            v.insert("details".into(), ordered_details(d));
        }
        v.insert("code".into(), json!(self.code));
        Value::Object(v)
    }
}

/// StatusDetails' fields in upstream's order.
const DETAILS_ORDER: &[&str] = &[
    "name",
    "group",
    "kind",
    "uid",
    "causes",
    "retryAfterSeconds",
];

fn ordered_details(d: &Value) -> Value {
    let Some(m) = d.as_object() else {
        return d.clone();
    };
    let mut out = Map::new();
    for k in DETAILS_ORDER {
        if let Some(v) = m.get(*k) {
            out.insert((*k).to_string(), v.clone());
        }
    }
    for (k, v) in m {
        if !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// The `Status` a successful delete of a whole collection or a subresource returns.
pub fn success(details: Option<Value>) -> Value {
    let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some(d) = details {
        v["details"] = ordered_details(&d);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;
    use crate::validation::FieldError;

    #[test]
    fn invalid_matches_kubectl_wording() {
        let svc = lookup("", "v1", "services").unwrap();
        let err = StatusError::invalid(
            svc,
            "np2",
            &[FieldError::invalid(
                "spec.ports[0].nodePort",
                json!(31111),
                "provided port is already allocated",
            )],
        );
        assert_eq!(
            err.message,
            "Service \"np2\" is invalid: spec.ports[0].nodePort: Invalid value: 31111: provided port is already allocated"
        );
        let j = err.to_json();
        assert_eq!(j["code"], 422);
        assert_eq!(j["details"]["causes"][0]["field"], "spec.ports[0].nodePort");
        assert_eq!(j["details"]["causes"][0]["reason"], "FieldValueInvalid");
        assert_eq!(
            j["details"]["causes"][0]["message"],
            "Invalid value: 31111: provided port is already allocated"
        );
    }

    #[test]
    fn many_causes_are_bracketed() {
        let svc = lookup("", "v1", "services").unwrap();
        let err = StatusError::invalid(
            svc,
            "x",
            &[
                FieldError::required("spec.ports[0].name", ""),
                FieldError::required("spec.ports[1].name", ""),
            ],
        );
        assert_eq!(
            err.message,
            "Service \"x\" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value]"
        );
    }

    #[test]
    fn status_fields_in_upstream_order() {
        let deploy = lookup("apps", "v1", "deployments").expect("deployments");
        let body =
            serde_json::to_string(&StatusError::not_found(deploy, "web").to_json()).expect("json");
        assert_eq!(
            body,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"web\" not found","reason":"NotFound","details":{"name":"web","group":"apps","kind":"deployments"},"code":404}"#
        );
    }

    #[test]
    fn not_found_names_group() {
        let d = crate::registry::by_kind("apps", "Deployment").unwrap();
        let e = StatusError::not_found(d, "web");
        assert_eq!(e.message, "deployments.apps \"web\" not found");
        assert_eq!(e.to_json()["details"]["group"], "apps");
    }
}

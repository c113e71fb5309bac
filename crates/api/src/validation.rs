//! Field errors and the name/label syntax rules every kind shares, with upstream's
//! exact wording (users compare it with what a real cluster prints).

use std::fmt;

use serde_json::{Map, Value};

use crate::registry::Resource;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
    NotFound,
}

impl FieldErrorKind {
    /// The `details.causes[].reason` upstream uses.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::Duplicate => "FieldValueDuplicate",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::NotFound => "FieldValueNotFound",
        }
    }
}

/// One problem with one field, as upstream's `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    pub value: Option<Value>,
    pub detail: String,
}

/// The key of [`go_value`]'s one-entry object.
const GO_VALUE: &str = "$goValue";

/// A bad value JSON cannot spell the way upstream prints it (Go's `%#v` of a typed
/// slice or struct, e.g. `[]string{"10.0.0.1"}`): the text is rendered verbatim.
pub fn go_value(text: impl Into<String>) -> Value {
    let mut m = Map::new();
    m.insert(GO_VALUE.to_string(), Value::String(text.into()));
    Value::Object(m)
}

/// Renders a bad value the way Go's `%#v`/`%q` does in upstream messages.
fn render_value(v: &Value) -> String {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key(GO_VALUE) => {
            m[GO_VALUE].as_str().unwrap_or_default().to_string()
        }
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

impl FieldError {
    fn new(kind: FieldErrorKind, field: &str, value: Option<Value>, detail: &str) -> Self {
        Self {
            kind,
            field: field.to_string(),
            value,
            detail: detail.to_string(),
        }
    }
    pub fn required(field: &str, detail: &str) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }
    pub fn invalid(field: &str, value: Value, detail: &str) -> Self {
        Self::new(FieldErrorKind::Invalid, field, Some(value), detail)
    }
    pub fn duplicate(field: &str, value: Value) -> Self {
        Self::new(FieldErrorKind::Duplicate, field, Some(value), "")
    }
    pub fn not_supported(field: &str, value: Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let detail = format!("supported values: {}", list.join(", "));
        Self::new(FieldErrorKind::NotSupported, field, Some(value), &detail)
    }
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail)
    }

    /// The cause message: everything after `field: `.
    pub fn message(&self) -> String {
        let head = match self.kind {
            FieldErrorKind::Required => "Required value".to_string(),
            FieldErrorKind::Forbidden => "Forbidden".to_string(),
            FieldErrorKind::TooLong => "Too long".to_string(),
            FieldErrorKind::Invalid => format!(
                "Invalid value: {}",
                self.value.as_ref().map(render_value).unwrap_or_default()
            ),
            FieldErrorKind::Duplicate => format!(
                "Duplicate value: {}",
                self.value.as_ref().map(render_value).unwrap_or_default()
            ),
            FieldErrorKind::NotSupported => format!(
                "Unsupported value: {}",
                self.value.as_ref().map(render_value).unwrap_or_default()
            ),
            FieldErrorKind::NotFound => format!(
                "Not found: {}",
                self.value.as_ref().map(render_value).unwrap_or_default()
            ),
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Problems with `s` as a DNS-1123 label (namespaces, port names), upstream's messages.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !is_dns1123_label(s) {
        out.push(DNS1123_LABEL_MSG.to_string());
    }
    out
}

/// Problems with `s` as a DNS-1123 subdomain (most object names).
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(is_dns1123_label) {
        out.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    out
}

/// Problems with `s` as a DNS-1035 label (service names).
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !is_dns1123_label(s) || !s.as_bytes()[0].is_ascii_lowercase() {
        out.push(DNS1035_LABEL_MSG.to_string());
    }
    out
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems with a label or annotation key (`prefix/name`).
pub fn qualified_name(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut out = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else {
            out.extend(
                dns1123_subdomain(p)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        out.push("name part must be no more than 63 characters".to_string());
    } else if !is_qualified_name_part(name) {
        out.push(QUALIFIED_NAME_MSG.to_string());
    }
    out
}

/// Problems with a label value.
pub fn label_value(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    if v.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !v.is_empty() && !is_qualified_name_part(v) {
        out.push(LABEL_VALUE_MSG.to_string());
    }
    out
}

/// Which name rule a resource's objects follow, as upstream's per-kind `ValidateName`.
pub fn name_problems(resource: &Resource, name: &str) -> Vec<String> {
    match (resource.group, resource.plural) {
        ("", "services") => dns1035_label(name),
        ("", "namespaces") => dns1123_label(name),
        // RBAC names are path segments (`system:discovery`), as upstream's
        // ValidateRBACName.
        ("rbac.authorization.k8s.io", _) => path_segment_name(name),
        // `v1.` names the core group's APIService.
        ("apiregistration.k8s.io", _) => path_segment_name(name),
        _ => dns1123_subdomain(name),
    }
}

/// Problems with a name that must only be usable as one URL path segment.
pub fn path_segment_name(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| name.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// Validates the parts of `metadata` every kind shares.
pub fn object_meta(resource: &Resource, meta: &Map<String, Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    let generate = meta.get("generateName").and_then(Value::as_str);
    if name.is_empty() && generate.is_none_or(str::is_empty) {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if !name.is_empty() {
        for m in name_problems(resource, name) {
            errs.push(FieldError::invalid("metadata.name", Value::from(name), &m));
        }
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for m in qualified_name(k) {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    Value::from(k.as_str()),
                    &m,
                ));
            }
            match v.as_str() {
                Some(s) => {
                    for m in label_value(s) {
                        errs.push(FieldError::invalid("metadata.labels", Value::from(s), &m));
                    }
                }
                None => errs.push(FieldError::invalid(
                    "metadata.labels",
                    v.clone(),
                    "label values must be strings",
                )),
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0usize;
        for (k, v) in annotations {
            total += k.len() + v.as_str().map_or(0, str::len);
            for m in qualified_name(&k.to_ascii_lowercase()) {
                errs.push(FieldError::invalid(
                    "metadata.annotations",
                    Value::from(k.as_str()),
                    &m,
                ));
            }
        }
        if total > 256 * 1024 {
            errs.push(FieldError {
                kind: FieldErrorKind::TooLong,
                field: "metadata.annotations".into(),
                value: None,
                detail: "may not be more than 262144 bytes".into(),
            });
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;
    use serde_json::json;

    #[test]
    fn name_rules_per_kind() {
        let svc = lookup("", "v1", "services").unwrap();
        let pod = lookup("", "v1", "pods").unwrap();
        let ns = lookup("", "v1", "namespaces").unwrap();
        let crb = lookup("rbac.authorization.k8s.io", "v1", "clusterrolebindings").unwrap();
        let cases: &[(&Resource, &str, bool)] = &[
            (svc, "my-nginx", true),
            (svc, "1abc", false),
            (svc, "a.b", false),
            (pod, "a.b", true),
            (pod, "1abc", true),
            (pod, "Upper", false),
            (pod, "-x", false),
            (ns, "moon", true),
            (ns, "k8s-training", true),
            (ns, "a.b", false),
            (crb, "system:discovery", true),
            (crb, "..", false),
            (crb, "a/b", false),
        ];
        for (r, name, ok) in cases {
            assert_eq!(
                name_problems(r, name).is_empty(),
                *ok,
                "{} {name}",
                r.plural
            );
        }
    }

    #[test]
    fn bad_service_name_message() {
        let svc = lookup("", "v1", "services").unwrap();
        let meta = json!({"name": "My_svc"});
        let errs = object_meta(svc, meta.as_object().unwrap());
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().starts_with(
            "metadata.name: Invalid value: \"My_svc\": a DNS-1035 label must consist"
        ));
    }

    #[test]
    fn labels_checked() {
        let pod = lookup("", "v1", "pods").unwrap();
        let ok = json!({"name": "p", "labels": {"app.kubernetes.io/name": "x", "broker-access": "true", "e": ""}});
        assert!(object_meta(pod, ok.as_object().unwrap()).is_empty());
        let bad = json!({"name": "p", "labels": {"bad key": "v", "k": "bad value"}});
        assert_eq!(object_meta(pod, bad.as_object().unwrap()).len(), 2);
    }

    #[test]
    fn generate_name_suffices() {
        let pod = lookup("", "v1", "pods").unwrap();
        let m = json!({"generateName": "web-"});
        assert!(object_meta(pod, m.as_object().unwrap()).is_empty());
        let m = json!({});
        assert_eq!(
            object_meta(pod, m.as_object().unwrap())[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }
}

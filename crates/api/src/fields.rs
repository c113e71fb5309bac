//! Field selectors: `?fieldSelector=` parsing, the field labels each kind
//! accepts, and the values objects expose for them.
//!
//! Upstream evaluates a field selector in two layers, mirrored here:
//! 1. the kind's field label conversion (`pkg/apis/<group>/<version>/conversion.go`)
//!    decides which labels are accepted, and renames a few (`spec.host`,
//!    events.k8s.io's `regarding.*`); an unknown label is a 400 BadRequest with
//!    the conversion's message ([`FieldSelector::validate`]);
//! 2. the registry's `ToSelectableFields` projects the object into a flat
//!    `field -> string` set, where a missing field reads as `""`
//!    ([`field_value`], [`FieldSelector::matches`]).
//!
//! The two lists differ: a Pod accepts `status.podIPs` but never sets it, so
//! `status.podIPs=10.0.0.1` is valid and matches nothing.

use std::fmt;

use serde_json::Value;

/// Why a field selector was rejected, in upstream's words (the API server's 400 message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// The selector string does not parse.
    #[error("{0}")]
    Invalid(String),
    /// The kind does not support selecting on this field label.
    #[error("{0}")]
    UnsupportedField(String),
}

/// `=` and `==` are the same operator; both are kept so the selector prints back as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    Equals,
    DoubleEquals,
    NotEquals,
}

/// One `field op value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub operator: FieldOperator,
    /// The value with escapes removed.
    pub value: String,
}

impl FieldTerm {
    fn matches(&self, actual: &str) -> bool {
        match self.operator {
            FieldOperator::Equals | FieldOperator::DoubleEquals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

/// A parsed field selector: the AND of its terms; no terms matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses `a=b,c!=d` (upstream `fields.ParseSelector`): terms split on
    /// unescaped commas; in values `\\`, `\,` and `\=` are escapes and a bare
    /// `,` or `=` is an error. Fields themselves are not validated here.
    pub fn parse(selector: &str) -> Result<Self, FieldSelectorError> {
        let mut parts = split_terms(selector);
        // Upstream sorts the raw terms, so the parsed order is canonical.
        parts.sort_unstable();
        let mut terms = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, operator, rhs)) = split_term(part) else {
                return Err(FieldSelectorError::Invalid(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                )));
            };
            terms.push(FieldTerm {
                field: field.to_string(),
                operator,
                value: unescape_value(rhs)?,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// True when the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// The value `field` must equal, if a `=`/`==` term pins it (e.g. `metadata.name`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.operator != FieldOperator::NotEquals)
            .map(|t| t.value.as_str())
    }

    /// Checks every term's field against the kind's accepted labels: the 400
    /// upstream answers before listing anything.
    pub fn validate(&self, group: &str, kind: &str) -> Result<(), FieldSelectorError> {
        for t in &self.terms {
            canonical_label(group, kind, &t.field)?;
        }
        Ok(())
    }

    /// Whether `obj` satisfies every term. A term on an unsupported field never
    /// matches; call [`Self::validate`] first to answer upstream's 400 instead.
    pub fn matches(&self, group: &str, kind: &str, obj: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| match field_value(group, kind, obj, &t.field) {
                Ok(v) => t.matches(v.as_deref().unwrap_or("")),
                Err(_) => false,
            })
    }

    /// [`Self::matches`] over a [`projection`] of the object: `value` answers the
    /// canonical label's value (`None` reads as `""`).
    pub fn matches_projection<'a>(
        &self,
        group: &str,
        kind: &str,
        value: impl Fn(&str) -> Option<&'a str>,
    ) -> bool {
        self.terms
            .iter()
            .all(|t| match canonical_label(group, kind, &t.field) {
                Ok(label) => t.matches(value(label).unwrap_or("")),
                Err(_) => false,
            })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match t.operator {
                FieldOperator::NotEquals => "!=",
                // Upstream prints `==` terms back as `=`.
                FieldOperator::Equals | FieldOperator::DoubleEquals => "=",
            };
            write!(f, "{}{op}{}", t.field, escape_value(&t.value))?;
        }
        Ok(())
    }
}

/// Escapes a value for use in a field selector (upstream `fields.EscapeValue`).
pub fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator; `!=` and `==` win over `=` at the same place.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::DoubleEquals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, value));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, FieldSelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(FieldSelectorError::Invalid(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Upstream prints the rune with %v, i.e. as its code point number.
            ',' | '=' => {
                return Err(FieldSelectorError::Invalid(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )))
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(FieldSelectorError::Invalid(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}

fn not_supported(label: &str) -> FieldSelectorError {
    FieldSelectorError::UnsupportedField(format!("field label not supported: {label}"))
}

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];
const NODE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];
const RC_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];
/// events.k8s.io's own labels besides the `regarding.*` / `reportingController` renames.
const NEW_EVENT_FIELDS: &[&str] = &[
    "reason",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];
const NAMESPACE_FIELDS: &[&str] = &["status.phase", "metadata.name"];
const SECRET_FIELDS: &[&str] = &["type", "metadata.namespace", "metadata.name"];
const SERVICE_FIELDS: &[&str] = &[
    "metadata.namespace",
    "metadata.name",
    "spec.clusterIP",
    "spec.type",
];
const JOB_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];
const CSR_FIELDS: &[&str] = &["metadata.name", "spec.signerName"];
const META_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// The canonical field labels of `group`/`kind`: what upstream's `ToSelectableFields`
/// projects an object onto, and so every value a selector of this kind can look at.
/// events.k8s.io shares core Event storage, so its canonical labels are the core ones.
pub fn canonical_fields(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("", "Pod") => POD_FIELDS,
        ("", "Node") => NODE_FIELDS,
        ("", "ReplicationController") => RC_FIELDS,
        ("", "Event") | ("events.k8s.io", "Event") => CORE_EVENT_FIELDS,
        ("", "Namespace") => NAMESPACE_FIELDS,
        ("", "Secret") => SECRET_FIELDS,
        ("", "Service") => SERVICE_FIELDS,
        ("batch", "Job") => JOB_FIELDS,
        ("certificates.k8s.io", "CertificateSigningRequest") => CSR_FIELDS,
        _ => META_FIELDS,
    }
}

/// The kind's field label conversion: the canonical label for an accepted one.
fn canonical_label<'a>(
    group: &str,
    kind: &str,
    label: &'a str,
) -> Result<&'a str, FieldSelectorError> {
    let accept = |ok: &[&str]| {
        if ok.contains(&label) {
            Ok(label)
        } else {
            Err(not_supported(label))
        }
    };
    match (group, kind) {
        ("", "Pod") => match label {
            // Old v1 clients still send spec.host.
            "spec.host" => Ok("spec.nodeName"),
            _ => accept(POD_FIELDS),
        },
        ("", "Node") => accept(NODE_FIELDS),
        ("", "ReplicationController") => accept(RC_FIELDS),
        ("", "Event") => accept(CORE_EVENT_FIELDS),
        ("", "Namespace") => accept(NAMESPACE_FIELDS),
        ("", "Secret") => accept(SECRET_FIELDS),
        ("", "Service") => accept(SERVICE_FIELDS),
        // events.k8s.io shares core Event storage: its labels map onto the core ones.
        ("events.k8s.io", "Event") => match label {
            "regarding.kind" => Ok("involvedObject.kind"),
            "regarding.namespace" => Ok("involvedObject.namespace"),
            "regarding.name" => Ok("involvedObject.name"),
            "regarding.uid" => Ok("involvedObject.uid"),
            "regarding.apiVersion" => Ok("involvedObject.apiVersion"),
            "regarding.resourceVersion" => Ok("involvedObject.resourceVersion"),
            "regarding.fieldPath" => Ok("involvedObject.fieldPath"),
            "reportingController" => Ok("reportingComponent"),
            _ => accept(NEW_EVENT_FIELDS),
        },
        ("batch", "Job") if JOB_FIELDS.contains(&label) => Ok(label),
        ("batch", "Job") => Err(FieldSelectorError::UnsupportedField(format!(
            "field label {} not supported for batchv1.Job",
            crate::selector::go_quote(label)
        ))),
        ("certificates.k8s.io", "CertificateSigningRequest") => accept(CSR_FIELDS),
        // Kinds without a conversion func get runtime.DefaultMetaV1FieldSelectorConversion.
        _ if META_FIELDS.contains(&label) => Ok(label),
        _ => Err(FieldSelectorError::UnsupportedField(format!(
            "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            crate::selector::go_quote(label)
        ))),
    }
}

fn path<'v>(obj: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(obj, |v, k| v.get(k))
}

fn string_at(obj: &Value, p: &[&str]) -> String {
    path(obj, p)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn bool_at(obj: &Value, p: &[&str]) -> String {
    path(obj, p)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

fn int_at(obj: &Value, p: &[&str]) -> String {
    path(obj, p)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .to_string()
}

/// The pod's primary IP as the internal type sees it after v1 conversion:
/// `status.podIP` wins, else the first of `status.podIPs`.
pub(crate) fn pod_primary_ip(pod: &Value) -> String {
    let ip = string_at(pod, &["status", "podIP"]);
    if !ip.is_empty() {
        return ip;
    }
    path(pod, &["status", "podIPs"])
        .and_then(|a| a.get(0))
        .and_then(|p| p.get("ip"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The value `obj` (of `group`/`kind`, JSON as served) exposes for `field`.
///
/// `Ok(None)` means the label is accepted but upstream's field set never holds
/// it, which matches as `""`; an unaccepted label is the API server's 400.
pub fn field_value(
    group: &str,
    kind: &str,
    obj: &Value,
    field: &str,
) -> Result<Option<String>, FieldSelectorError> {
    let label = canonical_label(group, kind, field)?;
    Ok(canonical_value(group, kind, obj, label))
}

/// The value of a canonical label (one of [`canonical_fields`]).
fn canonical_value(group: &str, kind: &str, obj: &Value, label: &str) -> Option<String> {
    match label {
        "metadata.name" => Some(string_at(obj, &["metadata", "name"])),
        "metadata.namespace" => Some(string_at(obj, &["metadata", "namespace"])),
        _ => kind_field(group, kind, obj, label),
    }
}

/// `obj`'s selectable fields (upstream `ToSelectableFields`), computed once so that a
/// cache can evaluate any valid selector of the kind without the object itself
/// ([`FieldSelector::matches_projection`]). Only non-empty values are kept: a field
/// that is missing reads as `""`, as in [`FieldSelector::matches`].
pub fn projection(group: &str, kind: &str, obj: &Value) -> Vec<(&'static str, String)> {
    canonical_fields(group, kind)
        .iter()
        .filter_map(|label| {
            canonical_value(group, kind, obj, label)
                .filter(|v| !v.is_empty())
                .map(|v| (*label, v))
        })
        .collect()
}

fn kind_field(group: &str, kind: &str, obj: &Value, label: &str) -> Option<String> {
    Some(match (group, kind, label) {
        ("", "Pod", "status.podIP") => pod_primary_ip(obj),
        ("", "Pod", "spec.hostNetwork") => bool_at(obj, &["spec", "hostNetwork"]),
        ("", "Pod", "spec.nodeName" | "spec.restartPolicy" | "spec.schedulerName")
        | ("", "Pod", "spec.serviceAccountName" | "status.phase" | "status.nominatedNodeName")
        | ("", "Namespace", "status.phase")
        | ("", "Service", "spec.clusterIP" | "spec.type")
        | ("certificates.k8s.io", _, "spec.signerName") => {
            let parts: Vec<&str> = label.split('.').collect();
            string_at(obj, &parts)
        }
        ("", "Node", "spec.unschedulable") => bool_at(obj, &["spec", "unschedulable"]),
        ("", "ReplicationController", "status.replicas") => int_at(obj, &["status", "replicas"]),
        ("", "Secret", "type") => string_at(obj, &["type"]),
        ("batch", "Job", "status.successful") => int_at(obj, &["status", "succeeded"]),
        ("", "Event", _) => core_event_field(obj, label)?,
        ("events.k8s.io", "Event", _) => events_event_field(obj, label)?,
        _ => return None,
    })
}

fn core_event_field(ev: &Value, label: &str) -> Option<String> {
    Some(match label {
        "reason" | "type" | "reportingComponent" => string_at(ev, &[label]),
        "source" => {
            let component = string_at(ev, &["source", "component"]);
            if component.is_empty() {
                string_at(ev, &["reportingComponent"])
            } else {
                component
            }
        }
        _ => {
            let sub = label.strip_prefix("involvedObject.")?;
            string_at(ev, &["involvedObject", sub])
        }
    })
}

fn events_event_field(ev: &Value, label: &str) -> Option<String> {
    Some(match label {
        "reason" | "type" => string_at(ev, &[label]),
        "reportingComponent" => string_at(ev, &["reportingController"]),
        "source" => {
            let component = string_at(ev, &["deprecatedSource", "component"]);
            if component.is_empty() {
                string_at(ev, &["reportingController"])
            } else {
                component
            }
        }
        _ => {
            let sub = label.strip_prefix("involvedObject.")?;
            string_at(ev, &["regarding", sub])
        }
    })
}

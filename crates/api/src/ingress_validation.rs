//! Upstream's `ValidateIngressCreate`/`Update`/`StatusUpdate` and
//! `ValidateIngressClass`/`Update` (networking.k8s.io/v1), with their field paths,
//! messages and order: users compare what `kubectl apply` prints with a real cluster.

use serde_json::{json, Value};

use crate::service::parse_ip;
use crate::validation::{self as v, go_value, FieldError, FieldErrorKind};

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];
const PARAMETER_SCOPES: &[&str] = &["Cluster", "Namespace"];
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const MAX_CONTROLLER_LEN: usize = 250;
const NOT_AN_IP: &str = "must be a DNS name, not an IP address";
const WILDCARD_MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const HTTP_PATH_MSG: &str =
    "Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')";

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Pushes `Invalid(path, value, m)` for each message `m`.
fn invalid_each(errs: &mut Vec<FieldError>, path: &str, value: &str, msgs: Vec<String>) {
    for m in msgs {
        errs.push(FieldError::invalid(path, json!(value), &m));
    }
}

/// Validates an Ingress as it will be stored; `old` on update. A write that leaves
/// the spec alone (the status subresource, the ingress controller writing
/// `status.loadBalancer`) is checked as upstream's status update: the status only.
pub fn ingress(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(old) = old {
        if obj.get("spec") == old.get("spec") {
            load_balancer_status(obj, &mut errs);
            return errs;
        }
    }
    ingress_spec(obj.get("spec").unwrap_or(&Value::Null), &mut errs);
    if old.is_none() {
        let annotation = obj
            .pointer("/metadata/annotations")
            .and_then(|a| str_at(a, CLASS_ANNOTATION));
        let class = obj
            .pointer("/spec/ingressClassName")
            .and_then(Value::as_str);
        if let (Some(a), Some(c)) = (annotation, class) {
            if a != c {
                errs.push(FieldError::invalid(
                    &format!("annotations.{CLASS_ANNOTATION}"),
                    json!(a),
                    "must match `ingressClassName` when both are specified",
                ));
            }
        }
    }
    errs
}

fn ingress_spec(spec: &Value, errs: &mut Vec<FieldError>) {
    let rules = spec.get("rules");
    let backend = spec.get("defaultBackend").filter(|b| !b.is_null());
    let rule_list = items(rules);
    if rule_list.is_empty() && backend.is_none() {
        // Go prints the (typed) slice it was given: nil when absent, empty when `[]`.
        let shown = if rules.and_then(Value::as_array).is_some() {
            "[]networking.IngressRule{}"
        } else {
            "[]networking.IngressRule(nil)"
        };
        errs.push(FieldError::invalid(
            "spec",
            go_value(shown),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = backend {
        ingress_backend(b, "spec.defaultBackend", errs);
    }
    for (i, rule) in rule_list.iter().enumerate() {
        ingress_rule(rule, &format!("spec.rules[{i}]"), errs);
    }
    for (i, tls) in items(spec.get("tls")).iter().enumerate() {
        let path = format!("spec.tls[{i}]");
        for (j, host) in items(tls.get("hosts")).iter().enumerate() {
            let host = host.as_str().unwrap_or_default();
            let msgs = if host.contains('*') {
                wildcard_subdomain(host)
            } else {
                v::dns1123_subdomain(host)
            };
            invalid_each(errs, &format!("{path}.hosts[{j}]"), host, msgs);
        }
        if let Some(secret) = str_at(tls, "secretName").filter(|s| !s.is_empty()) {
            let msgs = v::dns1123_subdomain(secret);
            invalid_each(errs, &format!("{path}.secretName"), secret, msgs);
        }
    }
    if let Some(class) = str_at(spec, "ingressClassName") {
        let msgs = v::dns1123_subdomain(class);
        invalid_each(errs, "spec.ingressClassName", class, msgs);
    }
}

fn ingress_rule(rule: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let host_path = format!("{path}.host");
    if let Some(host) = str_at(rule, "host").filter(|h| !h.is_empty()) {
        if parse_ip(host).is_some() {
            errs.push(FieldError::invalid(&host_path, json!(host), NOT_AN_IP));
        }
        let msgs = if host.contains('*') {
            wildcard_subdomain(host)
        } else {
            v::dns1123_subdomain(host)
        };
        invalid_each(errs, &host_path, host, msgs);
    }
    let Some(http) = rule.get("http").filter(|h| !h.is_null()) else {
        return;
    };
    let paths = items(http.get("paths"));
    if paths.is_empty() {
        errs.push(FieldError::required(&format!("{path}.http.paths"), ""));
    }
    for (i, p) in paths.iter().enumerate() {
        http_path(p, &format!("{path}.http.paths[{i}]"), errs);
    }
}

fn http_path(p: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(path_type) = str_at(p, "pathType") else {
        errs.push(FieldError::required(
            &format!("{path}.pathType"),
            "pathType must be specified",
        ));
        return;
    };
    let value = str_at(p, "path").unwrap_or_default();
    let field = format!("{path}.path");
    match path_type {
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errs.push(FieldError::invalid(
                    &field,
                    json!(value),
                    "must be an absolute path",
                ));
            }
            for seq in INVALID_PATH_SEQUENCES.iter().filter(|s| value.contains(*s)) {
                errs.push(FieldError::invalid(
                    &field,
                    json!(value),
                    &format!("must not contain '{seq}'"),
                ));
            }
            for suffix in INVALID_PATH_SUFFIXES.iter().filter(|s| value.ends_with(*s)) {
                errs.push(FieldError::invalid(
                    &field,
                    json!(value),
                    &format!("cannot end with '{suffix}'"),
                ));
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(FieldError::invalid(
                    &field,
                    json!(value),
                    "must be an absolute path",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            &format!("{path}.pathType"),
            json!(other),
            PATH_TYPES,
        )),
    }
    ingress_backend(
        p.get("backend").unwrap_or(&Value::Null),
        &format!("{path}.backend"),
        errs,
    );
}

fn ingress_backend(backend: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let resource = backend.get("resource").filter(|r| !r.is_null());
    let service = backend.get("service").filter(|s| !s.is_null());
    match (resource, service) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            json!(""),
            "cannot set both resource and service backends",
        )),
        (Some(r), None) => typed_local_reference(r, &format!("{path}.resource"), errs),
        (None, Some(s)) => service_backend(s, path, errs),
        (None, None) => errs.push(FieldError::invalid(
            path,
            json!(""),
            "resource or service backend is required",
        )),
    }
}

fn service_backend(s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let name_path = format!("{path}.service.name");
    match str_at(s, "name").filter(|n| !n.is_empty()) {
        None => errs.push(FieldError::required(&name_path, "")),
        Some(name) => invalid_each(errs, &name_path, name, v::dns1035_label(name)),
    }
    let port = s.get("port");
    let name = port
        .and_then(|p| str_at(p, "name"))
        .filter(|n| !n.is_empty());
    let number = port
        .and_then(|p| p.get("number"))
        .and_then(Value::as_i64)
        .filter(|n| *n != 0);
    match (name, number) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            json!(""),
            "cannot set both port name & port number",
        )),
        (Some(n), None) => {
            let msgs = port_name(n);
            invalid_each(errs, &format!("{path}.service.port.name"), n, msgs);
        }
        (None, Some(n)) => {
            if !(1..=65535).contains(&n) {
                errs.push(FieldError::invalid(
                    &format!("{path}.service.port.number"),
                    json!(n),
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
        (None, None) => errs.push(FieldError::required(
            path,
            "port name or number is required",
        )),
    }
}

/// An Ingress backend's `resource` (a TypedLocalObjectReference).
fn typed_local_reference(r: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(group) = str_at(r, "apiGroup") {
        let msgs = v::dns1123_subdomain(group);
        invalid_each(errs, &format!("{path}.apiGroup"), group, msgs);
    }
    for key in ["kind", "name"] {
        let field = format!("{path}.{key}");
        match str_at(r, key).filter(|s| !s.is_empty()) {
            None => errs.push(FieldError::required(&field, "")),
            Some(s) => invalid_each(errs, &field, s, v::path_segment_name(s)),
        }
    }
}

/// Upstream's `IsValidPortName` (IANA service names).
fn port_name(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if name.len() > 15 {
        out.push("must be no more than 15 characters".to_string());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        out.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)".to_string());
    }
    if name.contains("--") {
        out.push("must not contain consecutive hyphens".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        out.push("must not begin or end with a hyphen".to_string());
    }
    out
}

/// Upstream's `IsWildcardDNS1123Subdomain`: `*.` then a DNS-1123 subdomain.
fn wildcard_subdomain(host: &str) -> Vec<String> {
    let mut out = Vec::new();
    if host.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    let ok = host
        .strip_prefix("*.")
        .is_some_and(|rest| v::dns1123_subdomain(rest).is_empty());
    if !ok {
        out.push(WILDCARD_MSG.to_string());
    }
    out
}

/// `status.loadBalancer.ingress[*]`: an IP must be an IP, a hostname a DNS name.
fn load_balancer_status(obj: &Value, errs: &mut Vec<FieldError>) {
    let entries = items(obj.pointer("/status/loadBalancer/ingress"));
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("status.loadBalancer.ingress[{i}]");
        if let Some(ip) = str_at(entry, "ip").filter(|s| !s.is_empty()) {
            if parse_ip(ip).is_none() {
                errs.push(FieldError::invalid(
                    &format!("{path}.ip"),
                    json!(ip),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ));
            }
        }
        if let Some(host) = str_at(entry, "hostname").filter(|s| !s.is_empty()) {
            let field = format!("{path}.hostname");
            invalid_each(errs, &field, host, v::dns1123_subdomain(host));
            if parse_ip(host).is_some() {
                errs.push(FieldError::invalid(&field, json!(host), NOT_AN_IP));
            }
        }
    }
}

/// Validates an IngressClass; on update its controller may not change.
pub fn ingress_class(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let controller = obj.pointer("/spec/controller").and_then(Value::as_str);
    if let Some(old) = old {
        let was = old.pointer("/spec/controller").and_then(Value::as_str);
        if controller != was {
            errs.push(FieldError::invalid(
                "spec.controller",
                controller.map_or(Value::Null, |c| json!(c)),
                "field is immutable",
            ));
        }
    }
    match controller.filter(|c| !c.is_empty()) {
        None => errs.push(FieldError::required("spec.controller", "")),
        Some(c) => {
            if c.len() > MAX_CONTROLLER_LEN {
                errs.push(FieldError {
                    kind: FieldErrorKind::TooLong,
                    field: "spec.controller".into(),
                    value: None,
                    detail: format!("may not be more than {MAX_CONTROLLER_LEN} bytes"),
                });
            }
            domain_prefixed_path("spec.controller", c, &mut errs);
        }
    }
    if let Some(params) = obj.pointer("/spec/parameters").filter(|p| !p.is_null()) {
        parameters_reference(params, "spec.parameters", &mut errs);
    }
    errs
}

/// Upstream's `IsDomainPrefixedPath` (`acme.io/foo`).
fn domain_prefixed_path(field: &str, value: &str, errs: &mut Vec<FieldError>) {
    let Some((host, path)) = value
        .split_once('/')
        .filter(|(h, p)| !h.is_empty() && !p.is_empty())
    else {
        errs.push(FieldError::invalid(
            field,
            json!(value),
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return;
    };
    invalid_each(errs, field, host, v::dns1123_subdomain(host));
    let http_path = path.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'/' | b'-'
                    | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
            )
    });
    if !http_path {
        errs.push(FieldError::invalid(field, json!(path), HTTP_PATH_MSG));
    }
}

/// An IngressClass's `spec.parameters` (IngressClassParametersReference).
fn parameters_reference(p: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(group) = str_at(p, "apiGroup") {
        let msgs = v::dns1123_subdomain(group);
        invalid_each(errs, &format!("{path}.apiGroup"), group, msgs);
    }
    for key in ["kind", "name"] {
        let field = format!("{path}.{key}");
        match str_at(p, key).filter(|s| !s.is_empty()) {
            None => errs.push(FieldError::required(&field, "")),
            Some(s) => invalid_each(errs, &field, s, v::path_segment_name(s)),
        }
    }
    let Some(scope) = str_at(p, "scope") else {
        errs.push(FieldError::required(&format!("{path}.scope"), ""));
        return;
    };
    let namespace = p.get("namespace").filter(|n| !n.is_null());
    match scope {
        "Namespace" => match namespace {
            None => errs.push(FieldError::required(
                &format!("{path}.namespace"),
                "`parameters.scope` is set to 'Namespace'",
            )),
            Some(ns) => {
                let ns = ns.as_str().unwrap_or_default();
                invalid_each(errs, &format!("{path}.namespace"), ns, dns_label(ns));
            }
        },
        "Cluster" => {
            if namespace.is_some() {
                errs.push(FieldError::forbidden(
                    &format!("{path}.namespace"),
                    "`parameters.scope` is set to 'Cluster'",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            &format!("{path}.scope"),
            json!(other),
            PARAMETER_SCOPES,
        )),
    }
}

/// Upstream's `IsDNS1123Label` (namespace names), which says so when the only
/// problem is dots.
fn dns_label(s: &str) -> Vec<String> {
    let msgs = v::dns1123_label(s);
    if !msgs.is_empty() && s.len() <= 63 && v::dns1123_subdomain(s).is_empty() {
        return vec!["must not contain dots".to_string()];
    }
    msgs
}

#[cfg(test)]
mod tests;

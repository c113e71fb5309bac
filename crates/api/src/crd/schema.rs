//! A custom resource against its structural schema (`openAPIV3Schema`):
//! validation with upstream's messages and field paths (kube-openapi's
//! `<path> in body must be of type integer: "string"`), pruning of fields the
//! schema does not declare, and defaulting from `default`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::validation::{FieldError, FieldErrorKind};

const PRESERVE: &str = "x-kubernetes-preserve-unknown-fields";
const EMBEDDED: &str = "x-kubernetes-embedded-resource";
const INT_OR_STRING: &str = "x-kubernetes-int-or-string";

/// Fields every object keeps whatever its schema says: upstream handles them
/// as ObjectMeta/TypeMeta, not by the schema.
const ROOT_META: &[&str] = &["apiVersion", "kind", "metadata"];

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The JSON type of `v` as kube-openapi names it in messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    match (want, type_name(v)) {
        ("number", "integer") => true,
        (w, got) => w == got,
    }
}

// ---------------------------------------------------------------- pruning

/// Removes every field of `obj` the schema does not declare (the root's
/// apiVersion, kind and metadata stay).
pub fn prune_object(schema: &Value, obj: &mut Value) {
    let Value::Object(map) = obj else { return };
    let props = schema.get("properties").and_then(Value::as_object);
    let preserve = flag(schema, PRESERVE);
    for (k, v) in map.iter_mut() {
        if ROOT_META.contains(&k.as_str()) {
            continue;
        }
        if let Some(s) = props.and_then(|p| p.get(k)) {
            prune(s, v);
        }
    }
    if !preserve {
        map.retain(|k, _| {
            ROOT_META.contains(&k.as_str()) || props.is_some_and(|p| p.contains_key(k))
        });
    }
}

fn prune(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let embedded = flag(schema, EMBEDDED);
            for (k, child) in map.iter_mut() {
                if embedded && ROOT_META.contains(&k.as_str()) {
                    continue;
                }
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(s), _) => prune(s, child),
                    (None, Some(s @ Value::Object(_))) => prune(s, child),
                    _ => {}
                }
            }
            let keep_all = flag(schema, PRESERVE)
                || additional.is_some_and(|a| a.is_object() || a == &Value::Bool(true));
            if !keep_all {
                map.retain(|k, _| {
                    (embedded && ROOT_META.contains(&k.as_str()))
                        || props.is_some_and(|p| p.contains_key(k))
                });
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    prune(s, item);
                }
            }
        }
        _ => {}
    }
}

/// The paths of the fields pruning would drop (`spec.foo`, `spec.items[0].bar`),
/// for `fieldValidation` as upstream reports them.
pub fn unknown_fields(schema: &Value, obj: &Value) -> Vec<String> {
    let mut pruned = obj.clone();
    prune_object(schema, &mut pruned);
    let mut out = Vec::new();
    missing(obj, &pruned, "", &mut out);
    out
}

fn missing(before: &Value, after: &Value, path: &str, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, v) in b {
                let p = join(path, k);
                match a.get(k) {
                    None => out.push(p),
                    Some(kept) => missing(v, kept, &p, out),
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (i, (v, kept)) in b.iter().zip(a).enumerate() {
                missing(v, kept, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- defaulting

/// Sets every absent (or null, where the schema is not nullable) field that
/// has a `default`, top-down, as upstream's structural defaulting.
pub fn default(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    let Some(d) = s.get("default") else { continue };
                    let nullable = flag(s, "nullable");
                    match map.get(k) {
                        None => {
                            map.insert(k.clone(), d.clone());
                        }
                        Some(Value::Null) if !nullable => {
                            map.insert(k.clone(), d.clone());
                        }
                        _ => {}
                    }
                }
                for (k, child) in map.iter_mut() {
                    if let Some(s) = props.get(k) {
                        default(s, child);
                    }
                }
            } else if let Some(s @ Value::Object(_)) = schema.get("additionalProperties") {
                for child in map.values_mut() {
                    default(s, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    default(s, item);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- validation

/// Checks a whole custom resource; `metadata` is checked as ObjectMeta
/// elsewhere, so the schema's word on it is not applied here.
pub fn validate_object(schema: &Value, obj: &Value, errs: &mut Vec<FieldError>) {
    let Value::Object(map) = obj else { return };
    let props = schema.get("properties").and_then(Value::as_object);
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !ROOT_META.contains(&r) && !map.contains_key(r) {
                errs.push(FieldError::required(r, ""));
            }
        }
    }
    for (k, v) in map {
        if ROOT_META.contains(&k.as_str()) {
            continue;
        }
        if let Some(s) = props.and_then(|p| p.get(k)) {
            validate(s, v, k, errs);
        }
    }
}

/// Checks `v` at `path` against `schema`, appending upstream-worded errors.
pub fn validate(schema: &Value, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        if flag(schema, "nullable") {
            return;
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            errs.push(type_error(path, t, v));
            return;
        }
        if flag(schema, INT_OR_STRING) {
            errs.push(type_error(path, "integer,string", v));
        }
        return;
    }
    if flag(schema, INT_OR_STRING) {
        if !matches!(type_name(v), "integer" | "string") {
            errs.push(type_error(path, "integer,string", v));
            return;
        }
    } else if let Some(t) = schema.get("type").and_then(Value::as_str) {
        if !type_matches(t, v) {
            errs.push(type_error(path, t, v));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let shown: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
            errs.push(FieldError::not_supported(path, v.clone(), &shown));
        }
    }
    match v {
        Value::String(s) => string(schema, s, v, path, errs),
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                number(schema, f, v, path, errs);
            }
        }
        Value::Array(items) => array(schema, items, v, path, errs),
        Value::Object(map) => object(schema, map, path, errs),
        _ => {}
    }
}

fn type_error(path: &str, want: &str, v: &Value) -> FieldError {
    let got = type_name(v);
    FieldError::invalid(
        path,
        Value::String(got.into()),
        &format!("{path} in body must be of type {want}: \"{got}\""),
    )
}

fn invalid(path: &str, v: &Value, detail: String) -> FieldError {
    FieldError::invalid(path, v.clone(), &format!("{path} in body {detail}"))
}

fn num(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

/// Prints a bound as Go's `%v` of a float64 does for these (integral ones bare).
fn bound(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

fn string(schema: &Value, s: &str, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let chars = s.chars().count() as f64;
    if let Some(max) = num(schema, "maxLength") {
        if chars > max {
            errs.push(FieldError {
                kind: FieldErrorKind::TooLong,
                field: path.to_string(),
                value: None,
                detail: format!("may not be more than {} bytes", bound(max)),
            });
        }
    }
    if let Some(min) = num(schema, "minLength") {
        if chars < min {
            errs.push(invalid(
                path,
                v,
                format!("should be at least {} chars long", bound(min)),
            ));
        }
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        if matches_pattern(p, s) == Some(false) {
            errs.push(invalid(path, v, format!("should match '{p}'")));
        }
    }
    if let Some(f) = schema.get("format").and_then(Value::as_str) {
        if !format_ok(f, s) {
            errs.push(invalid(path, v, format!("must be of type {f}: {s:?}")));
        }
    }
}

/// `None`: the pattern does not compile (upstream refuses such schemas).
fn matches_pattern(pattern: &str, s: &str) -> Option<bool> {
    static COMPILED: Mutex<Option<HashMap<String, regex::Regex>>> = Mutex::new(None);
    let mut guard = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(HashMap::new);
    if !cache.contains_key(pattern) {
        let re = regex::Regex::new(pattern).ok()?;
        if cache.len() > 1024 {
            cache.clear();
        }
        cache.insert(pattern.to_string(), re);
    }
    cache.get(pattern).map(|re| re.is_match(s))
}

/// The formats kube-openapi checks that CRDs commonly use; others pass.
fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "uuid" => {
            let hex: Vec<&str> = s.split('-').collect();
            hex.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
                && hex.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
        }
        "hostname" => crate::validation::dns1123_subdomain(s).is_empty(),
        _ => true,
    }
}

fn number(schema: &Value, f: f64, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let excl_max = flag(schema, "exclusiveMaximum");
    let excl_min = flag(schema, "exclusiveMinimum");
    if let Some(max) = num(schema, "maximum") {
        if excl_max && f >= max {
            errs.push(invalid(
                path,
                v,
                format!("should be less than {}", bound(max)),
            ));
        } else if f > max {
            errs.push(invalid(
                path,
                v,
                format!("should be less than or equal to {}", bound(max)),
            ));
        }
    }
    if let Some(min) = num(schema, "minimum") {
        if excl_min && f <= min {
            errs.push(invalid(
                path,
                v,
                format!("should be greater than {}", bound(min)),
            ));
        } else if f < min {
            errs.push(invalid(
                path,
                v,
                format!("should be greater than or equal to {}", bound(min)),
            ));
        }
    }
    if let Some(m) = num(schema, "multipleOf") {
        if m > 0.0 && (f / m).fract() != 0.0 {
            errs.push(invalid(
                path,
                v,
                format!("should be a multiple of {}", bound(m)),
            ));
        }
    }
}

fn array(schema: &Value, items: &[Value], v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let n = items.len() as f64;
    if let Some(max) = num(schema, "maxItems") {
        if n > max {
            errs.push(invalid(
                path,
                v,
                format!("should have at most {} items", bound(max)),
            ));
        }
    }
    if let Some(min) = num(schema, "minItems") {
        if n < min {
            errs.push(invalid(
                path,
                v,
                format!("should have at least {} items", bound(min)),
            ));
        }
    }
    if let Some(s) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(s, item, &format!("{path}[{i}]"), errs);
        }
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errs.push(FieldError::duplicate(&format!("{path}[{i}]"), item.clone()));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |item: &Value| -> Vec<Value> {
                keys.iter()
                    .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                    .collect()
            };
            for (i, item) in items.iter().enumerate() {
                let k = key_of(item);
                if items[..i].iter().any(|o| key_of(o) == k) {
                    let shown = match k.as_slice() {
                        [one] => one.clone(),
                        _ => Value::Array(k),
                    };
                    errs.push(FieldError::duplicate(&format!("{path}[{i}]"), shown));
                }
            }
        }
        _ => {}
    }
}

fn object(schema: &Value, map: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                errs.push(FieldError::required(&join(path, r), ""));
            }
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let embedded = flag(schema, EMBEDDED);
    for (k, child) in map {
        if embedded && k == "metadata" {
            continue;
        }
        match (props.and_then(|p| p.get(k)), additional) {
            (Some(s), _) | (None, Some(s)) => validate(s, child, &join(path, k), errs),
            _ => {}
        }
    }
    if embedded {
        for k in ["apiVersion", "kind"] {
            if map.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                errs.push(FieldError::required(&join(path, k), "must not be empty"));
            }
        }
    }
    let n = map.len() as f64;
    if let Some(max) = num(schema, "maxProperties") {
        if n > max {
            errs.push(FieldError::forbidden(
                path,
                &format!("must have at most {} properties", bound(max)),
            ));
        }
    }
    if let Some(min) = num(schema, "minProperties") {
        if n < min {
            errs.push(FieldError::invalid(
                path,
                Value::from(map.len()),
                &format!(
                    "{path} in body should have at least {} properties",
                    bound(min)
                ),
            ));
        }
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;

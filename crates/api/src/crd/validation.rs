//! A CustomResourceDefinition's own validation and defaults, with the field
//! paths and messages of upstream's `apiextensions/validation`.

use serde_json::{json, Value};

use crate::validation::{dns1035_label, dns1123_label, dns1123_subdomain, go_value, FieldError};

const COLUMN_TYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];
const SCHEMA_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// Upstream's finalizer: a definition stays until its objects are deleted.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// v1 defaults: `singular` and `listKind` from `kind`, conversion `None`; a
/// live definition carries the cleanup finalizer.
pub fn default(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if !meta.contains_key("deletionTimestamp") {
            let list = meta.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                if !list.iter().any(|f| f == CLEANUP_FINALIZER) {
                    list.push(json!(CLEANUP_FINALIZER));
                }
            }
        }
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !kind.is_empty() {
            names
                .entry("singular")
                .or_insert_with(|| json!(kind.to_lowercase()));
            names
                .entry("listKind")
                .or_insert_with(|| json!(format!("{kind}List")));
        }
    }
    spec.entry("conversion")
        .or_insert_with(|| json!({"strategy": "None"}));
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Kind and listKind may have mixed case but must otherwise be DNS-1035 labels.
fn kind_problem(kind: &str) -> bool {
    !dns1035_label(&kind.to_lowercase()).is_empty()
}

pub fn validate(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let group = s(&spec, "/group");
    let plural = s(&spec, "/names/plural");
    let name = s(obj, "/metadata/name");
    if name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        for p in dns1123_subdomain(group) {
            errs.push(FieldError::invalid("spec.group", json!(group), &p));
        }
        if group.split('.').count() < 2 {
            errs.push(FieldError::invalid(
                "spec.group",
                json!(group),
                "should be a domain with at least one dot",
            ));
        }
    }
    match s(&spec, "/scope") {
        "" => errs.push(FieldError::required("spec.scope", "")),
        "Cluster" | "Namespaced" => {}
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            json!(other),
            &["Cluster", "Namespaced"],
        )),
    }
    names(&spec, &mut errs);
    versions(&spec, &mut errs);
    match s(&spec, "/conversion/strategy") {
        "" | "None" => {}
        "Webhook" => errs.push(FieldError::forbidden(
            "spec.conversion.strategy",
            "skiff serves only the None conversion strategy",
        )),
        other => errs.push(FieldError::not_supported(
            "spec.conversion.strategy",
            json!(other),
            &["None", "Webhook"],
        )),
    }
    if let Some(old) = old {
        for (field, pointer) in [("spec.group", "/spec/group"), ("spec.scope", "/spec/scope")] {
            let new_v = s(obj, pointer);
            if s(old, pointer) != new_v {
                errs.push(FieldError::invalid(
                    field,
                    json!(new_v),
                    "field is immutable",
                ));
            }
        }
    }
    errs
}

fn names(spec: &Value, errs: &mut Vec<FieldError>) {
    let plural = s(spec, "/names/plural");
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    } else {
        for p in dns1123_label(plural) {
            errs.push(FieldError::invalid("spec.names.plural", json!(plural), &p));
        }
    }
    let singular = s(spec, "/names/singular");
    for p in dns1123_label(singular)
        .into_iter()
        .filter(|_| !singular.is_empty())
    {
        errs.push(FieldError::invalid(
            "spec.names.singular",
            json!(singular),
            &p,
        ));
    }
    for (field, pointer) in [
        ("spec.names.kind", "/names/kind"),
        ("spec.names.listKind", "/names/listKind"),
    ] {
        let v = s(spec, pointer);
        if v.is_empty() {
            if field == "spec.names.kind" {
                errs.push(FieldError::required(field, ""));
            }
        } else if kind_problem(v) {
            errs.push(FieldError::invalid(
                field,
                json!(v),
                "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
            ));
        }
    }
    let kind = s(spec, "/names/kind");
    if !kind.is_empty() && s(spec, "/names/listKind") == kind {
        errs.push(FieldError::invalid(
            "spec.names.listKind",
            json!(kind),
            "kind and listKind may not be the same",
        ));
    }
    let short = spec.pointer("/names/shortNames").and_then(Value::as_array);
    for (i, n) in short.into_iter().flatten().enumerate() {
        let n = n.as_str().unwrap_or_default();
        for p in dns1123_label(n) {
            errs.push(FieldError::invalid(
                &format!("spec.names.shortNames[{i}]"),
                json!(n),
                &p,
            ));
        }
    }
}

fn versions(spec: &Value, errs: &mut Vec<FieldError>) {
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
        return;
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            go_value("[]apiextensions.CustomResourceDefinitionVersion{...}"),
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions
        .iter()
        .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
    {
        errs.push(FieldError::invalid(
            "spec.versions",
            go_value("[]apiextensions.CustomResourceDefinitionVersion{...}"),
            "must have at least one served version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let name = s(v, "/name");
        if name.is_empty() {
            errs.push(FieldError::required(&format!("{path}.name"), ""));
        } else {
            for p in dns1035_label(name) {
                errs.push(FieldError::invalid(
                    &format!("{path}.name"),
                    json!(name),
                    &p,
                ));
            }
            if versions[..i].iter().any(|o| s(o, "/name") == name) {
                errs.push(FieldError::invalid(
                    &format!("{path}.name"),
                    json!(name),
                    "must be unique",
                ));
            }
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None | Some(Value::Null) => errs.push(FieldError::required(
                &format!("{path}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(schema) => {
                structural_root(schema, &format!("{path}.schema.openAPIV3Schema"), errs)
            }
        }
        scale(v, &path, errs);
        columns(v, &path, errs);
    }
}

fn structural_root(schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    match schema.get("type").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required(
            &format!("{path}.type"),
            "must not be empty at the root",
        )),
        Some("object") => {}
        Some(other) => errs.push(FieldError::invalid(
            &format!("{path}.type"),
            json!(other),
            "must be object at the root",
        )),
    }
    structural(schema, path, errs);
}

/// Every declared node has a type unless int-or-string or preserve-unknown-fields
/// says otherwise; types are the OpenAPI ones.
fn structural(schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, child) in props {
            let p = format!("{path}.properties[{k}]");
            node(child, &p, errs);
            structural(child, &p, errs);
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        let p = format!("{path}.items");
        node(items, &p, errs);
        structural(items, &p, errs);
    }
    if let Some(a) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        let p = format!("{path}.additionalProperties");
        node(a, &p, errs);
        structural(a, &p, errs);
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        if regex::Regex::new(p).is_err() {
            errs.push(FieldError::invalid(
                &format!("{path}.pattern"),
                json!(p),
                "must be a valid regular expression",
            ));
        }
    }
    if schema.get("type").and_then(Value::as_str) == Some("array") && schema.get("items").is_none()
    {
        errs.push(FieldError::required(
            &format!("{path}.items"),
            "must be specified",
        ));
    }
}

fn node(schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let exempt = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
        || schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
    match schema.get("type").and_then(Value::as_str) {
        None | Some("") if !exempt => errs.push(FieldError::required(
            &format!("{path}.type"),
            "must not be empty for specified object fields",
        )),
        Some(t) if !t.is_empty() && !SCHEMA_TYPES.contains(&t) => errs.push(
            FieldError::not_supported(&format!("{path}.type"), json!(t), SCHEMA_TYPES),
        ),
        _ => {}
    }
}

fn scale(v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(scale) = v.pointer("/subresources/scale") else {
        return;
    };
    let p = format!("{path}.subresources.scale");
    for (key, under) in [
        ("specReplicasPath", ".spec."),
        ("statusReplicasPath", ".status."),
    ] {
        let val = s(scale, &format!("/{key}"));
        if val.is_empty() {
            errs.push(FieldError::required(&format!("{p}.{key}"), ""));
        } else if !val.starts_with(under) {
            errs.push(FieldError::invalid(
                &format!("{p}.{key}"),
                json!(val),
                &format!(
                    "should be a json path under {}",
                    under.trim_end_matches('.')
                ),
            ));
        }
    }
}

fn columns(v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let cols = v.get("additionalPrinterColumns").and_then(Value::as_array);
    for (i, c) in cols.into_iter().flatten().enumerate() {
        let p = format!("{path}.additionalPrinterColumns[{i}]");
        if s(c, "/name").is_empty() {
            errs.push(FieldError::required(&format!("{p}.name"), ""));
        }
        match s(c, "/type") {
            "" => errs.push(FieldError::required(&format!("{p}.type"), "")),
            t if !COLUMN_TYPES.contains(&t) => errs.push(FieldError::not_supported(
                &format!("{p}.type"),
                json!(t),
                COLUMN_TYPES,
            )),
            _ => {}
        }
        if s(c, "/jsonPath").is_empty() {
            errs.push(FieldError::required(&format!("{p}.jsonPath"), ""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(spec: Value) -> Value {
        let mut o = json!({"metadata": {"name": "foos.example.com"}, "spec": spec});
        default(&mut o);
        o
    }

    fn good() -> Value {
        json!({"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "foos", "kind": "Foo"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "properties": {"spec": {"type": "object"}}}}}]})
    }

    fn errors(spec: Value) -> Vec<String> {
        validate(&crd(spec), None)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_definition_passes_and_is_defaulted() {
        assert!(errors(good()).is_empty());
        let o = crd(good());
        assert_eq!(o["spec"]["names"]["singular"], "foo");
        assert_eq!(o["spec"]["names"]["listKind"], "FooList");
        assert_eq!(o["spec"]["conversion"]["strategy"], "None");
    }

    #[test]
    fn bad_definitions() {
        let mut two_storage = good();
        two_storage["versions"] = json!([
            {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}},
            {"name": "v2", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}},
        ]);
        assert_eq!(
            errors(two_storage),
            ["spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: must have exactly one version marked as storage version"]
        );
        let mut no_schema = good();
        no_schema["versions"][0]["schema"] = Value::Null;
        assert_eq!(
            errors(no_schema),
            ["spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"]
        );
        let mut untyped = good();
        untyped["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = json!({});
        assert_eq!(
            errors(untyped),
            ["spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"]
        );
        let mut scope = good();
        scope["scope"] = json!("Galaxy");
        assert_eq!(
            errors(scope),
            [
                r#"spec.scope: Unsupported value: "Galaxy": supported values: "Cluster", "Namespaced""#
            ]
        );
        let mut dotless = good();
        dotless["group"] = json!("example");
        let got = errors(dotless);
        assert!(got.contains(&r#"metadata.name: Invalid value: "foos.example.com": must be spec.names.plural+"."+spec.group"#.to_string()), "{got:?}");
        assert!(got.contains(&r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#.to_string()), "{got:?}");
    }

    #[test]
    fn group_and_scope_are_immutable() {
        let old = crd(good());
        let mut new = old.clone();
        new["spec"]["scope"] = json!("Cluster");
        let errs: Vec<String> = validate(&new, Some(&old))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [r#"spec.scope: Invalid value: "Cluster": field is immutable"#]
        );
    }
}

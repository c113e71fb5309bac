//! The `definitions` of `/openapi/v2`: the upstream schemas the v3 documents serve
//! (openapi_schemas.rs), rewritten into the Swagger 2.0 shapes kube-openapi's v2
//! parser (the one inside kubectl) accepts, and marked with upstream's
//! `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key`.
//!
//! kubectl's client-side apply computes a strategic merge patch from these
//! definitions only for kinds whose PATCH operation consumes
//! `application/strategic-merge-patch+json`. The operations (mod.rs) do not list it,
//! as the v3 documents do not, so kubectl keeps using its compiled-in types, whose
//! merge keys are upstream's own. The marks are for the other readers of v2
//! (kustomize's `openapi fetch`, client libraries), and come from skiff-patch's merge
//! table, the one the server merges by.

use std::collections::{BTreeSet, HashSet};

use serde_json::{json, Map, Value};
use skiff_api::registry::Resource;
use skiff_patch::schema::{self as merge, GroupKind, TypeDef};

use crate::openapi_schemas;

const V3_REF: &str = "#/components/schemas/";
const V2_REF: &str = "#/definitions/";
const PATCH_STRATEGY: &str = "x-kubernetes-patch-strategy";
const PATCH_MERGE_KEY: &str = "x-kubernetes-patch-merge-key";

/// Keys a v2 schema keeps as they are (the rest are rebuilt or dropped).
const PLAIN_KEYS: &[&str] = &[
    "description",
    "title",
    "format",
    "pattern",
    "default",
    "enum",
    "required",
    "readOnly",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
];

/// The types a v2 schema may name; kube-openapi refuses any other.
const V2_TYPES: &[&str] = &["object", "array", "string", "number", "integer", "boolean"];

/// The schema name of a served kind (a custom resource's even when its CRD gives none).
pub(super) fn schema_name(r: &Resource) -> String {
    openapi_schemas::schema_name(r.group, r.version, r.kind)
        .unwrap_or_else(|| openapi_schemas::custom_schema_name(r.group, r.version, r.kind))
}

/// The definitions describing `kinds`, and everything they reference.
pub(super) fn definitions(kinds: &[&Resource]) -> Map<String, Value> {
    let gvks: Vec<(&str, &str, &str)> =
        kinds.iter().map(|r| (r.group, r.version, r.kind)).collect();
    let v3 = openapi_schemas::schemas_for(&gvks);
    let known: BTreeSet<&str> = v3.keys().map(String::as_str).collect();
    let mut defs: Map<String, Value> = v3
        .iter()
        .map(|(name, s)| (name.clone(), to_v2(s, &known)))
        .collect();
    for r in kinds {
        // A custom resource whose CRD gives no schema is still a kind kubectl can find.
        defs.entry(schema_name(r)).or_insert_with(|| {
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": r.group, "kind": r.kind, "version": r.version}],
            })
        });
    }
    let mut marked = HashSet::new();
    for r in kinds {
        // Custom resources take JSON merge patches from kubectl: nothing to mark.
        if !openapi_schemas::is_builtin(r.group, r.version, r.kind) {
            continue;
        }
        if let Some(root) = merge::root(&GroupKind::new(r.group, r.kind)) {
            mark_patch_strategies(&mut defs, &schema_name(r), root, &mut marked);
        }
    }
    defs
}

/// The definition a v3 schema refers to: `$ref`, or upstream's v3 idiom of a lone
/// `allOf: [{$ref}]` beside a description.
fn v3_reference(s: &Map<String, Value>) -> Option<&str> {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return r.strip_prefix(V3_REF);
    }
    match s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        Some([only]) => only.get("$ref")?.as_str()?.strip_prefix(V3_REF),
        _ => None,
    }
}

/// One v3 schema in v2 form. kube-openapi's v2 parser fails the whole document on
/// one schema it cannot read, so whatever v2 cannot say (`allOf` of several,
/// `anyOf`, `oneOf`, `not`, `nullable`, type lists, arrays without items, dangling
/// references) is left out, and the schema becomes the arbitrary value it then is.
fn to_v2(s: &Value, known: &BTreeSet<&str>) -> Value {
    let Value::Object(s) = s else {
        return json!({});
    };
    let mut out = Map::new();
    for (k, v) in s {
        if PLAIN_KEYS.contains(&k.as_str()) || k.starts_with("x-") {
            out.insert(k.clone(), v.clone());
        }
    }
    if let Some(target) = v3_reference(s) {
        // A reference carries only its description and extensions, as upstream's v2.
        out.retain(|k, _| k == "description" || k.starts_with("x-"));
        if known.contains(target) {
            out.insert("$ref".into(), json!(format!("{V2_REF}{target}")));
        }
        return Value::Object(out);
    }
    match schema_type(s) {
        Some("array") => {
            if let Some(items) = s.get("items").filter(|i| i.is_object()) {
                out.insert("type".into(), json!("array"));
                out.insert("items".into(), to_v2(items, known));
            }
        }
        Some(t) if t != "object" => {
            out.insert("type".into(), json!(t));
        }
        object_or_none => {
            if object_or_none.is_some() {
                out.insert("type".into(), json!("object"));
            }
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                let props: Map<String, Value> = props
                    .iter()
                    .map(|(k, v)| (k.clone(), to_v2(v, known)))
                    .collect();
                out.insert("properties".into(), Value::Object(props));
            }
            match s.get("additionalProperties") {
                Some(sub @ Value::Object(_)) => {
                    out.insert("additionalProperties".into(), to_v2(sub, known));
                }
                Some(b @ Value::Bool(_)) => {
                    out.insert("additionalProperties".into(), b.clone());
                }
                _ => {}
            }
        }
    }
    Value::Object(out)
}

/// The one type v2 can state for a schema: a type list counts only as `[T, "null"]`.
fn schema_type(s: &Map<String, Value>) -> Option<&str> {
    let t = match s.get("type")? {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => {
            let mut non_null = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null");
            match (non_null.next(), non_null.next()) {
                (Some(t), None) => t,
                _ => return None,
            }
        }
        _ => return None,
    };
    V2_TYPES.contains(&t).then_some(t)
}

/// The definition a v2 property leads to: itself, its items, or its map values.
fn v2_target(prop: &Map<String, Value>) -> Option<String> {
    fn reference(v: &Value) -> Option<&str> {
        v.get("$ref")?.as_str()?.strip_prefix(V2_REF)
    }
    [prop.get("items"), prop.get("additionalProperties")]
        .into_iter()
        .flatten()
        .find_map(reference)
        .or_else(|| prop.get("$ref")?.as_str()?.strip_prefix(V2_REF))
        .map(str::to_string)
}

/// Marks the fields of definition `name`, described by merge table `ty`, and of the
/// definitions below it that the table describes too.
fn mark_patch_strategies(
    defs: &mut Map<String, Value>,
    name: &str,
    ty: &'static TypeDef,
    marked: &mut HashSet<(String, &'static str)>,
) {
    if !marked.insert((name.to_string(), ty.name)) {
        return;
    }
    let Some(props) = defs
        .get_mut(name)
        .and_then(|d| d.get_mut("properties"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut below = Vec::new();
    for (field, prop) in props.iter_mut() {
        let Value::Object(prop) = prop else { continue };
        if let Some(strategy) = merge::patch_strategy(ty, field) {
            prop.insert(PATCH_STRATEGY.into(), json!(strategy));
        }
        if let Some(key) = merge::patch_merge_key(ty, field) {
            prop.insert(PATCH_MERGE_KEY.into(), json!(key));
        }
        if let Some(sub) = ty.field(field).and_then(|f| f.ty) {
            if let Some(target) = v2_target(prop) {
                below.push((target, sub));
            }
        }
    }
    for (target, sub) in below {
        mark_patch_strategies(defs, &target, sub, marked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::registry;

    fn all() -> Map<String, Value> {
        definitions(&registry::all())
    }

    #[test]
    fn references_are_v2_and_resolve() {
        let defs = all();
        let spec = &defs["io.k8s.api.core.v1.Service"]["properties"]["spec"];
        assert_eq!(spec["$ref"], "#/definitions/io.k8s.api.core.v1.ServiceSpec");
        assert!(spec.get("allOf").is_none());
        assert!(spec["description"].as_str().is_some());
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        // JSONSchemaProps has a property named `$ref`: an object.
                        match (k.as_str(), v) {
                            ("$ref", Value::String(r)) => out.push(r.clone()),
                            _ => refs(v, out),
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        for d in defs.values() {
            refs(d, &mut found);
        }
        assert!(!found.is_empty());
        for r in found {
            let name = r.strip_prefix(V2_REF).unwrap_or_else(|| panic!("{r}"));
            assert!(defs.contains_key(name), "dangling reference {r}");
        }
    }

    #[test]
    fn every_schema_is_one_kube_openapi_reads() {
        // What kube-openapi's ParseSchema refuses: a reference with a type or
        // properties, a type it does not know, an array without one item schema.
        fn check(path: &str, v: &Value) {
            let Some(o) = v.as_object() else {
                panic!("{path}: not an object")
            };
            if o.contains_key("$ref") {
                assert!(
                    !o.contains_key("type") && !o.contains_key("properties"),
                    "{path}"
                );
                return;
            }
            for k in ["allOf", "anyOf", "oneOf", "not", "nullable"] {
                assert!(!o.contains_key(k), "{path}: {k}");
            }
            if let Some(t) = o.get("type") {
                let t = t.as_str().unwrap_or_else(|| panic!("{path}: type list"));
                assert!(V2_TYPES.contains(&t), "{path}: {t}");
                if t == "array" {
                    check(&format!("{path}[]"), &o["items"]);
                }
            }
            for (k, sub) in o
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                check(&format!("{path}.{k}"), sub);
            }
            if let Some(sub @ Value::Object(_)) = o.get("additionalProperties") {
                check(&format!("{path}{{}}"), sub);
            }
        }
        for (name, d) in &all() {
            check(name, d);
        }
    }

    #[test]
    fn patch_marks_follow_the_merge_table() {
        let defs = all();
        let prop = |def: &str, field: &str| defs[def]["properties"][field].clone();
        let containers = prop("io.k8s.api.core.v1.PodSpec", "containers");
        assert_eq!(containers[PATCH_STRATEGY], "merge");
        assert_eq!(containers[PATCH_MERGE_KEY], "name");
        let volumes = prop("io.k8s.api.core.v1.PodSpec", "volumes");
        assert_eq!(volumes[PATCH_STRATEGY], "merge,retainKeys");
        let ports = prop("io.k8s.api.core.v1.Container", "ports");
        assert_eq!(ports[PATCH_MERGE_KEY], "containerPort");
        let mounts = prop("io.k8s.api.core.v1.Container", "volumeMounts");
        assert_eq!(mounts[PATCH_MERGE_KEY], "mountPath");
        let strategy = prop("io.k8s.api.apps.v1.DeploymentSpec", "strategy");
        assert_eq!(strategy[PATCH_STRATEGY], "retainKeys");
        let service_ports = prop("io.k8s.api.core.v1.ServiceSpec", "ports");
        assert_eq!(service_ports[PATCH_MERGE_KEY], "port");
        let finalizers = prop(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
        );
        assert_eq!(finalizers[PATCH_STRATEGY], "merge");
        assert!(finalizers.get(PATCH_MERGE_KEY).is_none());
        // Lists upstream replaces whole carry no mark.
        let tolerations = prop("io.k8s.api.core.v1.PodSpec", "tolerations");
        assert!(tolerations.get(PATCH_STRATEGY).is_none());
        let conditions = prop("io.k8s.api.apps.v1.DeploymentStatus", "conditions");
        assert_eq!(conditions[PATCH_MERGE_KEY], "type");
    }

    #[test]
    fn what_v2_cannot_say_becomes_an_arbitrary_value() {
        let known = BTreeSet::new();
        let int_or_string = json!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "description": "port",
        });
        assert_eq!(
            to_v2(&int_or_string, &known),
            json!({"x-kubernetes-int-or-string": true, "description": "port"})
        );
        assert_eq!(to_v2(&json!({"type": "array"}), &known), json!({}));
        assert_eq!(
            to_v2(
                &json!({"type": ["string", "null"], "nullable": true}),
                &known
            ),
            json!({"type": "string"})
        );
        // A reference to a schema the document does not hold is dropped, not dangling.
        assert_eq!(
            to_v2(
                &json!({"allOf": [{"$ref": "#/components/schemas/X"}], "description": "d"}),
                &known
            ),
            json!({"description": "d"})
        );
    }
}

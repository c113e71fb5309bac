//! Upstream's OpenAPI v3 component schemas for the built-in kinds, generated once from
//! the k8s-openapi types (their `schemars` implementations carry upstream's field
//! descriptions, types and formats), named as upstream names them
//! (`io.k8s.api.core.v1.Service`), with references in upstream's shape
//! (`allOf: [{$ref}]` beside a description) and each top-level kind tagged with
//! `x-kubernetes-group-version-kind`, which is how `kubectl explain` finds it.
//!
//! Custom resources' schemas come from their CustomResourceDefinitions: openapi.rs
//! calls [`set_custom_schema`] with a served version's `openAPIV3Schema` each time
//! it builds or checks a document, and [`remove_custom_schema`] when there is none.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{OnceLock, RwLock};

use k8s_openapi::api::{
    apps, batch, certificates, coordination, core, discovery, events, networking, policy, rbac,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

/// Where component schemas live in an OpenAPI v3 document.
const REF_PREFIX: &str = "#/components/schemas/";

/// A built-in kind: its group, version, kind, and how to generate its schema.
struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    name: fn() -> String,
    generate: fn(&mut SchemaGenerator),
}

fn builtin<T: k8s_openapi::Resource + JsonSchema>() -> Builtin {
    Builtin {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        name: || T::schema_name().into_owned(),
        generate: |g| {
            g.subschema_for::<T>();
        },
    }
}

/// Every built-in kind skiff can describe (a superset of the registry's static table).
fn builtins() -> Vec<Builtin> {
    vec![
        builtin::<core::v1::Namespace>(),
        builtin::<core::v1::Node>(),
        builtin::<core::v1::Pod>(),
        builtin::<core::v1::Service>(),
        builtin::<core::v1::Endpoints>(),
        builtin::<core::v1::Event>(),
        builtin::<core::v1::ConfigMap>(),
        builtin::<core::v1::Secret>(),
        builtin::<core::v1::ServiceAccount>(),
        builtin::<core::v1::ReplicationController>(),
        builtin::<apps::v1::Deployment>(),
        builtin::<apps::v1::ReplicaSet>(),
        builtin::<apps::v1::StatefulSet>(),
        builtin::<apps::v1::ControllerRevision>(),
        builtin::<apps::v1::DaemonSet>(),
        builtin::<batch::v1::Job>(),
        builtin::<batch::v1::CronJob>(),
        builtin::<discovery::v1::EndpointSlice>(),
        builtin::<networking::v1::NetworkPolicy>(),
        builtin::<networking::v1::Ingress>(),
        builtin::<networking::v1::IngressClass>(),
        builtin::<coordination::v1::Lease>(),
        builtin::<policy::v1::PodDisruptionBudget>(),
        builtin::<certificates::v1::CertificateSigningRequest>(),
        builtin::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>(),
        builtin::<rbac::v1::Role>(),
        builtin::<rbac::v1::RoleBinding>(),
        builtin::<rbac::v1::ClusterRole>(),
        builtin::<rbac::v1::ClusterRoleBinding>(),
        builtin::<apiextensions::v1::CustomResourceDefinition>(),
        builtin::<events::v1::Event>(),
    ]
}

/// The generated built-in schemas and, per (group, version, kind), the name of its schema.
struct Generated {
    schemas: Map<String, Value>,
    names: BTreeMap<(String, String, String), String>,
}

fn generated() -> &'static Generated {
    static GENERATED: OnceLock<Generated> = OnceLock::new();
    GENERATED.get_or_init(|| {
        let mut generator = SchemaSettings::openapi3().into_generator();
        let mut names = BTreeMap::new();
        let list = builtins();
        for b in &list {
            (b.generate)(&mut generator);
            names.insert(
                (
                    b.group.to_string(),
                    b.version.to_string(),
                    b.kind.to_string(),
                ),
                (b.name)(),
            );
        }
        let mut schemas = generator.take_definitions(true);
        for b in &list {
            if let Some(Value::Object(schema)) = schemas.get_mut(&(b.name)()) {
                schema.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([{"group": b.group, "kind": b.kind, "version": b.version}]),
                );
            }
        }
        Generated { schemas, names }
    })
}

/// Whether a kind is one of the built-in ones whose schemas never change.
pub fn is_builtin(group: &str, version: &str, kind: &str) -> bool {
    let key = (group.to_string(), version.to_string(), kind.to_string());
    generated().names.contains_key(&key)
}

/// The name of the component schema describing a kind, if there is one.
pub fn schema_name(group: &str, version: &str, kind: &str) -> Option<String> {
    let key = (group.to_string(), version.to_string(), kind.to_string());
    if let Some(name) = generated().names.get(&key) {
        return Some(name.clone());
    }
    custom_schemas()
        .read()
        .ok()?
        .contains_key(&key)
        .then(|| custom_schema_name(group, version, kind))
}

/// Upstream's name for a custom resource's schema: the group reversed, then version
/// and kind (`com.example.stable.v1.CronTab`).
pub fn custom_schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

type CustomSchemas = RwLock<BTreeMap<(String, String, String), Value>>;

fn custom_schemas() -> &'static CustomSchemas {
    static CUSTOM: OnceLock<CustomSchemas> = OnceLock::new();
    CUSTOM.get_or_init(|| RwLock::new(BTreeMap::new()))
}

/// Serves `schema` (a version's `openAPIV3Schema`) as the schema of a custom resource;
/// `apiVersion`, `kind` and `metadata` are described as upstream does when the CRD
/// leaves them out.
pub fn set_custom_schema(group: &str, version: &str, kind: &str, schema: &Value) {
    let mut schema = match schema {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    schema.entry("type").or_insert_with(|| json!("object"));
    let properties = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(props) = properties {
        let common = object_meta_properties();
        for (field, description) in common {
            props.entry(field).or_insert(description);
        }
    }
    schema.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([{"group": group, "kind": kind, "version": version}]),
    );
    if let Ok(mut all) = custom_schemas().write() {
        all.insert(
            (group.to_string(), version.to_string(), kind.to_string()),
            Value::Object(schema),
        );
    }
}

/// Stops serving a custom resource's schema.
pub fn remove_custom_schema(group: &str, version: &str, kind: &str) {
    if let Ok(mut all) = custom_schemas().write() {
        all.remove(&(group.to_string(), version.to_string(), kind.to_string()));
    }
}

/// `apiVersion`, `kind`, `metadata` as every upstream kind describes them.
fn object_meta_properties() -> Map<String, Value> {
    let service = generated()
        .schemas
        .get("io.k8s.api.core.v1.Service")
        .and_then(|s| s.get("properties"));
    let mut out = Map::new();
    for field in ["apiVersion", "kind", "metadata"] {
        if let Some(v) = service.and_then(|p| p.get(field)) {
            let mut v = v.clone();
            if field == "metadata" {
                // A Service's metadata description says "Standard object's metadata":
                // the same text upstream serves for custom resources.
                if let Value::Object(m) = &mut v {
                    m.remove("description");
                }
            }
            out.insert(field.to_string(), v);
        }
    }
    out
}

/// The component schemas a document serving `kinds` needs: each kind's schema and
/// everything it references, transitively.
pub fn schemas_for(kinds: &[(&str, &str, &str)]) -> Map<String, Value> {
    let builtins = &generated().schemas;
    let custom = custom_schemas().read().ok();
    let mut out = Map::new();
    let mut pending: Vec<String> = Vec::new();
    for (group, version, kind) in kinds {
        let key = (group.to_string(), version.to_string(), kind.to_string());
        if generated().names.contains_key(&key) {
            pending.extend(generated().names.get(&key).cloned());
        } else if let Some(schema) = custom.as_ref().and_then(|c| c.get(&key)) {
            let name = custom_schema_name(group, version, kind);
            collect_refs(schema, &mut pending);
            out.insert(name, schema.clone());
        }
    }
    let mut seen: BTreeSet<String> = out.keys().cloned().collect();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = builtins.get(&name) {
            collect_refs(schema, &mut pending);
            out.insert(name, schema.clone());
        }
    }
    out.sort_keys();
    out
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(REF_PREFIX) {
                            out.push(name.to_string());
                        }
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_static_kind_has_a_schema_with_its_gvk() {
        for r in skiff_api::registry::RESOURCES {
            let name = schema_name(r.group, r.version, r.kind)
                .unwrap_or_else(|| panic!("no schema for {}/{}", r.api_version(), r.kind));
            let schemas = schemas_for(&[(r.group, r.version, r.kind)]);
            let gvk = &schemas[&name]["x-kubernetes-group-version-kind"][0];
            assert_eq!(gvk["kind"], r.kind);
            assert_eq!(gvk["group"], r.group);
        }
    }

    #[test]
    fn service_ports_carry_upstream_text_and_references_resolve() {
        let schemas = schemas_for(&[("", "v1", "Service")]);
        let spec = &schemas["io.k8s.api.core.v1.Service"]["properties"]["spec"];
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.ServiceSpec"
        );
        let ports = &schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(ports["type"], "array");
        let port = &schemas["io.k8s.api.core.v1.ServicePort"];
        assert_eq!(
            port["description"],
            "ServicePort contains information on service's port."
        );
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["format"],
            "date-time"
        );
        let mut refs = Vec::new();
        for s in schemas.values() {
            collect_refs(s, &mut refs);
        }
        for r in refs {
            assert!(schemas.contains_key(&r), "dangling reference {r}");
        }
    }

    #[test]
    fn custom_schemas_are_named_by_reversed_group() {
        set_custom_schema(
            "stable.example.com",
            "v1",
            "CronTab",
            &json!({"type": "object", "properties": {"spec": {"type": "object"}}}),
        );
        assert_eq!(
            schema_name("stable.example.com", "v1", "CronTab").as_deref(),
            Some("com.example.stable.v1.CronTab")
        );
        let schemas = schemas_for(&[("stable.example.com", "v1", "CronTab")]);
        let s = &schemas["com.example.stable.v1.CronTab"];
        assert_eq!(s["x-kubernetes-group-version-kind"][0]["kind"], "CronTab");
        assert!(s["properties"]["metadata"].is_object());
        assert!(schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        remove_custom_schema("stable.example.com", "v1", "CronTab");
        assert!(schema_name("stable.example.com", "v1", "CronTab").is_none());
    }
}

//! OpenAPI v3 documents, enough for kubectl: each kind has a PATCH operation tagged
//! with its group-version-kind and a `fieldValidation` parameter, so kubectl leaves
//! validation to the server. The PATCH body deliberately does not list
//! strategic-merge-patch: kubectl then computes apply patches from its built-in
//! types, whose merge keys are exact, instead of from these schema-less documents.

use serde_json::{json, Map, Value};
use skiff_api::registry::{self, Resource};

/// The path segment a group-version's document is served under.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in registry::all() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

pub fn index() -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        let p = gv_path(g, v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", doc_hash(g, v))}),
        );
    }
    json!({"paths": paths})
}

fn doc_hash(group: &str, version: &str) -> String {
    // Stable across runs of the same build: the documents are derived from the registry.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{}{group}{version}", env!("CARGO_PKG_VERSION")).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

fn schema_name(r: &Resource) -> String {
    let pkg = match r.group {
        "" => "core".to_string(),
        g => g.split('.').next().unwrap_or(g).to_string(),
    };
    format!("io.k8s.api.{pkg}.{}.{}", r.version, r.kind)
}

fn patch_operation(r: &Resource) -> Value {
    let content = json!({
        "application/json-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
        "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
        "application/apply-patch+yaml": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
    });
    let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
        .iter()
        .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
        .collect();
    json!({
        "operationId": format!("patch{}", r.kind),
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": params,
        "requestBody": {"content": content, "required": true},
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", schema_name(r))}}}}},
    })
}

/// The document for one group-version, or `None` if it is not served.
pub fn document(path: &str) -> Option<Value> {
    let (g, v) = group_versions()
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path.trim_matches('/'))?;
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({"type": "object", "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}),
    );
    for r in registry::resources_in(g, v) {
        let base = format!("/{}", gv_path(g, v));
        let item = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        paths.insert(item, json!({"patch": patch_operation(r)}));
        schemas.insert(
            schema_name(r),
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": r.kind}],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                },
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

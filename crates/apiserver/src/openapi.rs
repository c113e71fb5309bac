//! OpenAPI v3 documents: one per group-version, with upstream's component schemas for
//! every served kind (openapi_schemas.rs), so `kubectl explain` prints upstream's
//! field descriptions, and a PATCH operation per kind tagged with its
//! group-version-kind and a `fieldValidation` parameter, so kubectl leaves
//! validation to the server. The PATCH body deliberately does not list
//! strategic-merge-patch: kubectl then computes client-side apply patches from its
//! built-in types, whose merge keys are exact (the generated schemas carry no
//! `x-kubernetes-patch-merge-key`), instead of from these documents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};
use skiff_api::registry::{self, Resource};

use crate::openapi_schemas;

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
        let Some(doc) = cached_document(g, v) else {
            continue;
        };
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", doc.hash)}),
        );
    }
    json!({"paths": paths})
}

/// A built document and the hash its URL carries (upstream: the SHA-512 of the
/// document, upper-case hex; clients cache documents by it).
struct Built {
    fingerprint: String,
    document: Arc<Value>,
    hash: String,
}

/// Documents are rebuilt only when what they describe changes (a custom resource's
/// schema, or the group-version's resources).
fn cached_document(group: &str, version: &str) -> Option<Arc<Built>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Built>>>> = OnceLock::new();
    let kinds: Vec<&'static Resource> = registry::resources_in(group, version).collect();
    if kinds.is_empty() {
        return None;
    }
    let fingerprint = fingerprint(&kinds);
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = gv_path(group, version);
    if let Some(b) = cache.lock().ok()?.get(&key) {
        if b.fingerprint == fingerprint {
            return Some(b.clone());
        }
    }
    let document = build_document(group, version, &kinds);
    let bytes = serde_json::to_vec(&document).unwrap_or_default();
    let hash: String = Sha512::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let built = Arc::new(Built {
        fingerprint,
        document: Arc::new(document),
        hash,
    });
    cache.lock().ok()?.insert(key, built.clone());
    Some(built)
}

pub(crate) fn fingerprint(kinds: &[&Resource]) -> String {
    let mut out = String::new();
    for r in kinds {
        out.push_str(&format!("{}/{}/{};", r.plural, r.kind, r.namespaced));
        if openapi_schemas::is_builtin(r.group, r.version, r.kind) {
            continue;
        }
        sync_custom_schema(r);
        let custom = openapi_schemas::schemas_for(&[(r.group, r.version, r.kind)]);
        out.push_str(&serde_json::to_string(&custom).unwrap_or_default());
    }
    out
}

/// A custom resource's schema as its CustomResourceDefinition has it now (the
/// version's `openAPIV3Schema`), or none when the definition gives none.
fn sync_custom_schema(r: &Resource) {
    let schema = skiff_api::crd::definition_of(r).and_then(|def| {
        def.version(r.version)
            .map(|v| v.schema.clone())
            .filter(Value::is_object)
    });
    match schema {
        Some(schema) => openapi_schemas::set_custom_schema(r.group, r.version, r.kind, &schema),
        None => openapi_schemas::remove_custom_schema(r.group, r.version, r.kind),
    }
}

fn schema_name(r: &Resource) -> String {
    openapi_schemas::schema_name(r.group, r.version, r.kind)
        .unwrap_or_else(|| openapi_schemas::custom_schema_name(r.group, r.version, r.kind))
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
pub fn document(path: &str) -> Option<Arc<Value>> {
    let (g, v) = group_versions()
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path.trim_matches('/'))?;
    Some(cached_document(g, v)?.document.clone())
}

fn build_document(g: &str, v: &str, kinds: &[&Resource]) -> Value {
    let mut paths = Map::new();
    let gvks: Vec<(&str, &str, &str)> =
        kinds.iter().map(|r| (r.group, r.version, r.kind)).collect();
    let mut schemas = openapi_schemas::schemas_for(&gvks);
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({"type": "object", "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}),
    );
    for r in kinds {
        let base = format!("/{}", gv_path(g, v));
        let item = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        paths.insert(item, json!({"patch": patch_operation(r)}));
        // A kind without a schema of its own (a custom resource whose CRD gave none)
        // is still described as an object, so explain finds it.
        schemas.entry(schema_name(r)).or_insert_with(|| {
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": r.group, "kind": r.kind, "version": r.version}],
                "x-kubernetes-preserve-unknown-fields": true,
            })
        });
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

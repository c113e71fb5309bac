//! `/openapi/v2`: one Swagger 2.0 document for every served kind, with a PATCH
//! operation per kind (tagged with its group-version-kind and a `fieldValidation`
//! parameter, which kubectl 1.27 and 1.28 look for) and upstream's schemas as
//! `definitions` (definitions.rs), which `kubectl explain --output
//! plaintext-openapiv2` and other clients read (kubectl's client-side apply fetches
//! it too, but computes its patches from its compiled-in types: see
//! `patch_operation`).
//!
//! The document is built as JSON and served either way: as JSON to clients that ask
//! for it, and as gnostic protobuf (gnostic.rs) to kubectl. Both are built once and
//! rebuilt only when the served kinds or a custom resource's schema change.

mod definitions;
mod gnostic;

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde_json::{json, Map, Value};
use skiff_api::registry::{self, Resource};

/// The two encodings of one version of the document.
struct Built {
    fingerprint: String,
    json: Bytes,
    protobuf: Bytes,
}

fn item_path(r: &Resource) -> String {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
    } else {
        format!("{base}/{}/{{name}}", r.plural)
    }
}

/// A kind's PATCH operation. Like v3's, it does not offer strategic merge patch:
/// kubectl then computes client-side apply patches from its compiled-in types, not
/// from the definitions (see definitions.rs).
fn patch_operation(r: &Resource) -> Value {
    let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
        .iter()
        .map(|p| json!({"name": p, "in": "query", "type": "string", "uniqueItems": true}))
        .collect();
    json!({
        "operationId": format!("patch{}", r.kind),
        "consumes": [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ],
        "produces": ["application/json", "application/yaml"],
        "parameters": params,
        "responses": {"200": {
            "description": "OK",
            "schema": {"$ref": format!("#/definitions/{}", definitions::schema_name(r))},
        }},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": r.group, "kind": r.kind, "version": r.version},
    })
}

/// The document, as JSON.
fn build(kinds: &[&Resource]) -> Value {
    let mut paths = Map::new();
    for r in kinds {
        paths.insert(item_path(r), json!({"patch": patch_operation(r)}));
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": definitions::definitions(kinds),
    })
}

fn built() -> Arc<Built> {
    static CACHE: OnceLock<Mutex<Option<Arc<Built>>>> = OnceLock::new();
    let kinds = registry::all();
    let fingerprint = crate::openapi::fingerprint(&kinds);
    let cache = CACHE.get_or_init(|| Mutex::new(None));
    if let Ok(guard) = cache.lock() {
        if let Some(b) = guard.as_ref().filter(|b| b.fingerprint == fingerprint) {
            return b.clone();
        }
    }
    let doc = build(&kinds);
    let built = Arc::new(Built {
        fingerprint,
        json: Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
        protobuf: Bytes::from(gnostic::document(&doc).into_bytes()),
    });
    if let Ok(mut guard) = cache.lock() {
        *guard = Some(built.clone());
    }
    built
}

/// The document as gnostic protobuf, which kubectl asks for.
pub fn protobuf() -> Bytes {
    built().protobuf.clone()
}

/// The document as JSON.
pub fn json() -> Bytes {
    built().json.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings_hold_the_patch_operations_and_the_schemas() {
        let doc: Value = serde_json::from_slice(&json()).unwrap_or_default();
        assert_eq!(doc["swagger"], "2.0");
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert_eq!(
            op["responses"]["200"]["schema"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
        assert!(doc["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());

        let proto = protobuf();
        assert!(proto.starts_with(&[0x0a, 3, b'2', b'.', b'0']));
        let text = String::from_utf8_lossy(&proto);
        assert!(text.contains("/apis/apps/v1/namespaces/{namespace}/deployments/{name}"));
        assert!(text.contains("io.k8s.api.core.v1.ServicePort"));
        assert!(text.contains("x-kubernetes-patch-merge-key"));
    }
}

//! Serving CustomResourceDefinitions: a watch of the definitions registers
//! their resources with the registry (`skiff_api::crd::registered`), then
//! reports `NamesAccepted` and `Established` in the definition's status, as
//! upstream's naming and establishing controllers do. A deleted definition
//! (upstream's `customresourcecleanup.apiextensions.k8s.io` finalizer) stops
//! being served, its objects are deleted, and then its finalizer is removed.

mod names;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skiff_api::crd::{registered, Definition};
use skiff_api::registry::{self, Resource};
use skiff_store::{Event, Revision};

use crate::objects;
use crate::request::{Query, Target};
use crate::rest::{self, WriteOptions};
use crate::server::Api;

use skiff_api::crd::validation::CLEANUP_FINALIZER;

/// The field manager the status writes are recorded under.
const MANAGER: &str = "skiff-apiextensions";

fn definitions() -> Option<&'static Resource> {
    registry::lookup(skiff_api::crd::GROUP, "v1", "customresourcedefinitions")
}

/// Lists the definitions, then follows the watch; lists again whenever the
/// watch ends, for as long as the server runs.
pub async fn run(api: Arc<Api>) {
    let Some(resource) = definitions() else {
        return;
    };
    loop {
        let from: Revision = match api.objects.list(resource, None, None, None).await {
            Ok(page) => {
                let names: Vec<String> = page
                    .items
                    .iter()
                    .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect();
                registered::retain(|n| names.iter().any(|m| m == n));
                for crd in &page.items {
                    reconcile(&api, resource, crd, &page.items).await;
                }
                page.revision
            }
            Err(e) => {
                tracing::debug!(error = %e, "crd: listing failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut watch = match api.objects.watch(resource, None, from) {
            Ok(w) => w,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while let Some(Ok(event)) = watch.next().await {
            let Ok(crd) = objects::decode(event.kv()) else {
                continue;
            };
            match event {
                Event::Put { .. } => {
                    // Name conflicts are judged against every other definition.
                    let all = match api.objects.list(resource, None, None, None).await {
                        Ok(p) => p.items,
                        Err(_) => vec![crd.clone()],
                    };
                    reconcile(&api, resource, &crd, &all).await;
                }
                Event::Delete { .. } => stop_serving(&crd),
            }
        }
    }
}

fn name_of(crd: &Value) -> &str {
    crd.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Stops serving the resources of `crd` (deleted, or being deleted).
fn stop_serving(crd: &Value) {
    registered::unregister(name_of(crd));
    if let Some(def) = Definition::from_object(crd) {
        skiff_patch::schema::custom::unregister(&def.group, &def.kind);
    }
}

/// Brings the served resources and the definition's status in line with it.
async fn reconcile(api: &Api, resource: &'static Resource, crd: &Value, all: &[Value]) {
    let name = name_of(crd).to_string();
    if crd.pointer("/metadata/deletionTimestamp").is_some() {
        stop_serving(crd);
        if let Err(e) = clean_up(api, resource, crd).await {
            tracing::warn!(crd = %name, error = %e.message, "crd: cleaning up objects failed");
        }
        return;
    }
    let Some(def) = Definition::from_object(crd) else {
        return;
    };
    let conflict = names::conflict(crd, all);
    if conflict.is_none() {
        // Server-side apply merges by the storage version's list types and keys.
        if let Some(v) = def.storage_version().filter(|v| v.schema.is_object()) {
            skiff_patch::schema::custom::register(&def.group, &def.kind, &v.schema);
        }
        if let Err(e) = registered::register(def.clone()) {
            tracing::warn!(crd = %name, error = %e, "crd: not served");
            return;
        }
    }
    let status = names::status(crd, &def, conflict.as_deref());
    if crd.get("status").map(names::without_times) == Some(names::without_times(&status)) {
        return;
    }
    let t = Target {
        resource,
        namespace: None,
        name: Some(name.clone()),
        subresource: Some("status".into()),
    };
    let opts = write_options();
    let result = rest::patch_with(api, &t, &opts, |cur| {
        let mut next = cur.clone();
        next["status"] = names::status(cur, &def, conflict.as_deref());
        Ok(next)
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(crd = %name, error = %e.message, "crd: status write failed");
    }
}

fn write_options() -> WriteOptions {
    let mut opts = WriteOptions::from_query(&Query::default()).unwrap_or(WriteOptions {
        dry_run: false,
        validation: crate::body::FieldValidation::Warn,
        field_manager: None,
    });
    opts.field_manager = Some(MANAGER.to_string());
    opts
}

/// Deletes every object of the definition (all its versions share one
/// storage prefix), then drops the cleanup finalizer so the definition goes.
async fn clean_up(
    api: &Api,
    resource: &'static Resource,
    crd: &Value,
) -> Result<(), skiff_api::StatusError> {
    let finalizers = crd
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
        return Ok(());
    }
    if let Some(def) = Definition::from_object(crd) {
        let prefix = format!("/registry/{}/{}/", def.group, def.plural);
        let backend = api.objects.backend().clone();
        tokio::task::spawn_blocking(move || -> Result<(), skiff_store::Error> {
            loop {
                let page = backend.list(&prefix, None, Some(500))?;
                if page.items.is_empty() {
                    return Ok(());
                }
                for kv in page.items {
                    // Gone already (another server cleaning too) is fine.
                    let _ = backend.delete(&kv.key, None);
                }
            }
        })
        .await
        .map_err(|e| skiff_api::StatusError::internal(e.to_string()))?
        .map_err(objects::store_failure)?;
    }
    let t = Target {
        resource,
        namespace: None,
        name: Some(name_of(crd).to_string()),
        subresource: None,
    };
    rest::patch_with(api, &t, &write_options(), |cur| {
        let mut next = cur.clone();
        if let Some(list) = next
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            list.retain(|f| f != CLEANUP_FINALIZER);
        }
        Ok(next)
    })
    .await
    .map(|_| ())
}

//! Service-specific server behaviour (issue 3): ClusterIP, NodePort and
//! LoadBalancer address allocation, and the built-in `kubernetes` and `kube-dns`
//! services. The REST layer calls these hooks for every Service write.

use serde_json::Value;
use skiff_api::registry::Resource;
use skiff_api::StatusError;

use crate::server::Api;

fn is_service(resource: &Resource) -> bool {
    (resource.group, resource.kind) == ("", "Service")
}

/// Before a Service is stored for the first time.
pub async fn before_create(
    api: &Api,
    resource: &Resource,
    obj: &mut Value,
) -> Result<(), StatusError> {
    let _ = (api, obj);
    if !is_service(resource) {
        return Ok(());
    }
    Ok(())
}

/// Before an update of a Service is stored (`old` is what is stored now).
pub async fn before_update(
    api: &Api,
    resource: &Resource,
    old: &Value,
    new: &mut Value,
) -> Result<(), StatusError> {
    let _ = (api, old, new);
    if !is_service(resource) {
        return Ok(());
    }
    Ok(())
}

/// After a write: `stored` is `Ok` when it reached the store. Allocations made
/// for a write that failed must be released here.
pub fn after_write(api: &Api, resource: &Resource, old: Option<&Value>, new: &Value, stored: bool) {
    let _ = (api, old, new, stored);
    if !is_service(resource) {}
}

/// After a Service was removed from the store.
pub fn after_delete(api: &Api, resource: &Resource, removed: &Value) {
    let _ = (api, removed);
    if !is_service(resource) {}
}

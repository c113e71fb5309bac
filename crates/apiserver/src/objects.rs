//! Objects on top of the store: JSON in, JSON out, `resourceVersion` = the
//! store revision, and store errors turned into upstream's `Status` errors.

use std::sync::Arc;

use serde_json::Value;
use skiff_api::registry::Resource;
use skiff_api::StatusError;
use skiff_store::{Backend, Error as StoreError, KeyValue, Revision, Watch};

/// The one gateway from the API server to the store.
#[derive(Clone)]
pub struct Objects {
    backend: Arc<dyn Backend>,
}

/// One page of a list.
pub struct Page {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub last_key: Option<String>,
    /// Whether objects follow this page.
    pub more: bool,
    /// How many, where the store counts them ([`skiff_store::ListResult::remaining`]).
    pub remaining: Option<usize>,
}

fn store_error(resource: &Resource, name: &str, err: StoreError) -> StatusError {
    match err {
        StoreError::NotFound { .. } => StatusError::not_found(resource, name),
        StoreError::AlreadyExists { .. } => StatusError::already_exists(resource, name),
        StoreError::Conflict { .. } => StatusError::stale(resource, name),
        StoreError::Compacted {
            requested,
            compacted,
        } => StatusError::expired(requested, compacted),
        other => store_failure(other),
    }
}

/// A store failure that is not about one object: 503 `ServiceUnavailable` while the
/// store cannot be reached (nothing is wrong with the request, so clients retry it; the
/// message names the store, e.g. "etcd is unreachable (...): ..."), 500 otherwise.
pub fn store_failure(err: StoreError) -> StatusError {
    match err {
        StoreError::Unavailable(_) => StatusError {
            code: 503,
            reason: "ServiceUnavailable",
            message: err.to_string(),
            details: None,
        },
        other => StatusError::internal(other.to_string()),
    }
}

/// Parses a stored value as `resource` serves it, with its revision stamped.
pub fn decode_as(resource: &Resource, kv: &KeyValue) -> Result<Value, StatusError> {
    decode(kv).map(|o| crate::convert::from_storage(resource, o))
}

/// Parses a stored value (in its storage shape) and stamps its revision as
/// `metadata.resourceVersion`.
pub fn decode(kv: &KeyValue) -> Result<Value, StatusError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| StatusError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        skiff_api::canonical::set_resource_version(meta, revision.to_string());
    }
    skiff_api::canonical::order_fields(obj);
}

fn encode(resource: &Resource, obj: &Value) -> Result<Vec<u8>, StatusError> {
    // The revision lives in the store row, not in the stored bytes.
    let mut copy = crate::convert::to_storage(resource, obj);
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        // shift_remove: `remove` swaps the last field into its place.
        meta.shift_remove("resourceVersion");
    }
    serde_json::to_vec(&copy).map_err(|e| StatusError::internal(e.to_string()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StatusError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StatusError::internal(format!("store task failed: {e}")))
}

impl Objects {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub async fn get(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, StatusError> {
        let key = resource.key(namespace, name);
        let b = self.backend.clone();
        let kv = blocking(move || b.get(&key))
            .await?
            .map_err(|e| store_error(resource, name, e))?;
        match kv {
            Some(kv) => decode_as(resource, &kv),
            None => Err(StatusError::not_found(resource, name)),
        }
    }

    pub async fn get_opt(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, StatusError> {
        match self.get(resource, namespace, name).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn list(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        start_after: Option<String>,
        limit: Option<usize>,
    ) -> Result<Page, StatusError> {
        let prefix = resource.key_prefix(namespace);
        let b = self.backend.clone();
        let res = blocking(move || b.list(&prefix, start_after.as_deref(), limit))
            .await?
            .map_err(|e| store_error(resource, "", e))?;
        let last_key = res.items.last().map(|kv| kv.key.clone());
        let items = res
            .items
            .iter()
            .map(|kv| decode_as(resource, kv))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            revision: res.revision,
            last_key,
            more: res.more,
            remaining: res.remaining,
        })
    }

    pub async fn create(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, StatusError> {
        let key = resource.key(namespace, name);
        let bytes = encode(resource, obj)?;
        let b = self.backend.clone();
        let kv = blocking(move || b.create(&key, &bytes))
            .await?
            .map_err(|e| store_error(resource, name, e))?;
        let mut out = obj.clone();
        set_resource_version(&mut out, kv.mod_revision);
        Ok(out)
    }

    pub async fn update(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        obj: &Value,
        expected: Revision,
    ) -> Result<Value, StatusError> {
        let key = resource.key(namespace, name);
        let bytes = encode(resource, obj)?;
        let b = self.backend.clone();
        let kv = blocking(move || b.update(&key, &bytes, expected))
            .await?
            .map_err(|e| store_error(resource, name, e))?;
        let mut out = obj.clone();
        set_resource_version(&mut out, kv.mod_revision);
        Ok(out)
    }

    pub async fn delete(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        expected: Option<Revision>,
    ) -> Result<Value, StatusError> {
        let key = resource.key(namespace, name);
        let b = self.backend.clone();
        let kv = blocking(move || b.delete(&key, expected))
            .await?
            .map_err(|e| store_error(resource, name, e))?;
        decode_as(resource, &kv)
    }

    pub fn watch(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        after: Revision,
    ) -> Result<Watch, StatusError> {
        self.backend
            .watch(&resource.key_prefix(namespace), after)
            .map_err(|e| store_error(resource, "", e))
    }

    pub async fn current_revision(&self) -> Result<Revision, StatusError> {
        let b = self.backend.clone();
        blocking(move || b.current_revision())
            .await?
            .map_err(store_failure)
    }
}

/// The revision an object was read at, from its `metadata.resourceVersion`.
pub fn revision_of(obj: &Value) -> Option<Revision> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

//! The namespaces as every namespaced create must know them (upstream's
//! NamespaceLifecycle admission answers from an informer's cache): whether a
//! namespace exists and whether it is terminating, kept current by a watch on
//! the store, so a create costs the store one write instead of a consistent
//! read plus a write (on etcd the read costs as much as the write).
//!
//! A namespace the cache does not know yet (made a moment ago through another
//! server) is read from the store, as upstream falls back to a live lookup; a
//! namespace deleted a moment ago may still admit a create until the watch
//! delivers the delete, as upstream's may, and the namespace lifecycle removes
//! such stragglers with the rest of its content.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use skiff_api::registry::{self, Resource};
use skiff_store::{Event, Revision};

use crate::objects;
use crate::server::Api;

/// Whether each known namespace is terminating.
#[derive(Debug, Default)]
pub struct NamespaceCache {
    known: RwLock<HashMap<String, bool>>,
    /// False until the first listing is in: before that every lookup misses.
    synced: AtomicBool,
}

/// What the cache says about a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Active,
    Terminating,
    /// Not in the cache: ask the store.
    Unknown,
}

impl NamespaceCache {
    pub fn lookup(&self, name: &str) -> Known {
        if !self.synced.load(Ordering::Acquire) {
            return Known::Unknown;
        }
        match self.read().get(name) {
            Some(false) => Known::Active,
            Some(true) => Known::Terminating,
            None => Known::Unknown,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, bool>> {
        self.known.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, bool>> {
        self.known.write().unwrap_or_else(|e| e.into_inner())
    }

    fn replace(&self, items: &[Value]) {
        let fresh = items.iter().filter_map(entry).collect();
        *self.write() = fresh;
        self.synced.store(true, Ordering::Release);
    }

    fn apply(&self, event: &Event) {
        let Ok(obj) = objects::decode(event.kv()) else {
            return;
        };
        match event {
            Event::Put { .. } => {
                if let Some((name, terminating)) = entry(&obj) {
                    self.write().insert(name, terminating);
                }
            }
            Event::Delete { .. } => {
                if let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) {
                    self.write().remove(name);
                }
            }
        }
    }

    /// Until the watch is back, lookups go to the store.
    fn unsync(&self) {
        self.synced.store(false, Ordering::Release);
    }
}

fn entry(ns: &Value) -> Option<(String, bool)> {
    let name = ns.pointer("/metadata/name").and_then(Value::as_str)?;
    let terminating = ns.pointer("/metadata/deletionTimestamp").is_some();
    Some((name.to_string(), terminating))
}

fn namespaces() -> Option<&'static Resource> {
    registry::lookup("", "v1", "namespaces")
}

/// Lists the namespaces, then follows the watch; lists again whenever the
/// watch ends (compaction, a store outage), for as long as the server runs.
pub async fn run(api: Arc<Api>) {
    let Some(resource) = namespaces() else {
        return;
    };
    loop {
        let from: Revision = match api.objects.list(resource, None, None, None).await {
            Ok(page) => {
                api.namespace_cache.replace(&page.items);
                page.revision
            }
            Err(e) => {
                tracing::debug!(error = %e, "namespace cache: listing failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut watch = match api.objects.watch(resource, None, from) {
            Ok(w) => w,
            Err(_) => {
                api.namespace_cache.unsync();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while let Some(Ok(event)) = watch.next().await {
            api.namespace_cache.apply(&event);
        }
        api.namespace_cache.unsync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookups_miss_until_synced_then_follow_the_namespaces() {
        let c = NamespaceCache::default();
        assert_eq!(c.lookup("default"), Known::Unknown);
        c.replace(&[
            json!({"metadata": {"name": "default"}}),
            json!({"metadata": {"name": "old", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        ]);
        assert_eq!(c.lookup("default"), Known::Active);
        assert_eq!(c.lookup("old"), Known::Terminating);
        assert_eq!(c.lookup("new"), Known::Unknown);
        c.unsync();
        assert_eq!(c.lookup("default"), Known::Unknown);
    }
}

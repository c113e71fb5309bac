//! An experiment, off by default (`--experiment-cached-namespace`): the etcd-backed API
//! server's store with the bench namespace's reads answered from memory once seen.
//!
//! Every create checks its namespace with a `get`, which on etcd is a linearizable
//! Range (as much etcd work as the create's own transaction). Upstream answers that
//! check from an informer's cache; this wrapper approximates such a cache for the one
//! namespace the benchmark uses, to measure what it would save. Not for real use: it
//! never notices the namespace changing.

use std::sync::{Arc, Mutex};

use skiff_store::{Backend, KeyValue, ListResult, Result, Revision, Watch};

use crate::NAMESPACE;

pub struct CachedNamespace {
    inner: Arc<dyn Backend>,
    key: String,
    seen: Mutex<Option<KeyValue>>,
}

impl CachedNamespace {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        CachedNamespace {
            inner,
            key: format!("/registry/namespaces/{NAMESPACE}"),
            seen: Mutex::new(None),
        }
    }
}

impl Backend for CachedNamespace {
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        if key != self.key {
            return self.inner.get(key);
        }
        // A poisoned lock only loses the cache: read through.
        if let Some(kv) = self.seen.lock().ok().and_then(|seen| seen.clone()) {
            return Ok(Some(kv));
        }
        let found = self.inner.get(key)?;
        if let (Some(kv), Ok(mut seen)) = (&found, self.seen.lock()) {
            *seen = Some(kv.clone());
        }
        Ok(found)
    }
    fn list(&self, prefix: &str, after: Option<&str>, limit: Option<usize>) -> Result<ListResult> {
        self.inner.list(prefix, after, limit)
    }
    fn create(&self, key: &str, value: &[u8]) -> Result<KeyValue> {
        self.inner.create(key, value)
    }
    fn update(&self, key: &str, value: &[u8], expected: Revision) -> Result<KeyValue> {
        self.inner.update(key, value, expected)
    }
    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.inner.delete(key, expected)
    }
    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        self.inner.watch(prefix, after)
    }
    fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision)
    }
    fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision()
    }
    fn compacted_revision(&self) -> Revision {
        self.inner.compacted_revision()
    }
    fn ready(&self) -> Result<()> {
        self.inner.ready()
    }
}

//! Keys and the de-duplicating work queue every controller drains. Apart
//! because controllers use them directly, without the rest of the runtime.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use tokio::sync::Notify;

/// Namespace (empty for cluster-scoped objects) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub ns: String,
    pub name: String,
}

impl Key {
    pub fn new(ns: &str, name: &str) -> Self {
        Key {
            ns: ns.to_string(),
            name: name.to_string(),
        }
    }

    pub fn of<K: Resource>(o: &K) -> Self {
        let m = o.meta();
        Key::new(
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
        )
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ns.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.ns, self.name)
        }
    }
}

/// A work queue that holds each key at most once: a key added while waiting is
/// not added again, so bursts of changes collapse into one reconcile.
#[derive(Default)]
pub struct Queue {
    inner: Mutex<(VecDeque<Key>, HashSet<Key>)>,
    notify: Notify,
}

impl Queue {
    pub fn add(&self, key: Key) {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if q.1.insert(key.clone()) {
            q.0.push_back(key);
            self.notify.notify_one();
        }
    }

    pub fn add_after(self: &Arc<Self>, key: Key, after: Duration) {
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            q.add(key);
        });
    }

    pub async fn next(&self) -> Key {
        loop {
            {
                let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(k) = q.0.pop_front() {
                    q.1.remove(&k);
                    return k;
                }
            }
            self.notify.notified().await;
        }
    }
}

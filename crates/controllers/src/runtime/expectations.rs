//! Write expectations ([`Tracker`]): what a controller wrote and its cache has
//! not shown yet. Apart because it is the one piece of the runtime that
//! reasons about resourceVersions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::{self, Store};
use kube::Resource;

use super::Key;

/// What a controller wrote and has not yet seen in its cache. Upstream calls
/// these "expectations": until the cache catches up, a reconcile would act on
/// stale data (and, say, create a second set of pods), so the owner waits.
pub struct Tracker {
    /// child -> (owner, the resourceVersion we wrote or None for a deletion, deadline)
    inner: Mutex<HashMap<Key, Expectation>>,
    /// The child as the cache has it now: (resourceVersion, terminating).
    cached: CacheLookup,
}

/// (owner, the resourceVersion written or `None` for a deletion, deadline).
type Expectation = (Key, Option<String>, Instant);

/// A child's (resourceVersion, terminating) in the cache.
type CacheLookup = Box<dyn Fn(&Key) -> Option<(String, bool)> + Send + Sync>;

/// How long an expectation holds before the owner reconciles anyway (upstream: 5 min;
/// ours is shorter because a lost watch event here is only a relist away).
const EXPECTATION_TTL: Duration = Duration::from_secs(15);

/// Whether `seen` is `want` or later. resourceVersions are opaque, but every
/// server we know makes them increasing integers; equality is the fallback.
fn caught_up(seen: &str, want: &str) -> bool {
    match (seen.parse::<u64>(), want.parse::<u64>()) {
        (Ok(a), Ok(b)) => a >= b,
        _ => seen == want,
    }
}

impl Tracker {
    pub fn new<K>(store: Store<K>) -> Self
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        Tracker {
            inner: Mutex::default(),
            cached: Box::new(move |k: &Key| {
                store
                    .get(&reflector::ObjectRef::new(&k.name).within(&k.ns))
                    .map(|o| {
                        let m = o.meta();
                        (
                            m.resource_version.clone().unwrap_or_default(),
                            m.deletion_timestamp.is_some(),
                        )
                    })
            }),
        }
    }

    pub fn expect_write(&self, owner: &Key, child: Key, resource_version: Option<String>) {
        self.expect_write_from(owner, child, resource_version, None)
    }

    /// `sent` is the resourceVersion the write was based on: a write that
    /// changed nothing keeps it and produces no watch event, so nothing is
    /// expected then.
    pub fn expect_write_from(
        &self,
        owner: &Key,
        child: Key,
        resource_version: Option<String>,
        sent: Option<&str>,
    ) {
        let want = resource_version.unwrap_or_default();
        if sent == Some(want.as_str()) {
            return;
        }
        // The watch event may have been handled before this call: the cache
        // already shows it then.
        if let Some((rv, terminating)) = (self.cached)(&child) {
            if terminating || want.is_empty() || caught_up(&rv, &want) {
                return;
            }
        }
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(
            child,
            (owner.clone(), Some(want), Instant::now() + EXPECTATION_TTL),
        );
    }

    pub fn expect_delete(&self, owner: &Key, child: Key) {
        if (self.cached)(&child).is_none_or(|(_, terminating)| terminating) {
            return;
        }
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(
            child,
            (owner.clone(), None, Instant::now() + EXPECTATION_TTL),
        );
    }

    /// The cache saw `child` at `resource_version`, or (`None`) deleted or
    /// terminating: a deletion counts as observed once the object carries a
    /// deletionTimestamp, as upstream's expectations do.
    pub fn observe(&self, child: &Key, resource_version: Option<&str>) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let done = match (m.get(child), resource_version) {
            (Some((_, Some(want), _)), Some(rv)) => want.is_empty() || caught_up(rv, want),
            (Some(_), None) => true,
            _ => false,
        };
        if done {
            m.remove(child);
        }
    }

    /// Whether `owner` still waits for its cache to catch up.
    pub fn pending(&self, owner: &Key) -> bool {
        let now = Instant::now();
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, (_, _, deadline)| *deadline > now);
        m.values().any(|(o, _, _)| o == owner)
    }
}

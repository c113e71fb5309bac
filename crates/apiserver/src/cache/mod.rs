//! The watch cache: lists, gets and watches served from memory, as kube-apiserver's
//! cacher does, while writes still go to the store.
//!
//! One store watch on every key (the feed, `feed.rs`) keeps a [`ResourceCache`] per
//! resource that has been read through the API: its current objects (parsed once, kept
//! with their JSON), a window of its recent events, and a broadcast of each new event,
//! encoded once, to all of its watchers. A resource's cache is loaded the first time it
//! is asked for (a listing at revision L, plus the feed's events after L gathered while
//! that listing was read), so resources nobody reads cost nothing.
//!
//! Every event of every key moves the feed's revision, so "the cache has seen revision
//! R" holds for all resources at once. A consistent read (no `resourceVersion`) asks the
//! store for its current revision and waits for the feed to reach it, as upstream's
//! ConsistentListFromCache does; after a write returns, a list through any server sees
//! it. When the feed is not running (store outage, just started) or does not catch up
//! within [`FRESHNESS_WAIT`], callers read the store directly, as before the cache.

mod entry;
mod feed;
pub mod read;
mod resource;

pub use entry::{event_line, Cached, CachedEvent, Kind};
pub use resource::{
    Indexed, Page, ResourceCache, Start, Subscription, TooOld, WATCHER_BUFFER, WINDOW_EVENTS,
};

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use skiff_api::registry::Resource;
use skiff_api::StatusError;
use skiff_store::{Backend, Event, Revision};

/// How long a read waits for the cache to reach a revision before it gives up on the
/// cache: for a consistent read, reading the store instead; for a resourceVersion
/// newer than anything seen, upstream's "Too large resource version".
pub const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// The watch caches of one API server.
#[derive(Clone)]
pub struct Caches {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    /// The newest revision the feed has applied to every cache.
    global: Arc<AtomicI64>,
    /// `global`, for readers that wait for it to move.
    seen: tokio::sync::watch::Sender<Revision>,
    slots: Mutex<Slots>,
    /// One resource loads at a time (loads are rare: once per resource and feed).
    load: tokio::sync::Mutex<()>,
    started: OnceLock<()>,
}

#[derive(Default)]
struct Slots {
    /// Moves whenever the feed (re)starts: a load begun under another feed is void.
    epoch: u64,
    running: bool,
    by_resource: HashMap<usize, Slot>,
}

enum Slot {
    /// The listing is being read; the feed keeps this resource's events meanwhile.
    Loading {
        prefix: String,
        events: Vec<Event>,
    },
    Ready(Arc<ResourceCache>),
}

fn id(resource: &'static Resource) -> usize {
    resource as *const Resource as usize
}

impl Caches {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        let (seen, _) = tokio::sync::watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                backend,
                global: Arc::new(AtomicI64::new(0)),
                seen,
                slots: Mutex::new(Slots::default()),
                load: tokio::sync::Mutex::new(()),
                started: OnceLock::new(),
            }),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.inner.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the feed (once); it runs for as long as the runtime does.
    pub fn start(&self) {
        self.inner.started.get_or_init(|| {
            tokio::spawn(feed::run(self.clone()));
        });
    }

    /// The newest revision every cache has seen.
    pub fn revision(&self) -> Revision {
        self.inner.global.load(Ordering::Acquire)
    }

    /// Waits until the caches have seen `revision`; `false` if `wait` ran out first.
    pub async fn wait_for(&self, revision: Revision, wait: Duration) -> bool {
        let mut rx = self.inner.seen.subscribe();
        tokio::time::timeout(wait, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The cache of `resource`, loading it if needed; `None` when the feed is not
    /// running (the caller reads the store).
    pub async fn resource(&self, resource: &'static Resource) -> Option<Arc<ResourceCache>> {
        self.start();
        if let Some(c) = self.ready(resource) {
            return Some(c);
        }
        // The feed may be opening its watch: give it a moment.
        let mut waited = Duration::ZERO;
        while !self.slots().running {
            if waited >= Duration::from_secs(1) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
        let _one_at_a_time = self.inner.load.lock().await;
        if let Some(c) = self.ready(resource) {
            return Some(c);
        }
        match self.load(resource).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!(resource = resource.plural, error = %e, "watch cache: load failed");
                None
            }
        }
    }

    fn ready(&self, resource: &'static Resource) -> Option<Arc<ResourceCache>> {
        match self.slots().by_resource.get(&id(resource)) {
            Some(Slot::Ready(c)) => Some(c.clone()),
            _ => None,
        }
    }

    async fn load(&self, resource: &'static Resource) -> Result<Arc<ResourceCache>, String> {
        let prefix = resource.key_prefix(None);
        let epoch = {
            let mut s = self.slots();
            if !s.running {
                return Err("the feed stopped".into());
            }
            s.by_resource.insert(
                id(resource),
                Slot::Loading {
                    prefix: prefix.clone(),
                    events: Vec::new(),
                },
            );
            s.epoch
        };
        let backend = self.inner.backend.clone();
        let listed = tokio::task::spawn_blocking(move || {
            let page = backend
                .list(&prefix, None, None)
                .map_err(|e| e.to_string())?;
            let items = page
                .items
                .iter()
                .filter_map(|kv| {
                    Cached::decode(resource, kv)
                        .ok()
                        .map(|c| (kv.key.clone(), Arc::new(c)))
                })
                .collect::<Vec<_>>();
            Ok::<_, String>((items, page.revision))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        let mut s = self.slots();
        let events = match s.by_resource.remove(&id(resource)) {
            Some(Slot::Loading { events, .. }) if s.epoch == epoch && s.running => events,
            _ => return Err("the feed restarted during the load".into()),
        };
        let (items, revision) = listed?;
        let cache = Arc::new(ResourceCache::new(
            resource,
            items,
            revision,
            self.inner.global.clone(),
        ));
        for ev in &events {
            cache.apply(ev);
        }
        s.by_resource
            .insert(id(resource), Slot::Ready(cache.clone()));
        Ok(cache)
    }

    /// Objects and window events held by every cache (the benchmark prints them).
    pub fn sizes(&self) -> (usize, usize) {
        self.slots()
            .by_resource
            .values()
            .filter_map(|s| match s {
                Slot::Ready(c) => Some(c.sizes()),
                Slot::Loading { .. } => None,
            })
            .fold((0, 0), |(o, w), (a, b)| (o + a, w + b))
    }
}

/// How a read names the state it wants (`resourceVersion` and `resourceVersionMatch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// No resourceVersion: at least the store's current revision.
    Consistent,
    /// "0": whatever the cache has.
    Any,
    /// At least this revision.
    NotOlderThan(Revision),
    /// Exactly this revision (a list page, or `resourceVersionMatch=Exact`).
    Exact(Revision),
}

/// Why a read could not be served from the cache.
pub enum Miss {
    /// Read the store instead (no cache, or it did not catch up in time).
    Store,
    /// Answer with this error.
    Fail(StatusError),
}

impl From<StatusError> for Miss {
    fn from(e: StatusError) -> Self {
        Miss::Fail(e)
    }
}

/// upstream's `NewTooLargeResourceVersionError`.
pub fn too_large(requested: Revision, current: Revision) -> StatusError {
    let mut e = StatusError::timeout(format!(
        "Too large resource version: {requested}, current: {current}"
    ));
    e.details = Some(serde_json::json!({
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }));
    e
}

impl Caches {
    /// The cache of `resource` once it reflects `freshness`: the revision to read at
    /// (`None`: the newest).
    pub async fn fresh(
        &self,
        objects: &crate::objects::Objects,
        resource: &'static Resource,
        freshness: Freshness,
    ) -> Result<(Arc<ResourceCache>, Option<Revision>), Miss> {
        let cache = self.resource(resource).await.ok_or(Miss::Store)?;
        let (wanted, exact) = match freshness {
            Freshness::Any => return Ok((cache, None)),
            Freshness::Consistent => {
                let current = match objects.backend().current_revision_now() {
                    Some(r) => r,
                    None => objects.current_revision().await?,
                };
                if cache.revision() >= current || self.wait_for(current, FRESHNESS_WAIT).await {
                    return Ok((cache, None));
                }
                return Err(Miss::Store);
            }
            Freshness::NotOlderThan(r) => (r, None),
            Freshness::Exact(r) => (r, Some(r)),
        };
        if cache.revision() < wanted && !self.wait_for(wanted, FRESHNESS_WAIT).await {
            return Err(Miss::Fail(too_large(wanted, cache.revision())));
        }
        Ok((cache, exact))
    }
}

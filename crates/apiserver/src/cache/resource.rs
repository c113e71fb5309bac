//! One resource's watch cache: its current objects, a bounded window of its recent
//! events, and the fan-out of new events to its watchers.
//!
//! The feed (`super::feed`) applies events in revision order under the write lock and
//! publishes each one while still holding it, so a reader that takes the lock sees a
//! state, a window and a subscription that agree: a watch started under the lock misses
//! nothing and repeats nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use skiff_api::registry::Resource;
use skiff_store::{Event, Revision};
use tokio::sync::broadcast;

use super::entry::{Cached, CachedEvent, Kind};

/// How many recent events a resource keeps for watches and snapshot pages that start
/// in the past. Older starting points get 410 Gone, as from upstream's watch cache.
pub const WINDOW_EVENTS: usize = 4096;

/// How many events a watcher may fall behind before it is cut off: the broadcast ring
/// is shared, so this bounds memory whatever the number of watchers, and the feed never
/// waits for a watcher.
pub const WATCHER_BUFFER: usize = 4096;

/// A revision older than what the cache still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld {
    /// The oldest revision the cache can still start from.
    pub oldest: Revision,
}

/// An attribute a resource's objects are indexed by, so that a list whose selector pins
/// it reads only the matching objects (upstream's watch cache indexes these too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexed {
    /// A field selector's (canonical) field; absent reads as "".
    Field(&'static str),
    /// A label (objects without it are not indexed: `k=v` needs the label).
    Label(&'static str),
}

impl Indexed {
    fn of(resource: &Resource) -> Option<Self> {
        match (resource.group, resource.kind) {
            ("", "Pod") => Some(Indexed::Field("spec.nodeName")),
            ("discovery.k8s.io", "EndpointSlice") => {
                Some(Indexed::Label("kubernetes.io/service-name"))
            }
            _ => None,
        }
    }

    fn value_of(self, obj: &Cached) -> Option<&str> {
        match self {
            Indexed::Field(field) => Some(obj.field(field).unwrap_or("")),
            Indexed::Label(label) => obj.label(label),
        }
    }
}

pub struct ResourceCache {
    pub resource: &'static Resource,
    /// What this resource's objects are indexed by, if anything.
    pub indexed: Option<Indexed>,
    /// Every key of this resource starts with it.
    pub prefix: String,
    state: RwLock<State>,
    /// The revision every cache has seen (the feed's), shared by all resources: an event
    /// of another resource moves this one's revision forward too.
    global: Arc<AtomicI64>,
}

struct State {
    objects: BTreeMap<String, Arc<Cached>>,
    /// `indexed`'s value -> the keys of the current objects that have it.
    index: HashMap<String, BTreeSet<String>>,
    /// The newest event applied, or the revision the initial listing was read at.
    revision: Revision,
    window: VecDeque<Arc<CachedEvent>>,
    /// Every event of this resource after this revision is in `window`.
    window_start: Revision,
    tx: broadcast::Sender<Arc<CachedEvent>>,
}

/// A page of a list, read from one snapshot.
pub struct Page {
    pub items: Vec<Arc<Cached>>,
    /// The snapshot's revision.
    pub revision: Revision,
    /// The key after which the next page starts, when there is one.
    pub continue_after: Option<String>,
    /// Objects after this page (before selectors): upstream's `remainingItemCount`.
    pub remaining: usize,
}

/// Where a new watcher starts.
pub enum Start {
    /// Every current object as ADDED, then what follows.
    Current,
    /// The events after this revision.
    After(Revision),
}

/// A watcher's first events and its subscription to the rest.
pub struct Subscription {
    /// Current objects (for `Start::Current`) to send as ADDED.
    pub initial: Vec<Arc<Cached>>,
    /// Window events after the starting revision, in order.
    pub replay: Vec<Arc<CachedEvent>>,
    pub live: broadcast::Receiver<Arc<CachedEvent>>,
    /// The revision the start reflects.
    pub revision: Revision,
}

impl ResourceCache {
    pub fn new(
        resource: &'static Resource,
        items: Vec<(String, Arc<Cached>)>,
        revision: Revision,
        global: Arc<AtomicI64>,
    ) -> Self {
        let (tx, _) = broadcast::channel(WATCHER_BUFFER);
        let indexed = Indexed::of(resource);
        let mut index: HashMap<String, BTreeSet<String>> = HashMap::new();
        if let Some(by) = indexed {
            for (k, v) in &items {
                if let Some(val) = by.value_of(v) {
                    index.entry(val.to_owned()).or_default().insert(k.clone());
                }
            }
        }
        Self {
            resource,
            indexed,
            prefix: resource.key_prefix(None),
            state: RwLock::new(State {
                objects: items.into_iter().collect(),
                index,
                revision,
                window: VecDeque::new(),
                window_start: revision,
                tx,
            }),
            global,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest revision this cache reflects (call with the lock held for a value
    /// that agrees with the state read under it).
    fn revision_of(&self, s: &State) -> Revision {
        s.revision.max(self.global.load(Ordering::Acquire))
    }

    pub fn revision(&self) -> Revision {
        self.revision_of(&self.read())
    }

    /// Applies one store event of this resource (called by the feed, in revision
    /// order). The object is parsed before the lock is taken.
    pub fn apply(&self, ev: &Event) {
        let rev = ev.revision();
        let parsed = match ev {
            Event::Put { kv, .. } => match Cached::decode(self.resource, kv) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!(key = %kv.key, error = %e.message, "watch cache: unreadable object left out");
                    None
                }
            },
            Event::Delete { .. } => None,
        };
        let mut s = self.write();
        if rev <= s.revision {
            // Already in the listing the cache was loaded from.
            return;
        }
        s.revision = rev;
        let key = ev.key().to_owned();
        let prev = s.objects.get(&key).cloned();
        if let Some(by) = self.indexed {
            let old = prev.as_ref().and_then(|p| by.value_of(p));
            let new = parsed.as_ref().filter(|_| matches!(ev, Event::Put { .. }));
            let new = new.and_then(|n| by.value_of(n));
            if old != new {
                if let Some(old) = old {
                    if let Some(set) = s.index.get_mut(old) {
                        set.remove(&key);
                        if set.is_empty() {
                            s.index.remove(old);
                        }
                    }
                }
                if let Some(new) = new {
                    s.index
                        .entry(new.to_owned())
                        .or_default()
                        .insert(key.clone());
                }
            }
        }
        let (kind, object) = match (ev, parsed) {
            (Event::Put { .. }, Some(obj)) => {
                s.objects.insert(key.clone(), obj.clone());
                let kind = if prev.is_some() {
                    Kind::Modified
                } else {
                    Kind::Added
                };
                (kind, obj)
            }
            (Event::Delete { kv }, _) => {
                s.objects.remove(&key);
                let obj = match &prev {
                    Some(p) => Arc::new(p.restamped(self.resource, rev)),
                    None => match Cached::decode(self.resource, kv) {
                        Ok(c) => Arc::new(c),
                        Err(_) => return,
                    },
                };
                (Kind::Deleted, obj)
            }
            (Event::Put { .. }, None) => {
                // Unreadable: leave it out, as if deleted, without an event.
                s.objects.remove(&key);
                return;
            }
        };
        let event = Arc::new(CachedEvent::new(rev, key, kind, object, prev));
        s.window.push_back(event.clone());
        while s.window.len() > WINDOW_EVENTS {
            if let Some(old) = s.window.pop_front() {
                s.window_start = old.revision;
            }
        }
        // An error only means nobody is watching.
        let _ = s.tx.send(event);
    }

    /// Ends every current watcher (their streams close; clients watch again from their
    /// last revision): used when the feed lost events and this cache is dropped.
    pub fn close(&self) {
        let (tx, _) = broadcast::channel(WATCHER_BUFFER);
        self.write().tx = tx;
    }

    pub fn get(&self, key: &str) -> (Option<Arc<Cached>>, Revision) {
        let s = self.read();
        (s.objects.get(key).cloned(), self.revision_of(&s))
    }

    /// A page of the objects under `prefix` as they were at revision `at` (now if
    /// `None`), strictly after `start_after`, that `keep` accepts, at most `limit`.
    /// `pinned`: the value `keep` requires of [`Self::indexed`], if it requires one;
    /// then only the index's objects (and those changed since `at`) are read.
    pub fn page(
        &self,
        prefix: &str,
        at: Option<Revision>,
        start_after: Option<&str>,
        limit: Option<usize>,
        keep: &dyn Fn(&Cached) -> bool,
        pinned: Option<&str>,
    ) -> Result<Page, TooOld> {
        let s = self.read();
        let now = self.revision_of(&s);
        let revision = at.unwrap_or(now).min(now);
        if revision < s.window_start {
            return Err(TooOld {
                oldest: s.window_start,
            });
        }
        // What differs at `revision` from now: each key changed since, mapped to the
        // value it had then (`None`: it did not exist).
        let mut then: BTreeMap<&str, Option<&Arc<Cached>>> = BTreeMap::new();
        for ev in s.window.iter().rev().take_while(|e| e.revision > revision) {
            then.insert(ev.key.as_str(), ev.prev.as_ref());
        }
        let lower = match start_after {
            Some(k) if k >= prefix => Bound::Excluded(k),
            _ => Bound::Included(prefix),
        };
        let changed = then
            .range::<str, _>((lower, Bound::Unbounded))
            .map(|(k, v)| (*k, *v));
        let candidates: Box<dyn Iterator<Item = (&str, Option<&Arc<Cached>>)>> =
            match (self.indexed, pinned) {
                (Some(_), Some(value)) => {
                    let empty = BTreeSet::new();
                    let keys = s.index.get(value).unwrap_or(&empty);
                    let indexed: Vec<_> = keys
                        .range::<str, _>((lower, Bound::Unbounded))
                        .filter_map(|k| s.objects.get_key_value(k))
                        .map(|(k, v)| (k.as_str(), Some(v)))
                        .collect();
                    Box::new(Merge::new(indexed.into_iter(), changed))
                }
                _ => {
                    let current = s
                        .objects
                        .range::<str, _>((lower, Bound::Unbounded))
                        .map(|(k, v)| (k.as_str(), Some(v)));
                    Box::new(Merge::new(current, changed))
                }
            };
        let mut merged = candidates
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| v.map(|v| (k, v)));
        let limit = limit.unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last = None;
        for (k, v) in merged.by_ref() {
            if keep(v) {
                items.push(v.clone());
            }
            last = Some(k);
            if items.len() >= limit {
                break;
            }
        }
        let remaining = merged.count();
        Ok(Page {
            items,
            revision,
            continue_after: (remaining > 0).then(|| last.unwrap_or_default().to_owned()),
            remaining,
        })
    }

    /// Starts a watcher under the lock, so that what it is sent first and what it
    /// receives next join without a gap.
    pub fn subscribe(&self, prefix: &str, start: Start) -> Result<Subscription, TooOld> {
        let s = self.read();
        let now = self.revision_of(&s);
        let live = s.tx.subscribe();
        match start {
            Start::Current => Ok(Subscription {
                initial: s
                    .objects
                    .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v.clone())
                    .collect(),
                replay: Vec::new(),
                live,
                revision: now,
            }),
            Start::After(rev) if rev < s.window_start => Err(TooOld {
                oldest: s.window_start,
            }),
            Start::After(rev) => Ok(Subscription {
                initial: Vec::new(),
                replay: s
                    .window
                    .iter()
                    .filter(|e| e.revision > rev && e.key.starts_with(prefix))
                    .cloned()
                    .collect(),
                live,
                revision: rev.max(now),
            }),
        }
    }

    /// The revision a bookmark may carry for a watcher that has received everything
    /// up to `delivered`: the cache's own when nothing waits in its buffer (later
    /// events of this resource would be in it), else what it has been sent.
    pub fn bookmark_revision(
        &self,
        live: &broadcast::Receiver<Arc<CachedEvent>>,
        delivered: Revision,
    ) -> Revision {
        let s = self.read();
        if live.is_empty() {
            self.revision_of(&s).max(delivered)
        } else {
            delivered
        }
    }

    /// How many objects and window events are held (for the benchmark's memory row).
    pub fn sizes(&self) -> (usize, usize) {
        let s = self.read();
        (s.objects.len(), s.window.len())
    }
}

/// Merges two key-ordered sequences; on equal keys the second wins.
struct Merge<'a, A, B>
where
    A: Iterator<Item = (&'a str, Option<&'a Arc<Cached>>)>,
    B: Iterator<Item = (&'a str, Option<&'a Arc<Cached>>)>,
{
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'a, A, B> Merge<'a, A, B>
where
    A: Iterator<Item = (&'a str, Option<&'a Arc<Cached>>)>,
    B: Iterator<Item = (&'a str, Option<&'a Arc<Cached>>)>,
{
    fn new(a: A, b: B) -> Self {
        Self {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

impl<'a, A, B> Iterator for Merge<'a, A, B>
where
    A: Iterator<Item = (&'a str, Option<&'a Arc<Cached>>)>,
    B: Iterator<Item = (&'a str, Option<&'a Arc<Cached>>)>,
{
    type Item = (&'a str, Option<&'a Arc<Cached>>);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some((ka, _)), Some((kb, _))) if ka < kb => self.a.next(),
            (Some((ka, _)), Some((kb, _))) if ka == kb => {
                self.a.next();
                self.b.next()
            }
            (Some(_), Some(_)) | (None, Some(_)) => self.b.next(),
            (Some(_), None) => self.a.next(),
            (None, None) => None,
        }
    }
}

//! `MemoryBackend`: the same semantics as SQLite, kept in a `BTreeMap` plus an event log.
//! For tests and throwaway servers; nothing survives the process.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::backend::check_live;
use crate::watch::{Hub, DEFAULT_WATCH_CAPACITY};
use crate::{Backend, Error, Event, KeyValue, ListResult, Result, Revision, Watch, EMPTY_REVISION};

pub struct MemoryBackend {
    state: Mutex<State>,
    hub: Hub,
}

struct State {
    live: BTreeMap<String, KeyValue>,
    /// Every event after `compacted`, in revision order.
    log: VecDeque<Event>,
    revision: Revision,
    compacted: Revision,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::with_watch_capacity(DEFAULT_WATCH_CAPACITY)
    }

    /// `capacity`: how many live events a watcher may fall behind before `WatchLagged`.
    pub fn with_watch_capacity(capacity: usize) -> Self {
        MemoryBackend {
            state: Mutex::new(State {
                live: BTreeMap::new(),
                log: VecDeque::new(),
                revision: EMPTY_REVISION,
                compacted: 0,
            }),
            hub: Hub::new(capacity),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation below is a few infallible steps, so a panic elsewhere while the
        // lock was held cannot have left the state half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `event` as the next revision; the caller has already updated `live`.
    fn commit(&self, state: &mut State, event: Event) -> KeyValue {
        let kv = event.kv().clone();
        state.revision = kv.mod_revision;
        state.log.push_back(event.clone());
        self.hub.publish(event);
        kv
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryBackend")
            .field("keys", &state.live.len())
            .field("revision", &state.revision)
            .field("compacted", &state.compacted)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl Backend for MemoryBackend {
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.lock().live.get(key).cloned())
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListResult> {
        let state = self.lock();
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut matching = state
            .live
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, kv)| kv);
        let items: Vec<KeyValue> = matching
            .by_ref()
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        let remaining = matching.count();
        Ok(ListResult {
            items,
            revision: state.revision,
            more: remaining > 0,
            remaining: Some(remaining),
        })
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<KeyValue> {
        let mut state = self.lock();
        if state.live.contains_key(key) {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let rev = state.revision + 1;
        let kv = KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(value),
            create_revision: rev,
            mod_revision: rev,
        };
        state.live.insert(key.to_owned(), kv.clone());
        Ok(self.commit(&mut state, Event::Put { kv, prev: None }))
    }

    fn update(&self, key: &str, value: &[u8], expected: Revision) -> Result<KeyValue> {
        let mut state = self.lock();
        let prev = check_live(key, state.live.get(key), Some(expected))?.clone();
        let kv = KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(value),
            create_revision: prev.create_revision,
            mod_revision: state.revision + 1,
        };
        state.live.insert(key.to_owned(), kv.clone());
        Ok(self.commit(
            &mut state,
            Event::Put {
                kv,
                prev: Some(prev),
            },
        ))
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut state = self.lock();
        check_live(key, state.live.get(key), expected)?;
        let rev = state.revision + 1;
        let Some(mut kv) = state.live.remove(key) else {
            return Err(Error::NotFound {
                key: key.to_owned(),
            });
        };
        kv.mod_revision = rev;
        Ok(self.commit(&mut state, Event::Delete { kv }))
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        // Subscribing and copying history under the same lock writers publish under
        // makes the hand-over from history to live trivially gap-free.
        let state = self.lock();
        if after < state.compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted: state.compacted,
            });
        }
        let rx = self.hub.subscribe();
        let start = state.log.partition_point(|e| e.revision() <= after);
        let history = state
            .log
            .range(start..)
            .filter(|e| e.key().starts_with(prefix))
            .cloned()
            .collect::<Vec<_>>();
        Ok(Watch::new(prefix, after, history, rx, state.revision))
    }

    fn compact(&self, revision: Revision) -> Result<()> {
        let mut state = self.lock();
        if revision > state.revision {
            return Err(Error::FutureRevision {
                requested: revision,
                current: state.revision,
            });
        }
        if revision <= state.compacted {
            return Ok(());
        }
        let drop = state.log.partition_point(|e| e.revision() <= revision);
        state.log.drain(..drop);
        state.compacted = revision;
        Ok(())
    }

    fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    fn current_revision_now(&self) -> Option<Revision> {
        Some(self.lock().revision)
    }

    fn compacted_revision(&self) -> Revision {
        self.lock().compacted
    }
}

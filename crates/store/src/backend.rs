//! The storage trait and the values that cross it.

use bytes::Bytes;

use crate::{Error, Result, Watch};

/// The global revision counter, exposed by the API server as `resourceVersion`.
/// An empty store is at revision 1, so the first write gets revision 2 and no object
/// ever has the special resourceVersion "0".
pub type Revision = i64;

/// The revision of a store nobody has written to yet.
pub const EMPTY_REVISION: Revision = 1;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    /// Opaque bytes (a JSON object for the API server); `Bytes` so that fanning an event
    /// out to many watchers does not copy it.
    pub value: Bytes,
    /// The revision that created this incarnation of the key (reset by delete + create).
    pub create_revision: Revision,
    /// The revision of the write that produced this value.
    pub mod_revision: Revision,
}

/// One change, as seen by a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A create (`prev` is `None`) or an update (`prev` is the value it replaced).
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// `kv` is the last value the key had; its `mod_revision` is the delete's revision.
    Delete { kv: KeyValue },
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv().mod_revision
    }

    pub fn key(&self) -> &str {
        &self.kv().key
    }

    /// The value after a put, or the last value before a delete.
    pub fn kv(&self) -> &KeyValue {
        match self {
            Event::Put { kv, .. } | Event::Delete { kv } => kv,
        }
    }
}

/// A page of a prefix listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store revision the listing reflects; watching from it misses nothing.
    pub revision: Revision,
    /// Whether live keys under the prefix sort after the last returned item: the caller
    /// should hand out a continue token.
    pub more: bool,
    /// How many there are (Kubernetes' `remainingItemCount`), where the backend knows it
    /// without reading them: etcd counts a range anyway, and the memory store has it at
    /// hand. `None` from SQLite, which would have to count every remaining row for each
    /// page, so that walking a collection page by page costs its size squared.
    pub remaining: Option<usize>,
}

/// A revisioned key-value store. Synchronous on purpose: calls may block on disk, so async
/// callers use `spawn_blocking`. Only `Watch::next` is async.
pub trait Backend: Send + Sync + 'static {
    fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix` (literally: `/a` matches `/ab`), in key order, strictly
    /// after `start_after` if given, at most `limit`.
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListResult>;

    /// `AlreadyExists` if the key is live.
    fn create(&self, key: &str, value: &[u8]) -> Result<KeyValue>;

    /// `NotFound` if the key is not live, `Conflict` if its `mod_revision != expected`.
    fn update(&self, key: &str, value: &[u8], expected: Revision) -> Result<KeyValue>;

    /// Returns the deleted value with `mod_revision` set to the delete's revision.
    /// `NotFound` if the key is not live, `Conflict` if `expected` is given and stale.
    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Every event on keys starting with `prefix` with revision > `after`, in revision
    /// order, without gaps or duplicates: first the history still in the log, then live
    /// events. `Compacted` if `after` is older than the compacted revision.
    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch>;

    /// Forget superseded history at or below `revision` (current values always survive).
    /// Compacting at or below the already compacted revision does nothing.
    fn compact(&self, revision: Revision) -> Result<()>;

    fn current_revision(&self) -> Result<Revision>;

    /// `current_revision`, when the store knows it in memory and answering cannot block
    /// (a store in this process): async callers on a hot path (the API server's
    /// consistent reads from its watch cache) skip the hop to a blocking thread.
    /// `None`: ask `current_revision` from a blocking thread.
    fn current_revision_now(&self) -> Option<Revision> {
        None
    }

    fn compacted_revision(&self) -> Revision;

    /// `Ok` if the store can serve requests right now, `Unavailable` (saying why) if not:
    /// what the API server's `/readyz` reports, so that load balancers send requests to a
    /// server whose store answers. Answers within a few seconds, whatever the store's
    /// state. Stores inside the process are always ready.
    fn ready(&self) -> Result<()> {
        Ok(())
    }
}

/// The write-precondition rules, shared so both backends give the same answers.
/// Returns the live value the write replaces.
pub(crate) fn check_live<'a>(
    key: &str,
    current: Option<&'a KeyValue>,
    expected: Option<Revision>,
) -> Result<&'a KeyValue> {
    let kv = current.ok_or_else(|| Error::NotFound {
        key: key.to_owned(),
    })?;
    match expected {
        Some(rev) if rev != kv.mod_revision => Err(Error::Conflict {
            key: key.to_owned(),
            current: kv.mod_revision,
        }),
        _ => Ok(kv),
    }
}

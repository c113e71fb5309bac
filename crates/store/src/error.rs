//! The one error type every backend returns.

use crate::Revision;

/// What can go wrong talking to a store. The first five variants are outcomes the API
/// server maps onto HTTP statuses (404, 409, 409, 410, 410); `Unavailable` is a store
/// that cannot be reached right now (503); `Storage` is a real failure.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("key {key:?} not found")]
    NotFound { key: String },

    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },

    /// The caller's precondition names a revision the key no longer (or never) had.
    #[error("key {key:?} was modified: current revision is {current}")]
    Conflict { key: String, current: Revision },

    /// History at or below `compacted` has been forgotten, so `requested` cannot be served.
    #[error("revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },

    /// The watcher fell so far behind the writers that events were dropped for it; the
    /// client has to list again.
    #[error("watcher fell too far behind; events were dropped")]
    WatchLagged,

    /// Compaction was asked to forget revisions that have not happened yet.
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },

    /// The store could not be reached or did not answer in time (etcd down, cut off, or
    /// without a leader). Kept apart from `Storage` because nothing is known to be wrong
    /// with the data: the same request may well succeed once the store is back, so the
    /// API server answers 503 and clients retry. A write that timed out may still have
    /// been applied (its outcome is unknown), as with any request cut off in flight.
    /// The message names the store ("etcd is unreachable ..."), since the caller does not
    /// know which one it is.
    #[error("{0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),

    /// The storage engine failed (IO, corruption, a broken schema, etcd refusing the
    /// prefix or answering something unexpected). Boxed so that every backend's causes fit. Its message is
    /// already in this one's, so it is not also the `source` (an error chain printed on
    /// one line would say it twice).
    #[error("storage error: {0}")]
    Storage(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        Error::Storage(Box::new(err))
    }
}

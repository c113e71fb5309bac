//! skiff-store: the API server's storage, an etcd-like revisioned key-value log.
//!
//! Start at [`Backend`] (in `backend.rs`): a small synchronous trait over string keys and
//! opaque values with one global [`Revision`] counter, which the API server exposes as
//! `resourceVersion`. [`SqliteBackend`] is the durable implementation, [`MemoryBackend`]
//! the in-memory one for tests, [`EtcdBackend`] the one for clusters that must outlive a
//! machine (the store's revision is etcd's); all pass the same conformance suite
//! (`tests/conformance/suite.rs`). [`Watch`] (in `watch.rs`) explains how history replay hands
//! over to live events without gaps.

mod backend;
mod error;
mod etcd;
mod memory;
mod sqlite;
mod watch;

pub use backend::{Backend, Event, KeyValue, ListResult, Revision, EMPTY_REVISION};
pub use error::{Error, Result};
pub use etcd::{EtcdBackend, EtcdConfig, EtcdTls};
pub use memory::MemoryBackend;
pub use sqlite::SqliteBackend;
pub use watch::{Watch, DEFAULT_WATCH_CAPACITY};

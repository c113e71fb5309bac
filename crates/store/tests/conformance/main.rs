//! Runs the shared conformance suite (`suite.rs`) against every backend, plus
//! the checks that only make sense for a file (reopen, on-disk settings) and for etcd
//! (`etcd_only.rs`: a prefix shared by two clusters, several stores on one etcd).

mod etcd_cluster;
mod etcd_only;
mod suite;

use std::sync::Arc;

use skiff_store::{Backend, Error, MemoryBackend, SqliteBackend};
use suite::Fixture;

fn memory(capacity: usize) -> Fixture {
    Fixture {
        backend: Arc::new(MemoryBackend::with_watch_capacity(capacity)),
        _dir: None,
    }
}

fn sqlite(capacity: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = SqliteBackend::open_with_watch_capacity(dir.path().join("store.db"), capacity)
        .expect("open sqlite store");
    Fixture {
        backend: Arc::new(backend),
        _dir: Some(dir),
    }
}

/// A fresh 3-member etcd cluster per store: the suite counts revisions, so no two
/// stores may share one.
fn etcd(capacity: usize) -> Fixture {
    Fixture {
        backend: Arc::new(etcd_cluster::OnEtcd::start(capacity)),
        _dir: None,
    }
}

/// One `#[test]` per suite check per backend, so a failure names both.
macro_rules! conformance {
    ($backend:ident: $($check:ident),* $(,)?) => {
        mod $backend {
            $(
                #[test]
                fn $check() {
                    super::suite::$check(super::$backend);
                }
            )*
        }
    };
}

macro_rules! all_backends {
    ($($check:ident),* $(,)?) => {
        conformance!(memory: $($check),*);
        conformance!(sqlite: $($check),*);
        conformance!(etcd: $($check),*);
    };
}

all_backends!(
    empty_store,
    create_then_get,
    create_existing_fails,
    update_checks_revision,
    delete_with_and_without_precondition,
    failed_writes_use_no_revision,
    revisions_strictly_increase,
    list_prefix_is_literal,
    list_pagination,
    list_skips_deleted_keys,
    watch_from_zero_replays_history,
    watch_from_middle_revision,
    watch_live_events,
    watch_async_inside_runtime,
    watch_next_is_cancel_safe,
    watch_filters_by_prefix,
    watch_from_future_revision,
    compaction,
    compaction_of_deleted_keys,
    concurrent_writers_unique_revisions,
    watchers_started_during_writes_see_everything_once,
    lagging_watcher_is_cut_off,
    dropping_the_backend_ends_watches,
);

fn reopen(dir: &std::path::Path) -> SqliteBackend {
    SqliteBackend::open(dir.join("store.db")).expect("reopen sqlite store")
}

#[test]
fn sqlite_reopen_keeps_data_and_continues_revisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, last) = {
        let store = reopen(dir.path());
        let a = store.create("/registry/a", b"1").expect("create a");
        let a = store
            .update("/registry/a", b"2", a.mod_revision)
            .expect("update a");
        let b = store.create("/registry/b", b"x").expect("create b");
        store.compact(a.mod_revision).expect("compact");
        let gone = store.create("/registry/gone", b"y").expect("create gone");
        let last = store
            .delete("/registry/gone", Some(gone.mod_revision))
            .expect("delete");
        (a, b, last.mod_revision)
    };

    let store = reopen(dir.path());
    assert_eq!(store.current_revision().expect("rev"), last);
    assert_eq!(store.compacted_revision(), a.mod_revision);
    assert_eq!(store.get("/registry/a").expect("get"), Some(a.clone()));
    let list = store.list("/registry/", None, None).expect("list");
    assert_eq!(list.items, vec![a.clone(), b.clone()]);
    assert_eq!(list.revision, last);

    assert!(matches!(
        store.watch("/registry/", a.mod_revision - 1),
        Err(Error::Compacted { .. })
    ));
    let mut watch = store.watch("/registry/", a.mod_revision).expect("watch");
    let revs: Vec<_> = (0..3).map(|_| suite::next(&mut watch).revision()).collect();
    assert_eq!(revs, vec![b.mod_revision, last - 1, last]);

    let c = store.create("/registry/c", b"z").expect("create c");
    assert_eq!(c.mod_revision, last + 1);
}

#[test]
fn sqlite_revision_survives_compacting_everything_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last = {
        let store = reopen(dir.path());
        let kv = store.create("/k", b"v").expect("create");
        let gone = store.delete("/k", Some(kv.mod_revision)).expect("delete");
        store.compact(gone.mod_revision).expect("compact");
        gone.mod_revision
    };
    let store = reopen(dir.path());
    assert_eq!(store.current_revision().expect("rev"), last);
    assert_eq!(
        store.create("/k", b"v").expect("create").mod_revision,
        last + 1
    );
}

#[test]
fn sqlite_file_is_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = reopen(dir.path());
    store.create("/k", b"v").expect("create");
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).expect("open raw");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), "wal");
}

#[test]
fn sqlite_rejects_a_newer_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(reopen(dir.path()));
    let conn = rusqlite::Connection::open(dir.path().join("store.db")).expect("open raw");
    conn.pragma_update(None, "user_version", 99)
        .expect("set user_version");
    drop(conn);
    let err = SqliteBackend::open(dir.path().join("store.db")).expect_err("newer schema");
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
}

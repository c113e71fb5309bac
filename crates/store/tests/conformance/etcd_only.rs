//! Checks only etcd needs: who may use a prefix, an etcd that is not there, and several
//! stores (API servers) on one etcd.

use std::time::{Duration, Instant};

use skiff_store::{Backend, Error, EtcdConfig, EtcdTls, Event, Watch};

use crate::etcd_cluster::{EtcdCluster, CLUSTER, PREFIX};
use crate::suite::next;

const CAPACITY: usize = skiff_store::DEFAULT_WATCH_CAPACITY;

/// More revisions than a store keeps in memory, so a watch from before them is served
/// by etcd itself.
const BEYOND_MEMORY: usize = 1100;

fn with(config: EtcdConfig, cluster: &str, prefix: &str) -> EtcdConfig {
    EtcdConfig {
        cluster: cluster.into(),
        prefix: prefix.into(),
        ..config
    }
}

/// The next item of `watch`, whatever it is.
fn next_result(watch: &mut Watch) -> skiff_store::Result<Event> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("timed out")
            .expect("watch ended")
    })
}

fn one_line(err: &Error) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n'), "not one line: {text:?}");
    text
}

#[test]
fn a_prefix_belongs_to_one_cluster() {
    let etcd = EtcdCluster::start();
    let a = etcd
        .open(etcd.config(CAPACITY))
        .expect("first start claims");
    let kv = a.create("/registry/a", b"1").expect("create");
    drop(a);

    let err = etcd
        .open(with(etcd.config(CAPACITY), "other", PREFIX))
        .expect_err("another cluster on the same prefix");
    let text = one_line(&err);
    assert!(
        text.contains("another cluster") && text.contains(PREFIX) && text.contains(CLUSTER),
        "{text}"
    );

    // Another prefix is free for it; the first cluster finds its data again.
    let other = etcd
        .open(with(etcd.config(CAPACITY), "other", "/other"))
        .expect("own prefix");
    assert!(other.list("", None, None).expect("list").items.is_empty());
    let a = etcd.open(etcd.config(CAPACITY)).expect("restart");
    assert_eq!(a.get("/registry/a").expect("get"), Some(kv));
}

#[test]
fn foreign_data_under_the_prefix_is_refused() {
    let etcd = EtcdCluster::start();
    // A cluster under /skiff/nested puts its marker and data inside /skiff's range.
    let nested = etcd
        .open(with(etcd.config(CAPACITY), "nested", "/skiff/nested"))
        .expect("nested");
    nested.create("/registry/x", b"x").expect("create");
    let err = etcd
        .open(etcd.config(CAPACITY))
        .expect_err("data that is not this cluster's");
    let text = one_line(&err);
    assert!(text.contains("not a skiff cluster's"), "{text}");
}

#[test]
fn an_unreachable_etcd_is_one_clear_line() {
    // A namespace with nobody listening: the connection is refused, or never answered.
    let empty = EtcdCluster::empty();
    let config = EtcdConfig {
        endpoints: vec!["http://127.0.0.1:2379".into()],
        prefix: PREFIX.into(),
        cluster: CLUSTER.into(),
        tls: None,
        watch_capacity: CAPACITY,
    };
    let started = Instant::now();
    let err = empty
        .inside(move || skiff_store::EtcdBackend::connect(config))
        .expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(15), "{err}");
    let text = one_line(&err);
    assert!(text.contains("127.0.0.1:2379"), "{text}");
    // Unavailable, not a storage failure: nothing is wrong but the connection.
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(text.starts_with("etcd is unreachable"), "{text}");
}

#[test]
fn stores_on_one_etcd_share_revisions_and_watches() {
    let etcd = EtcdCluster::start();
    let a = etcd.open(etcd.config(CAPACITY)).expect("store a");
    let b = etcd.open(etcd.config(CAPACITY)).expect("store b");

    // Every change through one store reaches the other's watchers, in revision order.
    let mut on_b = b
        .watch("/registry/", b.current_revision().expect("rev"))
        .expect("watch on b");
    let v1 = a.create("/registry/k", b"1").expect("create via a");
    let v2 = b
        .update("/registry/k", b"2", v1.mod_revision)
        .expect("update via b");
    assert!(matches!(
        a.update("/registry/k", b"3", v1.mod_revision),
        Err(Error::Conflict { current, .. }) if current == v2.mod_revision
    ));
    assert_eq!(a.get("/registry/k").expect("get"), Some(v2.clone()));
    assert_eq!(
        next(&mut on_b),
        Event::Put {
            kv: v1.clone(),
            prev: None
        }
    );
    assert_eq!(
        next(&mut on_b),
        Event::Put {
            kv: v2.clone(),
            prev: Some(v1.clone())
        }
    );

    // History older than a store keeps in memory comes from etcd, complete and in order.
    let start = v2.mod_revision;
    let mut last = v2.clone();
    for i in 0..BEYOND_MEMORY {
        last = a
            .update("/registry/k", i.to_string().as_bytes(), last.mod_revision)
            .expect("update");
    }
    let c = etcd.open(etcd.config(CAPACITY)).expect("store c");
    let mut replay = c.watch("/registry/k", start).expect("watch from long ago");
    let mut expected = start + 1;
    while expected <= last.mod_revision {
        let event = next(&mut replay);
        assert_eq!(event.revision(), expected);
        expected += 1;
    }

    // Compaction through one store: another that did not know learns it from etcd.
    a.compact(last.mod_revision).expect("compact");
    let mut late = c
        .watch("/registry/", start)
        .expect("c has not seen the compaction");
    let got = next_result(&mut late);
    assert!(
        matches!(got, Err(Error::Compacted { requested, compacted })
            if requested == start && compacted == last.mod_revision),
        "{got:?}"
    );
    assert_eq!(c.compacted_revision(), last.mod_revision);
    assert!(matches!(
        c.watch("/registry/", start),
        Err(Error::Compacted { .. })
    ));

    // A store opened after the compaction finds it where etcd's history begins.
    let d = etcd.open(etcd.config(CAPACITY)).expect("store d");
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.compacted_revision() != last.mod_revision {
        assert!(Instant::now() < deadline, "d never learned the compaction");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_dead_follower_fails_no_request() {
    let mut etcd = EtcdCluster::start();
    let store = etcd.open(etcd.config(CAPACITY)).expect("store");
    let mut watch = store
        .watch("/registry/", store.current_revision().expect("rev"))
        .expect("watch");
    let before = store.create("/registry/before", b"1").expect("create");
    assert_eq!(next(&mut watch).kv(), &before);

    // The client still balances over the dead member's address: requests that land
    // there are sent again to a live one, and the store's etcd watch moves over. (A
    // dead leader is another matter: a write in flight then has an unknown outcome.)
    let follower = etcd.a_follower();
    etcd.kill_member(follower);
    // A write on the connection that was open to it when it died has an unknown
    // outcome, like any write cut off in flight: reads (retried) find that out first.
    for _ in 0..10 {
        store.current_revision().expect("read with a member dead");
    }
    for i in 0..30 {
        let key = format!("/registry/after/{i}");
        let kv = store.create(&key, b"v").expect("create with a member dead");
        assert_eq!(store.get(&key).expect("get"), Some(kv.clone()));
        assert_eq!(next(&mut watch).kv(), &kv);
    }
    let list = store
        .list("/registry/after/", None, Some(10))
        .expect("list");
    assert_eq!(
        (list.items.len(), list.more, list.remaining),
        (10, true, Some(20))
    );
}

#[test]
fn tls_with_a_client_certificate() {
    let etcd = EtcdCluster::start_tls();
    let store = etcd.open(etcd.config(CAPACITY)).expect("store over TLS");
    let mut watch = store.watch("/registry/", 0).expect("watch");
    let kv = store.create("/registry/tls", b"1").expect("create");
    assert_eq!(store.get("/registry/tls").expect("get"), Some(kv.clone()));
    assert_eq!(next(&mut watch).kv(), &kv);

    let pki = etcd.pki().expect("pki");
    let no_client_cert = EtcdConfig {
        tls: Some(EtcdTls {
            ca_file: Some(pki.ca.clone()),
            ..EtcdTls::default()
        }),
        ..etcd.config(CAPACITY)
    };
    let err = etcd
        .open(no_client_cert)
        .expect_err("etcd wants a client certificate");
    one_line(&err);

    let half = EtcdConfig {
        tls: Some(EtcdTls {
            ca_file: Some(pki.ca.clone()),
            cert_file: Some(pki.cert.clone()),
            key_file: None,
        }),
        ..etcd.config(CAPACITY)
    };
    let text = one_line(&etcd.open(half).expect_err("a certificate without its key"));
    assert!(text.contains("key"), "{text}");
}

/// The next item of `watch` within `wait`: `None` if nothing came.
fn within(wait: Duration, watch: &mut Watch) -> Option<Option<skiff_store::Result<Event>>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async { tokio::time::timeout(wait, watch.next()).await.ok() })
}

/// Retries `f` until it succeeds or `wait` passes.
fn eventually<T>(wait: Duration, mut f: impl FnMut() -> skiff_store::Result<T>) -> T {
    let deadline = Instant::now() + wait;
    loop {
        match f() {
            Ok(out) => return out,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(err) => panic!("still failing after {wait:?}: {err}"),
        }
    }
}

#[test]
fn a_stopped_etcd_is_unavailable_until_it_is_back() {
    let etcd = EtcdCluster::start();
    let store = etcd.open(etcd.config(CAPACITY)).expect("store");
    store.ready().expect("ready");
    let before = store.create("/registry/before", b"1").expect("create");
    let mut watch = store
        .watch("/registry/", before.mod_revision - 1)
        .expect("watch");
    assert_eq!(next(&mut watch).kv(), &before);

    // Every member stopped: connections are accepted, nothing is answered.
    etcd.pause();
    let paused = Instant::now();
    // The watch ends cleanly (its client watches again) instead of waiting in silence:
    // within the time to notice (a progress request unanswered) and the grace period.
    let ended = std::thread::spawn(move || {
        let end = within(Duration::from_secs(30), &mut watch);
        (end, paused.elapsed())
    });
    let started = Instant::now();
    let err = store
        .create("/registry/during", b"x")
        .expect_err("etcd is stopped");
    assert!(started.elapsed() < Duration::from_secs(15), "{err}");
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(one_line(&err).contains("etcd is unreachable"), "{err}");
    let started = Instant::now();
    let err = store.ready().expect_err("not ready while etcd is stopped");
    assert!(started.elapsed() < Duration::from_secs(4), "{err}");
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(matches!(
        store.get("/registry/before"),
        Err(Error::Unavailable(_))
    ));
    let (end, after) = ended.join().expect("watch thread");
    assert!(matches!(end, Some(None)), "the watch did not end: {end:?}");
    assert!(
        after < Duration::from_secs(15),
        "the watch ended after {after:?}"
    );
    eprintln!("the watch ended {after:?} after etcd stopped");
    // Watching again is refused while etcd is away.
    let refused = store.watch("/registry/", before.mod_revision);
    assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
    assert!(store.ready().is_err());

    etcd.resume();
    eventually(Duration::from_secs(30), || store.ready());
    let after = eventually(Duration::from_secs(30), || {
        store.create("/registry/after", b"2")
    });
    assert_eq!(
        store.get("/registry/after").expect("get"),
        Some(after.clone())
    );
    // Watching again from the last revision seen misses nothing. (The write cut off
    // while etcd was stopped has an unknown outcome: etcd may apply it once it runs.)
    let mut again = eventually(Duration::from_secs(10), || {
        store.watch("/registry/", before.mod_revision)
    });
    loop {
        let event = next(&mut again);
        if event.key() == "/registry/during" {
            continue;
        }
        assert_eq!(event.kv(), &after);
        break;
    }
}

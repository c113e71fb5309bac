//! The behaviour every `Backend` must have. Each check takes a constructor (the argument
//! is the watch capacity) so that it can build as many stores as it needs.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use skiff_store::{
    Backend, Error, Event, KeyValue, ListResult, Revision, Watch, DEFAULT_WATCH_CAPACITY,
};

pub struct Fixture {
    pub backend: Arc<dyn Backend>,
    /// Keeps a file-backed store's directory alive for the test.
    pub _dir: Option<tempfile::TempDir>,
}

pub type Make = fn(usize) -> Fixture;

fn store(make: Make) -> Fixture {
    make(DEFAULT_WATCH_CAPACITY)
}

const WAIT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The next event, failing the test if there is none within `WAIT`.
pub fn next(watch: &mut Watch) -> Event {
    within(WAIT, watch)
        .expect("timed out waiting for an event")
        .expect("watch ended")
        .expect("watch failed")
}

fn next_n(watch: &mut Watch, n: usize) -> Vec<Event> {
    (0..n).map(|_| next(watch)).collect()
}

/// `Err` if nothing arrives within `wait`.
fn within(wait: Duration, watch: &mut Watch) -> Result<Option<skiff_store::Result<Event>>, ()> {
    runtime().block_on(async {
        tokio::time::timeout(wait, watch.next())
            .await
            .map_err(|_| ())
    })
}

fn assert_quiet(watch: &mut Watch) {
    let got = within(Duration::from_millis(100), watch);
    assert!(got.is_err(), "expected no event, got {got:?}");
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

/// What a page says of the live keys after it: that there are some exactly
/// when `expected` is not 0, and how many where the backend counts them.
#[track_caller]
fn assert_after_page(page: &ListResult, expected: usize) {
    assert_eq!(page.more, expected > 0, "more after the page");
    if let Some(n) = page.remaining {
        assert_eq!(n, expected, "remaining after the page");
    }
}

fn revisions(events: &[Event]) -> Vec<Revision> {
    events.iter().map(Event::revision).collect()
}

pub fn empty_store(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let rev = s.current_revision().expect("rev");
    assert!(
        rev >= 1,
        "an empty store must not be at revision 0 (\"any\" in Kubernetes)"
    );
    let list = s.list("", None, None).expect("list");
    assert!(list.items.is_empty());
    assert_eq!(list.revision, rev);
    assert_after_page(&list, 0);
    assert_eq!(s.get("/nothing").expect("get"), None);
    assert_eq!(s.compacted_revision(), 0);
    let mut w = s.watch("", 0).expect("watch");
    assert_quiet(&mut w);
}

pub fn create_then_get(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let before = s.current_revision().expect("rev");
    let kv = s
        .create("/registry/services/default/web", b"{\"a\":1}")
        .expect("create");
    assert_eq!(kv.key, "/registry/services/default/web");
    assert_eq!(&kv.value[..], b"{\"a\":1}");
    assert!(kv.mod_revision > before);
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(s.current_revision().expect("rev"), kv.mod_revision);
    assert_eq!(s.get(&kv.key).expect("get"), Some(kv.clone()));
    assert_eq!(s.get("/registry/services/default/we").expect("get"), None);
    assert_eq!(s.get("/registry/services/default/web2").expect("get"), None);
}

pub fn create_existing_fails(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let kv = s.create("/k", b"1").expect("create");
    match s.create("/k", b"2") {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, "/k"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(s.get("/k").expect("get"), Some(kv.clone()));

    // After a delete the key can be created again, as a new incarnation.
    s.delete("/k", None).expect("delete");
    let again = s.create("/k", b"3").expect("create again");
    assert!(again.create_revision > kv.mod_revision);
    assert_eq!(again.create_revision, again.mod_revision);
}

pub fn update_checks_revision(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let v1 = s.create("/k", b"1").expect("create");
    let v2 = s.update("/k", b"2", v1.mod_revision).expect("update");
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(v2.create_revision, v1.create_revision);
    assert_eq!(&v2.value[..], b"2");
    assert_eq!(s.get("/k").expect("get"), Some(v2.clone()));

    match s.update("/k", b"3", v1.mod_revision) {
        Err(Error::Conflict { key, current }) => {
            assert_eq!(key, "/k");
            assert_eq!(current, v2.mod_revision);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get("/k").expect("get"), Some(v2.clone()));

    assert!(matches!(
        s.update("/missing", b"x", v2.mod_revision),
        Err(Error::NotFound { key }) if key == "/missing"
    ));
    s.delete("/k", None).expect("delete");
    assert!(matches!(
        s.update("/k", b"x", v2.mod_revision),
        Err(Error::NotFound { .. })
    ));
}

pub fn delete_with_and_without_precondition(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let a = s.create("/a", b"last-a").expect("create a");
    let a = s
        .update("/a", b"newer-a", a.mod_revision)
        .expect("update a");
    let b = s.create("/b", b"last-b").expect("create b");

    match s.delete("/a", Some(a.mod_revision - 1)) {
        Err(Error::Conflict { current, .. }) => assert_eq!(current, a.mod_revision),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(s.get("/a").expect("get").is_some());

    let gone_a = s.delete("/a", Some(a.mod_revision)).expect("delete a");
    assert_eq!(&gone_a.value[..], b"newer-a");
    assert_eq!(gone_a.create_revision, a.create_revision);
    assert_eq!(gone_a.mod_revision, s.current_revision().expect("rev"));
    assert!(gone_a.mod_revision > b.mod_revision);

    let gone_b = s.delete("/b", None).expect("delete b");
    assert_eq!(&gone_b.value[..], b"last-b");
    assert!(gone_b.mod_revision > gone_a.mod_revision);

    assert_eq!(s.get("/a").expect("get"), None);
    assert!(matches!(s.delete("/a", None), Err(Error::NotFound { .. })));
    assert!(matches!(
        s.delete("/never", Some(1)),
        Err(Error::NotFound { .. })
    ));
}

pub fn failed_writes_use_no_revision(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let kv = s.create("/k", b"1").expect("create");
    let rev = s.current_revision().expect("rev");
    assert!(s.create("/k", b"1").is_err());
    assert!(s.update("/k", b"1", kv.mod_revision + 100).is_err());
    assert!(s.delete("/nope", None).is_err());
    assert_eq!(s.current_revision().expect("rev"), rev);
    let mut w = s.watch("", kv.mod_revision).expect("watch");
    assert_quiet(&mut w);
    assert_eq!(s.create("/k2", b"").expect("create").mod_revision, rev + 1);
}

pub fn revisions_strictly_increase(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let mut revs = vec![s.current_revision().expect("rev")];
    for i in 0..20 {
        let key = format!("/k{}", i % 4);
        let kv = match s.get(&key).expect("get") {
            None => s.create(&key, b"v").expect("create"),
            Some(kv) if i % 3 == 0 => s.delete(&key, Some(kv.mod_revision)).expect("delete"),
            Some(kv) => s.update(&key, b"w", kv.mod_revision).expect("update"),
        };
        revs.push(kv.mod_revision);
        assert_eq!(s.current_revision().expect("rev"), kv.mod_revision);
    }
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
}

pub fn list_prefix_is_literal(make: Make) {
    let f = store(make);
    let s = &f.backend;
    for key in [
        "/registry/pods/ab",
        "/registry/pods/a",
        "/registry/pods/b",
        "/registry/pods/a/x",
        "/registry/podsx/a",
        "/registry/pod",
        "/registry/pods",
        "/registry/services/default/a",
    ] {
        s.create(key, key.as_bytes()).expect("create");
    }
    let rev = s.current_revision().expect("rev");

    let list = s.list("/registry/pods/a", None, None).expect("list");
    assert_eq!(
        keys(&list.items),
        [
            "/registry/pods/a",
            "/registry/pods/a/x",
            "/registry/pods/ab"
        ]
    );
    assert_eq!(list.revision, rev);
    assert_after_page(&list, 0);
    for kv in &list.items {
        assert_eq!(kv.value, kv.key.as_bytes());
    }

    let list = s.list("/registry/pods/", None, None).expect("list");
    assert_eq!(
        keys(&list.items),
        [
            "/registry/pods/a",
            "/registry/pods/a/x",
            "/registry/pods/ab",
            "/registry/pods/b"
        ]
    );
    assert_eq!(
        s.list("/registry/", None, None).expect("list").items.len(),
        8
    );
    assert_eq!(s.list("", None, None).expect("list").items.len(), 8);
    assert!(s
        .list("/registry/z", None, None)
        .expect("list")
        .items
        .is_empty());
    assert_eq!(
        keys(
            &s.list("/registry/pods/a/x", None, None)
                .expect("list")
                .items
        ),
        ["/registry/pods/a/x"]
    );
}

pub fn list_pagination(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let all: Vec<String> = (0..25).map(|i| format!("/registry/pods/p{i:02}")).collect();
    for key in all.iter().rev() {
        s.create(key, b"{}").expect("create");
    }
    s.create("/registry/podz", b"outside").expect("create");
    s.create("/registry/pod", b"outside").expect("create");
    let rev = s.current_revision().expect("rev");
    let prefix = "/registry/pods/";

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s.list(prefix, after.as_deref(), Some(10)).expect("list");
        assert_eq!(page.revision, rev);
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        assert_after_page(&page, [15, 5, 0][pages]);
        pages += 1;
        if !page.more {
            break;
        }
        after = page.items.last().map(|kv| kv.key.clone());
    }
    assert_eq!(seen, all);
    assert_eq!(pages, 3);

    // An exact final page reports nothing remaining.
    let page = s.list(prefix, Some(&all[14]), Some(10)).expect("list");
    assert_eq!(page.items.len(), 10);
    assert_after_page(&page, 0);
    // start_after need not be a key, and one before the prefix is ignored.
    let page = s
        .list(prefix, Some("/registry/pods/p04x"), Some(3))
        .expect("list");
    assert_eq!(keys(&page.items), [&all[5], &all[6], &all[7]]);
    assert_after_page(&page, 17);
    let page = s.list(prefix, Some("/a"), Some(1)).expect("list");
    assert_eq!(keys(&page.items), vec![all[0].as_str()]);
    assert_after_page(&page, 24);
    // start_after past the prefix: nothing.
    let page = s.list(prefix, Some("/registry/pods0"), None).expect("list");
    assert!(page.items.is_empty());
    assert_after_page(&page, 0);
    // limit 0 returns nothing but says (and, where counted, counts) what is there.
    let page = s.list(prefix, None, Some(0)).expect("list");
    assert!(page.items.is_empty());
    assert_after_page(&page, 25);
    let page = s.list(prefix, None, Some(1000)).expect("list");
    assert_eq!(page.items.len(), 25);
    assert_after_page(&page, 0);
}

pub fn list_skips_deleted_keys(make: Make) {
    let f = store(make);
    let s = &f.backend;
    for i in 0..6 {
        let kv = s.create(&format!("/k/{i}"), b"1").expect("create");
        s.update(&kv.key, b"2", kv.mod_revision).expect("update");
    }
    s.delete("/k/1", None).expect("delete");
    s.delete("/k/3", None).expect("delete");
    s.delete("/k/5", None).expect("delete");
    let page = s.list("/k/", None, Some(2)).expect("list");
    assert_eq!(keys(&page.items), ["/k/0", "/k/2"]);
    assert_after_page(&page, 1);
    assert!(page.items.iter().all(|kv| &kv.value[..] == b"2"));
    let page = s.list("/k/", Some("/k/2"), Some(2)).expect("list");
    assert_eq!(keys(&page.items), vec!["/k/4"]);
    assert_after_page(&page, 0);
}

/// Writes a small history under /w/ and returns the events a watcher must see.
fn write_history(s: &dyn Backend) -> Vec<Event> {
    let a1 = s.create("/w/a", b"a1").expect("create a");
    let b1 = s.create("/w/b", b"b1").expect("create b");
    let a2 = s.update("/w/a", b"a2", a1.mod_revision).expect("update a");
    let gone = s.delete("/w/b", None).expect("delete b");
    let b2 = s.create("/w/b", b"b2").expect("recreate b");
    vec![
        Event::Put {
            kv: a1.clone(),
            prev: None,
        },
        Event::Put { kv: b1, prev: None },
        Event::Put {
            kv: a2,
            prev: Some(a1),
        },
        Event::Delete { kv: gone },
        Event::Put { kv: b2, prev: None },
    ]
}

pub fn watch_from_zero_replays_history(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let expected = write_history(s.as_ref());
    let mut w = s.watch("/w/", 0).expect("watch");
    assert_eq!(next_n(&mut w, expected.len()), expected);
    assert_quiet(&mut w);
    match &expected[3] {
        Event::Delete { kv } => assert_eq!(&kv.value[..], b"b1", "delete carries last value"),
        other => panic!("expected a delete, got {other:?}"),
    }
}

pub fn watch_from_middle_revision(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let expected = write_history(s.as_ref());
    let mut w = s.watch("/w/", expected[1].revision()).expect("watch");
    assert_eq!(next_n(&mut w, 3), expected[2..]);
    assert_quiet(&mut w);
    let mut w = s.watch("/w/", expected[4].revision()).expect("watch");
    assert_quiet(&mut w);
}

pub fn watch_live_events(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let start = s.current_revision().expect("rev");
    let mut w = s.watch("/w/", start).expect("watch");
    assert_quiet(&mut w);
    let expected = write_history(s.as_ref());
    assert_eq!(next_n(&mut w, expected.len()), expected);
    assert_quiet(&mut w);

    // History and live events join up: half replayed, half live.
    let mut w = s.watch("/w/", expected[2].revision()).expect("watch");
    let more = s
        .update("/w/a", b"a3", expected[2].revision())
        .expect("update");
    let mut got = next_n(&mut w, 3);
    assert_eq!(got.drain(..2).collect::<Vec<_>>(), expected[3..]);
    assert_eq!(got[0].kv(), &more);
}

pub fn watch_async_inside_runtime(make: Make) {
    let f = store(make);
    let s = f.backend.clone();
    runtime().block_on(async move {
        // watch() itself is called on the runtime thread; writes go through spawn_blocking.
        let mut w = s.watch("/w/", 0).expect("watch");
        let writer = s.clone();
        let expected = tokio::task::spawn_blocking(move || write_history(writer.as_ref()))
            .await
            .expect("writer task");
        for want in expected {
            let got = tokio::time::timeout(WAIT, w.next())
                .await
                .expect("timed out")
                .expect("ended")
                .expect("failed");
            assert_eq!(got, want);
        }
    });
}

pub fn watch_next_is_cancel_safe(make: Make) {
    let f = store(make);
    let start = f.backend.current_revision().expect("rev");
    let mut w = f.backend.watch("/cs/", start).expect("watch");
    let writes = 200;
    let writer = {
        let s = f.backend.clone();
        thread::spawn(move || {
            for i in 0..writes {
                s.create(&format!("/cs/{i}"), b"v").expect("create");
                s.create(&format!("/other/{i}"), b"v").expect("create");
                if i % 10 == 0 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    let got = runtime().block_on(async {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while got.len() < writes && tokio::time::Instant::now() < deadline {
            tokio::select! {
                ev = w.next() => got.push(ev.expect("ended").expect("failed").revision()),
                _ = tokio::time::sleep(Duration::from_micros(50)) => {}
            }
        }
        got
    });
    writer.join().expect("writer thread");
    assert_eq!(got.len(), writes, "events lost to cancelled next() calls");
    assert!(got.windows(2).all(|p| p[0] < p[1]), "{got:?}");
}

pub fn watch_filters_by_prefix(make: Make) {
    let f = store(make);
    let s = &f.backend;
    for key in [
        "/registry/pods/a",
        "/registry/pods/ab",
        "/registry/pods/b",
        "/registry/podsx",
    ] {
        s.create(key, b"old").expect("create");
    }
    let mut w = s.watch("/registry/pods/a", 0).expect("watch");
    for key in [
        "/registry/pods/bb",
        "/registry/pods/a/c",
        "/registry/pods/",
        "/registry/pods/ac",
    ] {
        s.create(key, b"new").expect("create");
    }
    let got: Vec<String> = next_n(&mut w, 4)
        .iter()
        .map(|e| e.key().to_owned())
        .collect();
    assert_eq!(
        got,
        [
            "/registry/pods/a",
            "/registry/pods/ab",
            "/registry/pods/a/c",
            "/registry/pods/ac"
        ]
    );
    assert_quiet(&mut w);
}

pub fn watch_from_future_revision(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let rev = s.current_revision().expect("rev");
    let mut w = s.watch("", rev + 2).expect("watch");
    s.create("/1", b"").expect("create");
    s.create("/2", b"").expect("create");
    let third = s.create("/3", b"").expect("create");
    assert_eq!(next(&mut w).kv(), &third);
}

pub fn compaction(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let a1 = s.create("/c/a", b"a1").expect("create");
    let b1 = s.create("/c/b", b"b1").expect("create");
    let a2 = s.update("/c/a", b"a2", a1.mod_revision).expect("update");
    let c1 = s.create("/c/c", b"c1").expect("create");
    let point = s.current_revision().expect("rev");
    let b2 = s.update("/c/b", b"b2", b1.mod_revision).expect("update");
    let gone_c = s.delete("/c/c", None).expect("delete");

    assert!(matches!(
        s.compact(gone_c.mod_revision + 1),
        Err(Error::FutureRevision { .. })
    ));
    s.compact(point).expect("compact");
    assert_eq!(s.compacted_revision(), point);
    s.compact(point - 1).expect("compacting below is a no-op");
    assert_eq!(s.compacted_revision(), point);

    match s.watch("/c/", point - 1) {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!((requested, compacted), (point - 1, point));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(matches!(s.watch("/c/", 0), Err(Error::Compacted { .. })));

    // Newer history is intact, including the values the surviving events replaced.
    let mut w = s.watch("/c/", point).expect("watch");
    assert_eq!(
        next_n(&mut w, 2),
        [
            Event::Put {
                kv: b2.clone(),
                prev: Some(b1)
            },
            Event::Delete { kv: gone_c },
        ]
    );
    assert_quiet(&mut w);

    // Current values never go away.
    assert_eq!(s.get("/c/a").expect("get"), Some(a2.clone()));
    assert_eq!(s.get("/c/c").expect("get"), None);
    assert_eq!(
        s.list("/c/", None, None).expect("list").items,
        [a2.clone(), b2.clone()]
    );
    let _ = c1;

    // Compact everything: the state is unchanged and writes continue the sequence.
    let rev = s.current_revision().expect("rev");
    s.compact(rev).expect("compact all");
    assert_eq!(s.current_revision().expect("rev"), rev);
    assert_eq!(
        s.list("/c/", None, None).expect("list").items,
        [a2.clone(), b2]
    );
    let a3 = s.update("/c/a", b"a3", a2.mod_revision).expect("update");
    assert_eq!(a3.mod_revision, rev + 1);
    let mut w = s.watch("/c/", rev).expect("watch");
    assert_eq!(
        next(&mut w),
        Event::Put {
            kv: a3,
            prev: Some(a2)
        }
    );
}

pub fn compaction_of_deleted_keys(make: Make) {
    let f = store(make);
    let s = &f.backend;
    let kv = s.create("/d/x", b"1").expect("create");
    let kv = s.update("/d/x", b"2", kv.mod_revision).expect("update");
    let gone = s.delete("/d/x", Some(kv.mod_revision)).expect("delete");
    s.compact(gone.mod_revision).expect("compact");
    assert_eq!(s.current_revision().expect("rev"), gone.mod_revision);
    assert_eq!(s.get("/d/x").expect("get"), None);
    let list = s.list("/d/", None, None).expect("list");
    assert!(list.items.is_empty());
    assert_eq!(list.revision, gone.mod_revision);
    let again = s.create("/d/x", b"3").expect("create again");
    assert_eq!(again.mod_revision, gone.mod_revision + 1);
    assert_eq!(again.create_revision, again.mod_revision);
}

pub fn concurrent_writers_unique_revisions(make: Make) {
    let f = store(make);
    let threads = 4;
    let per_thread = 100;
    let start = f.backend.current_revision().expect("rev");
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = f.backend.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut revs = Vec::new();
                for i in 0..per_thread {
                    // Every thread also fights over one shared key.
                    let kv = s.create(&format!("/t{t}/{i}"), b"v").expect("create");
                    revs.push(kv.mod_revision);
                    if let Some(cur) = s.get("/shared").expect("get") {
                        if let Ok(kv) = s.update("/shared", b"v", cur.mod_revision) {
                            revs.push(kv.mod_revision);
                        }
                    } else if let Ok(kv) = s.create("/shared", b"v") {
                        revs.push(kv.mod_revision);
                    }
                }
                revs
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        let revs = h.join().expect("writer thread");
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "per-thread order");
        all.extend(revs);
    }
    let end = f.backend.current_revision().expect("rev");
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "duplicate revisions");
    assert_eq!(unique, (start + 1..=end).collect::<HashSet<_>>());
}

pub fn watchers_started_during_writes_see_everything_once(make: Make) {
    let f = store(make);
    let start = f.backend.current_revision().expect("rev");
    let writes = 600;
    let (halfway_tx, halfway_rx) = std::sync::mpsc::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel();
    let writer = {
        let s = f.backend.clone();
        thread::spawn(move || {
            let mut last = None;
            for i in 0..writes {
                if i == 100 {
                    // Guarantee at least one watcher joins with history behind it and
                    // writes ahead of it.
                    halfway_tx.send(()).expect("signal");
                    resume_rx.recv().expect("resume");
                }
                let key = format!("/live/{}", i % 50);
                last = Some(match s.get(&key).expect("get") {
                    None => s.create(&key, b"v").expect("create").mod_revision,
                    Some(_) if i % 7 == 0 => s.delete(&key, None).expect("delete").mod_revision,
                    Some(kv) => {
                        s.update(&key, b"w", kv.mod_revision)
                            .expect("update")
                            .mod_revision
                    }
                });
                if i % 10 == 0 {
                    // Let the in-memory backend run long enough for watchers to race it.
                    thread::sleep(Duration::from_micros(100));
                }
            }
            last.expect("wrote something")
        })
    };
    // Watchers join at different moments, each from the very beginning and from "now".
    let join = || {
        let from_start = f.backend.watch("/live/", start).expect("watch");
        let now = f.backend.current_revision().expect("rev");
        let from_now = f.backend.watch("/live/", now).expect("watch");
        [(from_start, start), (from_now, now)]
    };
    halfway_rx.recv().expect("writer reached halfway");
    let mut watchers = vec![join()];
    resume_tx.send(()).expect("resume writer");
    while !writer.is_finished() && watchers.len() < 30 {
        watchers.push(join());
        thread::sleep(Duration::from_micros(200));
    }
    let end = writer.join().expect("writer thread");
    assert_eq!(end, start + writes);
    for (mut w, after) in watchers.into_iter().flatten() {
        let events = next_n(&mut w, usize::try_from(end - after).expect("count"));
        assert_eq!(revisions(&events), (after + 1..=end).collect::<Vec<_>>());
        // The writer has finished, so a duplicate would already be queued.
        let extra = within(Duration::ZERO, &mut w);
        assert!(extra.is_err(), "extra event {extra:?}");
    }
}

pub fn lagging_watcher_is_cut_off(make: Make) {
    let f = make(4);
    let s = &f.backend;
    let mut slow = s
        .watch("", s.current_revision().expect("rev"))
        .expect("watch");
    // Writers never wait for watchers.
    for i in 0..20 {
        s.create(&format!("/k{i}"), b"v").expect("create");
    }
    let got = within(WAIT, &mut slow);
    assert!(
        matches!(got, Ok(Some(Err(Error::WatchLagged)))),
        "expected WatchLagged, got {got:?}"
    );
    let after = within(WAIT, &mut slow);
    assert!(
        matches!(after, Ok(None)),
        "lagged watch must end, got {after:?}"
    );

    // A fresh watch from the same point replays the history instead.
    let mut fresh = s.watch("", 0).expect("watch");
    assert_eq!(next_n(&mut fresh, 20).len(), 20);
}

pub fn dropping_the_backend_ends_watches(make: Make) {
    let Fixture { backend, _dir } = store(make);
    let mut w = backend.watch("", 0).expect("watch");
    let kv = backend.create("/k", b"v").expect("create");
    drop(backend);
    assert_eq!(next(&mut w).kv(), &kv);
    let end = within(WAIT, &mut w);
    assert!(matches!(end, Ok(None)), "expected the end, got {end:?}");
}

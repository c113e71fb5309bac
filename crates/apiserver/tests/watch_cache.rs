//! The watch cache against the store as the reference (issue 18): random sequences of
//! creates, updates and deletes, checked by consistent lists with selectors, pages
//! walked from one snapshot while writes go on, lists at exact past revisions, gets
//! with each resourceVersion form, and watches from past revisions; then compaction,
//! a window outgrown (410 territory) and a watcher too slow to keep.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use skiff_api::registry::{self, Resource};
use skiff_apiserver::cache::{
    Cached, Caches, Freshness, Kind, ResourceCache, Start, WINDOW_EVENTS,
};
use skiff_apiserver::objects::{self, Objects};
use skiff_store::{Backend, Event, MemoryBackend, Revision};

fn pods() -> &'static Resource {
    registry::lookup("", "v1", "pods").expect("pods")
}

/// The store's contents (served form) after each revision: the reference.
type States = HashMap<Revision, BTreeMap<String, Value>>;

struct World {
    backend: Arc<dyn Backend>,
    caches: Caches,
    objects: Objects,
    states: States,
    rng: StdRng,
}

const NAMESPACES: [&str; 3] = ["a", "b", "c"];

impl World {
    fn new(seed: u64) -> Self {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        Self {
            caches: Caches::new(backend.clone()),
            objects: Objects::new(backend.clone()),
            backend,
            states: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn record(&mut self) {
        let list = self
            .backend
            .list("/registry/pods/", None, None)
            .expect("list");
        let state = list
            .items
            .iter()
            .map(|kv| {
                let v = objects::decode_as(pods(), kv).expect("decode");
                (kv.key.clone(), v)
            })
            .collect();
        self.states.insert(list.revision, state);
    }

    fn pod(&mut self, ns: &str, name: &str) -> Vec<u8> {
        let app = ["web", "db"][self.rng.random_range(0..2)];
        let node = ["n1", "n2", ""][self.rng.random_range(0..3)];
        let gen = self.rng.random_range(0..1000);
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app}, "annotations": {"gen": gen.to_string()}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        });
        // Some pods are not scheduled: the index files them under "".
        if !node.is_empty() {
            pod["spec"]["nodeName"] = json!(node);
        }
        serde_json::to_vec(&pod).expect("json")
    }

    /// One random write (a create, update or delete of one of 30 pods).
    fn write(&mut self) {
        let ns = NAMESPACES[self.rng.random_range(0..3)];
        let name = format!("p{}", self.rng.random_range(0..10));
        let key = pods().key(Some(ns), &name);
        let current = self.backend.get(&key).expect("get");
        match current {
            None => {
                let v = self.pod(ns, &name);
                self.backend.create(&key, &v).expect("create");
            }
            Some(kv) if self.rng.random_bool(0.3) => {
                self.backend
                    .delete(&key, Some(kv.mod_revision))
                    .expect("delete");
            }
            Some(kv) => {
                let v = self.pod(ns, &name);
                self.backend
                    .update(&key, &v, kv.mod_revision)
                    .expect("update");
            }
        }
        self.record();
    }

    fn current(&self) -> Revision {
        self.backend.current_revision().expect("revision")
    }

    async fn cache(&self, freshness: Freshness) -> (Arc<ResourceCache>, Option<Revision>) {
        match self.caches.fresh(&self.objects, pods(), freshness).await {
            Ok(c) => c,
            Err(_) => panic!("the cache did not serve {freshness:?}"),
        }
    }
}

/// A selector's description, its predicate, and the node it pins (read through the
/// pods' `spec.nodeName` index).
type Selector = (
    String,
    Box<dyn Fn(&Value) -> bool + Send + Sync>,
    Option<&'static str>,
);

fn selector(rng: &mut StdRng) -> Selector {
    match rng.random_range(0..3) {
        0 => ("everything".into(), Box::new(|_: &Value| true), None),
        1 => {
            let app = ["web", "db"][rng.random_range(0..2)];
            (
                format!("app={app}"),
                Box::new(move |v: &Value| v["metadata"]["labels"]["app"] == app),
                None,
            )
        }
        _ => {
            let node = ["n1", "n2", ""][rng.random_range(0..3)];
            (
                format!("spec.nodeName={node}"),
                Box::new(move |v: &Value| v["spec"]["nodeName"].as_str().unwrap_or("") == node),
                Some(node),
            )
        }
    }
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| {
            format!(
                "{}/{}@{}",
                v["metadata"]["namespace"], v["metadata"]["name"], v["metadata"]["resourceVersion"]
            )
        })
        .collect()
}

fn expected(
    state: &BTreeMap<String, Value>,
    prefix: &str,
    keep: &dyn Fn(&Value) -> bool,
) -> Vec<Value> {
    state
        .iter()
        .filter(|(k, v)| k.starts_with(prefix) && keep(v))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The store's events after `after` up to `through`, as (key, revision, type).
async fn store_events(
    backend: &Arc<dyn Backend>,
    prefix: &str,
    after: Revision,
    through: Revision,
) -> Vec<(String, Revision, Kind)> {
    // All of the pods: every write of these tests is one, so `through` is seen even
    // when none of its events is under `prefix`.
    let mut w = backend
        .watch("/registry/pods/", after)
        .expect("store watch");
    let mut out = Vec::new();
    if after >= through {
        return out;
    }
    while let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_secs(2), w.next()).await {
        if ev.revision() > through {
            break;
        }
        if !ev.key().starts_with(prefix) {
            if ev.revision() >= through {
                break;
            }
            continue;
        }
        let kind = match &ev {
            Event::Put { prev: None, .. } => Kind::Added,
            Event::Put { .. } => Kind::Modified,
            Event::Delete { .. } => Kind::Deleted,
        };
        out.push((ev.key().to_owned(), ev.revision(), kind));
        if ev.revision() >= through {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_agrees_with_the_store_on_random_histories() {
    for seed in 0..4u64 {
        let mut w = World::new(seed);
        w.record();
        // Some history before the cache exists: it loads from a listing.
        for _ in 0..40 {
            w.write();
        }
        let (cache, _) = w.cache(Freshness::Consistent).await;
        let loaded_at = cache.revision();
        for step in 0..300 {
            w.write();
            if step % 7 != 0 {
                continue;
            }
            let now = w.current();
            let ns = match w.rng.random_range(0..4) {
                3 => None,
                i => Some(NAMESPACES[i]),
            };
            let prefix = pods().key_prefix(ns);
            let (what, keep, pinned) = selector(&mut w.rng);

            // A consistent list sees every write that returned.
            let (c, at) = w.cache(Freshness::Consistent).await;
            let page = c
                .page(
                    &prefix,
                    at,
                    None,
                    None,
                    &|c: &Cached| keep(&c.value()),
                    pinned,
                )
                .expect("page");
            assert!(
                page.revision >= now,
                "seed {seed}: consistent list at {} < {now}",
                page.revision
            );
            let got: Vec<Value> = page.items.iter().map(|c| c.value()).collect();
            assert_eq!(
                names(&got),
                names(&expected(&w.states[&now], &prefix, &keep)),
                "seed {seed} step {step}: list {prefix} {what}"
            );
            // Each object's bytes are its value.
            for c in &page.items {
                let v = c.value();
                assert_eq!(c.field("metadata.name"), v["metadata"]["name"].as_str());
                assert_eq!(c.label("app"), v["metadata"]["labels"]["app"].as_str());
            }

            // Pages from one snapshot, with writes between them.
            let limit = w.rng.random_range(1..6);
            let first = c
                .page(
                    &prefix,
                    None,
                    None,
                    Some(limit),
                    &|c: &Cached| keep(&c.value()),
                    pinned,
                )
                .expect("first page");
            let snapshot = first.revision;
            let mut got: Vec<Value> = first.items.iter().map(|c| c.value()).collect();
            let mut next = first.continue_after.clone();
            while let Some(after) = next {
                w.write();
                let (c, at) = w.cache(Freshness::Exact(snapshot)).await;
                let p = c
                    .page(
                        &prefix,
                        at,
                        Some(&after),
                        Some(limit),
                        &|c: &Cached| keep(&c.value()),
                        pinned,
                    )
                    .expect("next page");
                assert_eq!(p.revision, snapshot);
                got.extend(p.items.iter().map(|c| c.value()));
                next = p.continue_after;
            }
            assert_eq!(
                names(&got),
                names(&expected(&w.states[&snapshot], &prefix, &keep)),
                "seed {seed} step {step}: pages of {limit} {prefix} {what}"
            );

            // A list at an exact past revision the window still holds.
            let past = w.rng.random_range(loaded_at..=w.current());
            let (c, at) = w.cache(Freshness::Exact(past)).await;
            let p = c
                .page(
                    &prefix,
                    at,
                    None,
                    None,
                    &|c: &Cached| keep(&c.value()),
                    pinned,
                )
                .expect("exact");
            let got: Vec<Value> = p.items.iter().map(|c| c.value()).collect();
            assert_eq!(
                names(&got),
                names(&expected(&w.states[&past], &prefix, &keep)),
                "seed {seed}: exact {past}"
            );

            // Gets: "0" (any), not older than now.
            let now = w.current();
            let key = pods().key(
                Some(NAMESPACES[w.rng.random_range(0..3)]),
                &format!("p{}", w.rng.random_range(0..10)),
            );
            for f in [Freshness::NotOlderThan(now), Freshness::Any] {
                let (c, _) = w.cache(f).await;
                let (found, rev) = c.get(&key);
                assert!(rev >= now);
                assert_eq!(
                    found.map(|c| c.value()),
                    w.states[&now].get(&key).cloned(),
                    "get {key} {f:?}"
                );
            }

            // A watch from a past revision replays what the store's watch replays.
            let from = w.rng.random_range(loaded_at..=now);
            let sub = c.subscribe(&prefix, Start::After(from)).expect("subscribe");
            let got: Vec<_> = sub
                .replay
                .iter()
                .map(|e| (e.key.clone(), e.revision, e.kind))
                .collect();
            assert_eq!(
                got,
                store_events(&w.backend, &prefix, from, now).await,
                "seed {seed}: watch {prefix} from {from}"
            );
            // Then live events, the same as the store's.
            let mut live = c
                .subscribe(&prefix, Start::After(now))
                .expect("subscribe")
                .live;
            for _ in 0..5 {
                w.write();
            }
            let through = w.current();
            let mut got = Vec::new();
            while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(2), live.recv()).await {
                if e.key.starts_with(&prefix) {
                    got.push((e.key.clone(), e.revision, e.kind));
                }
                if e.revision >= through {
                    break;
                }
            }
            assert_eq!(
                got,
                store_events(&w.backend, &prefix, now, through).await,
                "seed {seed}: live {prefix}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_an_outgrown_window_end_in_410s() {
    let mut w = World::new(99);
    w.record();
    for _ in 0..20 {
        w.write();
    }
    let (cache, _) = w.cache(Freshness::Consistent).await;
    let loaded_at = cache.revision();
    for _ in 0..20 {
        w.write();
    }
    // The store compacts; the cache still serves its window, as upstream's does.
    let compact_at = w.current() - 5;
    w.backend.compact(compact_at).expect("compact");
    assert!(w.backend.watch("/registry/pods/", loaded_at).is_err());
    let (cache, _) = w.cache(Freshness::Consistent).await;
    let sub = cache
        .subscribe("/registry/pods/", Start::After(loaded_at))
        .expect("in the window");
    assert_eq!(sub.replay.len() as i64, w.current() - loaded_at);

    // More events than the window holds: the oldest revisions are gone.
    let key = pods().key(Some("a"), "busy");
    let v = w.pod("a", "busy");
    let mut rev = w.backend.create(&key, &v).expect("create").mod_revision;
    for _ in 0..WINDOW_EVENTS + 10 {
        rev = w
            .backend
            .update(&key, &v, rev)
            .expect("update")
            .mod_revision;
    }
    let (c, _) = w.cache(Freshness::Consistent).await;
    let old = c
        .subscribe("/registry/pods/", Start::After(loaded_at))
        .err()
        .expect("410");
    assert!(old.oldest > loaded_at);
    assert!(c
        .page(
            "/registry/pods/",
            Some(loaded_at),
            None,
            None,
            &|_| true,
            None
        )
        .is_err());
    // The window's oldest revision is still good.
    let sub = c
        .subscribe("/registry/pods/", Start::After(old.oldest))
        .expect("oldest");
    assert_eq!(sub.replay.len(), WINDOW_EVENTS);
    // A revision newer than anything seen is upstream's "Too large resource version".
    let too_new = w.current() + 100;
    match w
        .caches
        .fresh(&w.objects, pods(), Freshness::NotOlderThan(too_new))
        .await
    {
        Err(skiff_apiserver::cache::Miss::Fail(e)) => {
            assert_eq!((e.code, e.reason), (504, "Timeout"));
            assert!(
                e.message.starts_with("Too large resource version"),
                "{}",
                e.message
            );
        }
        _ => panic!("a revision from the future was served"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_is_cut_off_and_the_others_keep_up() {
    let mut w = World::new(7);
    w.record();
    let (cache, _) = w.cache(Freshness::Consistent).await;
    let slow = cache
        .subscribe("/registry/pods/", Start::After(cache.revision()))
        .expect("slow");
    let mut fast = cache
        .subscribe("/registry/pods/", Start::After(cache.revision()))
        .expect("fast")
        .live;
    let key = pods().key(Some("a"), "busy");
    let v = w.pod("a", "busy");
    let mut rev = w.backend.create(&key, &v).expect("create").mod_revision;
    let total = skiff_apiserver::cache::WATCHER_BUFFER + 100;
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < total + 1 {
            fast.recv().await.expect("the fast watcher keeps up");
            n += 1;
        }
        n
    });
    for _ in 0..total {
        rev = w
            .backend
            .update(&key, &v, rev)
            .expect("update")
            .mod_revision;
    }
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), reader)
            .await
            .expect("in time")
            .expect("task"),
        total + 1
    );
    let mut slow = slow.live;
    assert!(matches!(
        slow.recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Lagged(_))
    ));
}

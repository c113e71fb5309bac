//! The machinery shared by the controllers: one informer (a kube-rs reflector
//! cache) per kind, de-duplicating work queues, write expectations, and the
//! dispatcher that turns every observed change into the keys of the objects that
//! must be reconciled because of it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, Notify};

use crate::{Result, Settings};

/// Namespace (empty for cluster-scoped objects) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub ns: String,
    pub name: String,
}

impl Key {
    pub fn new(ns: &str, name: &str) -> Self {
        Key {
            ns: ns.to_string(),
            name: name.to_string(),
        }
    }

    pub fn of<K: Resource>(o: &K) -> Self {
        let m = o.meta();
        Key::new(
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
        )
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ns.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.ns, self.name)
        }
    }
}

/// A work queue that holds each key at most once: a key added while waiting is
/// not added again, so bursts of changes collapse into one reconcile.
#[derive(Default)]
pub struct Queue {
    inner: Mutex<(VecDeque<Key>, HashSet<Key>)>,
    notify: Notify,
}

impl Queue {
    pub fn add(&self, key: Key) {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if q.1.insert(key.clone()) {
            q.0.push_back(key);
            self.notify.notify_one();
        }
    }

    pub fn add_after(self: &Arc<Self>, key: Key, after: Duration) {
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            q.add(key);
        });
    }

    pub async fn next(&self) -> Key {
        loop {
            {
                let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(k) = q.0.pop_front() {
                    q.1.remove(&k);
                    return k;
                }
            }
            self.notify.notified().await;
        }
    }
}

/// What a controller wrote and has not yet seen in its cache. Upstream calls
/// these "expectations": until the cache catches up, a reconcile would act on
/// stale data (and, say, create a second set of pods), so the owner waits.
pub struct Tracker {
    /// child -> (owner, the resourceVersion we wrote or None for a deletion, deadline)
    inner: Mutex<HashMap<Key, Expectation>>,
    /// The child as the cache has it now: (resourceVersion, terminating).
    cached: CacheLookup,
}

/// (owner, the resourceVersion written or `None` for a deletion, deadline).
type Expectation = (Key, Option<String>, Instant);

/// A child's (resourceVersion, terminating) in the cache.
type CacheLookup = Box<dyn Fn(&Key) -> Option<(String, bool)> + Send + Sync>;

/// How long an expectation holds before the owner reconciles anyway (upstream: 5 min;
/// ours is shorter because a lost watch event here is only a relist away).
const EXPECTATION_TTL: Duration = Duration::from_secs(15);

/// Whether `seen` is `want` or later. resourceVersions are opaque, but every
/// server we know makes them increasing integers; equality is the fallback.
fn caught_up(seen: &str, want: &str) -> bool {
    match (seen.parse::<u64>(), want.parse::<u64>()) {
        (Ok(a), Ok(b)) => a >= b,
        _ => seen == want,
    }
}

impl Tracker {
    pub fn new<K>(store: Store<K>) -> Self
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        Tracker {
            inner: Mutex::default(),
            cached: Box::new(move |k: &Key| {
                store
                    .get(&reflector::ObjectRef::new(&k.name).within(&k.ns))
                    .map(|o| {
                        let m = o.meta();
                        (
                            m.resource_version.clone().unwrap_or_default(),
                            m.deletion_timestamp.is_some(),
                        )
                    })
            }),
        }
    }

    pub fn expect_write(&self, owner: &Key, child: Key, resource_version: Option<String>) {
        self.expect_write_from(owner, child, resource_version, None)
    }

    /// `sent` is the resourceVersion the write was based on: a write that
    /// changed nothing keeps it and produces no watch event, so nothing is
    /// expected then.
    pub fn expect_write_from(
        &self,
        owner: &Key,
        child: Key,
        resource_version: Option<String>,
        sent: Option<&str>,
    ) {
        let want = resource_version.unwrap_or_default();
        if sent == Some(want.as_str()) {
            return;
        }
        // The watch event may have been handled before this call: the cache
        // already shows it then.
        if let Some((rv, terminating)) = (self.cached)(&child) {
            if terminating || want.is_empty() || caught_up(&rv, &want) {
                return;
            }
        }
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(
            child,
            (owner.clone(), Some(want), Instant::now() + EXPECTATION_TTL),
        );
    }

    pub fn expect_delete(&self, owner: &Key, child: Key) {
        if (self.cached)(&child).is_none_or(|(_, terminating)| terminating) {
            return;
        }
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(
            child,
            (owner.clone(), None, Instant::now() + EXPECTATION_TTL),
        );
    }

    /// The cache saw `child` at `resource_version`, or (`None`) deleted or
    /// terminating: a deletion counts as observed once the object carries a
    /// deletionTimestamp, as upstream's expectations do.
    pub fn observe(&self, child: &Key, resource_version: Option<&str>) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let done = match (m.get(child), resource_version) {
            (Some((_, Some(want), _)), Some(rv)) => want.is_empty() || caught_up(rv, want),
            (Some(_), None) => true,
            _ => false,
        };
        if done {
            m.remove(child);
        }
    }

    /// Whether `owner` still waits for its cache to catch up.
    pub fn pending(&self, owner: &Key) -> bool {
        let now = Instant::now();
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, (_, _, deadline)| *deadline > now);
        m.values().any(|(o, _, _)| o == owner)
    }
}

/// The informer caches every controller reads from.
#[derive(Clone)]
pub struct Cache {
    pub pods: Store<Pod>,
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub endpoints: Store<Endpoints>,
    pub replicasets: Store<ReplicaSet>,
    pub deployments: Store<Deployment>,
    pub statefulsets: Store<StatefulSet>,
    pub nodes: Store<Node>,
    /// Node heartbeats: the Leases in `kube-node-lease` only.
    pub leases: Store<Lease>,
    /// Jobs, CronJobs, DaemonSets, ReplicationControllers.
    pub workloads: crate::workloads::Stores,
}

impl Cache {
    pub fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state_filter(|p| p.metadata.namespace.as_deref() == Some(ns))
    }

    async fn wait_ready(&self) {
        let _ = self.pods.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
        let _ = self.endpoints.wait_until_ready().await;
        let _ = self.replicasets.wait_until_ready().await;
        let _ = self.deployments.wait_until_ready().await;
        let _ = self.statefulsets.wait_until_ready().await;
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.leases.wait_until_ready().await;
        self.workloads.wait_ready().await;
    }
}

/// One observed change, as the dispatcher sees it.
pub enum Change {
    Pod(Arc<Pod>, bool),
    Service(Arc<Service>, bool),
    Slice(Arc<EndpointSlice>, bool),
    Endpoints(Arc<Endpoints>, bool),
    ReplicaSet(Arc<ReplicaSet>, bool),
    Deployment(Arc<Deployment>, bool),
    StatefulSet(Arc<StatefulSet>, bool),
    Node(Arc<Node>, bool),
    Lease(Arc<Lease>, bool),
    Workload(crate::workloads::Change),
    /// An informer (re)listed: every owner is reconciled again, since deletions
    /// during a disconnect are not reported one by one.
    Resynced,
}

/// The queues of the controllers.
#[derive(Default)]
pub struct Queues {
    pub endpointslice: Arc<Queue>,
    pub mirroring: Arc<Queue>,
    pub endpoints: Arc<Queue>,
    pub replicaset: Arc<Queue>,
    pub deployment: Arc<Queue>,
    pub statefulset: Arc<Queue>,
    pub scheduler: Arc<Queue>,
    pub gc: Arc<Queue>,
    /// Nodes.
    pub nodeipam: Arc<Queue>,
    /// Nodes.
    pub nodelifecycle: Arc<Queue>,
    /// Pods.
    pub taint_eviction: Arc<Queue>,
    /// Pods.
    pub podgc: Arc<Queue>,
    pub workloads: crate::workloads::Queues,
}

/// Everything a reconcile needs.
pub struct Ctx {
    /// The controller manager's client (the caches) and each controller's own
    /// (its writes): see [`crate::clients`].
    pub clients: crate::clients::Clients,
    pub settings: Settings,
    pub cache: Cache,
    pub queues: Queues,
    /// EndpointSlices written per Service (and per mirrored Endpoints).
    pub slice_writes: Tracker,
    /// Pods written per ReplicaSet / StatefulSet.
    pub pod_writes: Tracker,
    /// ReplicaSets written per Deployment.
    pub rs_writes: Tracker,
    pub events: crate::events::Recorder,
    /// What the controllers keep in memory besides the caches.
    pub scheduler: crate::scheduler::State,
    pub ipam: crate::nodeipam::State,
    pub lifecycle: crate::nodelifecycle::State,
    pub eviction: crate::taint_eviction::State,
    pub podgc: crate::podgc::State,
}

pub(crate) fn informer<K>(
    client: &Client,
    tx: mpsc::UnboundedSender<Change>,
    wrap: fn(Arc<K>, bool) -> Change,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    informer_on(Api::all(client.clone()), tx, wrap)
}

fn informer_on<K>(
    api: Api<K>,
    tx: mpsc::UnboundedSender<Change>,
    wrap: fn(Arc<K>, bool) -> Change,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        loop {
            // A dropped `run` (a leader that lost its Lease) closes the channel:
            // the watch stops then, not at its next event.
            let ev = tokio::select! {
                ev = stream.next() => ev,
                () = tx.closed() => return,
            };
            let Some(ev) = ev else { return };
            let change = match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    wrap(Arc::new(o), false)
                }
                Ok(watcher::Event::Delete(o)) => wrap(Arc::new(o), true),
                Ok(watcher::Event::InitDone) => Change::Resynced,
                Ok(watcher::Event::Init) => continue,
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                    continue;
                }
            };
            if tx.send(change).is_err() {
                return;
            }
        }
    });
    reader
}

/// Runs every enabled controller until the client's server goes away for good.
/// Dropping the future stops them all (workers aborted, watches closed), so a
/// leader that loses its Lease leaves nothing running.
pub async fn run(clients: impl Into<crate::clients::Clients>, settings: Settings) -> Result<()> {
    let clients = clients.into();
    // The caches are the controller manager's shared informers.
    let client = clients.shared().clone();
    // Invalid flags stop everything before it starts, as upstream.
    let ipam = crate::nodeipam::State::new(&settings)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cache = Cache {
        pods: informer(&client, tx.clone(), Change::Pod),
        services: informer(&client, tx.clone(), Change::Service),
        slices: informer(&client, tx.clone(), Change::Slice),
        endpoints: informer(&client, tx.clone(), Change::Endpoints),
        replicasets: informer(&client, tx.clone(), Change::ReplicaSet),
        deployments: informer(&client, tx.clone(), Change::Deployment),
        statefulsets: informer(&client, tx.clone(), Change::StatefulSet),
        nodes: informer(&client, tx.clone(), Change::Node),
        workloads: crate::workloads::Stores::start(&client, &tx),
        leases: informer_on(
            Api::namespaced(client.clone(), crate::nodelifecycle::LEASE_NAMESPACE),
            tx,
            Change::Lease,
        ),
    };
    let ctx = Arc::new(Ctx {
        events: crate::events::Recorder::new(clients.clone()),
        clients,
        settings,
        cache: cache.clone(),
        queues: Queues::default(),
        slice_writes: Tracker::new(cache.slices.clone()),
        pod_writes: Tracker::new(cache.pods.clone()),
        rs_writes: Tracker::new(cache.replicasets.clone()),
        scheduler: Default::default(),
        ipam,
        lifecycle: Default::default(),
        eviction: Default::default(),
        podgc: Default::default(),
    });
    ctx.cache.wait_ready().await;
    tracing::info!("controller caches synced");

    // A JoinSet aborts its tasks when dropped, with this future.
    let mut workers = tokio::task::JoinSet::new();
    macro_rules! worker {
        ($name:literal, $($queue:ident).+, $reconcile:path) => {
            if ctx.settings.enabled($name) {
                workers.spawn(work(
                    $name,
                    ctx.clone(),
                    ctx.queues.$($queue).+.clone(),
                    |c, k| Box::pin($reconcile(c, k)),
                ));
            }
        };
    }
    worker!(
        "endpointslice",
        endpointslice,
        crate::endpointslice::reconcile
    );
    worker!(
        "endpointslicemirroring",
        mirroring,
        crate::mirroring::reconcile
    );
    worker!("endpoints", endpoints, crate::endpoints::reconcile);
    worker!("replicaset", replicaset, crate::replicaset::reconcile);
    worker!("deployment", deployment, crate::deployment::reconcile);
    worker!("statefulset", statefulset, crate::statefulset::reconcile);
    worker!("scheduler", scheduler, crate::scheduler::reconcile);
    worker!("garbagecollector", gc, crate::gc::reconcile);
    if ctx.ipam.active() {
        worker!("nodeipam", nodeipam, crate::nodeipam::reconcile);
    }
    worker!(
        "nodelifecycle",
        nodelifecycle,
        crate::nodelifecycle::reconcile
    );
    worker!(
        "taint-eviction-controller",
        taint_eviction,
        crate::taint_eviction::reconcile
    );
    worker!("pod-garbage-collector", podgc, crate::podgc::reconcile);
    worker!("job", workloads.job, crate::job::reconcile);
    worker!("cronjob", workloads.cronjob, crate::cronjob::reconcile);
    worker!(
        "daemonset",
        workloads.daemonset,
        crate::daemonset::reconcile
    );
    worker!(
        "replicationcontroller",
        workloads.rc,
        crate::replicationcontroller::reconcile
    );
    spawn_per_namespace(&ctx, &mut workers);
    if ctx.settings.enabled("nodelifecycle") {
        // Each node is also rechecked at its own deadline; this pass catches
        // the rest (zone changes, retries), as upstream's monitor period.
        let (ctx, every) = (ctx.clone(), ctx.settings.node_monitor_period);
        workers.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                for n in ctx.cache.nodes.state() {
                    ctx.queues.nodelifecycle.add(Key::of(&*n));
                }
            }
        });
    }

    enqueue_all(&ctx);
    while let Some(change) = rx.recv().await {
        dispatch(&ctx, change);
    }
    workers.abort_all();
    Ok(())
}

/// The controllers that keep an object in every namespace run on their own
/// watches ([`crate::per_namespace`]), beside the shared caches.
fn spawn_per_namespace(ctx: &Ctx, workers: &mut tokio::task::JoinSet<()>) {
    if ctx.settings.enabled("disruption") {
        workers.spawn(crate::disruption::run(
            ctx.cache.clone(),
            ctx.clients.shared().clone(),
            ctx.clients.of("disruption"),
        ));
    }
    if ctx.settings.enabled("serviceaccount") {
        workers.spawn(crate::serviceaccounts::run(
            ctx.clients.shared().clone(),
            ctx.clients.of("serviceaccount"),
        ));
    }
    let Some(file) = &ctx.settings.root_ca_file else {
        return;
    };
    if ctx.settings.enabled("root-ca-cert-publisher") {
        match std::fs::read_to_string(file) {
            Ok(pem) => {
                workers.spawn(crate::rootca::run(
                    ctx.clients.shared().clone(),
                    ctx.clients.of("root-ca-cert-publisher"),
                    pem,
                ));
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "no cluster CA: root-ca-cert-publisher not started")
            }
        }
    }
}

type ReconcileFn = fn(
    Arc<Ctx>,
    Key,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<Duration>>> + Send>,
>;

/// Consecutive failures of one key after which each further one is logged as
/// a warning (the back-off is then 40 ms and doubling).
const PERSISTENT_FAILURES: u32 = 3;

async fn work(name: &'static str, ctx: Arc<Ctx>, queue: Arc<Queue>, reconcile: ReconcileFn) {
    let mut failures: HashMap<Key, u32> = HashMap::new();
    loop {
        let key = queue.next().await;
        match reconcile(ctx.clone(), key.clone()).await {
            Ok(again) => {
                failures.remove(&key);
                if let Some(after) = again {
                    queue.add_after(key, after);
                }
            }
            Err(e) => {
                // Exponential backoff per key, as upstream's rate-limited queues:
                // 5 ms doubling up to 30 s.
                let n = failures.entry(key.clone()).or_insert(0);
                *n = (*n + 1).min(13);
                let delay = Duration::from_millis(5u64 << *n).min(Duration::from_secs(30));
                // A failure or two is a race with another writer and retried at
                // once; one that keeps coming back is what an operator (or a
                // failed test's log) needs to see, as upstream's "error syncing".
                if *n >= PERSISTENT_FAILURES {
                    tracing::warn!(controller = name, key = %key, error = %e, failures = *n, ?delay, "error syncing; retrying");
                } else {
                    tracing::debug!(controller = name, key = %key, error = %e, ?delay, "reconcile failed; retrying");
                }
                queue.add_after(key, delay);
            }
        }
    }
}

fn enqueue_all(ctx: &Ctx) {
    let q = &ctx.queues;
    for s in ctx.cache.services.state() {
        q.endpointslice.add(Key::of(&*s));
        q.endpoints.add(Key::of(&*s));
        q.mirroring.add(Key::of(&*s));
    }
    for e in ctx.cache.endpoints.state() {
        q.endpoints.add(Key::of(&*e));
    }
    for o in ctx.cache.replicasets.state() {
        q.replicaset.add(Key::of(&*o));
        q.gc.add(gc_key("ReplicaSet", &*o));
    }
    for o in ctx.cache.deployments.state() {
        q.deployment.add(Key::of(&*o));
    }
    for o in ctx.cache.statefulsets.state() {
        q.statefulset.add(Key::of(&*o));
    }
    for p in ctx.cache.pods.state() {
        if crate::scheduler::needs_scheduling(&p) {
            q.scheduler.add(Key::of(&*p));
        }
        if !p.owner_references().is_empty() {
            q.gc.add(gc_key("Pod", &*p));
        }
    }
    for s in ctx.cache.slices.state() {
        if !s.owner_references().is_empty() {
            q.gc.add(gc_key("EndpointSlice", &*s));
        }
    }
    for n in ctx.cache.nodes.state() {
        q.nodeipam.add(Key::of(&*n));
        q.nodelifecycle.add(Key::of(&*n));
        crate::taint_eviction::on_node(ctx, &n);
    }
    for p in ctx.cache.pods.state() {
        crate::podgc::on_pod(ctx, &p);
    }
    crate::workloads::enqueue_all(ctx);
}

/// GC keys carry the kind in the namespace field: `Kind/namespace`.
pub fn gc_key<K: Resource>(kind: &str, o: &K) -> Key {
    let k = Key::of(o);
    Key::new(&format!("{kind}/{}", k.ns), &k.name)
}

/// An owner being deleted with an `orphan`/`foregroundDeletion` finalizer.
pub(crate) fn gc_finalize<K: Resource>(ctx: &Ctx, kind: &str, o: &K) {
    if crate::gc::needs_finalizing(o.meta()) {
        let k = Key::of(o);
        ctx.queues
            .gc
            .add(Key::new(&format!("Owner:{kind}/{}", k.ns), &k.name));
    }
}

/// Owners of `o` that are gone: enqueue the dependents of a deleted object.
pub(crate) fn gc_dependents(ctx: &Ctx, uid: &str) {
    let refers = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter().any(|r| r.uid == uid)
    };
    for p in ctx
        .cache
        .pods
        .state_filter(|p| refers(p.owner_references()))
    {
        ctx.queues.gc.add(gc_key("Pod", &*p));
    }
    for r in ctx
        .cache
        .replicasets
        .state_filter(|r| refers(r.owner_references()))
    {
        ctx.queues.gc.add(gc_key("ReplicaSet", &*r));
    }
    for s in ctx
        .cache
        .slices
        .state_filter(|s| refers(s.owner_references()))
    {
        ctx.queues.gc.add(gc_key("EndpointSlice", &*s));
    }
    crate::workloads::gc_dependents(ctx, uid);
}

fn controller_of<K: Resource>(o: &K, kind: &str) -> Option<Key> {
    o.owner_references()
        .iter()
        .find(|r| r.controller == Some(true) && r.kind == kind)
        .map(|r| Key::new(o.meta().namespace.as_deref().unwrap_or(""), &r.name))
}

fn dispatch(ctx: &Ctx, change: Change) {
    let q = &ctx.queues;
    match change {
        Change::Resynced => enqueue_all(ctx),
        Change::Pod(pod, deleted) => {
            let key = Key::of(&*pod);
            gc_finalize(ctx, "Pod", &*pod);
            ctx.pod_writes.observe(
                &key,
                if deleted {
                    None
                } else {
                    pod.metadata.resource_version.as_deref()
                },
            );
            for svc in crate::endpointslice::services_for_pod(&ctx.cache, &pod) {
                q.endpointslice.add(svc.clone());
                q.endpoints.add(svc);
            }
            match controller_of(&*pod, "ReplicaSet") {
                Some(rs) => q.replicaset.add(rs),
                None => {
                    for rs in crate::replicaset::selecting(&ctx.cache, &pod) {
                        q.replicaset.add(rs);
                    }
                }
            }
            if let Some(sts) = controller_of(&*pod, "StatefulSet") {
                q.statefulset.add(sts);
            }
            crate::workloads::on_pod(ctx, &pod);
            if !deleted && crate::scheduler::needs_scheduling(&pod) {
                q.scheduler.add(key);
            }
            crate::taint_eviction::on_pod(ctx, &pod);
            if !deleted {
                crate::podgc::on_pod(ctx, &pod);
                crate::nodelifecycle::on_pod(ctx, &pod);
            }
            if deleted {
                if let Some(uid) = &pod.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            } else if !pod.owner_references().is_empty() {
                q.gc.add(gc_key("Pod", &*pod));
            }
        }
        Change::Service(svc, deleted) => {
            let key = Key::of(&*svc);
            gc_finalize(ctx, "Service", &*svc);
            if deleted {
                if let Some(uid) = &svc.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            }
            q.endpointslice.add(key.clone());
            q.endpoints.add(key.clone());
            q.mirroring.add(key);
        }
        Change::Slice(slice, deleted) => {
            let key = Key::of(&*slice);
            ctx.slice_writes.observe(
                &key,
                if deleted {
                    None
                } else {
                    slice.metadata.resource_version.as_deref()
                },
            );
            let labels = slice.labels();
            if let Some(svc) = labels.get(crate::endpointslice::LABEL_SERVICE_NAME) {
                let svc = Key::new(&key.ns, svc);
                match labels
                    .get(crate::endpointslice::LABEL_MANAGED_BY)
                    .map(String::as_str)
                {
                    Some(crate::endpointslice::MANAGED_BY) => q.endpointslice.add(svc),
                    Some(crate::mirroring::MANAGED_BY) => q.mirroring.add(svc),
                    _ => {}
                }
            }
            if !deleted && !slice.owner_references().is_empty() {
                q.gc.add(gc_key("EndpointSlice", &*slice));
            }
        }
        Change::Endpoints(ep, deleted) => {
            let key = Key::of(&*ep);
            q.endpoints.add(key.clone());
            q.mirroring.add(key);
            if deleted {
                if let Some(uid) = &ep.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            }
        }
        Change::ReplicaSet(rs, deleted) => {
            let key = Key::of(&*rs);
            gc_finalize(ctx, "ReplicaSet", &*rs);
            ctx.rs_writes.observe(
                &key,
                if deleted {
                    None
                } else {
                    rs.metadata.resource_version.as_deref()
                },
            );
            q.replicaset.add(key);
            if let Some(d) = controller_of(&*rs, "Deployment") {
                q.deployment.add(d);
            } else {
                for d in crate::deployment::selecting(&ctx.cache, &rs) {
                    q.deployment.add(d);
                }
            }
            if deleted {
                if let Some(uid) = &rs.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            } else if !rs.owner_references().is_empty() {
                q.gc.add(gc_key("ReplicaSet", &*rs));
            }
        }
        Change::Deployment(d, deleted) => {
            gc_finalize(ctx, "Deployment", &*d);
            q.deployment.add(Key::of(&*d));
            if deleted {
                if let Some(uid) = &d.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            }
        }
        Change::StatefulSet(s, deleted) => {
            gc_finalize(ctx, "StatefulSet", &*s);
            q.statefulset.add(Key::of(&*s));
            if deleted {
                if let Some(uid) = &s.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            }
        }
        Change::Node(node, deleted) => {
            for p in ctx
                .cache
                .pods
                .state_filter(crate::scheduler::needs_scheduling)
            {
                q.scheduler.add(Key::of(&*p));
            }
            q.nodeipam.add(Key::of(&*node));
            if deleted {
                // Its range is free again for Nodes still waiting for one.
                for n in ctx.cache.nodes.state_filter(crate::nodeipam::waiting) {
                    q.nodeipam.add(Key::of(&*n));
                }
            }
            q.nodelifecycle.add(Key::of(&*node));
            crate::taint_eviction::on_node(ctx, &node);
            crate::podgc::on_node(ctx, &node, deleted);
            crate::workloads::on_node(ctx);
        }
        Change::Lease(lease, _) => crate::nodelifecycle::on_lease(ctx, &lease),
        Change::Workload(w) => crate::workloads::dispatch(ctx, w),
    }
}

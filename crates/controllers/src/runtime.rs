//! The machinery shared by the controllers: one informer (a kube-rs reflector
//! cache) per kind, de-duplicating work queues, write expectations, and the
//! dispatcher that turns every observed change into the keys of the objects that
//! must be reconciled because of it.

mod dispatch;
mod expectations;
mod informer;
mod queue;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use tokio::sync::mpsc;

use crate::{Result, Settings};

pub(crate) use dispatch::{gc_dependents, gc_finalize};
pub use dispatch::{gc_key, Change};
pub use expectations::Tracker;
pub(crate) use informer::informer;
pub use informer::Cache;
pub use queue::{Key, Queue};

use dispatch::{dispatch, enqueue_all};
use informer::informer_on;

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

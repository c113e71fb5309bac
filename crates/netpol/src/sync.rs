//! The sync loop: watchers on NetworkPolicies, Pods and Namespaces keep the
//! model in memory; a change that alters the model (most pod status updates do
//! not) triggers a sync, which computes the desired table and applies the
//! difference from the programmed one as one `nft -f -` transaction. The whole
//! table is loaded in one transaction at start and after a failure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use skiff_watch::{follow_burst, Burst, Coalesce};

use crate::metrics::Metrics;
use crate::model::{ClusterState, Labels, PodInfo, PolicyInfo};
use crate::program::Program;
use crate::{k8s, net, ruleset, Error, Result};

/// Where the enforcer serves `/metrics` unless told otherwise.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9091);

/// How the enforcer is set up on this node.
#[derive(Debug, Clone)]
pub struct NetpolSettings {
    /// This node's name: pods with this `spec.nodeName` are enforced here.
    pub node_name: String,
    pub metrics: Metrics,
    /// Where to serve `/metrics`; `None`: not served (the caller registers
    /// [`NetpolSettings::metrics`] itself and calls [`Metrics::refresh`]).
    pub metrics_listen: Option<SocketAddr>,
    /// Pause before retrying (as a full load) after a failed transaction.
    pub retry_after: Duration,
}

impl NetpolSettings {
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            metrics: Metrics::default(),
            metrics_listen: Some(DEFAULT_METRICS_LISTEN),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// Removes the table when the enforcer stops (its future is dropped at
/// shutdown, or `run` returns).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        net::delete_table();
        tracing::info!(
            "netpol: table {} {} removed",
            ruleset::FAMILY,
            ruleset::TABLE
        );
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// One event lives at a time; boxing would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Ev {
    Policy(Event<NetworkPolicy>),
    Pod(Event<Pod>),
    Namespace(Event<Namespace>),
}

/// Runs the enforcer until its watches end for good.
pub async fn run(client: kube::Client, settings: NetpolSettings) -> Result<()> {
    tracing::info!(node = %settings.node_name, "netpol: starting");
    let _cleanup = Cleanup;
    let _metrics_server = settings.metrics_listen.map(|addr| {
        let metrics = settings.metrics.clone();
        // Aborted when `run` ends, so the listener never outlives the enforcer.
        AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, metrics).await {
                tracing::warn!(error = %e, "netpol: no metrics endpoint");
            }
        }))
    });
    let policies = watch(Api::<NetworkPolicy>::all(client.clone()))
        .map(|e| e.map(Ev::Policy))
        .boxed();
    let pods = watch(Api::<Pod>::all(client.clone()))
        .map(|e| e.map(Ev::Pod))
        .boxed();
    let namespaces = watch(Api::<Namespace>::all(client))
        .map(|e| e.map(Ev::Namespace))
        .boxed();
    let mut events = futures::stream::select(policies, futures::stream::select(pods, namespaces));
    let mut state = Enforcer::new(settings.node_name.clone(), settings.metrics.clone());
    loop {
        let retry = state.ready() && state.pending();
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(ev)) => state.handle(ev),
                Some(Err(e)) => tracing::warn!(error = %e, "netpol: watch error"),
                None => return Err(Error::Watch("watch streams ended".into())),
            },
            _ = tokio::time::sleep(settings.retry_after), if retry => {}
        }
        // What follows closely goes into the same transaction.
        let burst = follow_burst(&mut events, Coalesce::TRANSACTION, |ev| match ev {
            Ok(ev) => state.handle(ev),
            Err(e) => tracing::warn!(error = %e, "netpol: watch error"),
        })
        .await;
        if burst == Burst::Ended {
            return Err(Error::Watch("watch streams ended".into()));
        }
        if state.ready() && state.pending() && !state.backoff(settings.retry_after) {
            state.sync().await;
        }
    }
}

fn watch<K>(api: Api<K>) -> impl futures::Stream<Item = watcher::Result<Event<K>>>
where
    K: kube::Resource + Clone + serde_de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

// kube re-exports serde through k8s-openapi's bounds; name it once here.
use k8s_openapi::serde::de as serde_de;

/// The relist state of one watched kind; its objects live in the model.
struct Relist<T> {
    buffer: Option<BTreeMap<String, T>>,
    listed: bool,
}

impl<T: PartialEq> Relist<T> {
    fn new() -> Self {
        Self {
            buffer: None,
            listed: false,
        }
    }

    /// Applies one watch event (already converted) to `items`; true when
    /// `items` changed.
    fn apply(&mut self, items: &mut BTreeMap<String, T>, ev: Event<(String, T)>) -> bool {
        match ev {
            Event::Apply((k, v)) => {
                if items.get(&k) == Some(&v) {
                    return false;
                }
                items.insert(k, v);
                true
            }
            Event::Delete((k, _)) => items.remove(&k).is_some(),
            Event::Init => {
                self.buffer = Some(BTreeMap::new());
                false
            }
            Event::InitApply((k, v)) => {
                if let Some(b) = self.buffer.as_mut() {
                    b.insert(k, v);
                }
                false
            }
            Event::InitDone => {
                self.listed = true;
                match self.buffer.take() {
                    Some(b) if b != *items => {
                        *items = b;
                        true
                    }
                    _ => false,
                }
            }
        }
    }
}

fn convert<K, T>(ev: Event<K>, f: impl Fn(&K) -> (String, T)) -> Event<(String, T)> {
    match ev {
        Event::Apply(o) => Event::Apply(f(&o)),
        Event::Delete(o) => Event::Delete(f(&o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(f(&o)),
        Event::InitDone => Event::InitDone,
    }
}

/// The in-memory cluster state and the programmed table.
struct Enforcer {
    node_name: String,
    metrics: Metrics,
    state: ClusterState,
    policies: Relist<PolicyInfo>,
    pods: Relist<PodInfo>,
    namespaces: Relist<Labels>,
    dirty: bool,
    need_full: bool,
    failed_at: Option<Instant>,
    program: Program,
}

impl Enforcer {
    fn new(node_name: String, metrics: Metrics) -> Self {
        Self {
            node_name,
            metrics,
            state: ClusterState::default(),
            policies: Relist::new(),
            pods: Relist::new(),
            namespaces: Relist::new(),
            dirty: false,
            need_full: true,
            failed_at: None,
            program: Program::new(),
        }
    }

    /// Every watch has listed once: syncing earlier would program a partial
    /// view (a policy without its peers denies traffic it allows).
    fn ready(&self) -> bool {
        self.policies.listed && self.pods.listed && self.namespaces.listed
    }

    fn pending(&self) -> bool {
        self.need_full || self.dirty
    }

    fn backoff(&self, pause: Duration) -> bool {
        self.failed_at.is_some_and(|t| t.elapsed() < pause)
    }

    fn handle(&mut self, ev: Ev) {
        let changed = match ev {
            Ev::Policy(e) => self.policies.apply(
                &mut self.state.policies,
                convert(e, |np: &NetworkPolicy| {
                    (k8s::key(&np.metadata), k8s::policy_info(np))
                }),
            ),
            Ev::Pod(e) => {
                let node = &self.node_name;
                self.pods.apply(
                    &mut self.state.pods,
                    convert(e, |p: &Pod| (k8s::key(&p.metadata), k8s::pod_info(p, node))),
                )
            }
            Ev::Namespace(e) => self.namespaces.apply(
                &mut self.state.namespaces,
                convert(e, k8s::namespace_labels),
            ),
        };
        self.dirty |= changed;
    }

    async fn sync(&mut self) {
        let start = Instant::now();
        let full = self.need_full;
        let desired = ruleset::desired(&self.state);
        let (text, added, deleted) = if full {
            self.program.load(desired);
            (self.program.full(), 0, 0)
        } else {
            let tx = self.program.update(desired);
            (tx.text, tx.added, tx.deleted)
        };
        self.dirty = false;
        if !text.is_empty() {
            if let Err(e) = net::nft_apply(&text).await {
                tracing::warn!(error = %e, full, "netpol: sync failed; full load next");
                self.metrics.failed_syncs.inc();
                self.need_full = true;
                self.failed_at = Some(Instant::now());
                return;
            }
        }
        if full {
            self.metrics.full_syncs.inc();
        }
        self.need_full = false;
        self.failed_at = None;
        let elapsed = start.elapsed();
        self.metrics.sync_duration.observe(elapsed.as_secs_f64());
        self.metrics
            .track(self.program.table(), self.state.policies.len());
        tracing::debug!(full, added, deleted, ?elapsed, "netpol: synced");
    }
}

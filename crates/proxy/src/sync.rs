//! The sync loop: watchers on Services and EndpointSlices keep an indexed
//! in-memory copy; each change marks its service dirty; a sync recomputes the
//! dirty services' fragments and applies the difference as one `nft -f -`
//! transaction. A full resync (whole table in one transaction) runs at start,
//! after a failed transaction and on a slow timer. After each sync the node
//! holds the load-balancer addresses it won ([`crate::announce`]), and tells
//! the election which ones it may announce; when it wins or loses one, the
//! loop holds again without touching the table.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use skiff_watch::{follow_burst, Burst, Coalesce};

use crate::announce::{Addresses, Election};
use crate::lb::LoadBalancerAddresses;
use crate::metrics::Metrics;
use crate::model::{Cidr, Config};
use crate::program::Program;
use crate::{election, k8s, net, ruleset, Error, Result};

/// How the proxier is set up on this node.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// This node's name: endpoints with this `nodeName` are local.
    pub node_name: String,
    /// Addresses node ports answer on; empty: the node's global IPv4 addresses.
    pub node_ips: Vec<Ipv4Addr>,
    /// Pod network; ClusterIP traffic from outside it is masqueraded.
    pub pod_cidr: Option<String>,
    pub service_cidr: String,
    /// Period of the safety-net full resync.
    pub full_resync_period: Duration,
    /// Install the service CIDR's `unreachable` route (and remove it on exit).
    pub service_route: bool,
    /// Hold the built-in load balancer's addresses as the node's own, so the node
    /// answers ARP for them (see [`crate::lb`]); released on exit.
    pub hold_load_balancer_ips: bool,
    /// Hold only the load-balancer addresses this node wins in an election per
    /// address over Leases (see [`crate::election`]), so one node of an L2
    /// segment answers for each; off: every node holds them all (one node).
    pub elect_load_balancer_ips: bool,
    pub metrics: Metrics,
    /// Where to serve `/metrics` (kube-proxy's port by default); `None`: not
    /// served (the caller registers [`ProxySettings::metrics`] itself).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl ProxySettings {
    pub fn new(node_name: impl Into<String>, service_cidr: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            node_ips: Vec::new(),
            pod_cidr: None,
            service_cidr: service_cidr.into(),
            full_resync_period: Duration::from_secs(3600),
            service_route: true,
            hold_load_balancer_ips: true,
            elect_load_balancer_ips: true,
            metrics: Metrics::default(),
            metrics_listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 10249))),
        }
    }
}

/// Removes the table and the route when the proxier stops (its future is
/// dropped at shutdown, or `run` returns).
struct Cleanup {
    route: Option<Cidr>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        net::delete_table();
        if let Some(c) = self.route {
            net::remove_route(c);
        }
        tracing::info!(
            "proxy: table {} {} removed",
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
    Svc(Event<Service>),
    Slice(Event<EndpointSlice>),
}

/// How often the node's addresses are re-read when none were configured.
const NODE_ADDRESS_CHECK: Duration = Duration::from_secs(2);

/// Runs the proxier until its watches end for good.
pub async fn run(client: kube::Client, settings: ProxySettings) -> Result<()> {
    let service_cidr: Cidr = settings.service_cidr.parse()?;
    let pod_cidr = settings
        .pod_cidr
        .as_deref()
        .map(str::parse::<Cidr>)
        .transpose()?;
    let node_ips = if settings.node_ips.is_empty() {
        net::node_ipv4s()
    } else {
        settings.node_ips.clone()
    };
    let cfg = Config {
        pod_cidr,
        service_cidr,
        node_ips,
    };
    tracing::info!(?cfg, "proxy: starting");
    let _cleanup = Cleanup {
        route: settings.service_route.then_some(service_cidr),
    };
    if settings.service_route {
        if let Err(e) = net::install_route(service_cidr) {
            tracing::warn!(error = %e, "proxy: no unreachable route for the service CIDR");
        }
    }
    let _metrics_server = settings.metrics_listen.map(|addr| {
        let mut registry = prometheus_client::registry::Registry::default();
        settings.metrics.register(&mut registry);
        // Aborted when `run` ends, so the listener never outlives the proxier.
        AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, registry).await {
                tracing::warn!(error = %e, "proxy: no metrics endpoint");
            }
        }))
    });
    let svcs = watcher(Api::<Service>::all(client.clone()))
        .default_backoff()
        .map(|e| e.map(Ev::Svc))
        .boxed();
    let slices = watcher(Api::<EndpointSlice>::all(client.clone()))
        .default_backoff()
        .map(|e| e.map(Ev::Slice))
        .boxed();
    let mut events = futures::stream::select(svcs, slices);
    let mut state = Proxier::new(cfg, settings.node_name.clone(), settings.metrics.clone());
    state.lb = settings
        .hold_load_balancer_ips
        .then(LoadBalancerAddresses::new);
    // Started after the old addresses were released; stopped (its Leases
    // released) when `run` ends.
    let mut election = (settings.hold_load_balancer_ips && settings.elect_load_balancer_ips)
        .then(|| Election::start(client, &settings.node_name, settings.metrics.clone()));
    if election.is_some() {
        state.announced = Some(Addresses::new());
    }
    let mut resync = tokio::time::interval(settings.full_resync_period);
    resync.tick().await;
    // Without configured node addresses, node ports follow the node's own: the agent
    // may add the pod gateway (or an operator an address) after the proxy started.
    let follow_addresses = settings.node_ips.is_empty();
    let mut address_check = tokio::time::interval(NODE_ADDRESS_CHECK);
    address_check.tick().await;
    loop {
        let retry = state.ready() && state.pending();
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(ev)) => state.handle(ev),
                Some(Err(e)) => tracing::warn!(error = %e, "proxy: watch error"),
                None => return Err(Error::Watch("watch streams ended".into())),
            },
            _ = resync.tick() => {
                if !state.need_full {
                    state.need_full = true;
                    state.refill = true;
                }
            }
            _ = address_check.tick(), if follow_addresses => {
                let now = tokio::task::spawn_blocking(net::node_ipv4s).await.unwrap_or_default();
                if now != state.program.config().node_ips {
                    tracing::info!(node_ips = ?now, "proxy: node addresses changed");
                    state.program.set_node_ips(now);
                    state.need_full = true;
                    state.refill = true;
                }
            }
            // A failed sync is retried (as a full one) after a pause.
            _ = tokio::time::sleep(Duration::from_secs(1)), if retry => {}
            won = announced_change(&mut election) => {
                if won.is_none() {
                    // The election task is gone: hold nothing rather than
                    // answer for addresses whose Leases nobody renews.
                    tracing::error!("proxy: load-balancer election stopped; holding no address");
                    election = None;
                }
                state.announced = Some(won.unwrap_or_default());
                state.lb_pending = true;
            }
        }
        // What follows closely goes into the same transaction.
        let burst = follow_burst(&mut events, Coalesce::TRANSACTION, |ev| match ev {
            Ok(ev) => state.handle(ev),
            Err(e) => tracing::warn!(error = %e, "proxy: watch error"),
        })
        .await;
        if burst == Burst::Ended {
            return Err(Error::Watch("watch streams ended".into()));
        }
        if state.ready() && state.pending() && !state.backoff() && state.sync().await {
            if let Some(e) = &election {
                e.want(state.candidates());
            }
        }
    }
}

/// The next set of addresses this node won; `None` when the election task
/// ended. Never ready without an election.
async fn announced_change(election: &mut Option<Election>) -> Option<Addresses> {
    let Some(e) = election.as_mut() else {
        return std::future::pending().await;
    };
    e.announced.changed().await.ok()?;
    let won = e.announced.borrow_and_update().clone();
    Some(won)
}

fn watcher<K>(api: Api<K>) -> impl futures::Stream<Item = watcher::Result<Event<K>>>
where
    K: kube::Resource + Clone + serde_de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default())
}

// kube re-exports serde through k8s-openapi's bounds; name it once here.
use k8s_openapi::serde::de as serde_de;

/// The in-memory cluster state and the programmed table.
struct Proxier {
    node_name: String,
    metrics: Metrics,
    services: HashMap<String, Service>,
    /// service key -> slice `namespace/name` -> slice
    slices: HashMap<String, HashMap<String, EndpointSlice>>,
    /// slice `namespace/name` -> service key (a slice's label may change)
    slice_owner: HashMap<String, String>,
    svc_init: Option<HashMap<String, Service>>,
    slice_init: Option<Vec<EndpointSlice>>,
    svc_ready: bool,
    slice_ready: bool,
    dirty: HashSet<String>,
    need_full: bool,
    /// The pending full sync is the periodic one: refill in place, keeping
    /// affinity entries (a failed transaction replaces the table instead).
    refill: bool,
    failed_at: Option<Instant>,
    /// Trigger times of endpoint changes not programmed yet.
    triggers: HashMap<String, k8s_openapi::jiff::Timestamp>,
    program: Program,
    /// The load-balancer addresses the node holds; `None`: it holds none.
    lb: Option<LoadBalancerAddresses>,
    /// Holding them failed: try again after the retry pause, changes or not.
    lb_retry: bool,
    /// The addresses this node won ([`crate::election`]): it holds only these.
    /// `None`: no election, it holds every load-balancer address.
    announced: Option<Addresses>,
    /// `announced` changed: hold again, even with no table change.
    lb_pending: bool,
    /// Services with load-balancer addresses -> their addresses and whether
    /// this node may announce them ([`election::may_announce`]).
    claims: HashMap<String, (Vec<Ipv4Addr>, bool)>,
}

fn slice_key(s: &EndpointSlice) -> String {
    format!(
        "{}/{}",
        s.metadata.namespace.as_deref().unwrap_or_default(),
        s.metadata.name.as_deref().unwrap_or_default()
    )
}

impl Proxier {
    fn new(cfg: Config, node_name: String, metrics: Metrics) -> Self {
        Self {
            node_name,
            metrics,
            services: HashMap::new(),
            slices: HashMap::new(),
            slice_owner: HashMap::new(),
            svc_init: None,
            slice_init: None,
            svc_ready: false,
            slice_ready: false,
            dirty: HashSet::new(),
            need_full: true,
            refill: false,
            failed_at: None,
            triggers: HashMap::new(),
            program: Program::new(cfg),
            lb: None,
            lb_retry: false,
            announced: None,
            lb_pending: false,
            claims: HashMap::new(),
        }
    }

    /// Both watches have listed once: syncing earlier would program a partial
    /// view (services without their endpoints reject traffic).
    fn ready(&self) -> bool {
        self.svc_ready && self.slice_ready
    }

    fn pending(&self) -> bool {
        self.need_full || !self.dirty.is_empty() || self.lb_retry || self.lb_pending
    }

    fn backoff(&self) -> bool {
        self.failed_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Svc(Event::Apply(s)) => {
                let k = k8s::service_key(&s);
                self.dirty.insert(k.clone());
                self.services.insert(k, s);
            }
            Ev::Svc(Event::Delete(s)) => {
                let k = k8s::service_key(&s);
                self.services.remove(&k);
                self.dirty.insert(k);
            }
            Ev::Svc(Event::Init) => self.svc_init = Some(HashMap::new()),
            Ev::Svc(Event::InitApply(s)) => {
                if let Some(b) = self.svc_init.as_mut() {
                    b.insert(k8s::service_key(&s), s);
                }
            }
            Ev::Svc(Event::InitDone) => {
                if let Some(b) = self.svc_init.take() {
                    let old = std::mem::replace(&mut self.services, b);
                    self.dirty.extend(old.into_keys());
                    self.dirty.extend(self.services.keys().cloned());
                }
                self.svc_ready = true;
            }
            Ev::Slice(Event::Apply(s)) => self.add_slice(s),
            Ev::Slice(Event::Delete(s)) => self.remove_slice(&slice_key(&s)),
            Ev::Slice(Event::Init) => self.slice_init = Some(Vec::new()),
            Ev::Slice(Event::InitApply(s)) => {
                if let Some(b) = self.slice_init.as_mut() {
                    b.push(s);
                }
            }
            Ev::Slice(Event::InitDone) => {
                if let Some(b) = self.slice_init.take() {
                    let old: Vec<String> = self.slice_owner.keys().cloned().collect();
                    for k in old {
                        self.remove_slice(&k);
                    }
                    for s in b {
                        self.add_slice(s);
                    }
                }
                self.slice_ready = true;
            }
        }
    }

    fn add_slice(&mut self, s: EndpointSlice) {
        let sk = slice_key(&s);
        self.remove_slice(&sk);
        let Some(owner) = k8s::slice_service_key(&s) else {
            return;
        };
        if let Some(t) = s
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k8s::TRIGGER_TIME_ANNOTATION))
            .and_then(|t| t.parse().ok())
        {
            self.triggers.entry(owner.clone()).or_insert(t);
        }
        self.dirty.insert(owner.clone());
        self.slice_owner.insert(sk.clone(), owner.clone());
        self.slices.entry(owner).or_default().insert(sk, s);
    }

    fn remove_slice(&mut self, sk: &str) {
        if let Some(owner) = self.slice_owner.remove(sk) {
            if let Some(m) = self.slices.get_mut(&owner) {
                m.remove(sk);
                if m.is_empty() {
                    self.slices.remove(&owner);
                }
            }
            self.dirty.insert(owner);
        }
    }

    /// The service's fragment; notes its load-balancer addresses on the way.
    fn fragment(&mut self, key: &str) -> Option<ruleset::Fragment> {
        let info = self.services.get(key).and_then(|svc| {
            let slices = self.slices.get(key);
            k8s::service_info(
                svc,
                slices.into_iter().flat_map(|m| m.values()),
                &self.node_name,
            )
        });
        match &info {
            Some(i) if !i.load_balancer_ips.is_empty() => {
                let may = election::may_announce(i);
                self.claims
                    .insert(key.to_string(), (i.load_balancer_ips.clone(), may));
            }
            _ => {
                self.claims.remove(key);
            }
        }
        Some(ruleset::service_fragment(self.program.config(), &info?))
    }

    /// The load-balancer addresses in the table this node may announce: one
    /// service that may is enough (two services can share an address).
    fn candidates(&self) -> Addresses {
        let table = self.program.load_balancer_ips();
        self.claims
            .values()
            .filter(|(_, may)| *may)
            .flat_map(|(ips, _)| ips.iter().copied())
            .filter(|a| table.contains(a))
            .collect()
    }

    /// Programs what changed (if anything) and holds the load-balancer
    /// addresses; false when the transaction failed.
    async fn sync(&mut self) -> bool {
        self.lb_pending = false;
        if self.need_full || !self.dirty.is_empty() {
            let Some(removed) = self.program_table().await else {
                return false;
            };
            self.hold_load_balancer_ips().await;
            // Off the sync loop: one `conntrack` run per endpoint, and a scale-down
            // removes many at once.
            tokio::spawn(async move {
                for (proto, ep, port) in removed {
                    if proto != crate::model::Proto::Sctp {
                        net::conntrack_flush(proto, ep, port).await;
                    }
                }
            });
        } else {
            self.hold_load_balancer_ips().await;
        }
        true
    }

    /// One nft transaction for the dirty services (all of them for a full
    /// sync); the endpoints gone for good, or `None` when it failed.
    async fn program_table(&mut self) -> Option<Vec<(crate::model::Proto, Ipv4Addr, u16)>> {
        let start = Instant::now();
        let full = self.need_full;
        let keys: Vec<String> = if full {
            let mut all: HashSet<String> = self.services.keys().cloned().collect();
            all.extend(self.program.service_keys().cloned());
            self.dirty.clear();
            all.into_iter().collect()
        } else {
            self.dirty.drain().collect()
        };
        let changes: Vec<_> = keys.iter().map(|k| (k.clone(), self.fragment(k))).collect();
        let (tx, text) = if full {
            let tx = self.program.load(changes);
            let text = if self.refill {
                self.program.refill()
            } else {
                self.program.full()
            };
            (tx, text)
        } else {
            let mut tx = self.program.update(changes);
            let text = std::mem::take(&mut tx.text);
            (tx, text)
        };
        if !text.is_empty() {
            if let Err(e) = net::nft_apply(&text).await {
                tracing::warn!(error = %e, full, "proxy: sync failed; full resync next");
                self.metrics.failed_syncs.inc();
                self.need_full = true;
                self.refill = false;
                self.failed_at = Some(Instant::now());
                return None;
            }
        }
        if full {
            self.metrics.full_syncs.inc();
        }
        self.need_full = false;
        self.refill = false;
        self.failed_at = None;
        let elapsed = start.elapsed();
        self.metrics.sync_duration.observe(elapsed.as_secs_f64());
        self.metrics
            .chains
            .set(i64::try_from(self.program.chain_count()).unwrap_or(i64::MAX));
        self.metrics
            .elements
            .set(i64::try_from(self.program.element_count()).unwrap_or(i64::MAX));
        let now = k8s_openapi::jiff::Timestamp::now();
        for k in &keys {
            if let Some(t) = self.triggers.remove(k) {
                let d = now.duration_since(t).as_secs_f64();
                self.metrics
                    .network_programming_duration
                    .observe(d.max(0.0));
            }
        }
        tracing::debug!(
            full,
            services = keys.len(),
            added = tx.added,
            deleted = tx.deleted,
            ?elapsed,
            "proxy: synced"
        );
        Some(tx.removed_endpoints)
    }

    /// Holds the load-balancer addresses in the table that this node won (all
    /// of them without an election). After the transaction: the table refuses
    /// an address's other ports before the node starts accepting traffic for it.
    async fn hold_load_balancer_ips(&mut self) {
        let Some(lb) = self.lb.as_mut() else {
            return;
        };
        let table = self.program.load_balancer_ips();
        let want: BTreeSet<Ipv4Addr> = match &self.announced {
            None => table.clone(),
            Some(won) => table.intersection(won).copied().collect(),
        };
        let held = lb.hold(&want).await;
        match &held {
            Err(e) if !self.lb_retry => {
                tracing::warn!(error = %e, "proxy: load-balancer addresses not held; retrying");
            }
            Err(e) => {
                tracing::debug!(error = %e, "proxy: load-balancer addresses still not held")
            }
            Ok(()) => {
                self.metrics
                    .load_balancer_ips_held
                    .set(i64::try_from(want.len()).unwrap_or(i64::MAX));
            }
        }
        self.lb_retry = held.is_err();
    }
}

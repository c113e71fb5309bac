//! The Lease IO around [`crate::election`], as a task beside the proxier's
//! loop. The loop tells it which load-balancer addresses this node may announce
//! ([`Election::want`], after each sync); it answers with the addresses this
//! node won ([`Election::announced`]), which the loop holds on `lo`.
//!
//! Each round reads the Leases, asks [`decide`] what to do per address and does
//! it: one round every [`RENEW_PERIOD`] over everything (one LIST, then a write
//! per Lease this node renews or takes), and a quick one as soon as the wanted
//! set changes, over the changed addresses only, so a new address is created
//! and announced within one API round trip of its sync.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use tokio::sync::watch;
use tokio::time::{timeout, Instant, MissedTickBehavior};

use crate::election::{
    announced, decide, lease_address, lease_duration, lease_name, Action, Seen, ADDRESS_LABEL,
    LEASE_DURATION, LEASE_NAMESPACE, RENEW_DEADLINE, RENEW_PERIOD, ROUND_TIMEOUT,
};
use crate::metrics::Metrics;

/// A set of load-balancer addresses.
pub type Addresses = BTreeSet<Ipv4Addr>;

/// The proxier's ends of the election task; dropping it stops the task, which
/// releases the Leases it holds.
pub struct Election {
    want: watch::Sender<Option<Addresses>>,
    /// The addresses this node announces; changes when it wins or loses one.
    pub announced: watch::Receiver<Addresses>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Starts electing as `node_name` (the Leases' holder identity).
    pub fn start(client: kube::Client, node_name: &str, metrics: Metrics) -> Self {
        let (want, want_rx) = watch::channel(None);
        let (out, announced) = watch::channel(Addresses::new());
        let a = Announcer {
            api: Api::namespaced(client, LEASE_NAMESPACE),
            me: node_name.to_string(),
            metrics,
            wanted: None,
            seen: HashMap::new(),
            renewed: BTreeMap::new(),
            out,
            failing: false,
        };
        Self {
            want,
            announced,
            task: tokio::spawn(run(a, want_rx)),
        }
    }

    /// The addresses this node may announce now (the table holds them and the
    /// node is a candidate for them). Nothing happens before the first call, so
    /// a restarted node does not release its Leases before it knows its wishes.
    pub fn want(&self, addrs: Addresses) {
        self.want.send_if_modified(|w| {
            let changed = w.as_ref() != Some(&addrs);
            if changed {
                *w = Some(addrs);
            }
            changed
        });
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Lease as last read or written, and since when this node has seen this
/// version of it.
struct Observed {
    lease: Lease,
    since: Instant,
}

impl Observed {
    fn version(&self) -> Option<&str> {
        self.lease.metadata.resource_version.as_deref()
    }
}

struct Announcer {
    api: Api<Lease>,
    me: String,
    metrics: Metrics,
    /// `None` until the proxier's first sync says what it wants.
    wanted: Option<Addresses>,
    seen: HashMap<Ipv4Addr, Observed>,
    /// Addresses whose Lease this node holds -> when its last successful write
    /// (create, take, renew) started.
    renewed: BTreeMap<Ipv4Addr, Instant>,
    out: watch::Sender<Addresses>,
    /// Lease calls are failing: warned once, quiet until they work again.
    failing: bool,
}

async fn run(mut a: Announcer, mut want: watch::Receiver<Option<Addresses>>) {
    let mut tick = tokio::time::interval(RENEW_PERIOD);
    // After a slow round, renew at once rather than in a burst of catch-ups.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let deadline = a.next_deadline();
        tokio::select! {
            // The tick's own instant: observations made at ticks are then
            // exactly RENEW_PERIOD apart, so an expiry is seen at the first
            // tick at or after it, not one period late through jitter.
            at = tick.tick() => {
                let _ = timeout(ROUND_TIMEOUT, a.full_round(at)).await;
            }
            changed = want.changed() => {
                if changed.is_err() {
                    return;
                }
                let new = want.borrow_and_update().clone();
                if let Some(new) = new {
                    let _ = timeout(ROUND_TIMEOUT, a.quick_round(new, Instant::now())).await;
                }
            }
            // An address whose renewals keep failing goes quiet on time.
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
        }
        a.publish();
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

const CONFLICT: u16 = 409;
const NOT_FOUND: u16 = 404;

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn duration_seconds() -> i32 {
    i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(i32::MAX)
}

/// A new Lease for `addr` held by `me`.
fn new_lease(addr: Ipv4Addr, me: &str) -> Lease {
    let t = now();
    Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(addr)),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            labels: Some([(ADDRESS_LABEL.to_string(), addr.to_string())].into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(duration_seconds()),
            acquire_time: Some(t.clone()),
            renew_time: Some(t),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    }
}

/// Delete options that only delete the version this node saw: a Lease another
/// node took meanwhile stays.
fn delete_seen(version: Option<String>) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: version,
            uid: None,
        }),
        ..DeleteParams::default()
    }
}

impl Announcer {
    /// Records `lease` as seen at `at`: a new version restarts its clock.
    fn observe(&mut self, addr: Ipv4Addr, lease: Lease, at: Instant) {
        let same = self.seen.get(&addr).is_some_and(|o| {
            o.version().is_some() && o.version() == lease.metadata.resource_version.as_deref()
        });
        let since = match self.seen.get(&addr) {
            Some(o) if same => o.since,
            _ => at,
        };
        self.seen.insert(addr, Observed { lease, since });
    }

    fn view(&self, addr: Ipv4Addr, at: Instant) -> Option<Seen<'_>> {
        let o = self.seen.get(&addr)?;
        let spec = o.lease.spec.as_ref();
        Some(Seen {
            holder: spec
                .and_then(|s| s.holder_identity.as_deref())
                .unwrap_or_default(),
            duration: lease_duration(spec.and_then(|s| s.lease_duration_seconds)),
            unchanged_for: at.saturating_duration_since(o.since),
        })
    }

    fn announced(&self) -> Addresses {
        let now = Instant::now();
        let ago = self
            .renewed
            .iter()
            .map(|(&a, &t)| (a, now.saturating_duration_since(t)))
            .collect();
        announced(&ago)
    }

    /// When the next announced address falls silent unless renewed.
    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        self.renewed
            .values()
            .map(|&t| t + RENEW_DEADLINE)
            .filter(|&d| d > now)
            .min()
    }

    fn publish(&self) {
        let now = self.announced();
        self.out.send_if_modified(|held| {
            let changed = *held != now;
            if changed {
                tracing::info!(addresses = ?now, "proxy: load-balancer addresses announced by this node");
                *held = now;
            }
            changed
        });
    }

    fn failed(&mut self, what: &str, e: &kube::Error) {
        self.metrics.lease_errors.inc();
        if self.failing {
            tracing::debug!(error = %e, "proxy: {what} still failing");
        } else {
            tracing::warn!(error = %e, "proxy: {what} failed; retrying every {RENEW_PERIOD:?}");
            self.failing = true;
        }
    }

    /// Every address: read all Leases, then renew, take, create and release.
    async fn full_round(&mut self, at: Instant) {
        let Some(wanted) = self.wanted.clone() else {
            return;
        };
        let list = match self.api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) => return self.failed("listing load-balancer Leases", &e),
        };
        let mut present = HashSet::new();
        for lease in list.items {
            let Some(addr) = lease.metadata.name.as_deref().and_then(lease_address) else {
                continue;
            };
            present.insert(addr);
            self.observe(addr, lease, at);
        }
        self.seen.retain(|a, _| present.contains(a));
        // Every Lease seen: ours to renew or release, others' to follow or,
        // expired, to clear away.
        let mut addrs: Addresses = wanted.clone();
        addrs.extend(self.renewed.keys().copied());
        addrs.extend(self.seen.keys().copied());
        // Keeping an address comes before taking one: a round cut short by
        // ROUND_TIMEOUT should have renewed first.
        let mut ordered: Vec<(bool, Ipv4Addr)> = addrs
            .into_iter()
            .map(|a| (!self.renewed.contains_key(&a), a))
            .collect();
        ordered.sort();
        for (_, a) in ordered {
            self.act(a, wanted.contains(&a), at).await;
        }
    }

    /// Only what changed: release the addresses no longer wanted, read and
    /// claim the new ones.
    async fn quick_round(&mut self, new: Addresses, at: Instant) {
        let old = self.wanted.replace(new.clone()).unwrap_or_default();
        for &a in old.difference(&new) {
            self.act(a, false, at).await;
        }
        for &a in new.difference(&old) {
            match self.api.get_opt(&lease_name(a)).await {
                Ok(Some(l)) => self.observe(a, l, at),
                Ok(None) => {
                    self.seen.remove(&a);
                }
                Err(e) => {
                    self.failed("reading a load-balancer Lease", &e);
                    continue;
                }
            }
            self.act(a, true, at).await;
        }
    }

    async fn act(&mut self, addr: Ipv4Addr, wanted: bool, at: Instant) {
        let action = decide(self.view(addr, at).as_ref(), &self.me, wanted);
        match action {
            Action::Create => self.create(addr, at).await,
            Action::Renew | Action::Take => self.write(addr, action, at).await,
            Action::Release => {
                // Silent first, then free for the others.
                self.renewed.remove(&addr);
                self.publish();
                self.release(addr).await;
            }
            Action::Collect => {
                self.renewed.remove(&addr);
                self.collect(addr).await;
            }
            Action::Follow | Action::Idle => {
                if self.renewed.remove(&addr).is_some() {
                    tracing::info!(%addr, "proxy: another node holds the load-balancer address now");
                }
            }
        }
    }

    async fn create(&mut self, addr: Ipv4Addr, at: Instant) {
        match self
            .api
            .create(&PostParams::default(), &new_lease(addr, &self.me))
            .await
        {
            Ok(l) => {
                self.failing = false;
                self.observe(addr, l, at);
                self.renewed.insert(addr, at);
                self.metrics.lease_acquisitions.inc();
                tracing::info!(%addr, "proxy: load-balancer Lease created; announcing");
            }
            // Another node created it first: it is theirs (read next round).
            Err(e) if status_code(&e) == Some(CONFLICT) => {
                tracing::debug!(%addr, "proxy: load-balancer Lease created by another node first");
            }
            Err(e) => self.failed("creating a load-balancer Lease", &e),
        }
    }

    /// Renews or takes over the Lease as seen, with its resourceVersion: a 409
    /// means another node wrote it since, and has it.
    async fn write(&mut self, addr: Ipv4Addr, action: Action, at: Instant) {
        let Some(o) = self.seen.get(&addr) else {
            return;
        };
        let mut lease = o.lease.clone();
        lease
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(ADDRESS_LABEL.to_string(), addr.to_string());
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let t = now();
        if action == Action::Take {
            spec.acquire_time = Some(t.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(self.me.clone());
        spec.lease_duration_seconds = Some(duration_seconds());
        spec.renew_time = Some(t);
        let name = lease_name(addr);
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => {
                self.failing = false;
                self.observe(addr, l, at);
                self.renewed.insert(addr, at);
                if action == Action::Take {
                    self.metrics.lease_acquisitions.inc();
                    tracing::info!(%addr, "proxy: load-balancer Lease taken over; announcing");
                }
            }
            Err(e) if matches!(status_code(&e), Some(CONFLICT | NOT_FOUND)) => {
                // Lost it (or it is gone): silent now, re-read next round.
                if self.renewed.remove(&addr).is_some() {
                    tracing::info!(%addr, "proxy: load-balancer Lease lost");
                }
                self.seen.remove(&addr);
            }
            // Unknown outcome: keep announcing until RENEW_DEADLINE says otherwise.
            Err(e) => self.failed("writing a load-balancer Lease", &e),
        }
    }

    async fn release(&mut self, addr: Ipv4Addr) {
        let version = self
            .seen
            .get(&addr)
            .and_then(|o| o.version().map(str::to_string));
        if let Err(e) = release(&self.api, &lease_name(addr), &self.me, version).await {
            self.failed("releasing a load-balancer Lease", &e);
        }
        self.seen.remove(&addr);
    }
}

impl Announcer {
    /// Deletes an expired Lease of another node, as seen: if that node (or
    /// another) wrote it since, the precondition keeps it.
    async fn collect(&mut self, addr: Ipv4Addr) {
        let version = self
            .seen
            .get(&addr)
            .and_then(|o| o.version().map(str::to_string));
        match self
            .api
            .delete(&lease_name(addr), &delete_seen(version))
            .await
        {
            Ok(_) => tracing::info!(%addr, "proxy: expired load-balancer Lease deleted"),
            Err(e) if matches!(status_code(&e), Some(CONFLICT | NOT_FOUND)) => {}
            Err(e) => self.failed("deleting an expired load-balancer Lease", &e),
        }
        self.seen.remove(&addr);
    }
}

/// Deletes Lease `name` if `me` still holds it: the version seen, or when that
/// is stale (a write whose answer never came, cut off by a timeout or by
/// shutdown) the current one if it is still `me`'s. Gone already, or another
/// node's now: nothing of ours is left, fine.
async fn release(
    api: &Api<Lease>,
    name: &str,
    me: &str,
    version: Option<String>,
) -> Result<(), kube::Error> {
    match api.delete(name, &delete_seen(version)).await {
        Ok(_) => {}
        Err(e) if status_code(&e) == Some(CONFLICT) => {
            let Some(now) = api.get_opt(name).await? else {
                return Ok(());
            };
            let holder = now.spec.as_ref().and_then(|s| s.holder_identity.as_deref());
            if holder != Some(me) {
                return Ok(());
            }
            match api
                .delete(name, &delete_seen(now.metadata.resource_version))
                .await
            {
                Ok(_) => {}
                Err(e) if matches!(status_code(&e), Some(CONFLICT | NOT_FOUND)) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(e) if status_code(&e) == Some(NOT_FOUND) => return Ok(()),
        Err(e) => return Err(e),
    }
    tracing::info!(lease = name, "proxy: load-balancer Lease released");
    Ok(())
}

impl Drop for Announcer {
    /// Shutdown: release the held Leases so another node takes the addresses
    /// at once instead of after they expire. Best effort: it needs a runtime
    /// that still runs tasks (a proxier stopped while the process goes on);
    /// when the whole process exits the Leases simply expire.
    fn drop(&mut self) {
        let leases: Vec<(String, Option<String>)> = self
            .renewed
            .keys()
            .map(|&a| {
                let version = self
                    .seen
                    .get(&a)
                    .and_then(|o| o.version().map(str::to_string));
                (lease_name(a), version)
            })
            .collect();
        if leases.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let api = self.api.clone();
        let me = self.me.clone();
        rt.spawn(async move {
            for (name, version) in leases {
                let _ = timeout(ROUND_TIMEOUT, release(&api, &name, &me, version)).await;
            }
        });
    }
}

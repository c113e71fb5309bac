//! Leader election for the controllers, as kube-controller-manager's
//! `--leader-elect` (client-go `leaderelection` with a `LeaseLock`): several
//! `skiff server`s share one store, and the controllers (everything [`crate::run`]
//! starts: workloads, endpoints, scheduler, GC, node IPAM and lifecycle) must
//! run on exactly one of them.
//!
//! - The lock is the coordination.k8s.io/v1 Lease [`LEASE_NAMESPACE`]/[`LEASE_NAME`],
//!   upstream's own, so `kubectl -n kube-system get lease kube-controller-manager`
//!   shows the leader; `holderIdentity` is `<hostname>_<uuid>` ([`default_identity`]).
//! - A candidate reads the Lease every retry period (jittered as upstream), or
//!   sooner when a held Lease would expire before then, and takes it when there
//!   is none, when it is free (`holderIdentity` empty, as a graceful stop leaves
//!   it) or when it has expired. Expiry is measured as
//!   client-go does: the record has not changed for its `leaseDurationSeconds`
//!   on *this* server's monotonic clock since this server first saw it, never by
//!   comparing the holder's `renewTime` with the local wall clock (servers'
//!   clocks differ, and one running ahead would steal a live Lease).
//! - Every write but the create carries the resourceVersion read, so of two
//!   candidates taking the same Lease one gets 409 Conflict and stays a
//!   candidate. A takeover increments `leaseTransitions` and sets `acquireTime`;
//!   a renewal keeps both and moves `renewTime` (MicroTime).
//! - The leader renews every retry period. When it cannot renew within the
//!   renew deadline, or sees another holder, it stops its controllers (their
//!   task is aborted: informers, workers and all) and becomes a candidate again.
//!   Upstream exits the process instead; a skiff server also serves the API, the
//!   agent and the proxy, which must not go down because one Lease write timed
//!   out, and aborting the task drops every controller's state with it, which is
//!   what a restart would achieve. The renew deadline (10 s) is well inside the
//!   lease duration (15 s) that others wait, so the old leader is stopped first.
//! - A graceful stop aborts the controllers and then releases the Lease
//!   (upstream's `ReleaseOnCancel`: holder cleared, `leaseDurationSeconds` 1), so
//!   a standby takes over at its next retry instead of after the lease duration.
//!
//! [`plan`] is the whole decision, pure and table-tested; [`Elector`] does the IO.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::time::{sleep, timeout, Instant};

use crate::{Error, Result, Settings};

/// Where kube-controller-manager keeps its leader Lease.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// Upstream's Lease name: a cluster has one controller manager, whichever binary it is.
pub const LEASE_NAME: &str = "kube-controller-manager";
/// Upstream `--leader-elect-lease-duration`: how long a candidate waits after
/// the last renewal it saw before taking over.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Upstream `--leader-elect-renew-deadline`: how long the leader keeps trying to
/// renew before it stops leading.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Upstream `--leader-elect-retry-period`: between tries to acquire or renew.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// client-go's `JitterFactor`: candidates wait up to 1.2 retry periods, so
/// several started together do not hit the Lease in lockstep.
const JITTER_FACTOR: f64 = 1.2;
/// What a release writes as `leaseDurationSeconds` (upstream: 1 s): a candidate
/// that goes by the duration alone also takes a released Lease within a second.
const RELEASED_DURATION_SECONDS: i32 = 1;
/// Past the moment a held Lease expires by this server's observation, so the
/// try then finds it expired (an instant early would wait another period).
const EXPIRY_MARGIN: Duration = Duration::from_millis(10);
/// HTTP 409: the create or update lost a race with another server.
const CONFLICT: u16 = 409;

/// How (and whether) the controllers are leader-elected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    /// The Lease's namespace ([`LEASE_NAMESPACE`]).
    pub namespace: String,
    /// The Lease's name ([`LEASE_NAME`]).
    pub name: String,
    /// This server's `holderIdentity`, unique per process ([`default_identity`]).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaderElection {
    fn default() -> Self {
        LeaderElection {
            namespace: LEASE_NAMESPACE.into(),
            name: LEASE_NAME.into(),
            identity: default_identity(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }
}

impl LeaderElection {
    /// Upstream's checks (client-go `NewLeaderElector`): the leader must give up
    /// before anyone may take over, and must get more than one try before that.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::Invalid(m));
        if self.identity.is_empty() {
            return invalid("leader election: the holder identity is empty".into());
        }
        if self.lease_duration <= self.renew_deadline {
            return invalid(format!(
                "--leader-elect-lease-duration ({:?}) must be greater than --leader-elect-renew-deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return invalid(format!(
                "--leader-elect-renew-deadline ({:?}) must be greater than {JITTER_FACTOR} x --leader-elect-retry-period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        if self.retry_period.is_zero() || lease_seconds(self.lease_duration) < 1 {
            return invalid("leader election: durations must be at least 1s".into());
        }
        Ok(())
    }
}

/// `<hostname>_<uuid>`, as kube-controller-manager: the host says which machine
/// leads, the uuid keeps a restarted server from mistaking its predecessor's
/// Lease for its own (which would skip the wait while the old one may still run).
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skiff".into());
    identity_for(&host)
}

/// `<name>_<uuid>`: `skiff server` names its node (the hostname unless
/// `--node-name` says otherwise), so servers sharing a host, as `skiff up`'s
/// do, still tell which of them leads.
pub fn identity_for(name: &str) -> String {
    format!("{name}_{}", uuid::Uuid::new_v4())
}

/// What to do about the Lease, from [`plan`].
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Another server holds a live Lease: stay a candidate. `expires_in`: how
    /// long until it expires unless renewed (by this server's observation).
    Wait {
        holder: String,
        expires_in: Duration,
    },
    /// There is no Lease: create it with this record.
    Create(LeaseSpec),
    /// Ours (renew) or free/expired (take over): replace the record, with the
    /// resourceVersion read.
    Update(LeaseSpec),
}

/// The election rule (client-go `tryAcquireOrRenew`). `observed`: the Lease's
/// record as read (`None`: there is no Lease); `unchanged_for`: how long this
/// server has seen that very record; `now`: the wall clock for the times written.
pub fn plan(
    observed: Option<&LeaseSpec>,
    unchanged_for: Duration,
    me: &str,
    lease_duration: Duration,
    now: Timestamp,
) -> Plan {
    let fresh = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(lease_seconds(lease_duration)),
        acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let Some(old) = observed else {
        return Plan::Create(fresh(0, None));
    };
    let holder = old.holder_identity.as_deref().unwrap_or("");
    let transitions = old.lease_transitions.unwrap_or(0);
    if holder == me {
        // Renewal: the term goes on, so its start and the count stay.
        return Plan::Update(fresh(transitions, old.acquire_time.clone()));
    }
    let duration = record_duration(old, lease_duration);
    if !holder.is_empty() && unchanged_for < duration {
        return Plan::Wait {
            holder: holder.to_string(),
            expires_in: duration - unchanged_for,
        };
    }
    Plan::Update(fresh(transitions.saturating_add(1), None))
}

/// The record a graceful stop leaves (upstream `ReleaseOnCancel`): nobody
/// holds it, so any candidate takes it at its next try.
pub fn released(held: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(RELEASED_DURATION_SECONDS),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: held.lease_transitions,
        ..Default::default()
    }
}

/// The duration the holder wrote; a missing or nonsensical one counts as ours.
fn record_duration(spec: &LeaseSpec, ours: Duration) -> Duration {
    match spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
    {
        Some(s) if s > 0 => Duration::from_secs(s),
        _ => ours,
    }
}

fn lease_seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// What one try found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This server holds the Lease (created, renewed or taken over just now).
    Held,
    /// Another server holds it, live, for at most this long unless it renews.
    HeldBy(String, Duration),
    /// The write lost a race (409): someone else wrote first.
    Conflict,
}

/// One server's side of the election: the Lease IO around [`plan`].
pub struct Elector {
    api: Api<Lease>,
    config: LeaderElection,
    /// The record last seen and when this server first saw it (client-go's
    /// `observedRecord` and `observedTime`).
    observed: Option<(LeaseSpec, Instant)>,
    /// The Lease as this server last wrote it while holding it, for the
    /// resourceVersion of the release.
    held: Option<Lease>,
}

impl Elector {
    pub fn new(client: Client, config: LeaderElection) -> Self {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            held: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Reads the Lease and creates, renews or takes it over if [`plan`] says so.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Outcome> {
        let current = self.api.get_opt(&self.config.name).await?;
        let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        let unchanged_for = self.observe(spec.as_ref());
        let me = self.config.identity.clone();
        let plan = plan(
            spec.as_ref(),
            unchanged_for,
            &me,
            self.config.lease_duration,
            Timestamp::now(),
        );
        let written = match plan {
            Plan::Wait { holder, expires_in } => {
                self.held = None;
                return Ok(Outcome::HeldBy(holder, expires_in));
            }
            Plan::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Plan::Update(spec) => {
                // Only the fields this election owns change; labels, owners and
                // the resourceVersion (the optimistic lock) are kept as read.
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(spec);
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(lease) => {
                self.observe(Some(&lease.spec.clone().unwrap_or_default()));
                self.held = Some(lease);
                Ok(Outcome::Held)
            }
            Err(kube::Error::Api(s)) if s.code == CONFLICT => {
                self.held = None;
                Ok(Outcome::Conflict)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the Lease up if this server holds it (see [`released`]); a 409
    /// means someone else already has it, which is as good.
    pub async fn release(&mut self) -> Result<()> {
        let Some(mut lease) = self.held.take() else {
            return Ok(());
        };
        let held = lease.spec.clone().unwrap_or_default();
        if held.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(released(&held, Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == CONFLICT => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Records `spec` as seen now unless it is the record already seen; returns
    /// how long the record has been seen unchanged.
    fn observe(&mut self, spec: Option<&LeaseSpec>) -> Duration {
        let now = Instant::now();
        match (spec, &self.observed) {
            (Some(s), Some((seen, since))) if s == seen => now.duration_since(*since),
            (Some(s), _) => {
                self.observed = Some((s.clone(), now));
                Duration::ZERO
            }
            (None, _) => {
                self.observed = None;
                Duration::ZERO
            }
        }
    }
}

/// Aborts the leader's work when leadership ends however it ends, including
/// this future being dropped: the work must never outlive the Lease.
struct Leading(tokio::task::JoinHandle<Result<()>>);

impl Drop for Leading {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Leading {
    /// Aborts the work and waits until it is gone (its tasks dropped). A task
    /// that already ended (and was awaited) must not be awaited again.
    async fn stop(mut self) {
        if !self.0.is_finished() {
            self.0.abort();
            let _ = (&mut self.0).await;
        }
    }
}

/// Why a term ended.
enum TermEnd {
    Shutdown,
    Lost,
    WorkEnded(Result<()>),
}

/// Runs `work` only while this server holds the Lease: candidate until it
/// acquires, leader (work running) until it loses, candidate again, ... until
/// `shutdown` resolves, when it stops the work and releases the Lease. Returns
/// early only when the work ends by itself (its result, after a release).
pub async fn run_elected<W, F>(
    client: Client,
    config: LeaderElection,
    shutdown: impl Future<Output = ()>,
    mut work: W,
) -> Result<()>
where
    W: FnMut() -> F,
    F: Future<Output = Result<()>> + Send + 'static,
{
    config.validate()?;
    let mut elector = Elector::new(client, config.clone());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            () = acquire(&mut elector, &config) => {}
        }
        tracing::info!(identity = %elector.identity(), lease = %config.name, "became leader; starting the controllers");
        let leading = Leading(tokio::spawn(work()));
        match lead(&mut elector, &config, leading, &mut shutdown).await {
            TermEnd::Lost => {
                tracing::warn!(identity = %elector.identity(), "lost the leader Lease; controllers stopped, standing by");
            }
            TermEnd::Shutdown => {
                release(&mut elector, &config).await;
                return Ok(());
            }
            TermEnd::WorkEnded(r) => {
                release(&mut elector, &config).await;
                return r;
            }
        }
    }
}

/// Tries every retry period (jittered) until this server holds the Lease.
async fn acquire(elector: &mut Elector, config: &LeaderElection) {
    loop {
        let mut wait = jittered(config.retry_period);
        match timeout(config.renew_deadline, elector.try_acquire_or_renew()).await {
            Ok(Ok(Outcome::Held)) => return,
            Ok(Ok(Outcome::HeldBy(holder, expires_in))) => {
                tracing::debug!(%holder, ?expires_in, "the controllers' Lease is held; standing by");
                // Try again right as it expires rather than up to a retry
                // period later (client-go waits the period): a dead leader's
                // controllers are missed for the lease duration, not more.
                wait = wait.min(expires_in + EXPIRY_MARGIN);
            }
            Ok(Ok(Outcome::Conflict)) => {
                tracing::debug!("another server took the controllers' Lease first");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "reading the controllers' Lease"),
            Err(_) => tracing::warn!("acquiring the controllers' Lease timed out"),
        }
        sleep(wait).await;
    }
}

/// A leader's term: renews every retry period; ends when renewing fails for the
/// renew deadline, another server holds the Lease, the work ends, or shutdown.
async fn lead(
    elector: &mut Elector,
    config: &LeaderElection,
    leading: Leading,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> TermEnd {
    // Measured from the start of the last successful write: the others count
    // their lease duration from when they read it, which is later.
    let mut renewed = Instant::now();
    let mut leading = leading;
    let end = loop {
        let deadline = renewed + config.renew_deadline;
        let round = async {
            sleep(config.retry_period).await;
            let started = Instant::now();
            let left = deadline.saturating_duration_since(started);
            (started, timeout(left, elector.try_acquire_or_renew()).await)
        };
        tokio::select! {
            biased;
            () = shutdown.as_mut() => break TermEnd::Shutdown,
            r = &mut leading.0 => {
                let r = r.unwrap_or_else(|e| Err(Error::Invalid(format!("controllers task: {e}"))));
                break TermEnd::WorkEnded(r);
            }
            (started, r) = round => match r {
                Ok(Ok(Outcome::Held)) => renewed = started,
                Ok(Ok(Outcome::HeldBy(holder, _))) => {
                    tracing::warn!(%holder, "another server holds the controllers' Lease");
                    break TermEnd::Lost;
                }
                Ok(Ok(Outcome::Conflict)) => tracing::warn!("renewing the controllers' Lease: conflict"),
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing the controllers' Lease"),
                Err(_) => tracing::warn!("renewing the controllers' Lease timed out"),
            },
        }
        if Instant::now() >= renewed + config.renew_deadline {
            break TermEnd::Lost;
        }
    };
    // The work stops before anything else happens: before a release lets
    // another server start its controllers, and before this one competes again.
    leading.stop().await;
    end
}

/// Releases the Lease, bounded so a stopping server never hangs on it.
async fn release(elector: &mut Elector, config: &LeaderElection) {
    match timeout(config.retry_period, elector.release()).await {
        Ok(Ok(())) => tracing::info!("released the controllers' Lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "releasing the controllers' Lease"),
        Err(_) => tracing::warn!("releasing the controllers' Lease timed out"),
    }
}

/// `d` times a random factor in [1, 1.2) (client-go `wait.Jitter`).
fn jittered(d: Duration) -> Duration {
    d.mul_f64(1.0 + rand::random::<f64>() * (JITTER_FACTOR - 1.0))
}

/// Runs the controllers as `settings` say: at once without leader election (a
/// lone server), else only while this server leads; until `shutdown`. The
/// Lease is held with the shared (controller manager's) client.
pub async fn run_controllers(
    clients: impl Into<crate::clients::Clients>,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let clients = clients.into();
    match settings.leader_election.clone() {
        None => {
            tokio::select! {
                r = crate::run(clients, settings) => r,
                () = shutdown => Ok(()),
            }
        }
        Some(config) => {
            run_elected(clients.shared().clone(), config, shutdown, move || {
                crate::run(clients.clone(), settings.clone())
            })
            .await
        }
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;

//! Service-specific server behaviour (issue 3): ClusterIP, NodePort and
//! LoadBalancer address allocation, and the built-in `kubernetes` and `kube-dns`
//! services. The REST layer calls these hooks for every Service write.
//!
//! Every value a service holds is claimed in the store ([`store`]: one key per
//! value, made with the store's atomic create), so several API servers sharing
//! one store never hand out a value twice. The in-memory pools are this server's
//! fast path and cache: [`load`] fills them from the claims and the stored
//! services before the server serves, the hooks take slots in the pools and then
//! claim them, a watch gives back what deleted services held, and a periodic
//! repair (as upstream's repair controllers) reconciles pools, claims and
//! services, removing claims a crash left behind.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_api::registry::{self, Resource};
use skiff_api::service as svc;
use skiff_api::StatusError;
use tokio::sync::Notify;

use crate::server::Api;

pub mod allocator;
pub mod builtin;
mod claims;
mod loadbalancer;
mod peers;
mod repair;
mod shared;
pub mod store;

use allocator::{Cidr, Owner, PortRange};
use claims::{Failure, Pools};

/// Where Service addresses and ports come from (`skiff server` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `--service-cidr`: ClusterIPs; the first address is `kubernetes`, the tenth `kube-dns`.
    pub service_cidr: Cidr,
    /// `--service-node-port-range`.
    pub node_ports: PortRange,
    /// `--lb-pool`: LoadBalancer addresses.
    pub lb_pool: Cidr,
    /// How often the repair pass reconciles pools, claims and services (a
    /// leaked claim goes on the second pass that finds it).
    pub repair_every: Duration,
}

/// The default [`Settings::repair_every`], upstream's repair interval.
pub const REPAIR_EVERY: Duration = Duration::from_secs(60);

/// The default `--lb-pool`: TEST-NET-2 (RFC 5737), reserved for documentation and
/// routed nowhere, so an address from it can never reach a real host by accident.
pub const DEFAULT_LB_POOL: &str = "198.51.100.0/24";

impl Default for Settings {
    fn default() -> Self {
        Self::parse("10.96.0.0/12", "30000-32767", DEFAULT_LB_POOL)
            .unwrap_or_else(|e| unreachable!("built-in defaults are valid: {e}"))
    }
}

impl Settings {
    /// Parses the three flags; the error names the flag at fault.
    pub fn parse(service_cidr: &str, node_ports: &str, lb_pool: &str) -> Result<Self, String> {
        let cidr = Cidr::parse(service_cidr).map_err(|e| format!("--service-cidr: {e}"))?;
        if cidr.prefix() < 12 {
            return Err(format!(
                "--service-cidr: {service_cidr:?} is too large; the prefix length must be at least 12"
            ));
        }
        if cidr.slots() < 10 {
            return Err(format!(
                "--service-cidr: {service_cidr:?} is too small; kube-dns needs its tenth address"
            ));
        }
        let ports =
            PortRange::parse(node_ports).map_err(|e| format!("--service-node-port-range: {e}"))?;
        let lb = Cidr::parse(lb_pool).map_err(|e| format!("--lb-pool: {e}"))?;
        if lb.prefix() < 8 {
            return Err(format!(
                "--lb-pool: {lb_pool:?} is too large; the prefix length must be at least 8"
            ));
        }
        if lb.overlaps(&cidr) {
            return Err(format!(
                "--lb-pool: {lb_pool:?} overlaps --service-cidr {cidr}"
            ));
        }
        Ok(Self {
            service_cidr: cidr,
            node_ports: ports,
            lb_pool: lb,
            repair_every: REPAIR_EVERY,
        })
    }
}

/// How long a create counts as in flight (between its allocation and its store
/// write) when deciding whether a holder that is not stored yet is gone.
const IN_FLIGHT: Duration = Duration::from_secs(30);

/// The allocation state of the running server (`Api::services`).
pub struct State {
    pub settings: Settings,
    pools: Mutex<Pools>,
    /// Creates between allocation and store write, by uid.
    in_flight: Mutex<HashMap<Arc<str>, (usize, Instant)>>,
    /// Wakes the load-balancer task: an address came free or a service waits.
    lb_wake: Notify,
    /// The store revision the start-up load saw; the watch starts after it.
    loaded_at: AtomicI64,
}

impl State {
    pub fn new(settings: &Settings) -> Self {
        Self {
            pools: Mutex::new(Pools::new(settings)),
            settings: settings.clone(),
            in_flight: Mutex::new(HashMap::new()),
            lb_wake: Notify::new(),
            loaded_at: AtomicI64::new(0),
        }
    }

    fn pools(&self) -> MutexGuard<'_, Pools> {
        // A panic while holding the lock leaves consistent data (every mutation
        // is a single step), so a poisoned lock is still usable.
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flight(&self) -> MutexGuard<'_, HashMap<Arc<str>, (usize, Instant)>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self, uid: &Arc<str>) {
        let mut f = self.flight();
        let e = f.entry(uid.clone()).or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
    }

    fn end(&self, uid: &str) {
        let mut f = self.flight();
        if let Some(e) = f.get_mut(uid) {
            e.0 = e.0.saturating_sub(1);
            if e.0 == 0 {
                f.remove(uid);
            }
        }
        f.retain(|_, (_, since)| since.elapsed() < IN_FLIGHT);
    }

    fn in_flight(&self, uid: &str) -> bool {
        self.flight()
            .get(uid)
            .is_some_and(|(_, since)| since.elapsed() < IN_FLIGHT)
    }

    /// How many ClusterIPs, node ports and load-balancer addresses are held.
    pub fn usage(&self) -> (usize, usize, usize) {
        let p = self.pools();
        (p.ips.used(), p.ports.used(), p.lb.used())
    }
}

fn is_service(resource: &Resource) -> bool {
    (resource.group, resource.kind) == ("", "Service")
}

pub(crate) fn services_resource() -> Option<&'static Resource> {
    registry::lookup("", "v1", "services")
}

fn name_of(obj: &Value) -> String {
    crate::rest::name_of(obj).unwrap_or_default().to_string()
}

/// Whether the holder of a slot no longer exists: not stored under its name with
/// its uid, and not a create still on its way to the store.
async fn holder_gone(api: &Api, holder: &Owner) -> bool {
    if api.services.in_flight(&holder.uid) {
        return false;
    }
    let Some(res) = services_resource() else {
        return false;
    };
    let (ns, name) = holder.key.split_once('/').unwrap_or(("", &holder.key));
    match api.objects.get_opt(res, Some(ns), name).await {
        Ok(None) => true,
        Ok(Some(obj)) => obj.pointer("/metadata/uid").and_then(Value::as_str) != Some(&*holder.uid),
        Err(_) => false,
    }
}

/// How many times a write picks again after losing values to other writers.
const ATTEMPTS: usize = 16;

/// Allocates for `obj` and claims what it took in the store. A requested value
/// held by a service that no longer exists (its release may still be on its
/// way) is taken back first; a value another server claimed is learned and
/// another one picked (or, when it was asked for, refused).
async fn allocate(
    api: &Api,
    resource: &Resource,
    old: Option<&Value>,
    obj: &mut Value,
) -> Result<(), StatusError> {
    let Some(owner) = claims::owner_of(obj) else {
        return Ok(());
    };
    let state = &api.services;
    // Holders met in the store: possibly creates in flight on other servers,
    // which only the claim's own age (or repair) can tell from leaks.
    let mut from_store: HashSet<Arc<str>> = HashSet::new();
    for _ in 0..ATTEMPTS {
        let mut draft = obj.clone();
        let result = claims::allocate(&mut state.pools(), &state.settings, old, &mut draft, &owner);
        match result {
            Ok(taken) => {
                if shared::claim_taken(api, &taken, &owner, &mut from_store).await? {
                    *obj = draft;
                    return Ok(());
                }
            }
            Err(Failure::Invalid(_, Some(holder)))
                if holder.uid != owner.uid
                    && !from_store.contains(&holder.uid)
                    && holder_gone(api, &holder).await =>
            {
                let n = state.pools().release_all(&holder.uid);
                tracing::info!(holder = %holder.key, released = n, "reclaimed what a deleted service held");
                // Checked once: if its claim is still in the store, the claim decides.
                from_store.insert(holder.uid.clone());
            }
            Err(Failure::Invalid(err, _)) => {
                return Err(StatusError::invalid(resource, &name_of(obj), &[*err]))
            }
            Err(Failure::Internal(msg)) => return Err(StatusError::internal(msg)),
        }
    }
    Err(StatusError::internal(
        "allocation kept conflicting; try again",
    ))
}

fn invalid_if_any(
    resource: &Resource,
    obj: &Value,
    errs: Vec<skiff_api::FieldError>,
) -> Result<(), StatusError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(StatusError::invalid(resource, &name_of(obj), &errs))
    }
}

/// Before a Service is stored for the first time.
pub async fn before_create(
    api: &Api,
    resource: &Resource,
    obj: &mut Value,
) -> Result<(), StatusError> {
    if !is_service(resource) {
        return Ok(());
    }
    svc::prepare(obj, None);
    let errs = svc::init_ip_families(obj, None);
    invalid_if_any(resource, obj, errs)?;
    let uid = claims::owner_of(obj).map(|o| o.uid);
    if let Some(uid) = &uid {
        api.services.begin(uid);
    }
    let result = allocate(api, resource, None, obj).await;
    if let (Err(_), Some(uid)) = (&result, &uid) {
        api.services.end(uid);
    }
    result
}

/// Before an update of a Service is stored (`old` is what is stored now).
pub async fn before_update(
    api: &Api,
    resource: &Resource,
    old: &Value,
    new: &mut Value,
) -> Result<(), StatusError> {
    if !is_service(resource) {
        return Ok(());
    }
    if svc::is_status_write(new, old) {
        if let Some(owner) = claims::owner_of(new) {
            let state = &api.services;
            let taken =
                claims::adopt_lb_status(&mut state.pools(), &state.settings, old, new, &owner);
            shared::claim_adopted(api, &taken, &owner).await;
        }
        return Ok(());
    }
    svc::prepare(new, Some(old));
    let errs = svc::init_ip_families(new, Some(old));
    invalid_if_any(resource, new, errs)?;
    allocate(api, resource, Some(old), new).await
}

/// After a write: `stored` is `Ok` when it reached the store. Allocations made
/// for a write that failed must be released here, in the pools and the store.
pub async fn after_write(
    api: &Api,
    resource: &Resource,
    old: Option<&Value>,
    new: &Value,
    stored: bool,
) {
    if !is_service(resource) {
        return;
    }
    let Some(owner) = claims::owner_of(new) else {
        return;
    };
    let state = &api.services;
    let s = &state.settings;
    let (gone, kept) = match (stored, old) {
        (true, Some(old)) => (old, Some(new)),
        (true, None) => (new, Some(new)),
        (false, old) => (new, old),
    };
    let slots = claims::difference(s, gone, kept);
    let released = {
        let mut pools = state.pools();
        claims::release_difference(&mut pools, s, gone, kept, &owner.uid)
    };
    if stored {
        shared::release_claims(api, &slots, &owner.uid).await;
    } else {
        shared::release_unless_stored(api, &slots, &owner).await;
    }
    if old.is_none() {
        state.end(&owner.uid);
    }
    let pending = stored && claims::managed_lb(new) && claims::lb_slots(s, new).is_empty();
    if released > 0 || pending {
        state.lb_wake.notify_one();
    }
}

/// After a Service was removed from the store.
pub async fn after_delete(api: &Api, resource: &Resource, removed: &Value) {
    if !is_service(resource) {
        return;
    }
    forget(api, removed).await;
}

/// Gives back everything a deleted service held: in the pools, and its claims
/// (each server's watch does this too; only claims still naming it go).
async fn forget(api: &Api, removed: &Value) {
    let Some(owner) = claims::owner_of(removed) else {
        return;
    };
    let slots = claims::claims(&api.services.settings, removed);
    // Claims first: a waiting load balancer woken while the claim still named
    // the deleted service would take the value for another server's and wait
    // for repair (a minute or two) instead of getting it now.
    shared::release_claims(api, &slots, &owner.uid).await;
    if api.services.pools().release_all(&owner.uid) > 0 {
        api.services.lb_wake.notify_one();
    }
}

/// Reads every claim and every stored service into the pools, and claims what
/// stored services hold without a claim (a store written before claims, or a
/// crash between a claim's loss and repair); run once before serving.
pub async fn load(api: &Api) -> Result<(), StatusError> {
    let res = services_resource().ok_or_else(StatusError::no_such_resource)?;
    let state = &api.services;
    let backend = api.objects.backend();
    // Claims first: a service listed after them has its claims in that listing
    // or made later, so nothing is claimed for a service already deleted.
    let (held, _) = store::list(backend, &state.settings)
        .await
        .map_err(|e| StatusError::internal(e.to_string()))?;
    let page = api.objects.list(res, None, None, None).await?;
    let missing = {
        let mut pools = state.pools();
        shared::learn_all(&mut pools, &held);
        let claimed: HashSet<(claims::Kind, u32)> = held.iter().map(|h| (h.kind, h.idx)).collect();
        let mut missing = Vec::new();
        for obj in &page.items {
            let Some(owner) = claims::owner_of(obj) else {
                continue;
            };
            for (kind, idx, other) in pools.adopt(&state.settings, obj, &owner) {
                tracing::warn!(service = %owner.key, holder = %other.key, ?kind, slot = idx,
                    "two stored services claim the same value; the claim's holder keeps it");
            }
            let lacking: Vec<_> = claims::claims(&state.settings, obj)
                .into_iter()
                .filter(|c| !claimed.contains(c))
                .collect();
            if !lacking.is_empty() {
                missing.push((owner, lacking));
            }
        }
        missing
    };
    let claimed = missing.len();
    for (owner, slots) in missing {
        shared::ensure_claims(api, &owner, &slots).await;
    }
    let (ips, ports, lb) = {
        let pools = state.pools();
        (pools.ips.used(), pools.ports.used(), pools.lb.used())
    };
    state.loaded_at.store(page.revision, Ordering::SeqCst);
    tracing::info!(
        services = page.items.len(),
        claims = held.len(),
        services_claimed_now = claimed,
        cluster_ips = ips,
        node_ports = ports,
        lb_addresses = lb,
        "service allocations loaded"
    );
    Ok(())
}

/// The background tasks: releases on delete, repair, the load balancer and the
/// built-in services.
pub async fn run(api: Arc<Api>) {
    let from = api.services.loaded_at.load(Ordering::SeqCst);
    tokio::spawn(loadbalancer::run(api.clone()));
    repair::run(api, from).await;
}

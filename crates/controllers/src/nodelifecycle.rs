//! The node-lifecycle controller (upstream `nodelifecycle`): it notices nodes
//! that stopped sending heartbeats and says so in the API, since a dead node
//! itself changes nothing there.
//!
//! - A heartbeat is a newer `renewTime` on the node's Lease in `kube-node-lease`
//!   or a new `lastHeartbeatTime` on its Ready condition, timed by this
//!   controller's own clock when it sees it (as upstream: clocks of nodes may
//!   be skewed). After `--node-monitor-grace-period` without one (or
//!   `--node-startup-grace-period` for a node that never posted a status),
//!   Ready, MemoryPressure, DiskPressure and PIDPressure become `Unknown`
//!   (`NodeStatusUnknown`, `Kubelet stopped posting node status.`).
//! - The pods of a node whose Ready is not True get their Ready condition set
//!   to False (upstream `MarkPodsNotReady`), so EndpointSlices drop them at
//!   once. The node is checked again exactly when its grace period ends.
//! - Taints follow the conditions: NoSchedule taints for Ready False/Unknown,
//!   the pressure conditions and `spec.unschedulable`; `not-ready`/`unreachable`
//!   NoExecute taints (with `timeAdded`) for Ready False/Unknown, which the
//!   taint-eviction controller acts on. They are removed when the node posts
//!   Ready=True again.
//! - As upstream, new NoExecute taints are rate-limited per zone
//!   (`--node-eviction-rate`), stop in a partially disrupted small zone, and
//!   when no node at all is Ready (the control plane is probably the one cut
//!   off) every NoExecute taint of ours is removed and none added.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use crate::nodeutil::{self, NO_EXECUTE, NO_SCHEDULE, TAINT_NOT_READY, TAINT_UNREACHABLE};
use crate::runtime::{Ctx, Key};
use crate::Result;

/// Where kubelets (and skiff's agents) keep their heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const COMPONENT: &str = "node-controller";
/// Upstream `--secondary-node-eviction-rate`, `--large-cluster-size-threshold`
/// and `--unhealthy-zone-threshold` defaults.
const SECONDARY_EVICTION_RATE: f64 = 0.01;
const LARGE_CLUSTER: usize = 50;
const UNHEALTHY_ZONE: f64 = 0.55;
/// Nodes with this label do not count towards their zone's health.
const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";
/// The conditions set Unknown when the node goes silent (NetworkUnavailable is
/// the network plugin's, not kubelet's, and is left alone as upstream).
const MONITORED: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the controller last saw of a node's heartbeats.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// When (by our clock) the last heartbeat was seen.
    pub probe: Instant,
    pub renew: Option<Timestamp>,
    pub heartbeat: Option<Timestamp>,
}

/// The node's health after observing its Ready heartbeat and Lease renewal at
/// `now`; `created_ago` is the node's age, the probe time of a node never seen
/// before that never posted a status (it gets the startup grace from creation).
pub fn observe(
    saved: Option<&Health>,
    heartbeat: Option<Timestamp>,
    renew: Option<Timestamp>,
    now: Instant,
    created_ago: Duration,
) -> Health {
    let mut h = match saved {
        None => Health {
            probe: if heartbeat.is_none() {
                now.checked_sub(created_ago).unwrap_or(now)
            } else {
                now
            },
            renew: None,
            heartbeat,
        },
        Some(s) if s.heartbeat != heartbeat => Health {
            probe: now,
            heartbeat,
            ..s.clone()
        },
        Some(s) => s.clone(),
    };
    if renew.is_some() && (h.renew.is_none() || renew > h.renew) {
        h.renew = renew;
        h.probe = now;
    }
    h
}

/// The conditions to write for a node that went silent: each monitored one not
/// yet Unknown becomes Unknown (upstream `tryUpdateNodeHealth`). Empty when
/// there is nothing to change.
pub fn stale_conditions(node: &Node, now: Timestamp) -> Vec<NodeCondition> {
    let created = node.metadata.creation_timestamp.clone();
    MONITORED
        .iter()
        .filter_map(|ty| match nodeutil::condition(node, ty) {
            None => Some(NodeCondition {
                type_: ty.to_string(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: created.clone(),
                last_transition_time: Some(Time(now)),
            }),
            Some(c) if c.status != "Unknown" => Some(NodeCondition {
                status: "Unknown".into(),
                reason: Some("NodeStatusUnknown".into()),
                message: Some("Kubelet stopped posting node status.".into()),
                last_transition_time: Some(Time(now)),
                ..c.clone()
            }),
            Some(_) => None,
        })
        .collect()
}

/// Whether this controller may add a NoExecute taint now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoExecute {
    Allow,
    /// Rate-limited: existing taints stay (and are swapped), none is added.
    Hold,
    /// No node is Ready anywhere: ours are removed, none added.
    Stop,
}

/// The node's taints as they should be, or `None` if they are right; and
/// whether a NoExecute taint is waiting for the rate limiter (`held`).
#[derive(Debug, Default, PartialEq)]
pub struct Taints {
    pub taints: Option<Vec<Taint>>,
    pub added_no_execute: bool,
    pub held: bool,
}

/// The NoSchedule taint each condition status calls for (upstream
/// `nodeConditionToTaintKeyStatusMap`).
fn condition_taint(type_: &str, status: &str) -> Option<&'static str> {
    match (type_, status) {
        ("Ready", "False") => Some(TAINT_NOT_READY),
        ("Ready", "Unknown") => Some(TAINT_UNREACHABLE),
        ("MemoryPressure", "True") => Some(nodeutil::TAINT_MEMORY_PRESSURE),
        ("DiskPressure", "True") => Some(nodeutil::TAINT_DISK_PRESSURE),
        ("NetworkUnavailable", "True") => Some(nodeutil::TAINT_NETWORK_UNAVAILABLE),
        ("PIDPressure", "True") => Some(nodeutil::TAINT_PID_PRESSURE),
        _ => None,
    }
}

const CONDITION_TAINTS: [&str; 7] = [
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    nodeutil::TAINT_MEMORY_PRESSURE,
    nodeutil::TAINT_DISK_PRESSURE,
    nodeutil::TAINT_NETWORK_UNAVAILABLE,
    nodeutil::TAINT_PID_PRESSURE,
    nodeutil::TAINT_UNSCHEDULABLE,
];

/// The pure taint decision (upstream `doNoScheduleTaintingPass` and
/// `processTaintBaseEviction`): `conditions` as they are after this pass.
pub fn desired_taints(
    current: &[Taint],
    conditions: &[NodeCondition],
    unschedulable: bool,
    no_execute: NoExecute,
    now: Timestamp,
) -> Taints {
    use NoExecute::*;
    let mut want: Vec<(&str, &str)> = conditions
        .iter()
        .filter_map(|c| condition_taint(&c.type_, &c.status))
        .map(|k| (k, NO_SCHEDULE))
        .collect();
    if unschedulable {
        want.push((nodeutil::TAINT_UNSCHEDULABLE, NO_SCHEDULE));
    }
    let ready = conditions.iter().find(|c| c.type_ == "Ready");
    let exec_key = match ready.map(|c| c.status.as_str()) {
        Some("False") => Some(TAINT_NOT_READY),
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => None,
    };
    let has = |key: &str, effect: &str| current.iter().any(|t| t.key == key && t.effect == effect);
    let mut out = Taints::default();
    if let Some(k) = exec_key {
        let swap = has(TAINT_NOT_READY, NO_EXECUTE) || has(TAINT_UNREACHABLE, NO_EXECUTE);
        match no_execute {
            Allow => want.push((k, NO_EXECUTE)),
            // A node already tainted the other way is swapped at once, as
            // upstream: the rate limit is on starting evictions, not on this.
            Hold if has(k, NO_EXECUTE) || swap => want.push((k, NO_EXECUTE)),
            Hold => out.held = true,
            Stop => {}
        }
        out.added_no_execute = no_execute == Allow && !has(k, NO_EXECUTE);
    }
    let ours = |t: &Taint| {
        (t.effect == NO_SCHEDULE && CONDITION_TAINTS.contains(&t.key.as_str()))
            || (t.effect == NO_EXECUTE && (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE))
    };
    let wanted = |t: &Taint| want.iter().any(|(k, e)| t.key == *k && t.effect == *e);
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| !ours(t) || wanted(t))
        .cloned()
        .collect();
    for (k, e) in &want {
        if !has(k, e) {
            next.push(nodeutil::taint(k, e, Some(now)));
        }
    }
    if next.as_slice() != current {
        out.taints = Some(next);
    }
    out
}

/// A pod whose Ready condition is there and not False: what upstream's
/// `MarkPodsNotReady` changes (a pod without the condition is left alone).
pub fn ready_not_false(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "False")
}

/// A zone's health (upstream `ComputeZoneState`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Normal,
    Partial,
    Full,
}

pub fn zone_state(ready: usize, not_ready: usize) -> Zone {
    if ready == 0 && not_ready > 0 {
        Zone::Full
    } else if not_ready > 2 && not_ready as f64 / (ready + not_ready) as f64 >= UNHEALTHY_ZONE {
        Zone::Partial
    } else {
        Zone::Normal
    }
}

/// How many NoExecute taints per second a zone may get; 0 stops them.
pub fn zone_rate(zone: Zone, size: usize, eviction_rate: f64) -> f64 {
    match zone {
        Zone::Normal | Zone::Full => eviction_rate,
        Zone::Partial if size > LARGE_CLUSTER => SECONDARY_EVICTION_RATE,
        Zone::Partial => 0.0,
    }
}

/// Upstream's zone key: region and zone labels, empty when the node has neither.
fn zone_of(node: &Node) -> String {
    let l = node.labels();
    let get = |a: &str, b: &str| l.get(a).or_else(|| l.get(b)).cloned().unwrap_or_default();
    let region = get(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = get(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\x00:{zone}")
    }
}

/// The controller's memory: heartbeats per node, nodes already announced, the
/// cluster-wide disruption mode and the last NoExecute taint per zone.
#[derive(Default)]
pub struct State {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    health: HashMap<String, Health>,
    known: HashMap<String, Arc<Node>>,
    all_disrupted: bool,
    last_taint: HashMap<String, Instant>,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn heartbeat_of(node: &Node) -> Option<Timestamp> {
    nodeutil::condition(node, "Ready").and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0))
}

/// The Lease renewal of `node`, if it has a Lease.
fn renewal(ctx: &Ctx, node: &str) -> Option<Timestamp> {
    ctx.cache
        .leases
        .get(&ObjectRef::<Lease>::new(node).within(LEASE_NAMESPACE))
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0))
}

/// Zone states over the cached nodes, with `name`'s Ready as `ready` (the cache
/// may not show what this pass just wrote): (state, size) per zone.
fn zones(ctx: &Ctx, name: &str, ready: bool) -> HashMap<String, (Zone, usize)> {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    for n in ctx.cache.nodes.state() {
        if n.labels().contains_key(EXCLUDE_DISRUPTION) {
            continue;
        }
        let r = if n.name_any() == name {
            ready
        } else {
            nodeutil::is_ready(&n)
        };
        let e = counts.entry(zone_of(&n)).or_default();
        if r {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    counts
        .into_iter()
        .map(|(z, (r, nr))| (z, (zone_state(r, nr), r + nr)))
        .collect()
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let settings = &ctx.settings;
    let state = &ctx.lifecycle;
    let Some(node) = ctx.cache.nodes.get(&ObjectRef::new(&key.name)) else {
        let gone = {
            let mut s = state.lock();
            s.health.remove(&key.name);
            s.known.remove(&key.name)
        };
        if let Some(n) = gone {
            let msg = format!(
                "Node {0} event: Removing Node {0} from Controller",
                key.name
            );
            ctx.events
                .record(&*n, COMPONENT, false, "RemovingNode", msg);
        }
        return Ok(None);
    };
    let now = Instant::now();
    let wall = Timestamp::now();
    let created_ago = node
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| {
            Duration::from_millis(
                u64::try_from(wall.as_millisecond() - t.0.as_millisecond()).unwrap_or(0),
            )
        })
        .unwrap_or_default();
    let (since, first) = {
        let mut s = state.lock();
        let h = observe(
            s.health.get(&key.name),
            heartbeat_of(&node),
            renewal(&ctx, &key.name),
            now,
            created_ago,
        );
        let since = now.saturating_duration_since(h.probe);
        s.health.insert(key.name.clone(), h);
        (
            since,
            s.known.insert(key.name.clone(), node.clone()).is_none(),
        )
    };
    if first {
        let msg = format!(
            "Node {0} event: Registered Node {0} in Controller",
            key.name
        );
        ctx.events
            .record(&*node, COMPONENT, false, "RegisteredNode", msg);
    }
    let grace = if nodeutil::condition(&node, "Ready").is_none() {
        settings.node_startup_grace_period
    } else {
        settings.node_monitor_grace_period
    };
    let stale = since > grace;
    let api: Api<Node> = Api::all(ctx.clients.of("nodelifecycle"));
    let mut rv = node.metadata.resource_version.clone();
    let mut conditions: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if stale {
        let changed = stale_conditions(&node, wall);
        if !changed.is_empty() {
            // Conditional on the node as seen: a status the agent posts meanwhile wins.
            let patch =
                json!({"metadata": {"resourceVersion": rv}, "status": {"conditions": changed}});
            let written = api
                .patch_status(
                    &key.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await?;
            rv = written.metadata.resource_version.clone();
            tracing::info!(node = %key.name, silent = ?since, "node stopped posting status; conditions set Unknown");
            if nodeutil::is_ready(&node) {
                let msg = format!("Node {} status is now: NodeNotReady", key.name);
                ctx.events
                    .record(&*node, COMPONENT, false, "NodeNotReady", msg);
            }
            for c in changed {
                if c.type_ == "Ready" {
                    // What we wrote is no heartbeat of the node's.
                    if let Some(h) = state.lock().health.get_mut(&key.name) {
                        h.heartbeat = c.last_heartbeat_time.as_ref().map(|t| t.0);
                    }
                }
                match conditions.iter_mut().find(|o| o.type_ == c.type_) {
                    Some(o) => *o = c,
                    None => conditions.push(c),
                }
            }
        }
    }
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone());
    // A node whose Lease is renewed again is coming back: its pods are left for
    // its agent to report rather than marked down once more.
    if ready.as_deref() == Some("False") || (ready.as_deref() != Some("True") && stale) {
        mark_pods_not_ready(&ctx, &key.name).await?;
        mark_node_endpoints_not_ready(&ctx, &key.name).await?;
    }
    let zone = zone_of(&node);
    let all = zones(&ctx, &key.name, ready.as_deref() == Some("True"));
    let all_disrupted = !all.is_empty() && all.values().all(|(z, _)| *z == Zone::Full);
    let (stopped, wait) = {
        let mut s = state.lock();
        if s.all_disrupted != all_disrupted {
            if all_disrupted {
                tracing::info!(
                    "no node is Ready: entering master disruption mode, no NoExecute taints"
                );
            } else {
                // Every node gets a fresh grace period, as upstream, since
                // their heartbeats may not have reached us while we were cut off.
                tracing::info!("some nodes are Ready again: exiting master disruption mode");
                for h in s.health.values_mut() {
                    h.probe = now;
                }
            }
            s.all_disrupted = all_disrupted;
        }
        let (z, size) = all.get(&zone).copied().unwrap_or((Zone::Normal, 1));
        let rate = zone_rate(z, size, settings.node_eviction_rate);
        // A rate of 0 (or not a number) stops new NoExecute taints in the zone.
        let interval = Duration::try_from_secs_f64(1.0 / rate)
            .ok()
            .filter(|_| rate > 0.0);
        let wait = match (interval, s.last_taint.get(&zone)) {
            (None, _) => Some(settings.node_monitor_period),
            (Some(i), Some(t)) => i.checked_sub(t.elapsed()),
            (Some(_), None) => None,
        };
        (interval.is_none(), wait)
    };
    let mode = if all_disrupted {
        NoExecute::Stop
    } else if stopped || wait.is_some() {
        NoExecute::Hold
    } else {
        NoExecute::Allow
    };
    let plan = desired_taints(
        nodeutil::taints(&node),
        &conditions,
        nodeutil::unschedulable(&node),
        mode,
        wall,
    );
    if let Some(taints) = &plan.taints {
        let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"taints": taints}});
        api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if plan.added_no_execute {
            state.lock().last_taint.insert(zone, Instant::now());
        }
    }
    let mut again = None;
    if !stale {
        // Nothing in the API changes when a node dies: look again when its
        // grace period ends.
        again = Some(grace - since + Duration::from_millis(10));
    }
    if plan.held {
        let w = wait.unwrap_or(settings.node_monitor_period);
        again = Some(again.map_or(w, |a: Duration| a.min(w)));
    }
    Ok(again)
}

/// Sets Ready=False on every pod of `node` that does not have it yet (upstream
/// `MarkPodsNotReady`: only the Ready condition, reason and message kept).
async fn mark_pods_not_ready(ctx: &Ctx, node: &str) -> Result<()> {
    let on_node = ctx
        .cache
        .pods
        .state_filter(|p| nodeutil::node_name(p) == Some(node));
    let now = Timestamp::now().to_string();
    let results: Vec<Result<()>> = futures::stream::iter(on_node.into_iter().filter(|p| ready_not_false(p)))
        .map(|p| {
            let now = now.clone();
            async move {
                let ns = p.namespace().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(ctx.clients.of("nodelifecycle"), &ns);
                // Conditions merge by type: nothing else the agent wrote changes.
                let patch = json!({"metadata": {"uid": p.metadata.uid},
                    "status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}]}});
                match api
                    .patch_status(&p.name_any(), &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
                ctx.events
                    .record(&*p, COMPONENT, true, "NodeNotReady", "Node is not ready".into());
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Managers (`endpointslice.kubernetes.io/managed-by`) of EndpointSlices that a
/// node component publishes for itself, not backed by pods: skiff's DNS server
/// and ingress on each node. Upstream's DNS and ingress controllers run as
/// pods, so `MarkPodsNotReady` takes their endpoints on a dead node out; these
/// get the same treatment here.
const NODE_COMPONENT_MANAGERS: &[&str] = &["skiff-dns", "skiff-ingress"];
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";

/// The endpoints of `slice` with those on `node` marked not ready and not
/// serving; `None` when none of them needs the change.
pub fn node_endpoints_down(slice: &EndpointSlice, node: &str) -> Option<serde_json::Value> {
    let mut changed = false;
    let endpoints: Vec<serde_json::Value> = slice
        .endpoints
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            let up = e
                .conditions
                .as_ref()
                .is_none_or(|c| c.ready != Some(false) || c.serving != Some(false));
            if e.node_name.as_deref() == Some(node) && up {
                v["conditions"]["ready"] = json!(false);
                v["conditions"]["serving"] = json!(false);
                changed = true;
            }
            v
        })
        .collect();
    changed.then(|| json!(endpoints))
}

/// Marks the endpoints of node components on `node` not ready (see
/// [`NODE_COMPONENT_MANAGERS`]); the component re-publishes them as ready once
/// it runs again.
async fn mark_node_endpoints_not_ready(ctx: &Ctx, node: &str) -> Result<()> {
    let slices = ctx.cache.slices.state_filter(|s| {
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY))
            .is_some_and(|m| NODE_COMPONENT_MANAGERS.contains(&m.as_str()))
    });
    for s in slices {
        let Some(endpoints) = node_endpoints_down(&s, node) else {
            continue;
        };
        let ns = s.namespace().unwrap_or_default();
        let api: Api<EndpointSlice> = Api::namespaced(ctx.clients.of("nodelifecycle"), &ns);
        let patch = json!({"metadata": {"resourceVersion": s.metadata.resource_version},
            "endpoints": endpoints});
        match api
            .patch(
                &s.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            // Gone, or changed meanwhile: the next look at the node redoes it.
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A pod placed on a node that is not Ready is marked too (upstream `processPod`).
pub fn on_pod(ctx: &Ctx, pod: &Pod) {
    let Some(name) = nodeutil::node_name(pod) else {
        return;
    };
    if let Some(n) = ctx.cache.nodes.get(&ObjectRef::new(name)) {
        if nodeutil::ready_status(&n).is_some_and(|s| s != "True") && ready_not_false(pod) {
            ctx.queues.nodelifecycle.add(Key::new("", name));
        }
    }
}

/// A Lease renewal in `kube-node-lease` is a heartbeat of the node it names.
pub fn on_lease(ctx: &Ctx, lease: &Lease) {
    if lease.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE) {
        ctx.queues
            .nodelifecycle
            .add(Key::new("", &lease.name_any()));
    }
}

#[cfg(test)]
#[path = "nodelifecycle_tests.rs"]
mod tests;

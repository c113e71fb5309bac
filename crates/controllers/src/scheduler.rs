//! The scheduler: binds each pending pod without a node to the best node that
//! passes upstream's default filters, in upstream's order (the first failing
//! one is the node's reason):
//!
//! 1. `NodeUnschedulable`: cordoned nodes (`spec.unschedulable`), unless the
//!    pod tolerates `node.kubernetes.io/unschedulable:NoSchedule`;
//! 2. `TaintToleration`: NoSchedule/NoExecute taints the pod does not tolerate.
//!    A node that is not Ready counts as carrying the `not-ready`/`unreachable`
//!    taint the node-lifecycle controller gives it, also before it does;
//! 3. `NodeAffinity`: `nodeSelector` and required node affinity ([`affinity`]);
//! 4. `NodeResourcesFit`, pods only: at most `allocatable.pods` pods a node;
//! 5. `PodTopologySpread`: the pod's DoNotSchedule constraints ([`spread`]).
//!
//! Nodes left are scored as upstream's default plugins weigh them:
//! TaintToleration (PreferNoSchedule taints) ×3, NodeAffinity (preferred
//! terms) ×2, PodTopologySpread (ScheduleAnyway constraints, or the system
//! default spreading of the pods of the same Service/ReplicaSet/StatefulSet)
//! ×2, and least allocated ×1, counted in pods since skiff's pods rarely
//! request resources. Ties go to the first node by name (upstream: random).
//!
//! skiff's API server has no `pods/binding` subresource, so binding is a JSON
//! merge patch of `spec.nodeName`. Bindings are assumed at once (as upstream's
//! scheduler cache does) so the next pod is placed knowing about this one
//! before the watch reports it.

pub mod affinity;
pub mod spread;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod, Service, Taint};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use crate::nodeutil::{self, NO_EXECUTE, NO_SCHEDULE, PREFER_NO_SCHEDULE};
use crate::runtime::{Ctx, Key};
use crate::{pods, Result};

const COMPONENT: &str = "default-scheduler";
/// kubelet's default `--max-pods`, for nodes that do not say.
const DEFAULT_MAX_PODS: i64 = 110;
/// How long a binding is assumed before the cache must show it.
const ASSUME_TTL: Duration = Duration::from_secs(30);

/// Pending pods this scheduler is responsible for.
pub fn needs_scheduling(p: &Pod) -> bool {
    let spec = p.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
        .is_empty()
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n == COMPONENT)
        && p.metadata.deletion_timestamp.is_none()
        && !pods::is_terminal(p)
}

/// Why a node does not fit, and whether evicting pods could change that
/// (upstream `Unschedulable` vs `UnschedulableAndUnresolvable`): it decides
/// the preemption half of the FailedScheduling message.
#[derive(Debug, Clone, PartialEq)]
pub struct Misfit {
    pub reason: String,
    pub resolvable: bool,
}

impl Misfit {
    pub fn unresolvable(reason: String) -> Misfit {
        Misfit {
            reason,
            resolvable: false,
        }
    }

    pub fn resolvable(reason: String) -> Misfit {
        Misfit {
            reason,
            resolvable: true,
        }
    }
}

/// What the scheduler sees: the caches, pods indexed by node.
pub struct Snapshot<'a> {
    pub nodes: &'a [Arc<Node>],
    pub services: &'a [Arc<Service>],
    pub replicasets: &'a [Arc<ReplicaSet>],
    pub statefulsets: &'a [Arc<StatefulSet>],
    by_node: HashMap<String, Vec<Arc<Pod>>>,
}

impl<'a> Snapshot<'a> {
    /// `pods` are all pods; terminal ones hold no place on a node.
    pub fn new(
        nodes: &'a [Arc<Node>],
        pods: &[Arc<Pod>],
        services: &'a [Arc<Service>],
        replicasets: &'a [Arc<ReplicaSet>],
        statefulsets: &'a [Arc<StatefulSet>],
    ) -> Self {
        let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for p in pods.iter().filter(|p| !pods::is_terminal(p)) {
            if let Some(n) = nodeutil::node_name(p) {
                by_node.entry(n.to_string()).or_default().push(p.clone());
            }
        }
        Snapshot {
            nodes,
            services,
            replicasets,
            statefulsets,
            by_node,
        }
    }

    pub fn on(&self, node: &str) -> impl Iterator<Item = &Arc<Pod>> {
        self.by_node.get(node).into_iter().flatten()
    }
}

/// The node's taints, plus the condition taint the node-lifecycle controller
/// would add for a node that is not Ready (kubelet registers nodes with the
/// not-ready one), so a dead node is never chosen while it is being tainted.
fn effective_taints(n: &Node) -> Vec<Taint> {
    let mut taints = nodeutil::taints(n).to_vec();
    let key = match nodeutil::ready_status(n) {
        Some("True") => None,
        Some("Unknown") => Some(nodeutil::TAINT_UNREACHABLE),
        _ => Some(nodeutil::TAINT_NOT_READY),
    };
    if let Some(k) = key {
        if !taints.iter().any(|t| t.key == k && t.effect == NO_SCHEDULE) {
            taints.push(nodeutil::taint(k, NO_SCHEDULE, None));
        }
    }
    taints
}

fn max_pods(n: &Node) -> i64 {
    n.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("pods"))
        .and_then(|q| q.0.parse().ok())
        .unwrap_or(DEFAULT_MAX_PODS)
}

/// The first default filter `node` fails, if any.
fn misfit(pod: &Pod, n: &Node, snap: &Snapshot, hard: &spread::Hard) -> Option<Misfit> {
    let tolerations = nodeutil::tolerations(pod);
    if nodeutil::unschedulable(n) {
        let cordon = nodeutil::taint(nodeutil::TAINT_UNSCHEDULABLE, NO_SCHEDULE, None);
        if nodeutil::toleration_for(tolerations, &cordon).is_none() {
            return Some(Misfit::unresolvable("node(s) were unschedulable".into()));
        }
    }
    let untolerated = effective_taints(n).into_iter().find(|t| {
        (t.effect == NO_SCHEDULE || t.effect == NO_EXECUTE)
            && nodeutil::toleration_for(tolerations, t).is_none()
    });
    if let Some(t) = untolerated {
        return Some(Misfit::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or("")
        )));
    }
    if !affinity::required_matches(pod, n) {
        return Some(Misfit::unresolvable(
            "node(s) didn't match Pod's node affinity/selector".into(),
        ));
    }
    if snap.on(&n.name_any()).count() as i64 + 1 > max_pods(n) {
        return Some(Misfit::resolvable("Too many pods".into()));
    }
    hard.check(n)
}

/// `count reason` per reason, sorted as strings, as upstream's `FitError`.
fn histogram<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

/// Upstream's FailedScheduling message: the filter reasons, then what the
/// preemption plugin found (with equal priorities, never a victim).
pub fn fit_error(total: usize, misfits: &[Misfit]) -> String {
    let filters = histogram(misfits.iter().map(|m| m.reason.as_str()));
    let preemption = histogram(misfits.iter().map(|m| {
        if m.resolvable {
            "No preemption victims found for incoming pod"
        } else {
            "Preemption is not helpful for scheduling"
        }
    }));
    format!(
        "0/{total} nodes are available: {filters}. preemption: 0/{total} nodes are available: {preemption}."
    )
}

/// Upstream `DefaultNormalizeScore`: scaled to 0..=100 by the highest, or
/// reversed so that the lowest raw value scores highest.
fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|s| match (max, reverse) {
            (0, true) => 100,
            (0, false) => *s,
            (m, true) => 100 - s * 100 / m,
            (m, false) => s * 100 / m,
        })
        .collect()
}

/// The node for `pod`, or the FailedScheduling message.
pub fn pick(pod: &Pod, snap: &Snapshot) -> Result<String, String> {
    if snap.nodes.is_empty() {
        return Err("no nodes available to schedule pods".into());
    }
    let hard = spread::Hard::new(pod, snap);
    let mut misfits = Vec::new();
    let mut fit: Vec<&Node> = Vec::new();
    for n in snap.nodes {
        match misfit(pod, n, snap, &hard) {
            Some(m) => misfits.push(m),
            None => fit.push(n),
        }
    }
    if fit.is_empty() {
        return Err(fit_error(snap.nodes.len(), &misfits));
    }
    let tolerations: Vec<_> = nodeutil::tolerations(pod)
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == PREFER_NO_SCHEDULE)
        })
        .cloned()
        .collect();
    let prefer_no: Vec<i64> = fit
        .iter()
        .map(|n| {
            nodeutil::taints(n)
                .iter()
                .filter(|t| t.effect == PREFER_NO_SCHEDULE)
                .filter(|t| nodeutil::toleration_for(&tolerations, t).is_none())
                .count() as i64
        })
        .collect();
    let preferred: Vec<i64> = fit
        .iter()
        .map(|n| affinity::preferred_score(pod, n))
        .collect();
    let taint_scores = normalize(&prefer_no, true);
    let affinity_scores = normalize(&preferred, false);
    let spread_scores = spread::scores(pod, snap, &fit);
    let best = fit
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (max, used) = (max_pods(n).max(1), snap.on(&n.name_any()).count() as i64);
            let least_allocated = (max - used).max(0) * 100 / max;
            let total = 3 * taint_scores[i]
                + 2 * affinity_scores[i]
                + 2 * spread_scores[i]
                + least_allocated;
            (std::cmp::Reverse(total), n.name_any())
        })
        .min();
    best.map(|(_, name)| name)
        .ok_or_else(|| "no nodes available to schedule pods".into())
}

/// A binding written but maybe not yet in the cache: the pod's uid (a pod
/// recreated under the same name, as a StatefulSet does, is another pod), the
/// node, and when.
struct Assumed {
    uid: Option<String>,
    node: String,
    at: Instant,
}

/// Bindings written but maybe not yet in the cache.
#[derive(Default)]
pub struct State {
    assumed: Mutex<HashMap<Key, Assumed>>,
}

/// All pods, with assumed bindings applied.
fn pods_with_assumed(ctx: &Ctx) -> Vec<Arc<Pod>> {
    let mut all = ctx.cache.pods.state();
    let mut assumed = ctx
        .scheduler
        .assumed
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    assumed.retain(|_, a| a.at.elapsed() < ASSUME_TTL);
    for p in all.iter_mut() {
        let key = Key::of(&**p);
        if let Some(a) = assumed.get(&key) {
            if nodeutil::node_name(p).is_some()
                || p.metadata.deletion_timestamp.is_some()
                || a.uid != p.metadata.uid
            {
                assumed.remove(&key);
            } else {
                let mut bound = (**p).clone();
                bound.spec.get_or_insert_with(Default::default).node_name = Some(a.node.clone());
                *p = Arc::new(bound);
            }
        }
    }
    all
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let Some(pod) = ctx
        .cache
        .pods
        .get(&ObjectRef::new(&key.name).within(&key.ns))
    else {
        return Ok(None);
    };
    if !needs_scheduling(&pod)
        || ctx
            .scheduler
            .assumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .is_some_and(|a| a.uid == pod.metadata.uid && a.at.elapsed() < ASSUME_TTL)
    {
        return Ok(None);
    }
    let nodes = ctx.cache.nodes.state();
    let all = pods_with_assumed(&ctx);
    let services = ctx.cache.services.state();
    let replicasets = ctx.cache.replicasets.state();
    let statefulsets = ctx.cache.statefulsets.state();
    let snap = Snapshot::new(&nodes, &all, &services, &replicasets, &statefulsets);
    match pick(&pod, &snap) {
        Ok(node) => {
            let api: Api<Pod> = Api::namespaced(ctx.clients.of("scheduler"), &key.ns);
            // Upstream's API server treats a uid in a patch as a precondition,
            // so a recreated pod of the same name does not inherit this decision.
            let patch = json!({"metadata": {"uid": pod.metadata.uid}, "spec": {"nodeName": node}});
            api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            ctx.scheduler
                .assumed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    key.clone(),
                    Assumed {
                        uid: pod.metadata.uid.clone(),
                        node: node.clone(),
                        at: Instant::now(),
                    },
                );
            // What the binding subresource does upstream: PodScheduled=True.
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let cond = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "True",
                "lastTransitionTime": now, "lastProbeTime": null}]}});
            api.patch_status(&key.name, &PatchParams::default(), &Patch::Strategic(&cond))
                .await?;
            ctx.events.record(
                &*pod,
                COMPONENT,
                false,
                "Scheduled",
                format!("Successfully assigned {key} to {node}"),
            );
            Ok(None)
        }
        Err(message) => {
            // As upstream: PodScheduled=False/Unschedulable with the reason,
            // written only when it changes (a write requeues the pod).
            let current = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
            if current.is_none_or(|c| {
                c.status != "False" || c.message.as_deref() != Some(message.as_str())
            }) {
                let api: Api<Pod> = Api::namespaced(ctx.clients.of("scheduler"), &key.ns);
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                // Strategic merge: conditions merge by type, so nothing else
                // the node agent wrote is replaced.
                let patch = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False",
                    "reason": "Unschedulable", "message": message, "lastTransitionTime": now,
                    "lastProbeTime": null}]}});
                api.patch_status(
                    &key.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await?;
            }
            ctx.events
                .record(&*pod, COMPONENT, true, "FailedScheduling", message);
            // Node changes requeue pending pods; this is the slow safety net.
            Ok(Some(Duration::from_secs(30)))
        }
    }
}

#[cfg(test)]
mod tests;

//! The DaemonSet controller: one pod on every node the template can run on
//! (its `nodeSelector`, required node affinity, and tolerations of the node's
//! NoSchedule/NoExecute taints, with the tolerations upstream adds to every
//! daemon pod), none elsewhere; a RollingUpdate replaces pods of an older
//! template node by node within `maxUnavailable`, OnDelete only when the user
//! deletes them.
//!
//! Binding: the controller sets `spec.nodeName` itself (as upstream did
//! before 1.12) and also writes the `metadata.name` node-affinity term
//! upstream's scheduler-based path gives each pod, so `kubectl get -o yaml`
//! looks the same. With `maxSurge`, a node's new pod starts beside the old one,
//! which is deleted once the new one is available. The `controller-revision-hash` label
//! is a hash of the template as upstream's, and names the template's
//! ControllerRevision ([`crate::daemonset_history`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use crate::nodeutil;
use crate::pods;
use crate::runtime::{Ctx, Key};
use crate::Result;

const COMPONENT: &str = "daemonset-controller";
pub const REVISION_HASH: &str = "controller-revision-hash";
pub const TEMPLATE_GENERATION: &str = "pod-template-generation";

/// The tolerations upstream adds to every daemon pod
/// (`AddOrUpdateDaemonPodTolerations`): a daemon keeps running on a node
/// that is not ready, unreachable, under pressure or cordoned.
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

/// The template as a pod, with the daemon tolerations added.
fn template_pod(template: &PodTemplateSpec) -> Pod {
    let mut spec = template.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for t in daemon_tolerations(host_network) {
        if !list.contains(&t) {
            list.push(t);
        }
    }
    Pod {
        metadata: template.metadata.clone().unwrap_or_default(),
        spec: Some(spec),
        status: None,
    }
}

/// Whether a pod of `template` belongs on `node` (upstream `NodeShouldRunDaemonPod`).
pub fn should_run(template_pod: &Pod, node: &Node) -> bool {
    if !crate::scheduler::affinity::required_matches(template_pod, node) {
        return false;
    }
    let tolerations = nodeutil::tolerations(template_pod);
    let mut taints: Vec<_> = nodeutil::taints(node).to_vec();
    if nodeutil::unschedulable(node) {
        taints.push(nodeutil::taint(
            "node.kubernetes.io/unschedulable",
            "NoSchedule",
            None,
        ));
    }
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| nodeutil::toleration_for(tolerations, t).is_some())
}

/// Upstream's `rand.SafeEncodeString` alphabet.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The template's hash in upstream's shape (FNV-32a, printed in decimal,
/// each digit mapped to a safe character), for `controller-revision-hash`.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// `maxUnavailable` (`surge`: `maxSurge`) against `desired` nodes,
/// percentages rounded up; unset, 1 and 0 as upstream's defaults.
fn rolling_limit(ds: &DaemonSet, surge: bool, desired: usize) -> usize {
    let r = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let v = if surge {
        r.and_then(|r| r.max_surge.clone())
            .unwrap_or(IntOrString::Int(0))
    } else {
        r.and_then(|r| r.max_unavailable.clone())
            .unwrap_or(IntOrString::Int(1))
    };
    match v {
        IntOrString::Int(n) => usize::try_from(n.max(0)).unwrap_or(0),
        IntOrString::String(s) => {
            let pct: usize = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * desired).div_ceil(100)
        }
    }
}

/// What a sync of one DaemonSet does.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to create a pod on.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
    pub status: DaemonSetStatus,
}

/// The pure sync: `pods` are all pods in the DaemonSet's namespace.
pub fn desired(ds: &DaemonSet, nodes: &[Arc<Node>], pods: &[Arc<Pod>], now: Timestamp) -> Plan {
    let uid = ds.metadata.uid.as_deref().unwrap_or("");
    let spec = ds.spec.clone().unwrap_or_default();
    let hash = template_hash(&spec.template);
    let tpod = template_pod(&spec.template);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    let mut plan = Plan::default();
    let mut by_node: HashMap<&str, Vec<&Arc<Pod>>> = HashMap::new();
    for p in pods {
        let mine = p
            .owner_references()
            .iter()
            .any(|r| r.controller == Some(true) && r.uid == uid);
        if !mine || pods::is_terminating(p) {
            continue;
        }
        if pods::is_terminal(p) {
            // A failed daemon pod is replaced (upstream deletes it, then recreates).
            plan.delete.push(p.name_any());
            continue;
        }
        if let Some(n) = nodeutil::node_name(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let deleting = ds.metadata.deletion_timestamp.is_some();
    let is_new = |p: &Pod| p.labels().get(REVISION_HASH) == Some(&hash);
    let available = |p: &Pod| crate::replicaset::is_available(p, min_ready, now);
    let (mut desired_n, mut current, mut misscheduled, mut ready, mut updated, mut avail) =
        (0, 0, 0, 0, 0, 0);
    let mut unavailable_nodes = 0;
    let mut old_available: Vec<&Arc<Pod>> = Vec::new();
    // With maxSurge, a node's new pod starts beside its old one, which goes
    // once the new one is available (upstream's surge rolling update).
    let eligible = nodes.iter().filter(|n| should_run(&tpod, n)).count();
    let max_surge = if rolling && !deleting {
        rolling_limit(ds, true, eligible)
    } else {
        0
    };
    let (mut surging, mut surge_candidates) = (0, Vec::new());
    for node in nodes {
        let name = node.name_any();
        let run = should_run(&tpod, node);
        let mut here = by_node.remove(name.as_str()).unwrap_or_default();
        if !run {
            if !here.is_empty() {
                misscheduled += 1;
                plan.delete.extend(here.iter().map(|p| p.name_any()));
            }
            continue;
        }
        desired_n += 1;
        if here.is_empty() {
            if !deleting {
                plan.create.push(name);
            }
            unavailable_nodes += 1;
            continue;
        }
        // More than one: keep the newest template's, else the oldest pod.
        here.sort_by_key(|p| {
            (
                !is_new(p),
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        });
        if max_surge > 0 {
            current += 1;
            let (new, old): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) = here.iter().partition(|p| is_new(p));
            if let Some(nw) = new.first() {
                plan.delete.extend(new[1..].iter().map(|p| p.name_any()));
                updated += 1;
                let serving = if available(nw) {
                    Some(*nw)
                } else {
                    old.iter().copied().find(|p| available(p))
                };
                for o in &old {
                    if serving.is_none_or(|s| s.name_any() != o.name_any()) {
                        plan.delete.push(o.name_any());
                    }
                }
                surging += usize::from(serving.is_some_and(|s| !is_new(s)));
                match serving {
                    Some(s) => (avail, ready) = (avail + 1, ready + usize::from(pods::is_ready(s))),
                    None => unavailable_nodes += 1,
                }
            } else {
                plan.delete.extend(old[1..].iter().map(|p| p.name_any()));
                if available(old[0]) {
                    avail += 1;
                    ready += usize::from(pods::is_ready(old[0]));
                    surge_candidates.push(name);
                } else {
                    // Not serving anyway: replaced at once.
                    plan.delete.push(old[0].name_any());
                    plan.create.push(name);
                    unavailable_nodes += 1;
                }
            }
            continue;
        }
        plan.delete.extend(here[1..].iter().map(|p| p.name_any()));
        let p = here[0];
        current += 1;
        ready += usize::from(pods::is_ready(p));
        avail += usize::from(available(p));
        updated += usize::from(is_new(p));
        if !available(p) {
            unavailable_nodes += 1;
            if rolling && !is_new(p) {
                plan.delete.push(p.name_any());
            }
        } else if rolling && !is_new(p) {
            old_available.push(p);
        }
    }
    // Pods on nodes that are gone.
    for (_, left) in by_node {
        misscheduled += 1;
        plan.delete.extend(left.iter().map(|p| p.name_any()));
    }
    surge_candidates.sort();
    plan.create.extend(
        surge_candidates
            .into_iter()
            .take(max_surge.saturating_sub(surging)),
    );
    if rolling && !deleting && max_surge == 0 {
        let budget = rolling_limit(ds, false, desired_n).saturating_sub(unavailable_nodes);
        old_available.sort_by_key(|p| p.name_any());
        plan.delete
            .extend(old_available.iter().take(budget).map(|p| p.name_any()));
    }
    let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    plan.status = DaemonSetStatus {
        current_number_scheduled: n(current),
        desired_number_scheduled: n(desired_n),
        number_misscheduled: n(misscheduled),
        number_ready: n(ready),
        updated_number_scheduled: Some(n(updated)).filter(|v| *v != 0),
        number_available: Some(n(avail)).filter(|v| *v != 0),
        number_unavailable: Some(n(desired_n.saturating_sub(avail))).filter(|v| *v != 0),
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    plan
}

/// The daemon pod for `node`.
fn pod_for(ds: &DaemonSet, ns: &str, node: &str) -> Pod {
    let spec = ds.spec.clone().unwrap_or_default();
    let hash = template_hash(&spec.template);
    let name = format!("{}-{}", ds.name_any(), pods::random_suffix(5));
    let owner = pods::controller_ref("apps/v1", "DaemonSet", &ds.metadata);
    let mut pod = pods::from_template(&spec.template, ns, &name, owner);
    pod.metadata.generate_name = Some(format!("{}-", ds.name_any()));
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(REVISION_HASH.into(), hash);
    labels.insert(
        TEMPLATE_GENERATION.into(),
        ds.metadata.generation.unwrap_or(1).to_string(),
    );
    pod.spec = template_pod(&spec.template).spec;
    if let Some(ps) = pod.spec.as_mut() {
        let term = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        };
        let affinity = ps.affinity.get_or_insert_with(Affinity::default);
        let na = affinity
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
            node_selector_terms: vec![term],
        });
        ps.node_name = Some(node.into());
    }
    pod
}

fn owner_key(key: &Key) -> Key {
    Key::new(&format!("DaemonSet/{}", key.ns), &key.name)
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let Some(ds) = ctx
        .cache
        .workloads
        .daemonsets
        .get(&ObjectRef::new(&key.name).within(&key.ns))
    else {
        return Ok(None);
    };
    let tracked = owner_key(&key);
    if ctx.pod_writes.pending(&tracked) {
        return Ok(Some(crate::endpointslice::STALE_RETRY));
    }
    let nodes = ctx.cache.nodes.state();
    let pods = ctx.cache.pods_in(&key.ns);
    if ds.metadata.deletion_timestamp.is_none() {
        let uid = ds.metadata.uid.as_deref().unwrap_or("");
        let live: Vec<&Pod> = pods
            .iter()
            .filter(|p| crate::pods::is_active(p))
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|r| r.controller == Some(true) && r.uid == uid)
            })
            .map(|p| &**p)
            .collect();
        crate::daemonset_history::sync(&ctx, &ds, &key.ns, &live).await?;
    }
    let plan = desired(&ds, &nodes, &pods, Timestamp::now());
    let client = ctx.clients.of("daemonset");
    let api: Api<Pod> = Api::namespaced(client.clone(), &key.ns);
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.pod_writes
                    .expect_delete(&tracked, Key::new(&key.ns, name));
                ctx.events.record(
                    &*ds,
                    COMPONENT,
                    false,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                );
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut result: Result<()> = Ok(());
    for node in &plan.create {
        let pod = pod_for(&ds, &key.ns, node);
        match api.create(&PostParams::default(), &pod).await {
            Ok(made) => {
                ctx.pod_writes.expect_write(
                    &tracked,
                    Key::of(&made),
                    made.metadata.resource_version.clone(),
                );
                ctx.events.record(
                    &*ds,
                    COMPONENT,
                    false,
                    "SuccessfulCreate",
                    format!("Created pod: {}", made.name_any()),
                );
            }
            Err(e) => {
                ctx.events.record(
                    &*ds,
                    COMPONENT,
                    true,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                );
                result = Err(e.into());
                break;
            }
        }
    }
    if ds.status.as_ref() != Some(&plan.status) {
        let dsapi: Api<DaemonSet> = Api::namespaced(client, &key.ns);
        let mut updated = (*ds).clone();
        updated.status = Some(plan.status.clone());
        dsapi
            .replace_status(&key.name, &PostParams::default(), &updated)
            .await?;
    }
    result?;
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let waiting = plan.status.number_ready != plan.status.number_available.unwrap_or(0);
    Ok((min_ready > 0 && waiting).then(|| Duration::from_secs(1)))
}

#[cfg(test)]
#[path = "daemonset_tests.rs"]
mod tests;

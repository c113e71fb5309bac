//! A small scheduler: binds each pending pod without a node to a Ready,
//! schedulable node whose taints it tolerates and whose labels match its
//! `nodeSelector`, spreading pods of the same owner across nodes.
//!
//! skiff's API server has no `pods/binding` subresource, so binding is a JSON
//! merge patch of `spec.nodeName` (upstream forbids changing it by update;
//! skiff allows it).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use crate::runtime::{Ctx, Key};
use crate::{pods, Result};

const COMPONENT: &str = "default-scheduler";

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

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let key_ok = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(k) => k == taint.key,
        };
        let value_ok = t.operator.as_deref() == Some("Exists")
            || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        key_ok && value_ok && effect_ok
    })
}

/// Why a node does not fit, as upstream's FailedScheduling message words it.
fn misfit(pod: &Pod, n: &Node) -> Option<&'static str> {
    if !node_ready(n) {
        return Some("node(s) were not ready");
    }
    if n.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        return Some("node(s) were unschedulable");
    }
    let spec = pod.spec.as_ref();
    let tolerations = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let taints = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if taints.iter().any(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerates(&tolerations, t)
    }) {
        return Some("node(s) had untolerated taint");
    }
    if let Some(sel) = spec.and_then(|s| s.node_selector.as_ref()) {
        if !sel.iter().all(|(k, v)| n.labels().get(k) == Some(v)) {
            return Some("node(s) didn't match Pod's node affinity/selector");
        }
    }
    None
}

/// The node for `pod`, or the FailedScheduling message. `pods` are all pods,
/// used to spread pods of the same owner, then all pods, across nodes.
pub fn pick(pod: &Pod, nodes: &[Arc<Node>], pods: &[Arc<Pod>]) -> Result<String, String> {
    if nodes.is_empty() {
        return Err("no nodes available to schedule pods".into());
    }
    let owner = pod
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone());
    let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut best: Option<((usize, usize, String), String)> = None;
    for n in nodes {
        if let Some(why) = misfit(pod, n) {
            *reasons.entry(why).or_default() += 1;
            continue;
        }
        let name = n.name_any();
        let on_node: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
                    && !pods::is_terminal(p)
            })
            .collect();
        let siblings = on_node
            .iter()
            .filter(|p| {
                owner.is_some()
                    && p.owner_references()
                        .iter()
                        .any(|r| Some(&r.uid) == owner.as_ref())
            })
            .count();
        let score = (siblings, on_node.len(), name.clone());
        if best.as_ref().is_none_or(|(s, _)| score < *s) {
            best = Some((score, name));
        }
    }
    match best {
        Some((_, name)) => Ok(name),
        None => {
            let detail: Vec<String> = reasons
                .iter()
                .map(|(why, n)| format!("{n} {why}"))
                .collect();
            Err(format!(
                "0/{} nodes are available: {}.",
                nodes.len(),
                detail.join(", ")
            ))
        }
    }
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let Some(pod) = ctx
        .cache
        .pods
        .get(&ObjectRef::new(&key.name).within(&key.ns))
    else {
        return Ok(None);
    };
    if !needs_scheduling(&pod) {
        return Ok(None);
    }
    let nodes = ctx.cache.nodes.state();
    let all = ctx.cache.pods.state();
    match pick(&pod, &nodes, &all) {
        Ok(node) => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.ns);
            // Upstream's API server treats a uid in a patch as a precondition,
            // so a recreated pod of the same name does not inherit this decision.
            let patch = json!({"metadata": {"uid": pod.metadata.uid}, "spec": {"nodeName": node}});
            api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
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
                let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.ns);
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
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn node(name: &str, ready: bool, unschedulable: bool) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                unschedulable: Some(unschedulable),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn pod(name: &str, node: Option<&str>, owner: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: None,
        })
    }

    #[test]
    fn picks_ready_nodes_and_spreads_siblings() {
        let p = pod("new", None, "rs1");
        assert_eq!(
            pick(&p, &[], &[]),
            Err("no nodes available to schedule pods".into())
        );
        let bad = [node("a", false, false), node("b", true, true)];
        assert_eq!(
            pick(&p, &bad, &[]),
            Err(
                "0/2 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable."
                    .into()
            )
        );
        let nodes = [node("a", true, false), node("b", true, false)];
        // A sibling on a, an unrelated pod on b: spread wins.
        let pods = [
            pod("s", Some("a"), "rs1"),
            pod("o1", Some("b"), "other"),
            pod("o2", Some("b"), "other"),
        ];
        assert_eq!(pick(&p, &nodes, &pods), Ok("b".into()));
        // No siblings anywhere: the emptier node.
        assert_eq!(pick(&pod("x", None, "rs9"), &nodes, &pods), Ok("a".into()));
        assert!(needs_scheduling(&p) && !needs_scheduling(&pods[0]));
    }
}

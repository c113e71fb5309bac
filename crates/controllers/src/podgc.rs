//! The pod garbage collector (upstream `podgc`, without the terminated-pods
//! threshold): pods no agent will ever finish are force-deleted (grace period
//! 0) after being marked Failed, as upstream's `markFailedAndDeletePod`:
//!
//! - orphans: pods bound to a Node that does not exist, once it has been
//!   missing for a quarantine (upstream 40 s, so a Node that is only late in the
//!   cache is not taken for gone) and a live GET confirms it is gone; they get
//!   a `DisruptionTarget` condition (`DeletionByPodGC`, `PodGC: node no longer
//!   exists`);
//! - terminating pods on a node that is not Ready and carries the
//!   `node.kubernetes.io/out-of-service` taint (the administrator's word that
//!   the node is down for good);
//! - terminating pods that were never scheduled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use crate::nodeutil::{self, TAINT_OUT_OF_SERVICE};
use crate::runtime::{Ctx, Key};
use crate::{pods, Result};

#[derive(Debug, PartialEq)]
pub enum Gc {
    Keep,
    /// The node is missing; look again after this long.
    Wait(Duration),
    /// The node has been missing for the whole quarantine.
    Orphaned,
    /// Terminating with nobody to finish it.
    Terminating,
}

fn out_of_service(node: &Node) -> bool {
    nodeutil::taints(node)
        .iter()
        .any(|t| t.key == TAINT_OUT_OF_SERVICE)
}

/// The pure decision: `node` is the pod's Node if it exists, `missing_for` how
/// long it has been seen missing.
pub fn decide(pod: &Pod, node: Option<&Node>, missing_for: Duration, quarantine: Duration) -> Gc {
    let terminating = pods::is_terminating(pod);
    match (nodeutil::node_name(pod), node) {
        (None, _) if terminating => Gc::Terminating,
        (None, _) => Gc::Keep,
        (Some(_), Some(n)) if terminating && !nodeutil::is_ready(n) && out_of_service(n) => {
            Gc::Terminating
        }
        (Some(_), Some(_)) => Gc::Keep,
        (Some(_), None) if missing_for >= quarantine => Gc::Orphaned,
        (Some(_), None) => Gc::Wait(quarantine - missing_for),
    }
}

/// When each missing Node was first seen missing.
#[derive(Default)]
pub struct State {
    missing: Mutex<HashMap<String, Instant>>,
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let Some(pod) = ctx
        .cache
        .pods
        .get(&ObjectRef::new(&key.name).within(&key.ns))
    else {
        return Ok(None);
    };
    let quarantine = ctx.settings.pod_gc_quarantine;
    let node_name = nodeutil::node_name(&pod).map(str::to_string);
    let node = node_name
        .as_deref()
        .and_then(|n| ctx.cache.nodes.get(&ObjectRef::new(n)));
    let missing_for = {
        let mut m = ctx.podgc.missing.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|n, _| ctx.cache.nodes.get(&ObjectRef::new(n)).is_none());
        match (&node_name, &node) {
            (Some(n), None) => m.entry(n.clone()).or_insert_with(Instant::now).elapsed(),
            _ => Duration::ZERO,
        }
    };
    match decide(&pod, node.as_deref(), missing_for, quarantine) {
        Gc::Keep => Ok(None),
        Gc::Wait(d) => Ok(Some(d + Duration::from_millis(10))),
        Gc::Terminating => {
            force_delete(&ctx, &pod, &key, None).await?;
            Ok(None)
        }
        Gc::Orphaned => {
            let name = node_name.unwrap_or_default();
            // The cache may only be late: ask the API server before deleting.
            let nodes: Api<Node> = Api::all(ctx.clients.of("pod-garbage-collector"));
            if nodes.get_opt(&name).await?.is_some() {
                let mut m = ctx.podgc.missing.lock().unwrap_or_else(|e| e.into_inner());
                m.remove(&name);
                return Ok(Some(quarantine));
            }
            let condition = json!({"type": "DisruptionTarget", "status": "True",
                "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists",
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()});
            tracing::info!(pod = %key, node = %name, "force-deleting orphaned pod");
            force_delete(&ctx, &pod, &key, Some(condition)).await?;
            Ok(None)
        }
    }
}

/// Phase Failed (and the condition) unless already terminal, then a deletion
/// with grace period 0. The uid precondition spares a pod recreated under the
/// same name.
async fn force_delete(
    ctx: &Ctx,
    pod: &Pod,
    key: &Key,
    condition: Option<serde_json::Value>,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(ctx.clients.of("pod-garbage-collector"), &key.ns);
    if !pods::is_terminal(pod) {
        let mut status = json!({"phase": "Failed"});
        if let Some(c) = condition {
            status["conditions"] = json!([c]);
        }
        let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": status});
        match api
            .patch_status(
                &key.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&key.name, &dp).await {
        Ok(_) => {
            tracing::info!(pod = %key, "PodGC force-deleted pod");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether a pod may be this controller's, judged from the cache.
pub fn concerns(ctx: &Ctx, pod: &Pod) -> bool {
    match nodeutil::node_name(pod) {
        None => pods::is_terminating(pod),
        Some(n) => match ctx.cache.nodes.get(&ObjectRef::new(n)) {
            None => true,
            Some(node) => pods::is_terminating(pod) && out_of_service(&node),
        },
    }
}

pub fn on_pod(ctx: &Ctx, pod: &Pod) {
    if concerns(ctx, pod) {
        ctx.queues.podgc.add(Key::of(pod));
    }
}

/// A deleted Node orphans its pods; an out-of-service taint releases its
/// terminating ones.
pub fn on_node(ctx: &Ctx, node: &Node, deleted: bool) {
    if !deleted && !out_of_service(node) {
        return;
    }
    let name = node.name_any();
    for p in ctx
        .cache
        .pods
        .state_filter(|p| nodeutil::node_name(p) == Some(name.as_str()))
    {
        if deleted || pods::is_terminating(&p) {
            ctx.queues.podgc.add(Key::of(&*p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(node: Option<&str>, terminating: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                deletion_timestamp: terminating
                    .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn node(ready: bool, out_of_service: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: out_of_service
                    .then(|| vec![nodeutil::taint(TAINT_OUT_OF_SERVICE, "NoExecute", None)]),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "Unknown" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn gc_table() {
        let q = Duration::from_secs(40);
        let s = Duration::from_secs;
        let (up, down, oos) = (node(true, false), node(false, false), node(false, true));
        let cases = [
            ("unscheduled", pod(None, false), None, s(0), Gc::Keep),
            (
                "unscheduled terminating",
                pod(None, true),
                None,
                s(0),
                Gc::Terminating,
            ),
            (
                "on a live node",
                pod(Some("n1"), false),
                Some(&up),
                s(0),
                Gc::Keep,
            ),
            (
                "terminating on a dead node: waits",
                pod(Some("n1"), true),
                Some(&down),
                s(0),
                Gc::Keep,
            ),
            (
                "terminating, out of service",
                pod(Some("n1"), true),
                Some(&oos),
                s(0),
                Gc::Terminating,
            ),
            (
                "running, out of service: taint eviction's",
                pod(Some("n1"), false),
                Some(&oos),
                s(0),
                Gc::Keep,
            ),
            (
                "node just missing",
                pod(Some("gone"), false),
                None,
                s(0),
                Gc::Wait(q),
            ),
            (
                "node missing a while",
                pod(Some("gone"), false),
                None,
                s(30),
                Gc::Wait(s(10)),
            ),
            (
                "quarantine over",
                pod(Some("gone"), false),
                None,
                s(40),
                Gc::Orphaned,
            ),
        ];
        for (name, p, n, missing, want) in cases {
            assert_eq!(decide(&p, n, missing, q), want, "{name}");
        }
    }
}

//! The taint-eviction controller (upstream `NoExecuteTaintManager`, named
//! `taint-eviction-controller`): a pod on a node with a NoExecute taint it does
//! not tolerate is deleted at once; one it tolerates for `tolerationSeconds`
//! is deleted when that time has passed; one it tolerates without a limit
//! stays. A scheduled deletion is cancelled when the taint goes away.
//!
//! Upstream starts a pod's clock when the controller first sees it on the
//! tainted node, in memory. Here each taint's clock starts at its `timeAdded`
//! (which the node-lifecycle controller writes), so a controller restart does
//! not give every pod a new `tolerationSeconds`; a pod bound to the node after
//! the taint appeared counts from its binding, and a taint without `timeAdded`
//! from when this controller first saw it.
//!
//! The deleted pod keeps its grace period: on a dead node it stays Terminating
//! (no agent confirms), and its ReplicaSet creates a replacement meanwhile,
//! since terminating pods are not active (StatefulSets wait for the name).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use crate::nodeutil::{self, NO_EXECUTE};
use crate::runtime::{Ctx, Key};
use crate::Result;

const COMPONENT: &str = "taint-eviction-controller";
const REASON: &str = "TaintManagerEviction";

#[derive(Debug, PartialEq)]
pub enum Eviction {
    /// Every NoExecute taint is tolerated without a time limit (or there is none).
    Never,
    /// Some NoExecute taint is not tolerated.
    Now,
    /// The earliest moment a tolerated taint's `tolerationSeconds` run out.
    At(Timestamp),
}

/// The pure decision: `taints` are the node's NoExecute taints, `since` when
/// each was added, `bound` when the pod was placed on the node.
pub fn decide(
    tolerations: &[Toleration],
    taints: &[&Taint],
    since: impl Fn(&Taint) -> Timestamp,
    bound: Option<Timestamp>,
) -> Eviction {
    let mut at: Option<Timestamp> = None;
    for taint in taints {
        let Some(t) = nodeutil::toleration_for(tolerations, taint) else {
            return Eviction::Now;
        };
        // No tolerationSeconds: tolerated for ever; zero or less: not at all.
        let Some(secs) = t.toleration_seconds else {
            continue;
        };
        let start = bound.map_or(since(taint), |b| b.max(since(taint)));
        let ms = start
            .as_millisecond()
            .saturating_add(secs.max(0).saturating_mul(1000));
        let when = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::MAX);
        at = Some(at.map_or(when, |a| a.min(when)));
    }
    at.map_or(Eviction::Never, Eviction::At)
}

/// When the pod was bound: its PodScheduled transition, else its creation.
fn bound_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| {
            c.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "True")
        })
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Scheduled deletions (for the cancel Event upstream writes) and first sightings
/// of taints that carry no `timeAdded`.
#[derive(Default)]
pub struct State {
    inner: Mutex<Inner>,
}

/// (node, taint key, value, effect).
type TaintId = (String, String, String, String);

#[derive(Default)]
struct Inner {
    scheduled: HashMap<Key, Timestamp>,
    first_seen: HashMap<TaintId, Timestamp>,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn no_execute(node: &Node) -> Vec<&Taint> {
    nodeutil::taints(node)
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .collect()
}

fn id(node: &str, t: &Taint) -> TaintId {
    (
        node.to_string(),
        t.key.clone(),
        t.value.clone().unwrap_or_default(),
        t.effect.clone(),
    )
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let state = &ctx.eviction;
    let cancel = |pod: &Pod| {
        if state.lock().scheduled.remove(&key).is_some() {
            let msg = format!("Cancelling deletion of Pod {key}");
            ctx.events.record(pod, COMPONENT, false, REASON, msg);
        }
    };
    let Some(pod) = ctx
        .cache
        .pods
        .get(&ObjectRef::new(&key.name).within(&key.ns))
    else {
        state.lock().scheduled.remove(&key);
        return Ok(None);
    };
    if crate::pods::is_terminating(&pod) {
        state.lock().scheduled.remove(&key);
        return Ok(None);
    }
    let node = nodeutil::node_name(&pod).and_then(|n| ctx.cache.nodes.get(&ObjectRef::new(n)));
    let Some(node) = node else {
        cancel(&pod);
        return Ok(None);
    };
    let name = node.name_any();
    let taints = no_execute(&node);
    let now = Timestamp::now();
    let starts: HashMap<TaintId, Timestamp> = {
        let mut s = state.lock();
        // Sightings of taints the node no longer has are forgotten.
        s.first_seen.retain(|(n, k, v, e), _| {
            n != &name
                || taints
                    .iter()
                    .any(|t| &t.key == k && t.value.as_deref().unwrap_or("") == v && &t.effect == e)
        });
        taints
            .iter()
            .map(|t| {
                let at = match &t.time_added {
                    Some(added) => added.0,
                    None => *s.first_seen.entry(id(&name, t)).or_insert(now),
                };
                (id(&name, t), at)
            })
            .collect()
    };
    let since = |t: &Taint| starts.get(&id(&name, t)).copied().unwrap_or(now);
    match decide(nodeutil::tolerations(&pod), &taints, since, bound_at(&pod)) {
        Eviction::Never => {
            cancel(&pod);
            Ok(None)
        }
        Eviction::At(t) if t > now => {
            state.lock().scheduled.insert(key.clone(), t);
            let ms = u64::try_from(t.as_millisecond() - now.as_millisecond()).unwrap_or(0);
            Ok(Some(Duration::from_millis(ms + 10)))
        }
        Eviction::Now | Eviction::At(_) => {
            state.lock().scheduled.remove(&key);
            evict(&ctx, &pod, &key).await?;
            Ok(None)
        }
    }
}

/// Upstream `addConditionAndDeletePod`: DisruptionTarget=True, then an ordinary
/// deletion. The uid precondition keeps a StatefulSet pod recreated under the
/// same name from being deleted on the old one's account.
async fn evict(ctx: &Ctx, pod: &Pod, key: &Key) -> Result<()> {
    tracing::info!(pod = %key, "deleting pod on a NoExecute-tainted node");
    ctx.events.record(
        pod,
        COMPONENT,
        false,
        REASON,
        format!("Marking for deletion Pod {key}"),
    );
    let api: Api<Pod> = Api::namespaced(ctx.clients.of("taint-eviction-controller"), &key.ns);
    let marked = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        });
    if !marked {
        let patch = json!({"metadata": {"uid": pod.metadata.uid},
            "status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": Timestamp::now().to_string()}]}});
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
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&key.name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Pods are looked at when they change node or tolerations (cheap when nothing is due).
pub fn on_pod(ctx: &Ctx, pod: &Pod) {
    if nodeutil::node_name(pod).is_some() {
        ctx.queues.taint_eviction.add(Key::of(pod));
    }
}

/// A node's NoExecute taints decide for all its pods; pods with a scheduled
/// deletion are looked at again in case their taint went away.
pub fn on_node(ctx: &Ctx, node: &Node) {
    let name = node.name_any();
    let pending = !ctx.eviction.lock().scheduled.is_empty();
    if no_execute(node).is_empty() && !pending {
        return;
    }
    for p in ctx
        .cache
        .pods
        .state_filter(|p| nodeutil::node_name(p) == Some(name.as_str()))
    {
        ctx.queues.taint_eviction.add(Key::of(&*p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn tol(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    fn taint(key: &str, added: i64) -> Taint {
        nodeutil::taint(key, NO_EXECUTE, Some(ts(added)))
    }

    #[test]
    fn eviction_table() {
        let unreachable = taint(nodeutil::TAINT_UNREACHABLE, 1000);
        let not_ready = taint(nodeutil::TAINT_NOT_READY, 1100);
        let custom = taint("example.com/maintenance", 1000);
        let defaults = [
            tol(nodeutil::TAINT_NOT_READY, Some(300)),
            tol(nodeutil::TAINT_UNREACHABLE, Some(300)),
        ];
        let since = |t: &Taint| t.time_added.as_ref().map_or(ts(0), |a| a.0);
        type Case<'a> = (
            &'a str,
            Vec<Toleration>,
            Vec<&'a Taint>,
            Option<i64>,
            Eviction,
        );
        let cases: Vec<Case> = vec![
            ("no taints", vec![], vec![], None, Eviction::Never),
            (
                "untolerated",
                vec![],
                vec![&unreachable],
                None,
                Eviction::Now,
            ),
            (
                "default tolerations: 300 s after the taint",
                defaults.to_vec(),
                vec![&unreachable],
                Some(900),
                Eviction::At(ts(1300)),
            ),
            (
                "a pod bound after the taint counts from its binding",
                defaults.to_vec(),
                vec![&unreachable],
                Some(1200),
                Eviction::At(ts(1500)),
            ),
            (
                "the earliest deadline of several taints",
                vec![
                    tol(nodeutil::TAINT_UNREACHABLE, Some(600)),
                    tol(nodeutil::TAINT_NOT_READY, Some(60)),
                ],
                vec![&unreachable, &not_ready],
                None,
                Eviction::At(ts(1160)),
            ),
            (
                "tolerated for ever",
                vec![tol(nodeutil::TAINT_UNREACHABLE, None)],
                vec![&unreachable],
                None,
                Eviction::Never,
            ),
            (
                "one taint tolerated for ever, another not at all",
                vec![tol(nodeutil::TAINT_UNREACHABLE, None)],
                vec![&unreachable, &custom],
                None,
                Eviction::Now,
            ),
            (
                "negative seconds: due at once",
                vec![tol(nodeutil::TAINT_UNREACHABLE, Some(-5))],
                vec![&unreachable],
                None,
                Eviction::At(ts(1000)),
            ),
            (
                "the first matching toleration counts",
                vec![
                    Toleration {
                        operator: Some("Exists".into()),
                        ..Default::default()
                    },
                    tol(nodeutil::TAINT_UNREACHABLE, Some(10)),
                ],
                vec![&unreachable],
                None,
                Eviction::Never,
            ),
        ];
        for (name, tols, taints, bound, want) in cases {
            assert_eq!(decide(&tols, &taints, since, bound.map(ts)), want, "{name}");
        }
    }
}

//! Upstream's disruption controller: keeps every PodDisruptionBudget's status
//! (currentHealthy, desiredHealthy, expectedPods, disruptionsAllowed,
//! observedGeneration, the DisruptionAllowed condition, and the
//! `disruptedPods` the eviction subresource recorded) in line with the pods
//! it selects. The eviction subresource reads that status and takes
//! disruptions from it; this controller gives them back as pods become
//! Ready again, and drops `disruptedPods` entries once their pod is gone or
//! [`DELETION_TIMEOUT`] passed (upstream's `DeletionTimeout`).
//!
//! Budgets are watched; pods and their controllers are read from the shared
//! caches. Every budget is recomputed on a budget change and every
//! [`RESYNC`] (a pass over cached pods, cheap beside the API writes, which
//! happen only when a status changes).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use skiff_api::pdb;

use crate::runtime::Cache;

/// How often every budget is recomputed besides budget changes.
const RESYNC: Duration = Duration::from_secs(1);
/// How long an eviction's `disruptedPods` entry holds its pod out of the
/// healthy count (upstream `DeletionTimeout`, 2 minutes).
const DELETION_TIMEOUT: chrono::Duration = chrono::Duration::minutes(2);

/// Runs until dropped: `informers` watches the budgets, `writer` writes
/// their status.
pub async fn run(cache: Cache, informers: Client, writer: Client) {
    let (reader, store_writer) = reflector::store();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let stream = reflector::reflector(
        store_writer,
        watcher(
            Api::<PodDisruptionBudget>::all(informers),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => {
                    let _ = tx.send(());
                }
                Err(e) => tracing::warn!(error = %e, "PodDisruptionBudget watch failed; retrying"),
            }
        }
    });
    let _ = reader.wait_until_ready().await;
    loop {
        sync_all(&cache, &reader, &writer).await;
        tokio::select! {
            _ = rx.recv() => {
                // Coalesce a burst of budget events into one pass.
                while rx.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

async fn sync_all(cache: &Cache, budgets: &Store<PodDisruptionBudget>, writer: &Client) {
    let now = chrono::Utc::now();
    for budget in budgets.state() {
        let status = desired_status(cache, &budget, now);
        if !status_changed(&budget, &status) {
            continue;
        }
        let mut updated = (*budget).clone();
        let ns = budget.namespace().unwrap_or_default();
        let value = match serde_json::to_value(&updated) {
            Ok(mut v) => {
                v["status"] = status;
                v
            }
            Err(e) => {
                tracing::warn!(error = %e, "encoding a PodDisruptionBudget");
                continue;
            }
        };
        updated = match serde_json::from_value(value) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "decoding a PodDisruptionBudget status");
                continue;
            }
        };
        let api: Api<PodDisruptionBudget> = Api::namespaced(writer.clone(), &ns);
        // A conflict is an eviction that got in first: the next pass sees it.
        if let Err(e) = api
            .replace_status(&budget.name_any(), &PostParams::default(), &updated)
            .await
        {
            tracing::debug!(budget = %budget.name_any(), error = %e, "PodDisruptionBudget status not written");
        }
    }
}

/// Whether `want` differs from the budget's status in anything but the
/// condition's transition time.
fn status_changed(budget: &PodDisruptionBudget, want: &Value) -> bool {
    let have = budget
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    have != *want
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The status the budget should carry now (upstream `trySync`, or `failSafe`
/// when the expected count cannot be found).
pub fn desired_status(
    cache: &Cache,
    budget: &PodDisruptionBudget,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let ns = budget.namespace().unwrap_or_default();
    let selector = budget.spec.as_ref().and_then(|s| s.selector.as_ref());
    let pods: Vec<Arc<Pod>> = cache
        .pods_in(&ns)
        .into_iter()
        .filter(|p| crate::selector::matches(selector, p.labels()))
        .collect();
    let spec = budget
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({}));
    let needs_scale = spec.get("maxUnavailable").is_some_and(|v| !v.is_null())
        || spec.get("minAvailable").is_some_and(Value::is_string);
    let scale = if needs_scale {
        expected_scale(cache, &pods)
    } else {
        None
    };
    compute(budget, &spec, &pods, scale, now)
}

/// The status from the selected pods and their controllers' summed scale.
pub fn compute(
    budget: &PodDisruptionBudget,
    spec: &Value,
    pods: &[Arc<Pod>],
    scale: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let generation = budget.metadata.generation.unwrap_or(0);
    let old = budget.status.as_ref();
    let old_condition = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == pdb::DISRUPTION_ALLOWED))
        .and_then(|c| serde_json::to_value(c).ok());
    let now_s = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // Evictions not yet seen through: their pods count as gone.
    let mut disrupted = BTreeMap::new();
    for (name, at) in old
        .and_then(|s| s.disrupted_pods.as_ref())
        .into_iter()
        .flatten()
    {
        let live = pods
            .iter()
            .any(|p| p.name_any() == *name && p.metadata.deletion_timestamp.is_none());
        let expires = at.0.as_second() + DELETION_TIMEOUT.num_seconds();
        if live && expires > now.timestamp() {
            disrupted.insert(
                name.clone(),
                serde_json::to_value(at).unwrap_or(Value::Null),
            );
        }
    }
    let healthy = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !disrupted.contains_key(&p.name_any())
                && is_ready(p)
        })
        .count() as i64;
    let (expected, desired, allowed, condition) =
        match pdb::expected(spec, pods.len() as i64, scale) {
            Ok((expected, desired)) => {
                let allowed = pdb::disruptions_allowed(healthy, desired, expected);
                let c = pdb::condition(allowed, old_condition.as_ref(), generation, &now_s);
                (expected, desired, allowed, c)
            }
            Err(why) => {
                // upstream failSafe: nothing may be disrupted until it syncs.
                let since = old_condition
                    .as_ref()
                    .filter(|c| c["status"] == "False" && c["reason"] == pdb::SYNC_FAILED)
                    .and_then(|c| c.get("lastTransitionTime").cloned())
                    .unwrap_or_else(|| json!(now_s));
                let c = json!({
                    "type": pdb::DISRUPTION_ALLOWED, "status": "False",
                    "reason": pdb::SYNC_FAILED, "message": why,
                    "observedGeneration": generation, "lastTransitionTime": since,
                });
                (
                    old.map_or(0, |s| i64::from(s.expected_pods)),
                    old.map_or(0, |s| i64::from(s.desired_healthy)),
                    0,
                    c,
                )
            }
        };
    let mut status = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [condition],
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted.into_iter().collect());
    }
    status
}

fn controller_of(refs: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    refs?.iter().find(|r| r.controller == Some(true))
}

/// The summed `spec.replicas` of the pods' controllers (upstream
/// `getExpectedScale`); `None` when a pod has no controller skiff can scale.
fn expected_scale(cache: &Cache, pods: &[Arc<Pod>]) -> Option<i64> {
    let mut seen = HashSet::new();
    let mut total = 0i64;
    for pod in pods {
        let ns = pod.namespace().unwrap_or_default();
        let owner = controller_of(pod.metadata.owner_references.as_ref())?;
        let (uid, replicas) = match owner.kind.as_str() {
            "ReplicaSet" => {
                let rs = cache
                    .replicasets
                    .state()
                    .into_iter()
                    .find(|r| r.metadata.uid.as_deref() == Some(owner.uid.as_str()))?;
                match controller_of(rs.metadata.owner_references.as_ref()) {
                    Some(d) if d.kind == "Deployment" => {
                        let dep = cache.deployments.state().into_iter().find(|x| {
                            x.metadata.uid.as_deref() == Some(d.uid.as_str())
                                && x.namespace().as_deref() == Some(ns.as_str())
                        })?;
                        let n = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                        (d.uid.clone(), n)
                    }
                    _ => (
                        owner.uid.clone(),
                        rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    ),
                }
            }
            "StatefulSet" => {
                let s = cache
                    .statefulsets
                    .state()
                    .into_iter()
                    .find(|r| r.metadata.uid.as_deref() == Some(owner.uid.as_str()))?;
                (
                    owner.uid.clone(),
                    s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )
            }
            "ReplicationController" => {
                let s = cache
                    .workloads
                    .rcs
                    .state()
                    .into_iter()
                    .find(|r| r.metadata.uid.as_deref() == Some(owner.uid.as_str()))?;
                (
                    owner.uid.clone(),
                    s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )
            }
            _ => return None,
        };
        if seen.insert(uid) {
            total += i64::from(replicas);
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn budget() -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(3),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn ready_pods_above_min_available_may_go() {
        let pods = vec![pod("a", true), pod("b", true), pod("c", false)];
        let s = compute(
            &budget(),
            &json!({"minAvailable": 1}),
            &pods,
            None,
            chrono::Utc::now(),
        );
        assert_eq!(s["currentHealthy"], 2);
        assert_eq!(s["desiredHealthy"], 1);
        assert_eq!(s["expectedPods"], 3);
        assert_eq!(s["disruptionsAllowed"], 1);
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["conditions"][0]["reason"], "SufficientPods");
        let s = compute(
            &budget(),
            &json!({"minAvailable": 2}),
            &pods,
            None,
            chrono::Utc::now(),
        );
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["conditions"][0]["status"], "False");
    }

    #[test]
    fn no_controller_for_max_unavailable_fails_safe() {
        let pods = vec![pod("a", true)];
        let s = compute(
            &budget(),
            &json!({"maxUnavailable": 1}),
            &pods,
            None,
            chrono::Utc::now(),
        );
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["conditions"][0]["reason"], "SyncFailed");
    }
}

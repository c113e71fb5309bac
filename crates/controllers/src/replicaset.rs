//! The ReplicaSet controller: keeps `spec.replicas` active pods that match the
//! selector and are owned by the ReplicaSet, adopting orphans that match and
//! releasing owned pods that no longer do (upstream `replicaset` controller).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use crate::pods;
use crate::runtime::{Cache, Ctx, Key};
use crate::Result;

/// Upstream's `BurstReplicas`: at most this many creations or deletions per sync.
const BURST: usize = 500;

/// What a sync of one ReplicaSet does.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// How many pods to create.
    pub create: usize,
    /// Pods to delete, most expendable first.
    pub delete: Vec<String>,
    /// Orphans to adopt and owned pods to release.
    pub adopt: Vec<String>,
    pub release: Vec<String>,
    pub status: ReplicaSetStatus,
}

fn owned_by(pod: &Pod, uid: &str) -> bool {
    pod.owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

fn has_controller(pod: &Pod) -> bool {
    pod.owner_references()
        .iter()
        .any(|r| r.controller == Some(true))
}

/// Upstream's deletion ranking (`ActivePodsWithRanks`, simplified): unscheduled
/// before scheduled, Pending before Unknown before Running, not-ready before
/// ready, newer before older.
fn deletion_rank(p: &Pod) -> (bool, u8, bool, std::cmp::Reverse<Option<i64>>) {
    let scheduled = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match pods::phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let created = p
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second());
    (
        scheduled,
        phase,
        pods::is_ready(p),
        std::cmp::Reverse(created),
    )
}

/// Pods ready for at least `min_ready_seconds` (upstream `IsPodAvailable`).
pub fn is_available(p: &Pod, min_ready_seconds: i32, now: k8s_openapi::jiff::Timestamp) -> bool {
    if !pods::is_ready(p) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let since = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0.as_second());
    since.is_some_and(|s| now.as_second() - s >= i64::from(min_ready_seconds))
}

/// The pure sync: `pods` are all pods in the ReplicaSet's namespace.
pub fn desired(rs: &ReplicaSet, pods: &[Arc<Pod>], now: k8s_openapi::jiff::Timestamp) -> Plan {
    let uid = rs.metadata.uid.as_deref().unwrap_or("");
    let spec = rs.spec.as_ref();
    let selector = spec.map(|s| &s.selector);
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let mut plan = Plan::default();
    let mut active: Vec<&Arc<Pod>> = Vec::new();
    for p in pods {
        let matches = crate::selector::matches(selector, p.labels());
        let mine = owned_by(p, uid);
        if mine && !matches {
            plan.release.push(p.name_any());
            continue;
        }
        if !mine {
            if matches && !has_controller(p) && !deleting && pods::is_active(p) {
                plan.adopt.push(p.name_any());
            } else {
                continue;
            }
        }
        if pods::is_active(p) {
            active.push(p);
        }
    }
    let want = usize::try_from(spec.and_then(|s| s.replicas).unwrap_or(1)).unwrap_or(0);
    if !deleting {
        if active.len() < want {
            plan.create = (want - active.len()).min(BURST);
        } else if active.len() > want {
            let mut victims = active.clone();
            victims.sort_by_key(|p| deletion_rank(p));
            plan.delete = victims
                .iter()
                .take((active.len() - want).min(BURST))
                .map(|p| p.name_any())
                .collect();
        }
    }
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    plan.status = ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: Some(count(&|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.labels().get(k) == Some(v))
        })),
        ready_replicas: Some(count(&pods::is_ready)),
        available_replicas: Some(count(&|p| is_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    plan
}

/// The ReplicaSets in the pod's namespace whose selector matches it (to adopt it).
pub fn selecting(cache: &Cache, pod: &Pod) -> Vec<Key> {
    let ns = pod.metadata.namespace.as_deref();
    cache
        .replicasets
        .state_filter(|r| {
            r.metadata.namespace.as_deref() == ns
                && crate::selector::matches(r.spec.as_ref().map(|s| &s.selector), pod.labels())
        })
        .iter()
        .map(|r| Key::of(&**r))
        .collect()
}

fn zero_status(s: &ReplicaSetStatus) -> ReplicaSetStatus {
    ReplicaSetStatus {
        ready_replicas: s.ready_replicas.filter(|n| *n != 0),
        available_replicas: s.available_replicas.filter(|n| *n != 0),
        fully_labeled_replicas: s.fully_labeled_replicas.filter(|n| *n != 0),
        ..s.clone()
    }
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let Some(rs) = ctx
        .cache
        .replicasets
        .get(&ObjectRef::new(&key.name).within(&key.ns))
    else {
        return Ok(None);
    };
    if ctx.pod_writes.pending(&key) {
        return Ok(Some(crate::endpointslice::STALE_RETRY));
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let pods = ctx.cache.pods_in(&key.ns);
    let plan = desired(&rs, &pods, now);
    let api: Api<Pod> = Api::namespaced(ctx.clients.of("replicaset"), &key.ns);
    let owner = pods::controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
    for name in &plan.adopt {
        let patch = json!({"metadata": {"ownerReferences": [owner]}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    for name in &plan.release {
        let patch = json!({"metadata": {"ownerReferences": null}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let mut result: Result<()> = Ok(());
    // Upstream's slow start: batches of 1, 2, 4, ... so a failing template costs
    // one failed request, not hundreds.
    let mut left = plan.create;
    let mut batch = 1;
    'create: while left > 0 {
        let n = batch.min(left);
        for _ in 0..n {
            let name = format!("{}-{}", key.name, pods::random_suffix(5));
            let mut pod = pods::from_template(&template, &key.ns, &name, owner.clone());
            // The name is chosen here (so expectations know it) in the shape
            // generateName would give; the field is kept as upstream's pods have it.
            pod.metadata.generate_name = Some(format!("{}-", key.name));
            match api.create(&PostParams::default(), &pod).await {
                Ok(made) => {
                    ctx.pod_writes.expect_write(
                        &key,
                        Key::of(&made),
                        made.metadata.resource_version.clone(),
                    );
                    ctx.events.record(
                        &*rs,
                        "replicaset-controller",
                        false,
                        "SuccessfulCreate",
                        format!("Created pod: {name}"),
                    );
                }
                Err(e) => {
                    ctx.events.record(
                        &*rs,
                        "replicaset-controller",
                        true,
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    );
                    result = Err(e.into());
                    break 'create;
                }
            }
        }
        left -= n;
        batch *= 2;
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.pod_writes.expect_delete(&key, Key::new(&key.ns, name));
                ctx.events.record(
                    &*rs,
                    "replicaset-controller",
                    false,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                );
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let current = rs.status.clone().unwrap_or_default();
    if zero_status(&current) != zero_status(&plan.status) {
        let rsapi: Api<ReplicaSet> = Api::namespaced(ctx.clients.of("replicaset"), &key.ns);
        let mut updated = (*rs).clone();
        updated.status = Some(plan.status.clone());
        rsapi
            .replace_status(&key.name, &PostParams::default(), &updated)
            .await?;
    }
    result?;
    // Pods becoming available after minReadySeconds change no object: look again.
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let unavailable = plan.status.ready_replicas != plan.status.available_replicas;
    Ok((min_ready > 0 && unavailable).then(|| Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, ObjectMeta, OwnerReference,
    };
    use std::collections::BTreeMap;

    fn labels(app: &str) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([("app".to_string(), app.to_string())]))
    }

    fn rs(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                uid: Some("rs-uid".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: labels("web"),
                    ..Default::default()
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, app: &str, owner: Option<&str>, ready: bool, node: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: labels(app),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                node_name: node.then(|| "n1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(if node { "Running" } else { "Pending" }.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn replica_arithmetic() {
        let now = k8s_openapi::jiff::Timestamp::now();
        let mine = |n: &str, ready: bool, node: bool| pod(n, "web", Some("rs-uid"), ready, node);
        // Scale up from nothing.
        assert_eq!(desired(&rs(3), &[], now).create, 3);
        // One orphan is adopted and counts.
        let p = desired(
            &rs(3),
            &[mine("a", true, true), pod("o", "web", None, true, true)],
            now,
        );
        assert_eq!((p.create, p.adopt.clone()), (1, vec!["o".to_string()]));
        // Pods of another controller, or not matching, are ignored.
        let p = desired(
            &rs(1),
            &[
                pod("x", "web", Some("other"), true, true),
                pod("y", "db", None, true, true),
            ],
            now,
        );
        assert_eq!((p.create, p.adopt.len()), (1, 0));
        // An owned pod that stopped matching is released and replaced.
        let p = desired(&rs(1), &[pod("r", "db", Some("rs-uid"), true, true)], now);
        assert_eq!((p.create, p.release.clone()), (1, vec!["r".to_string()]));
        // Scale down: unscheduled, then not-ready pods go first.
        let p = desired(
            &rs(1),
            &[
                mine("ready", true, true),
                mine("unready", false, true),
                mine("pending", false, false),
            ],
            now,
        );
        assert_eq!(p.delete, vec!["pending".to_string(), "unready".to_string()]);
        assert_eq!((p.status.replicas, p.status.ready_replicas), (3, Some(1)));
        // A pod evicted from a dead node stays Terminating there: it is not
        // active, so a replacement is created at once (upstream does the same).
        let mut evicted = (*mine("evicted", true, true)).clone();
        evicted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        let p = desired(&rs(2), &[mine("a", true, true), Arc::new(evicted)], now);
        assert_eq!((p.create, p.status.replicas), (1, 1));
    }
}

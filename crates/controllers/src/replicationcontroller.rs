//! The ReplicationController controller: upstream runs the ReplicaSet
//! controller's code over ReplicationControllers converted to ReplicaSets,
//! and so does this one ([`crate::replicaset::desired`] over [`as_replica_set`]);
//! only the writes and the status type are its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, ReplicationController, ReplicationControllerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use crate::pods;
use crate::runtime::{Ctx, Key};
use crate::Result;

const COMPONENT: &str = "replication-controller";

/// The ReplicaSet an RC is: its selector map as `matchLabels` (an empty map
/// selects nothing, as upstream's `SelectorFromSet` of a defaulted RC never is).
pub fn as_replica_set(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    let selector = spec.selector.clone().unwrap_or_default();
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: Some(ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            template: spec.template,
        }),
        status: None,
    }
}

fn selects(rc: &ReplicationController, labels: &BTreeMap<String, String>) -> bool {
    let sel = rc.spec.as_ref().and_then(|s| s.selector.as_ref());
    sel.is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The RCs in the pod's namespace whose selector matches it (to adopt it).
pub fn selecting(ctx: &Ctx, pod: &Pod) -> Vec<Key> {
    let ns = pod.metadata.namespace.as_deref();
    ctx.cache
        .workloads
        .rcs
        .state_filter(|r| r.metadata.namespace.as_deref() == ns && selects(r, pod.labels()))
        .iter()
        .map(|r| Key::of(&**r))
        .collect()
}

fn owner_key(key: &Key) -> Key {
    Key::new(&format!("ReplicationController/{}", key.ns), &key.name)
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let Some(rc) = ctx
        .cache
        .workloads
        .rcs
        .get(&ObjectRef::new(&key.name).within(&key.ns))
    else {
        return Ok(None);
    };
    let tracked = owner_key(&key);
    if ctx.pod_writes.pending(&tracked) {
        return Ok(Some(crate::endpointslice::STALE_RETRY));
    }
    let rs = as_replica_set(&rc);
    let mut all = ctx.cache.pods_in(&key.ns);
    // An RC's selector cannot be a matchLabels-less ReplicaSet's "everything".
    if rc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_none_or(BTreeMap::is_empty)
    {
        all.clear();
    }
    let plan = crate::replicaset::desired(&rs, &all, k8s_openapi::jiff::Timestamp::now());
    let api: Api<Pod> = Api::namespaced(ctx.clients.of("replicationcontroller"), &key.ns);
    let owner = pods::controller_ref("v1", "ReplicationController", &rc.metadata);
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
    let template = rc
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let mut result: Result<()> = Ok(());
    for _ in 0..plan.create {
        let name = format!("{}-{}", key.name, pods::random_suffix(5));
        let mut pod = pods::from_template(&template, &key.ns, &name, owner.clone());
        pod.metadata.generate_name = Some(format!("{}-", key.name));
        match api.create(&PostParams::default(), &pod).await {
            Ok(made) => {
                ctx.pod_writes.expect_write(
                    &tracked,
                    Key::of(&made),
                    made.metadata.resource_version.clone(),
                );
                ctx.events.record(
                    &*rc,
                    COMPONENT,
                    false,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                );
            }
            Err(e) => {
                ctx.events.record(
                    &*rc,
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
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.pod_writes
                    .expect_delete(&tracked, Key::new(&key.ns, name));
                ctx.events.record(
                    &*rc,
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
    let nonzero = |n: Option<i32>| n.filter(|n| *n != 0);
    let status = ReplicationControllerStatus {
        replicas: plan.status.replicas,
        fully_labeled_replicas: nonzero(plan.status.fully_labeled_replicas),
        ready_replicas: nonzero(plan.status.ready_replicas),
        available_replicas: nonzero(plan.status.available_replicas),
        observed_generation: rc.metadata.generation,
        conditions: rc.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    if rc.status.as_ref() != Some(&status) {
        let rcapi: Api<ReplicationController> =
            Api::namespaced(ctx.clients.of("replicationcontroller"), &key.ns);
        let mut updated = (*rc).clone();
        updated.status = Some(status);
        rcapi
            .replace_status(&key.name, &PostParams::default(), &updated)
            .await?;
    }
    result?;
    let unavailable = plan.status.ready_replicas != plan.status.available_replicas;
    let min_ready = rc
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    Ok((min_ready > 0 && unavailable).then(|| Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ReplicationControllerSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn labels(app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_string(), app.to_string())])
    }

    #[test]
    fn an_rc_counts_as_the_replica_set_it_converts_to() {
        let rc = ReplicationController {
            metadata: ObjectMeta {
                name: Some("r".into()),
                uid: Some("rc-uid".into()),
                ..Default::default()
            },
            spec: Some(ReplicationControllerSpec {
                replicas: Some(3),
                selector: Some(labels("web")),
                ..Default::default()
            }),
            status: None,
        };
        assert!(selects(&rc, &labels("web")));
        assert!(!selects(&rc, &labels("db")));
        let mine = Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some("r-1".into()),
                labels: Some(labels("web")),
                owner_references: Some(vec![OwnerReference {
                    uid: "rc-uid".into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        });
        let orphan = Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some("o".into()),
                labels: Some(labels("web")),
                ..Default::default()
            },
            ..Default::default()
        });
        let plan = crate::replicaset::desired(
            &as_replica_set(&rc),
            &[mine, orphan],
            k8s_openapi::jiff::Timestamp::now(),
        );
        assert_eq!((plan.create, plan.adopt), (1, vec!["o".to_string()]));
        assert_eq!(plan.status.replicas, 2);
    }
}

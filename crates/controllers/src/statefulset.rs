//! The StatefulSet controller: pods `<name>-0 ... <name>-N-1` with `hostname` =
//! pod name and `subdomain` = `serviceName`. OrderedReady creates one pod at a
//! time in ordinal order, each waiting for the previous to be Running and
//! Ready, and deletes in reverse; Parallel does both at once. RollingUpdate
//! replaces pods at or above the partition, highest ordinal first, one at a
//! time (upstream `statefulset` controller, without ControllerRevision objects
//! or PersistentVolumeClaims).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use crate::runtime::{Ctx, Key};
use crate::{pods, Result};

pub const LABEL_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
pub const LABEL_POD_INDEX: &str = "apps.kubernetes.io/pod-index";
pub const LABEL_REVISION: &str = "controller-revision-hash";
const COMPONENT: &str = "statefulset-controller";

/// One step of a StatefulSet: ordinals to create and pod names to delete.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<i32>,
    pub delete: Vec<String>,
}

/// The ordinal of `pod` if it is named `<set>-<n>`.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// `<set>-<hash of the template>`: the revision pods of this template carry.
pub fn update_revision(sts: &StatefulSet) -> String {
    let t = sts
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let collision = sts.status.as_ref().and_then(|s| s.collision_count);
    format!(
        "{}-{}",
        sts.name_any(),
        crate::deployment::template_hash(&t, collision)
    )
}

fn revision_of(p: &Pod) -> Option<&str> {
    p.labels().get(LABEL_REVISION).map(String::as_str)
}

fn running_and_ready(p: &Pod) -> bool {
    pods::phase(p) == "Running" && pods::is_ready(p)
}

/// The pure step. `pods` are the pods the set owns.
pub fn desired(sts: &StatefulSet, owned: &[Arc<Pod>]) -> Plan {
    let spec = sts.spec.clone().unwrap_or_default();
    let name = sts.name_any();
    let replicas = spec.replicas.unwrap_or(1);
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
    let update = update_revision(sts);
    let mut by_ord: BTreeMap<i32, &Arc<Pod>> = BTreeMap::new();
    for p in owned {
        if let Some(o) = ordinal(&name, &p.name_any()) {
            by_ord.insert(o, p);
        }
    }
    let mut plan = Plan::default();
    let mut healthy = true;
    for ord in start..start + replicas {
        match by_ord.get(&ord) {
            None => {
                plan.create.push(ord);
                healthy = false;
            }
            Some(p) if pods::is_terminal(p) => {
                // Failed or Succeeded pods are replaced under the same name.
                plan.delete.push(p.name_any());
                healthy = false;
            }
            Some(p) if pods::is_terminating(p) || !running_and_ready(p) => healthy = false,
            Some(_) => {}
        }
        if ordered && !healthy {
            return plan;
        }
    }
    // Condemned pods, highest ordinal first; ordered sets only once the rest is healthy.
    let condemned: Vec<&&Arc<Pod>> = by_ord
        .iter()
        .rev()
        .filter(|(o, _)| **o < start || **o >= start + replicas)
        .map(|(_, p)| p)
        .collect();
    for p in &condemned {
        if !pods::is_terminating(p) {
            plan.delete.push(p.name_any());
        }
        if ordered {
            return plan;
        }
    }
    if !healthy || !condemned.is_empty() || !plan.create.is_empty() || !plan.delete.is_empty() {
        return plan;
    }
    // RollingUpdate: one outdated pod at a time, from the highest ordinal down to the partition.
    let strategy = spec.update_strategy.unwrap_or_default();
    if strategy.type_.as_deref() == Some("OnDelete") {
        return plan;
    }
    let partition = strategy
        .rolling_update
        .and_then(|r| r.partition)
        .unwrap_or(0);
    for ord in (start.max(start + partition)..start + replicas).rev() {
        if let Some(p) = by_ord.get(&ord) {
            if revision_of(p) != Some(update.as_str()) {
                plan.delete.push(p.name_any());
                return plan;
            }
        }
    }
    plan
}

/// The status over the owned pods (upstream `computeReplicaStatus`).
pub fn status(sts: &StatefulSet, owned: &[Arc<Pod>]) -> StatefulSetStatus {
    let update = update_revision(sts);
    let prev = sts.status.clone().unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(
            owned
                .iter()
                .filter(|p| !pods::is_terminal(p) && f(p))
                .count(),
        )
        .unwrap_or(0)
    };
    let replicas = count(&|_| true);
    let updated = count(&|p| revision_of(p) == Some(update.as_str()));
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    // Without stored revisions, the update revision becomes current once every
    // pod runs it.
    let current_revision = if updated == replicas && replicas == want {
        Some(update.clone())
    } else {
        prev.current_revision
            .clone()
            .or_else(|| Some(update.clone()))
    };
    let current = count(&|p| revision_of(p) == current_revision.as_deref());
    let nz = |n: i32| (n != 0).then_some(n);
    StatefulSetStatus {
        observed_generation: sts.metadata.generation,
        replicas,
        ready_replicas: nz(count(&pods::is_ready)),
        available_replicas: nz(count(&pods::is_ready)),
        current_replicas: nz(current),
        updated_replicas: nz(updated),
        current_revision,
        update_revision: Some(update),
        collision_count: prev.collision_count.or(Some(0)),
        conditions: prev.conditions,
    }
}

fn new_pod(sts: &StatefulSet, ord: i32) -> Pod {
    let spec = sts.spec.clone().unwrap_or_default();
    let set = sts.name_any();
    let name = format!("{set}-{ord}");
    let owner = pods::controller_ref("apps/v1", "StatefulSet", &sts.metadata);
    let mut pod = pods::from_template(
        &spec.template,
        &sts.namespace().unwrap_or_default(),
        &name,
        owner,
    );
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(LABEL_POD_NAME.into(), name.clone());
    labels.insert(LABEL_POD_INDEX.into(), ord.to_string());
    labels.insert(LABEL_REVISION.into(), update_revision(sts));
    let s = pod.spec.get_or_insert_with(Default::default);
    s.hostname = Some(name);
    s.subdomain = spec.service_name.filter(|n| !n.is_empty());
    pod
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let Some(sts) = ctx
        .cache
        .statefulsets
        .get(&ObjectRef::new(&key.name).within(&key.ns))
    else {
        return Ok(None);
    };
    if ctx.pod_writes.pending(&key) {
        return Ok(Some(crate::endpointslice::STALE_RETRY));
    }
    let uid = sts.metadata.uid.clone().unwrap_or_default();
    let owned: Vec<Arc<Pod>> = ctx
        .cache
        .pods_in(&key.ns)
        .into_iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == uid)
        })
        .collect();
    let api: Api<Pod> = Api::namespaced(ctx.clients.of("statefulset"), &key.ns);
    if sts.metadata.deletion_timestamp.is_none() {
        let plan = desired(&sts, &owned);
        for ord in plan.create {
            let pod = new_pod(&sts, ord);
            let name = pod.name_any();
            match api.create(&PostParams::default(), &pod).await {
                Ok(made) => {
                    ctx.pod_writes.expect_write(
                        &key,
                        Key::of(&made),
                        made.metadata.resource_version.clone(),
                    );
                    ctx.events.record(
                        &*sts,
                        COMPONENT,
                        false,
                        "SuccessfulCreate",
                        format!("create Pod {name} in StatefulSet {} successful", key.name),
                    );
                }
                Err(e) => {
                    ctx.events.record(
                        &*sts,
                        COMPONENT,
                        true,
                        "FailedCreate",
                        format!(
                            "create Pod {name} in StatefulSet {} failed error: {e}",
                            key.name
                        ),
                    );
                    return Err(e.into());
                }
            }
        }
        for name in plan.delete {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    ctx.pod_writes.expect_delete(&key, Key::new(&key.ns, &name));
                    ctx.events.record(
                        &*sts,
                        COMPONENT,
                        false,
                        "SuccessfulDelete",
                        format!("delete Pod {name} in StatefulSet {} successful", key.name),
                    );
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let want = status(&sts, &owned);
    if sts.status.as_ref() != Some(&want) {
        let mut s = (*sts).clone();
        s.status = Some(want);
        let sapi: Api<StatefulSet> = Api::namespaced(ctx.clients.of("statefulset"), &key.ns);
        sapi.replace_status(&key.name, &PostParams::default(), &s)
            .await?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn sts(replicas: i32, policy: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                pod_management_policy: Some(policy.into()),
                service_name: Some("nginx".into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(set: &StatefulSet, ord: i32, ready: bool) -> Arc<Pod> {
        let mut p = new_pod(set, ord);
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        Arc::new(p)
    }

    #[test]
    fn ordered_ready_creates_in_order_and_deletes_in_reverse() {
        let s = sts(3, "OrderedReady");
        let steps: Vec<(Vec<Arc<Pod>>, Plan)> = vec![
            (
                vec![],
                Plan {
                    create: vec![0],
                    delete: vec![],
                },
            ),
            // web-0 not ready yet: wait.
            (vec![pod(&s, 0, false)], Plan::default()),
            (
                vec![pod(&s, 0, true)],
                Plan {
                    create: vec![1],
                    delete: vec![],
                },
            ),
            (
                vec![pod(&s, 0, true), pod(&s, 1, true)],
                Plan {
                    create: vec![2],
                    delete: vec![],
                },
            ),
            (
                vec![pod(&s, 0, true), pod(&s, 1, true), pod(&s, 2, true)],
                Plan::default(),
            ),
        ];
        for (pods, want) in steps {
            assert_eq!(desired(&s, &pods), want);
        }
        // Scale 3 -> 1: highest ordinal first, one at a time.
        let one = sts(1, "OrderedReady");
        let all = vec![pod(&s, 0, true), pod(&s, 1, true), pod(&s, 2, true)];
        assert_eq!(
            desired(&one, &all),
            Plan {
                create: vec![],
                delete: vec!["web-2".into()]
            }
        );
        // A missing middle pod is recreated first.
        assert_eq!(
            desired(&s, &[pod(&s, 0, true), pod(&s, 2, true)]),
            Plan {
                create: vec![1],
                delete: vec![]
            }
        );
    }

    #[test]
    fn parallel_and_rolling_update() {
        let s = sts(3, "Parallel");
        assert_eq!(
            desired(&s, &[]),
            Plan {
                create: vec![0, 1, 2],
                delete: vec![]
            }
        );
        let all = vec![pod(&s, 0, true), pod(&s, 1, true), pod(&s, 2, true)];
        assert_eq!(
            desired(&sts(0, "Parallel"), &all).delete,
            vec!["web-2", "web-1", "web-0"]
        );
        // A new template: highest ordinal replaced first, down to the partition.
        let mut changed = sts(3, "OrderedReady");
        if let Some(spec) = changed.spec.as_mut() {
            spec.template.metadata = Some(ObjectMeta {
                labels: Some([("v".to_string(), "2".to_string())].into()),
                ..Default::default()
            });
            spec.update_strategy = Some(k8s_openapi::api::apps::v1::StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(
                    k8s_openapi::api::apps::v1::RollingUpdateStatefulSetStrategy {
                        partition: Some(2),
                        max_unavailable: None,
                    },
                ),
            });
        }
        assert_eq!(desired(&changed, &all).delete, vec!["web-2"]);
        let updated = vec![pod(&s, 0, true), pod(&s, 1, true), pod(&changed, 2, true)];
        assert_eq!(desired(&changed, &updated), Plan::default());
        // hostname and subdomain.
        let p = new_pod(&s, 1);
        let spec = p.spec.clone().unwrap_or_default();
        assert_eq!(
            (spec.hostname.as_deref(), spec.subdomain.as_deref()),
            (Some("web-1"), Some("nginx"))
        );
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "webx-1"), None);
    }

    #[test]
    fn a_terminating_pod_is_waited_for_not_duplicated() {
        // A pod evicted from a dead node stays Terminating until its agent (or
        // the pod GC) finishes it: its name is not free, so nothing is created,
        // in either policy, and an ordered set goes no further.
        for policy in ["OrderedReady", "Parallel"] {
            let s = sts(3, policy);
            let mut gone = (*pod(&s, 1, true)).clone();
            gone.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
            let pods = vec![pod(&s, 0, true), Arc::new(gone), pod(&s, 2, true)];
            assert_eq!(desired(&s, &pods), Plan::default(), "{policy}");
        }
    }
}

//! Table tests of the DaemonSet placement and rolling update.

use super::*;
use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{Container, NodeSpec, PodCondition, PodSpec, PodStatus, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

fn node(name: &str, f: impl FnOnce(&mut Node)) -> Arc<Node> {
    let mut n = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("disk".to_string(), "ssd".to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: None,
    };
    f(&mut n);
    Arc::new(n)
}

fn ds(image: &str, max_unavailable: i32) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            uid: Some("ds-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        image: Some(image.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(max_unavailable)),
                    max_surge: None,
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod_on(ds: &DaemonSet, name: &str, node: &str, ready: bool) -> Arc<Pod> {
    let mut p = pod_for(ds, "default", node);
    p.metadata.name = Some(name.into());
    p.metadata.owner_references = Some(vec![OwnerReference {
        uid: "ds-uid".into(),
        controller: Some(true),
        ..Default::default()
    }]);
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
fn one_pod_per_eligible_node() {
    let now = Timestamp::now();
    let tainted = node("n3", |n| {
        n.spec.get_or_insert_with(Default::default).taints = Some(vec![Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        }]);
    });
    let cordoned = node("n4", |n| {
        n.spec.get_or_insert_with(Default::default).unschedulable = Some(true)
    });
    let nodes = [node("n1", |_| {}), node("n2", |_| {}), tainted, cordoned];
    let d = ds("busybox:1", 1);
    let p = desired(&d, &nodes, &[pod_on(&d, "a", "n1", true)], now);
    // The tainted node is skipped; the cordoned one is tolerated, as upstream.
    assert_eq!(p.create, vec!["n2".to_string(), "n4".to_string()]);
    assert_eq!(p.status.desired_number_scheduled, 3);
    assert_eq!(
        (p.status.current_number_scheduled, p.status.number_ready),
        (1, 1)
    );
    // A nodeSelector narrows it; a pod left on a node that no longer fits goes.
    let mut picky = ds("busybox:1", 1);
    if let Some(s) = picky.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        s.node_selector = Some([("disk".to_string(), "hdd".to_string())].into());
    }
    let p = desired(&picky, &nodes, &[pod_on(&picky, "a", "n1", true)], now);
    assert_eq!(
        (p.create.len(), p.delete.clone()),
        (0, vec!["a".to_string()])
    );
    assert_eq!(p.status.number_misscheduled, 1);
    let made = pod_for(&d, "default", "n2");
    assert_eq!(
        made.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("n2")
    );
    assert!(made.labels().contains_key(REVISION_HASH));
    assert_eq!(
        made.labels().get(TEMPLATE_GENERATION).map(String::as_str),
        Some("1")
    );
}

#[test]
fn rolling_update_respects_max_unavailable() {
    let now = Timestamp::now();
    let nodes = [node("n1", |_| {}), node("n2", |_| {}), node("n3", |_| {})];
    let old = ds("busybox:1", 1);
    let pods: Vec<Arc<Pod>> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| pod_on(&old, &format!("old-{n}"), n, true))
        .collect();
    let new = ds("busybox:2", 1);
    assert_ne!(
        template_hash(&old.spec.as_ref().unwrap().template),
        template_hash(&new.spec.as_ref().unwrap().template)
    );
    let p = desired(&new, &nodes, &pods, now);
    assert_eq!(p.delete, vec!["old-n1".to_string()]);
    assert_eq!(p.status.updated_number_scheduled, None);
    // While one node has no available pod, no other old pod goes.
    let mid = [
        pod_on(&new, "new-n1", "n1", false),
        pods[1].clone(),
        pods[2].clone(),
    ];
    assert!(desired(&new, &nodes, &mid, now).delete.is_empty());
    // maxUnavailable 2: two at once.
    assert_eq!(
        desired(&ds("busybox:2", 2), &nodes, &pods, now)
            .delete
            .len(),
        2
    );
}

#[test]
fn max_surge_starts_new_pods_beside_old_ones() {
    let now = Timestamp::now();
    let nodes = [node("n1", |_| {}), node("n2", |_| {}), node("n3", |_| {})];
    let old = ds("busybox:1", 0);
    let pods: Vec<Arc<Pod>> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| pod_on(&old, &format!("old-{n}"), n, true))
        .collect();
    let mut new = ds("busybox:2", 0);
    if let Some(ru) = new
        .spec
        .as_mut()
        .and_then(|s| s.update_strategy.as_mut())
        .and_then(|u| u.rolling_update.as_mut())
    {
        ru.max_surge = Some(IntOrString::Int(1));
    }
    // One node at a time: a new pod beside the old, nothing deleted yet.
    let p = desired(&new, &nodes, &pods, now);
    assert_eq!(
        (p.create.clone(), p.delete.len()),
        (vec!["n1".to_string()], 0)
    );
    assert_eq!(p.status.number_available, Some(3));
    // The new pod not yet available: the old one keeps serving, no more surge.
    let mid = [
        pods[0].clone(),
        pod_on(&new, "new-n1", "n1", false),
        pods[1].clone(),
        pods[2].clone(),
    ];
    let p = desired(&new, &nodes, &mid, now);
    assert!(p.create.is_empty() && p.delete.is_empty(), "{p:?}");
    // Available: the old one goes, and the next node surges.
    let done = [
        pods[0].clone(),
        pod_on(&new, "new-n1", "n1", true),
        pods[1].clone(),
        pods[2].clone(),
    ];
    let p = desired(&new, &nodes, &done, now);
    assert_eq!(p.delete, vec!["old-n1".to_string()]);
    assert_eq!(p.create, vec!["n2".to_string()]);
    assert_eq!(p.status.updated_number_scheduled, Some(1));
}

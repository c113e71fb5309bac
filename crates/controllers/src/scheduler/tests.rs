use super::*;
use k8s_openapi::api::apps::v1::ReplicaSetSpec;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeCondition, NodeSelectorRequirement, NodeSelectorTerm, NodeSpec,
    NodeStatus, PodSpec, PreferredSchedulingTerm, ServiceSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

pub(super) fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

pub(super) fn node(name: &str, ready: &str, extra: &[(&str, &str)]) -> Arc<Node> {
    let mut l = vec![("kubernetes.io/hostname", name)];
    l.extend_from_slice(extra);
    Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: labels(&l),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: ready.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

fn with_spec(n: Arc<Node>, f: impl FnOnce(&mut NodeSpec)) -> Arc<Node> {
    let mut n = (*n).clone();
    f(n.spec.get_or_insert_with(Default::default));
    Arc::new(n)
}

pub(super) fn pod(name: &str, node: Option<&str>, app: &str) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: labels(&[("app", app)]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: node.map(Into::into),
            ..Default::default()
        }),
        status: None,
    })
}

fn with_pod_spec(p: Arc<Pod>, f: impl FnOnce(&mut PodSpec)) -> Arc<Pod> {
    let mut p = (*p).clone();
    f(p.spec.get_or_insert_with(Default::default));
    Arc::new(p)
}

pub(super) fn service(app: &str) -> Arc<Service> {
    Arc::new(Service {
        metadata: ObjectMeta {
            name: Some(app.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: labels(&[("app", app)]),
            ..Default::default()
        }),
        status: None,
    })
}

fn pick_in(
    p: &Pod,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    services: &[Arc<Service>],
) -> Result<String, String> {
    pick(p, &Snapshot::new(nodes, pods, services, &[], &[]))
}

#[test]
fn filters_and_upstream_messages() {
    let p = pod("new", None, "web");
    assert_eq!(
        pick_in(&p, &[], &[], &[]),
        Err("no nodes available to schedule pods".into())
    );
    let cordoned = with_spec(node("c", "True", &[]), |s| s.unschedulable = Some(true));
    let bad = [node("a", "False", &[]), cordoned.clone()];
    assert_eq!(
        pick_in(&p, &bad, &[], &[]),
        Err("0/2 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
             1 node(s) were unschedulable. preemption: 0/2 nodes are available: \
             2 Preemption is not helpful for scheduling."
            .into())
    );
    // The message of the issue: a node the selector excludes, two dead nodes
    // (one already tainted by the lifecycle controller, one not yet).
    let tainted = with_spec(node("b", "Unknown", &[]), |s| {
        s.taints = Some(vec![
            nodeutil::taint(nodeutil::TAINT_UNREACHABLE, NO_SCHEDULE, None),
            nodeutil::taint(nodeutil::TAINT_UNREACHABLE, NO_EXECUTE, None),
        ])
    });
    let nodes = [node("a", "True", &[]), tainted, node("c", "Unknown", &[])];
    let picky = with_pod_spec(p.clone(), |s| {
        s.node_selector = labels(&[("disk", "ssd")]);
    });
    assert_eq!(
        pick_in(&picky, &nodes, &[], &[]),
        Err(
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
                .into()
        )
    );
    // Tolerating the cordon taint (as DaemonSet pods do) gets past a cordon.
    let tolerant = with_pod_spec(p.clone(), |s| {
        s.tolerations = Some(vec![Toleration {
            key: Some(nodeutil::TAINT_UNSCHEDULABLE.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_SCHEDULE.into()),
            ..Default::default()
        }])
    });
    assert_eq!(
        pick_in(&tolerant, std::slice::from_ref(&cordoned), &[], &[]),
        Ok("c".into())
    );
    // A full node: preemption would need a victim, and finds none.
    let full = with_spec(node("f", "True", &[]), |_| {});
    let full = {
        let mut n = (*full).clone();
        if let Some(s) = n.status.as_mut() {
            s.allocatable = Some([("pods".to_string(), Quantity("1".into()))].into());
        }
        Arc::new(n)
    };
    assert_eq!(
        pick_in(&p, &[full, cordoned], &[pod("x", Some("f"), "other")], &[]),
        Err(
            "0/2 nodes are available: 1 Too many pods, 1 node(s) were unschedulable. \
             preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
             1 Preemption is not helpful for scheduling."
                .into()
        )
    );
    assert!(needs_scheduling(&p) && !needs_scheduling(&pod("s", Some("a"), "web")));
}

#[test]
fn a_services_pods_spread_over_nodes() {
    let nodes = [
        node("a", "True", &[]),
        node("b", "True", &[]),
        node("c", "True", &[]),
    ];
    let svc = [service("web")];
    // a holds two web pods; b holds more pods, none of them web's; c is
    // emptiest but holds one web pod: spreading the Service wins over load.
    let pods = [
        pod("w1", Some("a"), "web"),
        pod("w2", Some("a"), "web"),
        pod("w3", Some("c"), "web"),
        pod("o1", Some("b"), "other"),
        pod("o2", Some("b"), "other"),
        pod("o3", Some("b"), "other"),
    ];
    assert_eq!(
        pick_in(&pod("new", None, "web"), &nodes, &pods, &svc),
        Ok("b".into())
    );
    // Nothing selects the pod: the least loaded node.
    assert_eq!(
        pick_in(&pod("new", None, "lone"), &nodes, &pods, &svc),
        Ok("c".into())
    );
    // A ReplicaSet's selector counts the same way, without a Service.
    let rs = Arc::new(ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            selector: LabelSelector {
                match_labels: labels(&[("app", "web")]),
                ..Default::default()
            },
            ..Default::default()
        }),
        status: None,
    });
    let mut owned = (*pod("new", None, "web")).clone();
    owned.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "web-1".into(),
        controller: Some(true),
        ..Default::default()
    }]);
    let rss = [rs];
    let snap = Snapshot::new(&nodes, &pods, &[], &rss, &[]);
    assert_eq!(pick(&owned, &snap), Ok("b".into()));
    // Terminal pods hold no place.
    let mut done = (*pod("w4", Some("b"), "web")).clone();
    done.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    let more = [pods.to_vec(), vec![Arc::new(done)]].concat();
    assert_eq!(
        pick_in(&pod("new", None, "web"), &nodes, &more, &svc),
        Ok("b".into())
    );
}

#[test]
fn preferences_and_prefer_no_schedule() {
    let nodes = [
        node("a", "True", &[("disk", "hdd")]),
        node("b", "True", &[("disk", "ssd")]),
    ];
    let pods = [pod("x", Some("b"), "other"), pod("y", Some("b"), "other")];
    let plain = pod("new", None, "lone");
    assert_eq!(pick_in(&plain, &nodes, &pods, &[]), Ok("a".into()));
    let prefers = with_pod_spec(plain.clone(), |s| {
        s.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    PreferredSchedulingTerm {
                        weight: 50,
                        preference: NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "disk".into(),
                                operator: "In".into(),
                                values: Some(vec!["ssd".into()]),
                            }]),
                            match_fields: None,
                        },
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    assert_eq!(pick_in(&prefers, &nodes, &pods, &[]), Ok("b".into()));
    // A PreferNoSchedule taint pushes the pod to the other node.
    let soft = [
        with_spec(nodes[0].clone(), |s| {
            s.taints = Some(vec![nodeutil::taint(
                "maintenance",
                PREFER_NO_SCHEDULE,
                None,
            )])
        }),
        nodes[1].clone(),
    ];
    assert_eq!(pick_in(&plain, &soft, &pods, &[]), Ok("b".into()));
}

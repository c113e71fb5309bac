//! NodeRestriction's checks on the objects, in upstream's words.

use super::*;
use serde_json::json;

fn target(group: &str, plural: &str, ns: Option<&str>, name: &str, sub: &str) -> Target {
    Target {
        resource: skiff_api::registry::lookup(group, "v1", plural).expect("resource"),
        namespace: ns.map(str::to_string),
        name: (!name.is_empty()).then(|| name.to_string()),
        subresource: (!sub.is_empty()).then(|| sub.to_string()),
    }
}

fn node_obj(name: &str, labels: Value, taints: Value) -> Value {
    json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})
}

fn kubelet_labels() -> Value {
    json!({"kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux",
           "beta.kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "x"})
}

fn message(r: Result<()>) -> String {
    r.expect_err("refused").message
}

#[test]
fn a_node_registers_itself_with_kubelet_labels_only() {
    let n1 = User::node("n1");
    let t = target("", "nodes", None, "", "");
    let own = node_obj("n1", kubelet_labels(), json!(null));
    assert!(admit_create(&n1, &t, &own).is_ok());
    assert_eq!(
        message(admit_create(
            &n1,
            &t,
            &node_obj("n2", json!({}), json!(null))
        )),
        r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#
    );
    let mut steering = kubelet_labels();
    steering["node-role.kubernetes.io/control-plane"] = json!("");
    steering["node-restriction.kubernetes.io/pci"] = json!("yes");
    steering["example.com/free"] = json!("ok");
    assert_eq!(
        message(admit_create(
            &n1,
            &t,
            &node_obj("n1", steering, json!(null))
        )),
        r#"nodes "n1" is forbidden: node "n1" is not allowed to set the following labels: node-restriction.kubernetes.io/pci, node-role.kubernetes.io/control-plane"#
    );
    // Other users are not NodeRestriction's.
    let admin = User::admin();
    assert!(admit_create(&admin, &t, &node_obj("n2", json!({}), json!(null))).is_ok());
}

#[test]
fn a_node_keeps_its_taints_and_restricted_labels() {
    let t = target("", "nodes", None, "n1", "");
    let taint = json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]);
    let old = node_obj("n1", kubelet_labels(), taint.clone());
    let same = node_obj("n1", kubelet_labels(), taint.clone());
    assert!(check_write(&t, "n1", Some(&old), &same).is_ok());
    let untainted = node_obj("n1", kubelet_labels(), json!([]));
    assert_eq!(
        message(check_write(&t, "n1", Some(&old), &untainted)),
        r#"nodes "n1" is forbidden: node "n1" is not allowed to modify taints"#
    );
    // Empty fields and a null list are the same taints.
    let spelled = node_obj(
        "n1",
        kubelet_labels(),
        json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule", "value": ""}]),
    );
    assert!(check_write(&t, "n1", Some(&old), &spelled).is_ok());
    let mut relabelled = kubelet_labels();
    relabelled["topology.kubernetes.io/zone"] = json!("z");
    relabelled["kubernetes.io/role"] = json!("master");
    let new = node_obj("n1", relabelled, taint);
    assert_eq!(
        message(check_write(&t, "n1", Some(&old), &new)),
        r#"nodes "n1" is forbidden: is not allowed to modify labels: kubernetes.io/role"#
    );
    // Through nodes/status the spec is the stored one: taints are not judged.
    let status = target("", "nodes", None, "n1", "status");
    assert!(check_write(&status, "n1", Some(&old), &untainted).is_ok());
}

#[test]
fn pod_status_only_of_own_pods_and_without_relabelling() {
    let t = target("", "pods", Some("ns"), "web", "status");
    let pod = |node: &str, labels: Value| {
        json!({"metadata": {"name": "web", "namespace": "ns", "labels": labels},
               "spec": {"nodeName": node}, "status": {"phase": "Running"}})
    };
    let own = pod("n1", json!({"app": "web"}));
    assert!(check_write(&t, "n1", Some(&own), &own).is_ok());
    assert_eq!(
        message(check_write(
            &t,
            "n1",
            Some(&pod("n2", json!({}))),
            &pod("n1", json!({}))
        )),
        r#"pods "web" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself"#
    );
    assert_eq!(
        message(check_write(
            &t,
            "n1",
            Some(&own),
            &pod("n1", json!({"app": "db"}))
        )),
        r#"pods "web" is forbidden: node "n1" cannot update labels through pod status"#
    );
}

#[test]
fn pods_leases_and_claims_as_upstream_words_them() {
    let n1 = User::node("n1");
    let pods = target("", "pods", Some("ns"), "", "");
    let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
    assert_eq!(
        message(admit_create(&n1, &pods, &pod)),
        r#"pods "p" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods"#
    );
    let leases = target(
        "coordination.k8s.io",
        "leases",
        Some("kube-node-lease"),
        "",
        "",
    );
    let lease = |name: &str| json!({"metadata": {"name": name}});
    assert!(admit_create(&n1, &leases, &lease("n1")).is_ok());
    assert_eq!(
        message(admit_create(&n1, &leases, &lease("n2"))),
        r#"leases.coordination.k8s.io "n2" is forbidden: can only access node lease with the same name as the requesting node"#
    );
    let elsewhere = target("coordination.k8s.io", "leases", Some("default"), "", "");
    assert_eq!(
        message(admit_create(&n1, &elsewhere, &lease("n1"))),
        r#"leases.coordination.k8s.io "n1" is forbidden: can only access leases in the "kube-node-lease" system namespace"#
    );
    // The proxy's load-balancer Leases are the proxy's (system:kube-proxy), not the node's.
    let lb = target("coordination.k8s.io", "leases", Some("kube-system"), "", "");
    assert!(admit_create(&n1, &lb, &lease("skiff-lb-10-0-0-1")).is_err());
    assert!(admit_create(&n1, &lb, &lease("kube-scheduler")).is_err());
}

#[test]
fn forbidden_labels_follow_the_kubelet_label_set() {
    let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(
        forbidden_labels(&keys(&[
            "kubernetes.io/hostname",
            "kubelet.kubernetes.io/x",
            "sub.node.kubernetes.io/y",
            "example.com/z",
            "plain",
            "kubernetes.io/foo",
            "x.k8s.io/bar",
            "a.node-restriction.kubernetes.io/c",
        ])),
        keys(&[
            "kubernetes.io/foo",
            "x.k8s.io/bar",
            "a.node-restriction.kubernetes.io/c"
        ])
    );
}

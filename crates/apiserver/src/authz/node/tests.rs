//! The Node authorizer's decisions, table-driven: node n1 against node n2,
//! each kind of object, referenced or not, and after the pod is deleted or
//! moved to another node.

use serde_json::{json, Value};

use super::*;
use crate::authn::User;

/// A pod `ns/web` on `node` referencing one of each kind.
fn web(node: &str, uid: &str) -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": uid},
        "spec": {
            "nodeName": node,
            "serviceAccountName": "robot",
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"name": "c",
                "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
                "envFrom": [{"configMapRef": {"name": "env-config"}}]}],
            "volumes": [
                {"name": "s", "secret": {"secretName": "vol-secret"}},
                {"name": "c", "configMap": {"name": "vol-config"}},
                {"name": "p", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}},
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}
            ]
        }
    })
}

fn graph_with(pods: &[Value]) -> NodeGraph {
    let g = NodeGraph::default();
    for p in pods {
        g.write().put_pod(p);
    }
    g.write().put_pv(&json!({"metadata": {"name": "pv-data"},
        "spec": {"claimRef": {"namespace": "ns", "name": "data"}}}));
    g
}

fn attrs(node: &str, verb: &str, group: &str, resource: &str) -> Attributes {
    Attributes::resource(User::node(node), verb, group, resource)
}

fn in_ns(a: Attributes, name: &str) -> Attributes {
    a.namespace("ns").name(name)
}

/// `(case, request, allowed, reason when refused)`.
type Case = (&'static str, Attributes, bool, &'static str);

const N1_NO_RELATION: &str = "no relationship found between node 'n1' and this object";

fn n1_cases() -> Vec<Case> {
    let get = |res: &str, name: &str| in_ns(attrs("n1", "get", "", res), name);
    vec![
        ("referenced secret", get("secrets", "vol-secret"), true, ""),
        ("env secret", get("secrets", "env-secret"), true, ""),
        ("pull secret", get("secrets", "pull"), true, ""),
        (
            "other secret",
            get("secrets", "other"),
            false,
            N1_NO_RELATION,
        ),
        (
            "volume configmap",
            get("configmaps", "vol-config"),
            true,
            "",
        ),
        (
            "envFrom configmap",
            get("configmaps", "env-config"),
            true,
            "",
        ),
        (
            "projected configmap",
            get("configmaps", "kube-root-ca.crt"),
            true,
            "",
        ),
        (
            "other configmap",
            get("configmaps", "other"),
            false,
            N1_NO_RELATION,
        ),
        ("claim", get("persistentvolumeclaims", "data"), true, ""),
        (
            "other claim",
            get("persistentvolumeclaims", "x"),
            false,
            N1_NO_RELATION,
        ),
        (
            "pv of the claim",
            attrs("n1", "get", "", "persistentvolumes").name("pv-data"),
            true,
            "",
        ),
        (
            "single-object watch of a secret",
            in_ns(attrs("n1", "watch", "", "secrets"), "vol-secret"),
            true,
            "",
        ),
        (
            "watch of all secrets",
            attrs("n1", "watch", "", "secrets").namespace("ns"),
            false,
            "No Object name found",
        ),
        (
            "list of all configmaps everywhere",
            attrs("n1", "list", "", "configmaps"),
            false,
            "can only read namespaced object of this type",
        ),
        (
            "secret write",
            in_ns(attrs("n1", "update", "", "secrets"), "vol-secret"),
            false,
            "can only read resources of this type",
        ),
        (
            "list of claims",
            attrs("n1", "list", "", "persistentvolumeclaims").namespace("ns"),
            false,
            "can only get individual resources of this type",
        ),
        (
            "token of the pod's account",
            in_ns(attrs("n1", "create", "", "serviceaccounts"), "robot").subresource("token"),
            true,
            "",
        ),
        (
            "token of another account",
            in_ns(attrs("n1", "create", "", "serviceaccounts"), "default").subresource("token"),
            false,
            N1_NO_RELATION,
        ),
        (
            "get of the account",
            in_ns(attrs("n1", "get", "", "serviceaccounts"), "robot"),
            false,
            "can only create tokens for individual service accounts",
        ),
        (
            "own lease",
            attrs("n1", "update", "coordination.k8s.io", "leases")
                .namespace(NODE_LEASE_NAMESPACE)
                .name("n1"),
            true,
            "",
        ),
        (
            "lease of n2",
            attrs("n1", "update", "coordination.k8s.io", "leases")
                .namespace(NODE_LEASE_NAMESPACE)
                .name("n2"),
            false,
            "can only access node lease with the same name as the requesting node",
        ),
        (
            "lease elsewhere",
            attrs("n1", "get", "coordination.k8s.io", "leases")
                .namespace("kube-system")
                .name("n1"),
            false,
            r#"can only access leases in the "kube-node-lease" system namespace"#,
        ),
        (
            "list of leases",
            attrs("n1", "list", "coordination.k8s.io", "leases").namespace(NODE_LEASE_NAMESPACE),
            false,
            "can only get, create, update, patch, or delete a node lease",
        ),
        (
            "own node",
            attrs("n1", "get", "", "nodes").name("n1"),
            true,
            "",
        ),
        (
            "node n2",
            attrs("n1", "get", "", "nodes").name("n2"),
            false,
            "node 'n1' cannot read 'n2', only its own Node object",
        ),
        (
            "all nodes",
            attrs("n1", "list", "", "nodes"),
            false,
            "node 'n1' cannot read all nodes, only its own Node object",
        ),
        (
            "node status patch (NodeRestriction narrows it)",
            attrs("n1", "patch", "", "nodes")
                .name("n2")
                .subresource("status"),
            true,
            "",
        ),
        (
            "node delete",
            attrs("n1", "delete", "", "nodes").name("n1"),
            false,
            "",
        ),
        (
            "pods watch (static rules)",
            attrs("n1", "watch", "", "pods"),
            true,
            "",
        ),
        (
            "pod status",
            in_ns(attrs("n1", "patch", "", "pods"), "web").subresource("status"),
            true,
            "",
        ),
        (
            "events",
            attrs("n1", "create", "", "events").namespace("ns"),
            true,
            "",
        ),
        ("services", attrs("n1", "list", "", "services"), true, ""),
        (
            "tokenreviews",
            attrs("n1", "create", "authentication.k8s.io", "tokenreviews"),
            true,
            "",
        ),
        (
            "csrs",
            attrs(
                "n1",
                "create",
                "certificates.k8s.io",
                "certificatesigningrequests",
            ),
            true,
            "",
        ),
        (
            "deployments",
            attrs("n1", "list", "apps", "deployments"),
            false,
            "",
        ),
        (
            "pod exec",
            in_ns(attrs("n1", "create", "", "pods"), "web").subresource("exec"),
            false,
            "",
        ),
    ]
}

fn check_cases(graph: &NodeGraph, cases: Vec<Case>) {
    for (case, a, allowed, reason) in cases {
        let d = authorize(Some(graph), &a);
        assert_eq!(d.is_allowed(), allowed, "{case}: {d:?}");
        assert_eq!(d.reason(), reason, "{case}");
    }
}

#[test]
fn node_n1_reaches_what_its_pod_references_and_its_own_objects() {
    check_cases(&graph_with(&[web("n1", "u1")]), n1_cases());
}

#[test]
fn node_n2_reaches_none_of_n1s_pod() {
    let g = graph_with(&[web("n1", "u1")]);
    let refused = "no relationship found between node 'n2' and this object";
    for (resource, name) in [
        ("secrets", "vol-secret"),
        ("configmaps", "vol-config"),
        ("persistentvolumeclaims", "data"),
    ] {
        let d = authorize(Some(&g), &in_ns(attrs("n2", "get", "", resource), name));
        assert_eq!(d, deny(refused), "{resource}");
    }
    let pv = authorize(
        Some(&g),
        &attrs("n2", "get", "", "persistentvolumes").name("pv-data"),
    );
    assert_eq!(pv, deny(refused));
    let token = in_ns(attrs("n2", "create", "", "serviceaccounts"), "robot").subresource("token");
    assert_eq!(authorize(Some(&g), &token), deny(refused));
}

#[test]
fn a_deleted_or_moved_pod_takes_its_references_along() {
    let g = graph_with(&[web("n1", "u1")]);
    let secret = |node| in_ns(attrs(node, "get", "", "secrets"), "vol-secret");
    assert!(authorize(Some(&g), &secret("n1")).is_allowed());
    g.write().remove_pod("ns", "web");
    assert!(!authorize(Some(&g), &secret("n1")).is_allowed());
    // Recreated under the same name on n2.
    g.write().put_pod(&web("n2", "u2"));
    assert!(!authorize(Some(&g), &secret("n1")).is_allowed());
    assert!(authorize(Some(&g), &secret("n2")).is_allowed());
    // A status update of the same pod changes nothing.
    let mut updated = web("n2", "u2");
    updated["status"] = json!({"phase": "Running"});
    g.write().put_pod(&updated);
    assert!(authorize(Some(&g), &secret("n2")).is_allowed());
}

#[test]
fn without_a_graph_or_a_node_name_nothing_graph_bound_is_allowed() {
    let a = in_ns(attrs("n1", "get", "", "secrets"), "vol-secret");
    assert_eq!(authorize(None, &a), deny(N1_NO_RELATION));
    let mut nameless = User::node("");
    nameless.name = "system:node:".into();
    let a = Attributes::resource(nameless, "get", "", "services");
    assert_eq!(
        authorize(None, &a),
        deny(r#"unknown node for user "system:node:""#)
    );
    // Not a node: no opinion, no reason.
    let sa = crate::authz::tests::test_service_account("ns", "robot");
    assert_eq!(
        authorize(None, &Attributes::resource(sa, "list", "", "services")),
        deny("")
    );
}

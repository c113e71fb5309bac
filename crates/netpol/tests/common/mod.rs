//! Fixtures shared by the golden, tracer and kernel tests: a small cluster
//! (namespaces, pods on this node and one elsewhere) and policies of every
//! kind, written as the API objects users write; plus `upstream`, a direct
//! implementation of the networking.k8s.io/v1 semantics the tracer is checked
//! against.

#![allow(dead_code)]

pub mod upstream;

use std::net::Ipv4Addr;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};
use skiff_netpol::model::{ClusterState, Labels, NamedPort, PodInfo, PolicyInfo, Proto};

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn pod(
    ns: &str,
    name: &str,
    l: &[(&str, &str)],
    addr: &str,
    ports: &[(&str, Proto, u16)],
) -> PodInfo {
    PodInfo {
        namespace: ns.into(),
        name: name.into(),
        labels: labels(l),
        ip: Some(ip(addr)),
        local: true,
        ports: ports
            .iter()
            .map(|(n, proto, port)| NamedPort {
                name: n.to_string(),
                proto: *proto,
                port: *port,
            })
            .collect(),
    }
}

/// The pods every fixture shares.
pub fn pods() -> Vec<PodInfo> {
    let mut remote = pod(
        "default",
        "remote-client",
        &[("broker-access", "true")],
        "10.244.1.5",
        &[],
    );
    remote.local = false;
    vec![
        pod(
            "default",
            "broker-0",
            &[("role", "message-broker")],
            "10.244.0.10",
            &[("redis", Proto::Tcp, 6379)],
        ),
        pod(
            "default",
            "client-ok",
            &[("broker-access", "true")],
            "10.244.0.11",
            &[],
        ),
        pod("default", "client-no", &[], "10.244.0.12", &[]),
        remote,
        pod(
            "prod",
            "db",
            &[("app", "db")],
            "10.244.0.20",
            &[("pg", Proto::Tcp, 5432), ("metrics", Proto::Tcp, 9100)],
        ),
        pod(
            "prod",
            "api",
            &[("app", "api")],
            "10.244.0.21",
            &[("http", Proto::Tcp, 8080), ("http", Proto::Udp, 8081)],
        ),
        pod("frontend", "web", &[("app", "web")], "10.244.0.30", &[]),
        pod("frontend", "batch", &[("app", "batch")], "10.244.0.31", &[]),
        pod(
            "other",
            "web",
            &[("app", "web")],
            "10.244.0.40",
            &[("http", Proto::Tcp, 8000)],
        ),
    ]
}

/// Addresses outside the pod network traffic may come from or go to.
pub const EXTERNAL: &[&str] = &["192.168.1.5", "192.168.2.7", "10.0.0.1", "172.16.0.9"];

pub fn namespaces() -> Vec<(&'static str, Labels)> {
    vec![
        ("default", Labels::new()),
        ("prod", labels(&[("env", "prod")])),
        ("frontend", labels(&[("team", "frontend")])),
        ("other", labels(&[("team", "other")])),
    ]
}

fn np(ns: &str, name: &str, spec: Value) -> PolicyInfo {
    let obj: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }))
    .expect("NetworkPolicy");
    skiff_netpol::k8s::policy_info(&obj)
}

/// Every fixture policy, by golden-file name.
pub fn policies() -> Vec<(&'static str, PolicyInfo)> {
    vec![
        // The seed's question: only pods labelled broker-access reach the broker.
        (
            "broker",
            np(
                "default",
                "broker",
                json!({
                    "podSelector": {"matchLabels": {"role": "message-broker"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"broker-access": "true"}}}],
                                 "ports": [{"port": 6379}]}],
                }),
            ),
        ),
        (
            "default-deny",
            np(
                "prod",
                "default-deny",
                json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            ),
        ),
        (
            "namespace-selector",
            np(
                "prod",
                "allow-frontend",
                json!({
                    "podSelector": {"matchLabels": {"app": "api"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "frontend"}}}],
                                 "ports": [{"port": "http"}, {"port": "http", "protocol": "UDP"}]}],
                }),
            ),
        ),
        (
            "both-selectors",
            np(
                "prod",
                "db-from-web",
                json!({
                    "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "frontend"}},
                                           "podSelector": {"matchLabels": {"app": "web"}}},
                                          {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}],
                                 "ports": [{"port": 5432}, {"port": 9100, "endPort": 9102}]}],
                }),
            ),
        ),
        (
            "egress-dns-and-service",
            np(
                "frontend",
                "web-egress",
                json!({
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "egress": [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                               {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prod"}},
                                        "podSelector": {"matchLabels": {"app": "api"}}}],
                                "ports": [{"port": 8080}]}],
                }),
            ),
        ),
        (
            "ipblock",
            np(
                "other",
                "blocks",
                json!({
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.2.0/24"]}},
                                          {"ipBlock": {"cidr": "fd00::/8"}}]}],
                    "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16"]}}],
                                "ports": [{"protocol": "UDP"}]}],
                }),
            ),
        ),
        (
            "named-egress-sctp",
            np(
                "default",
                "client-egress",
                json!({
                    "podSelector": {"matchLabels": {"broker-access": "true"}},
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"role": "message-broker"}}}],
                                "ports": [{"port": "redis"}]},
                               {"ports": [{"port": 9000, "protocol": "SCTP"}, {"port": 7000, "endPort": 7010, "protocol": "UDP"}]}],
                }),
            ),
        ),
        (
            "deny-all-egress",
            np(
                "default",
                "client-no-egress",
                json!({
                    "podSelector": {"matchExpressions": [{"key": "broker-access", "operator": "DoesNotExist"},
                                                         {"key": "role", "operator": "NotIn", "values": ["message-broker"]}]},
                    "policyTypes": ["Egress"],
                }),
            ),
        ),
        (
            "allow-all",
            np(
                "other",
                "allow-all",
                json!({"podSelector": {}, "ingress": [{}]}),
            ),
        ),
    ]
}

/// A cluster with the shared pods and namespaces and the given policies.
pub fn cluster(policies: &[PolicyInfo]) -> ClusterState {
    let mut c = ClusterState::default();
    for p in pods() {
        c.pods.insert(p.key(), p);
    }
    for (n, l) in namespaces() {
        c.namespaces.insert(n.to_string(), l);
    }
    for p in policies {
        c.policies.insert(p.key(), p.clone());
    }
    c
}

/// Every policy at once.
pub fn everything() -> ClusterState {
    let all: Vec<PolicyInfo> = policies().into_iter().map(|(_, p)| p).collect();
    cluster(&all)
}

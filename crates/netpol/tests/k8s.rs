//! From API objects to the model: upstream's policyTypes defaulting, peers,
//! ports, and which pods count.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;
use skiff_netpol::k8s::{pod_info, policy_info};
use skiff_netpol::model::{Peer, PolicyPort, PortRef, Proto, Selector};

fn np(spec: serde_json::Value) -> skiff_netpol::model::PolicyInfo {
    let obj: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"namespace": "ns", "name": "p"}, "spec": spec,
    }))
    .expect("policy");
    policy_info(&obj)
}

#[test]
fn policy_types_default_as_upstream() {
    // No policyTypes: Ingress always...
    let p = np(json!({"podSelector": {}}));
    assert_eq!(p.ingress, Some(vec![]));
    assert_eq!(p.egress, None);
    // ...and Egress when there are egress rules.
    let p = np(json!({"podSelector": {}, "egress": [{}]}));
    assert_eq!(p.ingress, Some(vec![]));
    assert_eq!(p.egress.map(|e| e.len()), Some(1));
    // An empty egress list is no egress section.
    let p = np(json!({"podSelector": {}, "egress": []}));
    assert_eq!(p.egress, None);
    // Explicit types win.
    let p = np(json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}));
    assert_eq!(p.ingress, None);
    assert_eq!(p.egress, Some(vec![]));
}

#[test]
fn peers_and_ports() {
    let p = np(json!({
        "podSelector": {"matchLabels": {"a": "b"}},
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"x": "y"}}},
                      {"namespaceSelector": {}},
                      {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "fd00::/64"]}}],
             "ports": [{"port": 80}, {"port": 8000, "endPort": 8080, "protocol": "UDP"},
                       {"port": "web", "protocol": "SCTP"}, {"protocol": "UDP"}]},
            {"from": [{"ipBlock": {"cidr": "fd00::/8"}}], "ports": []},
        ],
    }));
    assert_eq!(p.pod_selector, Selector::labels([("a", "b")]));
    let rules = p.ingress.expect("ingress");
    let peers = rules[0].peers.as_ref().expect("peers");
    assert_eq!(
        peers[0],
        Peer::Pods {
            namespaces: None,
            pods: Selector::labels([("x", "y")])
        }
    );
    assert_eq!(
        peers[1],
        Peer::Pods {
            namespaces: Some(Selector::everything()),
            pods: Selector::everything()
        }
    );
    assert_eq!(
        peers[2],
        Peer::Block {
            cidr: "10.0.0.0/8".parse().expect("cidr"),
            except: vec!["10.1.0.0/16".parse().expect("cidr")],
        }
    );
    let port = |proto, port| PolicyPort { proto, port };
    assert_eq!(
        rules[0].ports,
        Some(vec![
            port(Proto::Tcp, PortRef::Range(80, 80)),
            port(Proto::Udp, PortRef::Range(8000, 8080)),
            port(Proto::Sctp, PortRef::Named("web".into())),
            port(Proto::Udp, PortRef::Any),
        ])
    );
    // Only an IPv6 block: matches no IPv4 traffic (not "everything"); empty
    // ports: every port.
    assert_eq!(rules[1].peers, Some(vec![]));
    assert_eq!(rules[1].ports, None);
}

#[test]
fn pods_local_addresses_and_named_ports() {
    let pod = |extra: serde_json::Value| -> Pod {
        let mut v = json!({
            "metadata": {"namespace": "ns", "name": "p", "labels": {"app": "x"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox",
                     "ports": [{"name": "redis", "containerPort": 6379},
                               {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                               {"containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}]},
        });
        if let (Some(a), Some(b)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in b {
                a.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).expect("pod")
    };
    let p = pod_info(&pod(json!({})), "n1");
    assert!(p.local);
    assert_eq!(p.ip, Some("10.244.0.7".parse().expect("ip")));
    assert_eq!(p.named_port("redis", Proto::Tcp), Some(6379));
    assert_eq!(p.named_port("dns", Proto::Udp), Some(53));
    assert_eq!(p.named_port("dns", Proto::Tcp), None);
    assert!(!pod_info(&pod(json!({})), "n2").local);
    let done = pod_info(
        &pod(json!({"status": {"phase": "Succeeded", "podIP": "10.244.0.7"}})),
        "n1",
    );
    assert_eq!(done.ip, None);
    let host = pod_info(
        &pod(json!({"spec": {"nodeName": "n1", "hostNetwork": true, "containers": []}})),
        "n1",
    );
    assert_eq!(host.ip, None);
}

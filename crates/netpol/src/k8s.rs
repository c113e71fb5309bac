//! From API objects to the enforcer's model, with upstream's defaulting.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model::{
    Labels, NamedPort, Peer, PodInfo, PolicyInfo, PolicyPort, PolicyRule, PortRef, Proto,
    Requirement, Selector,
};

/// `namespace/name` of any namespaced object.
pub fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// A `LabelSelector` as the model matches it; an unknown operator makes it
/// match nothing (the API rejects such selectors).
pub fn selector(s: &LabelSelector) -> Selector {
    let mut out = Selector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        ..Selector::default()
    };
    for r in s.match_expressions.iter().flatten() {
        let values = r.values.clone().unwrap_or_default();
        let k = r.key.clone();
        out.requirements.push(match r.operator.as_str() {
            "In" => Requirement::In(k, values),
            "NotIn" => Requirement::NotIn(k, values),
            "Exists" => Requirement::Exists(k),
            "DoesNotExist" => Requirement::DoesNotExist(k),
            _ => {
                out.invalid = true;
                continue;
            }
        });
    }
    out
}

/// A peer entry; `None` for entries that cannot match IPv4 traffic (an IPv6
/// block) or are malformed.
fn peer(p: &NetworkPolicyPeer) -> Option<Peer> {
    if let Some(b) = &p.ip_block {
        let cidr = b.cidr.parse().ok()?;
        // An IPv6 (or malformed) exception cannot carve anything out of an
        // IPv4 block.
        let except = b
            .except
            .iter()
            .flatten()
            .filter_map(|e| e.parse().ok())
            .collect();
        return Some(Peer::Block { cidr, except });
    }
    if p.pod_selector.is_none() && p.namespace_selector.is_none() {
        return None;
    }
    Some(Peer::Pods {
        namespaces: p.namespace_selector.as_ref().map(selector),
        pods: p
            .pod_selector
            .as_ref()
            .map(selector)
            .unwrap_or_else(Selector::everything),
    })
}

fn port(p: &NetworkPolicyPort) -> Option<PolicyPort> {
    let proto = Proto::from_k8s(p.protocol.as_deref())?;
    let port = match &p.port {
        None => PortRef::Any,
        Some(IntOrString::Int(n)) => {
            let first = u16::try_from(*n).ok()?;
            let last = match p.end_port {
                Some(e) => u16::try_from(e).ok()?,
                None => first,
            };
            PortRef::Range(first, last.max(first))
        }
        Some(IntOrString::String(name)) => PortRef::Named(name.clone()),
    };
    Some(PolicyPort { proto, port })
}

/// Absent or empty lists allow everything; otherwise only the usable entries.
fn list<T, U>(items: &Option<Vec<T>>, f: impl Fn(&T) -> Option<U>) -> Option<Vec<U>> {
    match items {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v) => Some(v.iter().filter_map(f).collect()),
    }
}

/// A NetworkPolicy with `policyTypes` defaulted as upstream does: Ingress
/// always, Egress when the policy has egress rules.
pub fn policy_info(np: &NetworkPolicy) -> PolicyInfo {
    let spec = np.spec.clone().unwrap_or_default();
    let types: Vec<String> = match &spec.policy_types {
        Some(t) if !t.is_empty() => t.clone(),
        _ => {
            let mut t = vec!["Ingress".to_string()];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                t.push("Egress".to_string());
            }
            t
        }
    };
    let ingress = types.iter().any(|t| t == "Ingress").then(|| {
        spec.ingress
            .iter()
            .flatten()
            .map(|r| PolicyRule {
                peers: list(&r.from, peer),
                ports: list(&r.ports, port),
            })
            .collect()
    });
    let egress = types.iter().any(|t| t == "Egress").then(|| {
        spec.egress
            .iter()
            .flatten()
            .map(|r| PolicyRule {
                peers: list(&r.to, peer),
                ports: list(&r.ports, port),
            })
            .collect()
    });
    PolicyInfo {
        namespace: np.metadata.namespace.clone().unwrap_or_default(),
        name: np.metadata.name.clone().unwrap_or_default(),
        pod_selector: spec
            .pod_selector
            .as_ref()
            .map(selector)
            .unwrap_or_else(Selector::everything),
        ingress,
        egress,
    }
}

/// A pod as the enforcer sees it. Host-network pods and finished pods get no
/// address: they are neither isolated nor peers (a finished pod's address may
/// already belong to another pod).
pub fn pod_info(pod: &Pod, node_name: &str) -> PodInfo {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let finished = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let ip = if host_network || finished {
        None
    } else {
        status.and_then(|s| {
            s.pod_ips
                .iter()
                .flatten()
                .map(|p| p.ip.as_str())
                .chain(s.pod_ip.as_deref())
                .find_map(|a| a.parse::<Ipv4Addr>().ok())
        })
    };
    let mut ports = Vec::new();
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        for p in c.ports.iter().flatten() {
            let (Some(name), Some(proto), Ok(port)) = (
                p.name.as_ref(),
                Proto::from_k8s(p.protocol.as_deref()),
                u16::try_from(p.container_port),
            ) else {
                continue;
            };
            ports.push(NamedPort {
                name: name.clone(),
                proto,
                port,
            });
        }
    }
    ports.sort();
    PodInfo {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ip,
        local: spec.and_then(|s| s.node_name.as_deref()) == Some(node_name),
        ports,
    }
}

/// A namespace's name and labels.
pub fn namespace_labels(ns: &Namespace) -> (String, Labels) {
    (
        ns.metadata.name.clone().unwrap_or_default(),
        ns.metadata.labels.clone().unwrap_or_default(),
    )
}

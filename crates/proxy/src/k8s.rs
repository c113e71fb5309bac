//! From API objects to the data plane's [`ServiceInfo`].

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{Endpoint, PortInfo, Proto, ServiceInfo};

/// Label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Annotation carrying when the endpoints controller saw the triggering change.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Upstream default of `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// `namespace/name` of the Service a slice belongs to.
pub fn slice_service_key(slice: &EndpointSlice) -> Option<String> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(format!(
        "{}/{}",
        slice.metadata.namespace.as_deref().unwrap_or_default(),
        name
    ))
}

pub fn service_key(svc: &Service) -> String {
    format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or_default(),
        svc.metadata.name.as_deref().unwrap_or_default()
    )
}

fn v4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// The data plane's view of `svc` with the endpoints of `slices` (the slices
/// labelled for it). `None` for services the proxy does not program
/// (ExternalName).
pub fn service_info<'a>(
    svc: &Service,
    slices: impl Iterator<Item = &'a EndpointSlice> + Clone,
    node_name: &str,
) -> Option<ServiceInfo> {
    let spec = svc.spec.as_ref()?;
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if ty == "ExternalName" {
        return None;
    }
    let mut cluster_ips: Vec<Ipv4Addr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|s| v4(s))
        .collect();
    cluster_ips.sort();
    cluster_ips.dedup();
    let mut external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|s| v4(s))
        .collect();
    let mut load_balancer_ips = Vec::new();
    if ty == "LoadBalancer" {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        let ingress: Vec<Ipv4Addr> = ingress
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref().and_then(v4))
            .collect();
        external_ips.extend(&ingress);
        // The built-in load balancer's addresses (no class): announcing them is
        // this node's job; another implementation announces its own.
        if spec.load_balancer_class.is_none() {
            load_balancer_ips = ingress;
        }
    }
    load_balancer_ips.sort();
    load_balancer_ips.dedup();
    external_ips.sort();
    external_ips.dedup();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let with_node_ports = ty == "NodePort" || ty == "LoadBalancer";
    let mut ports = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(proto) = Proto::from_k8s(p.protocol.as_deref()) else {
            continue;
        };
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        let name = p.name.clone().unwrap_or_default();
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for slice in slices.clone() {
            if slice.address_type != "IPv4" {
                continue;
            }
            // The slice port serving this service port: same name and protocol.
            let Some(ep_port) = slice.ports.iter().flatten().find_map(|sp| {
                let same_name = sp.name.as_deref().unwrap_or_default() == name;
                let same_proto = Proto::from_k8s(sp.protocol.as_deref()) == Some(proto);
                (same_name && same_proto)
                    .then_some(sp.port)
                    .flatten()
                    .and_then(|n| u16::try_from(n).ok())
            }) else {
                continue;
            };
            for ep in &slice.endpoints {
                let c = ep.conditions.as_ref();
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                let local = ep.node_name.as_deref() == Some(node_name);
                for ip in ep.addresses.iter().take(1).filter_map(|a| v4(a)) {
                    if endpoints.iter().any(|e| e.ip == ip && e.port == ep_port) {
                        continue;
                    }
                    endpoints.push(Endpoint {
                        ip,
                        port: ep_port,
                        ready,
                        serving,
                        terminating,
                        local,
                    });
                }
            }
        }
        ports.push(PortInfo {
            name,
            proto,
            port,
            node_port: p
                .node_port
                .filter(|_| with_node_ports)
                .and_then(|n| u16::try_from(n).ok()),
            endpoints,
        });
    }
    Some(ServiceInfo {
        namespace: svc.metadata.namespace.clone().unwrap_or_default(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        cluster_ips,
        external_ips,
        load_balancer_ips,
        affinity_timeout,
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        ports,
    })
}

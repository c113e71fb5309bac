//! How traffic reaches the ingress: the Service `kube-system/skiff-ingress`
//! of type LoadBalancer (ports `http` 80 and `https` 443) with no selector, so
//! the built-in load balancer gives it an address and NodePorts and the service
//! proxy carries them, and one EndpointSlice per node running the ingress
//! listing that node's address (as the `kubernetes` Service lists the API
//! servers).
//!
//! Both are made when the first Ingress of our class appears ([`start`]), not
//! at start: a cluster that never uses Ingress keeps its load-balancer pool and
//! NodePorts to itself.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// The Service's namespace and name.
pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "skiff-ingress";
/// The field manager and `managed-by` of what this module writes.
const MANAGER: &str = "skiff-ingress";

/// Creates the Service unless it exists (its allocated address and NodePorts,
/// and an admin's edits, are kept).
pub async fn ensure_service(client: kube::Client) -> Result<(), kube::Error> {
    let api: Api<Service> = Api::namespaced(client, NAMESPACE);
    if api.get_opt(SERVICE).await?.is_some() {
        return Ok(());
    }
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": SERVICE,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/name": SERVICE, "app.kubernetes.io/managed-by": "skiff"},
        },
        "spec": {
            "type": "LoadBalancer",
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
            ],
        },
    }))
    .map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &svc).await {
        Ok(_) => {
            tracing::info!(service = SERVICE, "ingress service created");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A node name as an object-name suffix (DNS-1123 subdomain characters).
fn sanitize(node: &str) -> String {
    let s: String = node
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches(|c| c == '-' || c == '.')
        .chars()
        .take(200)
        .collect()
}

/// This node's slice of the Service: `ip` at the ports the ingress listens on.
pub fn slice(node: &str, ip: IpAddr, http_port: u16, https_port: u16) -> serde_json::Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{SERVICE}-{}", sanitize(node)),
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": SERVICE,
                "endpointslice.kubernetes.io/managed-by": MANAGER,
            },
        },
        "addressType": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{
            "addresses": [ip.to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": node,
        }],
        "ports": [
            {"name": "http", "port": http_port, "protocol": "TCP"},
            {"name": "https", "port": https_port, "protocol": "TCP"},
        ],
    })
}

/// Where this node's ingress listens.
#[derive(Debug, Clone)]
pub struct Publication {
    pub node: String,
    pub ip: IpAddr,
    pub http_port: u16,
    pub https_port: u16,
}

/// Creates the Service, retrying until it exists; `busy` is cleared when done
/// (the caller starts one at a time, again whenever the Service is gone).
pub async fn create_service(client: kube::Client, busy: Arc<AtomicBool>) {
    let mut delay = Duration::from_millis(200);
    while let Err(e) = ensure_service(client.clone()).await {
        tracing::warn!(error = %e, "cannot create the ingress service; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    busy.store(false, Ordering::Release);
}

/// Keeps this node's slice (see [`keep_slice`]).
pub async fn start(client: kube::Client, p: Publication) {
    keep_slice(client, p.node, p.ip, p.http_port, p.https_port).await
}

/// Publishes this node's slice, and keeps re-asserting it (someone may delete it).
pub async fn keep_slice(
    client: kube::Client,
    node: String,
    ip: IpAddr,
    http_port: u16,
    https_port: u16,
) {
    let api: Api<EndpointSlice> = Api::namespaced(client, NAMESPACE);
    let slice = slice(&node, ip, http_port, https_port);
    let name = slice["metadata"]["name"]
        .as_str()
        .unwrap_or(SERVICE)
        .to_string();
    let params = PatchParams::apply(MANAGER).force();
    let mut delay = Duration::from_millis(200);
    loop {
        match api.patch(&name, &params, &Patch::Apply(&slice)).await {
            Ok(_) => {
                tracing::debug!(slice = %name, address = %ip, "ingress endpoint published");
                delay = Duration::from_secs(60);
            }
            Err(e) => {
                tracing::warn!(slice = %name, error = %e, "cannot publish the ingress endpoint");
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
        tokio::time::sleep(delay).await;
    }
}

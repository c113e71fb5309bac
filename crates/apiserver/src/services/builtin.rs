//! The services every cluster has: `default/kubernetes` (the API server itself,
//! with its Endpoints and EndpointSlice) at the first address of the service
//! range, and `kube-system/kube-dns` at the tenth. Created at start, recreated
//! when deleted, and the API server's endpoints kept current: every live server
//! of the cluster (see [`super::peers`]).

use serde_json::{json, Value};
use skiff_api::registry::{self, Resource};
use skiff_api::StatusError;

use crate::body::FieldValidation;
use crate::request::Target;
use crate::rest::{self, WriteOptions};
use crate::server::Api;

/// `namespace/name` of the API server's own service.
pub const KUBERNETES: &str = "default/kubernetes";
/// `namespace/name` of the cluster DNS service.
pub const KUBE_DNS: &str = "kube-system/kube-dns";

pub fn is_builtin(key: &str) -> bool {
    key == KUBERNETES || key == KUBE_DNS
}

fn target(resource: &'static Resource, ns: &str, name: Option<&str>) -> Target {
    Target {
        resource,
        namespace: Some(ns.to_string()),
        name: name.map(str::to_string),
        subresource: None,
    }
}

pub(super) fn opts() -> WriteOptions {
    WriteOptions {
        dry_run: false,
        validation: FieldValidation::Ignore,
        field_manager: None,
    }
}

/// The API server's address as endpoints name it.
fn api_endpoint(api: &Api) -> (String, i64) {
    let (host, port) = api
        .server_address
        .rsplit_once(':')
        .unwrap_or((api.server_address.as_str(), "6443"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host.to_string(), port.parse().unwrap_or(6443))
}

fn kubernetes_service(api: &Api, port: i64) -> Value {
    let ip = api.services.settings.service_cidr.addr(0).to_string();
    json!({
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
    })
}

fn kube_dns_service(api: &Api) -> Value {
    let ip = api.services.settings.service_cidr.addr(9).to_string();
    json!({
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {
                "k8s-app": "kube-dns",
                "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "CoreDNS",
            },
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
            "selector": {"k8s-app": "kube-dns"},
            "type": "ClusterIP",
        },
    })
}

/// The live servers on this server's port (servers of one cluster listen on
/// one port, as upstream's do: the Service has one target port).
fn hosts_on(servers: &[(String, i64)], port: i64) -> Vec<&str> {
    servers
        .iter()
        .filter(|(_, p)| *p == port)
        .map(|(h, _)| h.as_str())
        .collect()
}

fn endpoints(hosts: &[&str], port: i64) -> Value {
    let addresses: Vec<Value> = hosts.iter().map(|h| json!({"ip": h})).collect();
    json!({
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [{
            "addresses": addresses,
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }],
    })
}

fn endpoint_slice(hosts: &[&str], port: i64) -> Value {
    let family = if hosts.iter().any(|h| h.contains(':')) {
        "IPv6"
    } else {
        "IPv4"
    };
    let endpoints: Vec<Value> = hosts
        .iter()
        .map(|h| json!({"addresses": [h], "conditions": {"ready": true}}))
        .collect();
    json!({
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": family,
        "endpoints": endpoints,
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    })
}

/// Creates `desired` when missing; when present, makes the `fields` it owns
/// match (the rest of the object is left as it is).
async fn ensure_object(
    api: &Api,
    resource: &'static Resource,
    desired: Value,
    fields: &[&str],
) -> Result<(), StatusError> {
    let ns = desired
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = rest::name_of(&desired).unwrap_or_default().to_string();
    match api.objects.get_opt(resource, Some(&ns), &name).await? {
        None => {
            let created = rest::create(api, &target(resource, &ns, None), desired, &opts()).await;
            match created {
                Ok(_) => {
                    tracing::info!(resource = resource.plural, %ns, %name, "created built-in object");
                    Ok(())
                }
                Err(e) if e.reason == "AlreadyExists" => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(current) => {
            let differs = fields
                .iter()
                .any(|f| current.pointer(f) != desired.pointer(f));
            if !differs {
                return Ok(());
            }
            let t = target(resource, &ns, Some(&name));
            rest::patch_with(api, &t, &opts(), |cur| {
                let mut next = cur.clone();
                for f in fields {
                    if let (Some(slot), Some(want)) = (next.pointer_mut(f), desired.pointer(f)) {
                        *slot = want.clone();
                    } else if let (Some(key), Some(want)) =
                        (f.strip_prefix('/'), desired.pointer(f))
                    {
                        next[key] = want.clone();
                    }
                }
                Ok(next)
            })
            .await
            .map(|_| ())
        }
    }
}

/// Makes sure the built-in services (and the API server's endpoints) exist.
/// Failures are logged, not fatal: the next pass tries again.
pub async fn ensure(api: &Api) {
    let (host, port) = api_endpoint(api);
    if let Err(e) = super::peers::renew(api, &host, port).await {
        tracing::warn!(error = %e, "cannot renew this API server's Lease; will retry");
    }
    let servers = super::peers::live(api, (&host, port)).await;
    let hosts = hosts_on(&servers, port);
    let lookup = |g, v, p| registry::lookup(g, v, p);
    let (Some(svcs), Some(eps), Some(slices)) = (
        lookup("", "v1", "services"),
        lookup("", "v1", "endpoints"),
        lookup("discovery.k8s.io", "v1", "endpointslices"),
    ) else {
        return;
    };
    let steps: [(&'static Resource, Value, &[&str]); 4] = [
        (svcs, kubernetes_service(api, port), &["/spec/ports"]),
        (eps, endpoints(&hosts, port), &["/subsets"]),
        (
            slices,
            endpoint_slice(&hosts, port),
            &["/addressType", "/endpoints", "/ports"],
        ),
        (svcs, kube_dns_service(api), &[]),
    ];
    for (resource, desired, fields) in steps {
        if let Err(e) = ensure_object(api, resource, desired, fields).await {
            tracing::warn!(resource = resource.plural, error = %e, "cannot create a built-in object; will retry");
        }
    }
}

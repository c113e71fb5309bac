//! The control plane the proxy is fed by: the real API server in-process on a
//! fresh SQLite store, a kube-rs client, and the real proxier (`skiff_proxy::run`)
//! on its own runtime, started and stopped as the phases need.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use skiff_bench::apiserver::client;

use crate::topo::{self, server_ip, SERVER_PORT};

/// Everything the benchmark makes lives in this namespace.
pub const NAMESPACE: &str = "proxy-bench";
/// The service the data-plane phases load (one endpoint: server pod 1).
pub const WEB: &str = "web";
/// Every service's port (its endpoints listen on `SERVER_PORT`).
pub const SERVICE_PORT: u16 = 80;
pub const NODE: &str = "bench-node";
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

pub fn service_name(i: usize) -> String {
    format!("svc-{i:05}")
}

/// The shared in-process API server, with this benchmark's objects.
pub struct ApiServer(skiff_bench::apiserver::ApiServer);

impl std::ops::Deref for ApiServer {
    type Target = skiff_bench::apiserver::ApiServer;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl ApiServer {
    /// Starts the API server (on `rt`) with its store under `dir`; the client
    /// is for the benchmark's own runtime, where this must be called.
    pub async fn start(rt: &tokio::runtime::Runtime, dir: &Path) -> Result<Self> {
        Ok(Self(
            skiff_bench::apiserver::ApiServer::start(rt, dir).await?,
        ))
    }

    pub async fn create_namespace(&self) -> Result<()> {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(())
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    fn slices(&self) -> Api<EndpointSlice> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// A selector-less ClusterIP service and its slice with `endpoints` (server
    /// pod numbers); returns the allocated ClusterIP.
    pub async fn create_service(&self, name: &str, endpoints: &[u8]) -> Result<Ipv4Addr> {
        self.create_service_at(name, &local(endpoints)).await
    }

    /// [`ApiServer::create_service`] with endpoints given as (address, node).
    pub async fn create_service_at(
        &self,
        name: &str,
        endpoints: &[(Ipv4Addr, &str)],
    ) -> Result<Ipv4Addr> {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": SERVER_PORT}]},
        }))?;
        let svc = self.services().create(&PostParams::default(), &svc).await?;
        let ip = svc
            .spec
            .and_then(|s| s.cluster_ip)
            .context("no ClusterIP allocated")?
            .parse()?;
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": endpoint_list(endpoints),
            "ports": [{"name": "http", "port": SERVER_PORT, "protocol": "TCP"}],
        }))?;
        self.slices().create(&PostParams::default(), &slice).await?;
        Ok(ip)
    }

    /// Creates `names` with `endpoints` each, `concurrency` at a time; returns
    /// their ClusterIPs in the order the creations finished.
    pub async fn create_services(
        &self,
        names: Vec<String>,
        endpoints: &[u8],
        concurrency: usize,
    ) -> Result<Vec<(String, Ipv4Addr)>> {
        futures::stream::iter(names)
            .map(|name| async move {
                let ip = self.create_service(&name, endpoints).await?;
                anyhow::Ok((name, ip))
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await
    }

    /// Replaces the endpoints of `name`'s slice (one merge patch).
    pub async fn set_endpoints(&self, name: &str, endpoints: &[u8]) -> Result<()> {
        let patch = json!({"endpoints": endpoint_list(&local(endpoints))});
        self.slices()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Deletes service `name` and its slice.
    pub async fn delete_service(&self, name: &str) -> Result<()> {
        let dp = Default::default();
        self.slices().delete(name, &dp).await?;
        self.services().delete(name, &dp).await?;
        Ok(())
    }

    /// Every Service and EndpointSlice in the cluster, for the floor's ruleset.
    pub async fn everything(&self) -> Result<(Vec<Service>, Vec<EndpointSlice>)> {
        let lp = Default::default();
        let svcs = Api::<Service>::all(self.client.clone()).list(&lp).await?;
        let slices = Api::<EndpointSlice>::all(self.client.clone())
            .list(&lp)
            .await?;
        Ok((svcs.items, slices.items))
    }
}

/// Server pods on this node, by number, as (address, node).
fn local(pods: &[u8]) -> Vec<(Ipv4Addr, &'static str)> {
    pods.iter().map(|&i| (server_ip(i), NODE)).collect()
}

fn endpoint_list(endpoints: &[(Ipv4Addr, &str)]) -> serde_json::Value {
    endpoints
        .iter()
        .map(|(ip, node)| {
            json!({
                "addresses": [ip.to_string()],
                "conditions": {"ready": true},
                "nodeName": node,
            })
        })
        .collect()
}

/// The proxier's settings: this node, the pod network, no node ports (the
/// benchmark's node has no outside address) and no metrics listener.
pub fn proxy_settings() -> skiff_proxy::ProxySettings {
    let mut s = skiff_proxy::ProxySettings::new(NODE, SERVICE_CIDR);
    s.pod_cidr = Some(topo::POD_CIDR.to_string());
    s.node_ips = vec![topo::GATEWAY];
    s.metrics_listen = None;
    s
}

/// The proxier running on its own runtime; stopping it removes its table.
pub struct Proxy {
    task: tokio::task::JoinHandle<Result<()>>,
    /// The proxier's own counters (shared with it), for the report.
    pub metrics: skiff_proxy::metrics::Metrics,
}

impl Proxy {
    pub fn start(rt: &tokio::runtime::Runtime, api: &ApiServer) -> Self {
        let kubeconfig = api.kubeconfig.clone();
        let settings = proxy_settings();
        let metrics = settings.metrics.clone();
        Proxy {
            task: rt.spawn(async move {
                skiff_proxy::run(client(&kubeconfig).await?, settings).await?;
                Ok(())
            }),
            metrics,
        }
    }

    /// `full syncs, failed syncs` so far.
    pub fn syncs(&self) -> (u64, u64) {
        (
            self.metrics.full_syncs.get(),
            self.metrics.failed_syncs.get(),
        )
    }

    /// Stops the proxier and waits until its table is gone (dropping its
    /// future deletes the table).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

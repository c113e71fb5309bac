//! The control plane the enforcer is fed by: the real API server in-process on
//! a fresh SQLite store, a kube-rs client, and the real enforcer
//! (`skiff_netpol::run`) on its own runtime. Pods are API objects bound to
//! the benchmark's node with the addresses of the benchmark's pod namespaces
//! (there is no agent: the benchmark writes their status itself).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use skiff_bench::apiserver::client;

use crate::topo::{PodSpec, PODS, PORT, SERVER};

/// Everything the benchmark makes lives in this namespace.
pub const NAMESPACE: &str = "netpol-bench";
pub const NODE: &str = "bench-node";
/// The policy the measured changes create and delete: isolates `TARGET`.
pub const CHANGE: &str = "isolate-target";

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

    fn policies(&self) -> Api<NetworkPolicy> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// The namespace and every pod of the topology, running at its address.
    pub async fn create_pods(&self) -> Result<()> {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        for pod in PODS {
            pods.create(&PostParams::default(), &pod_object(pod)?)
                .await?;
            let status = json!({"status": {
                "phase": "Running",
                "podIP": pod.ip.to_string(),
                "podIPs": [{"ip": pod.ip.to_string()}],
            }});
            pods.patch_status(pod.name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
        }
        Ok(())
    }

    /// Creates `n` policies, `concurrency` at a time (see [`policy`]).
    pub async fn create_policies(
        &self,
        n: usize,
        selecting: usize,
        concurrency: usize,
    ) -> Result<()> {
        let api = self.policies();
        futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move {
                    api.create(&PostParams::default(), &policy(i, n, selecting)?)
                        .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<()>()
            .await
    }

    /// Deletes every policy of the namespace in one request.
    pub async fn delete_policies(&self) -> Result<()> {
        self.policies()
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
        Ok(())
    }

    /// The measured change: a policy selecting `TARGET` that allows nothing.
    pub async fn isolate_target(&self) -> Result<()> {
        let np: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {"name": CHANGE},
            "spec": {"podSelector": {"matchLabels": {"app": "target"}}, "policyTypes": ["Ingress"]},
        }))?;
        self.policies().create(&PostParams::default(), &np).await?;
        Ok(())
    }

    pub async fn release_target(&self) -> Result<()> {
        self.policies()
            .delete(CHANGE, &DeleteParams::default())
            .await?;
        Ok(())
    }
}

fn pod_object(pod: PodSpec) -> Result<Pod> {
    let labels: serde_json::Map<String, serde_json::Value> = pod
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    Ok(serde_json::from_value(json!({
        "metadata": {"name": pod.name, "labels": labels},
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": "c", "image": "busybox",
                            "ports": [{"name": "http", "containerPort": PORT}]}],
        },
    }))?)
}

/// Policy `i` of `n`. One in every `n / selecting` selects the server pod; the
/// last of those (by name, so its chain is jumped to last) allows the client
/// to the server's named port, the others allow labels nobody has. The rest
/// select pods that do not exist (yet), with a mix of peers and ports, so the
/// table holds `n` policies' chains, sets and counters.
fn policy(i: usize, n: usize, selecting: usize) -> Result<NetworkPolicy> {
    let stride = (n / selecting.max(1)).max(1);
    let last_selecting = (n - 1) / stride * stride;
    let selects_server = selecting > 0 && i.is_multiple_of(stride);
    let pods = if selects_server {
        json!({"matchLabels": {"app": SERVER.labels[0].1}})
    } else {
        json!({"matchLabels": {"app": format!("app-{i}")}})
    };
    let from_role = if selects_server && i == last_selecting {
        "client".to_string()
    } else {
        format!("client-{i}")
    };
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("policy-{i:04}")},
        "spec": {
            "podSelector": pods,
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"role": from_role}}}],
                 "ports": [{"port": "http"}]},
                {"from": [{"namespaceSelector": {"matchLabels": {"team": format!("team-{i}")}}},
                          {"ipBlock": {"cidr": "192.168.0.0/16", "except": [format!("192.168.{}.0/24", i % 256)]}}],
                 "ports": [{"port": 9000 + (i % 1000), "endPort": 9100 + (i % 1000)}, {"protocol": "UDP", "port": 53}]},
            ],
        },
    }))?)
}

/// The enforcer running on its own runtime; stopping it removes its table.
pub struct Enforcer {
    task: tokio::task::JoinHandle<Result<()>>,
    pub metrics: skiff_netpol::metrics::Metrics,
}

impl Enforcer {
    pub fn start(rt: &tokio::runtime::Runtime, api: &ApiServer) -> Self {
        let kubeconfig = api.kubeconfig.clone();
        let mut settings = skiff_netpol::NetpolSettings::new(NODE);
        settings.metrics_listen = None;
        let metrics = settings.metrics.clone();
        Enforcer {
            task: rt.spawn(async move {
                skiff_netpol::run(client(&kubeconfig).await?, settings).await?;
                Ok(())
            }),
            metrics,
        }
    }

    /// Waits for the first full load of the table.
    pub async fn wait_started(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.metrics.full_syncs.get() == 0 {
            if self.task.is_finished() || Instant::now() > deadline {
                bail!("the enforcer did not start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits until the programmed table holds `policies` policies.
    pub async fn wait_for(&self, policies: usize) -> Result<()> {
        let want = i64::try_from(policies)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.metrics.policies.get() != want {
            if self.task.is_finished() {
                bail!("the enforcer stopped");
            }
            if Instant::now() > deadline {
                bail!(
                    "the enforcer programmed {} policies, not {want}",
                    self.metrics.policies.get()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops the enforcer and waits until its table is gone (dropping its
    /// future deletes the table).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

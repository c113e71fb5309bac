//! The cluster under test, in-process: the API server on a fresh SQLite store, the
//! controllers (the scheduler binds the pods) and the node agent, wired as
//! `skiff server --disable proxy,dns` wires them, on a runtime of their own.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use skiff_apiserver::server::Stopper;
use skiff_store::{Backend, SqliteBackend};
use tokio::task::JoinHandle;

/// The node's name (its Node object).
pub const NODE: &str = "bench-node";

pub struct Cluster {
    pub client: kube::Client,
    stopper: Stopper,
    components: Vec<JoinHandle<Result<()>>>,
}

impl Cluster {
    /// Starts every component on `rt`; returns once the API server answers.
    /// `host_images`: the agent runs the built-in catalog's host programs instead
    /// of OCI images.
    pub fn start(rt: &tokio::runtime::Runtime, data_dir: &Path, host_images: bool) -> Result<Self> {
        let store: Arc<dyn Backend> = Arc::new(SqliteBackend::open(data_dir.join("state.db"))?);
        let config = skiff_apiserver::Config {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir: data_dir.to_path_buf(),
            // The defaults of `skiff server`.
            compact_interval: Duration::from_secs(300),
            compact_keep: 1000,
            services: Default::default(),
            admission: Default::default(),
            tls_sans: Vec::new(),
            audit: None,
        };
        let running = rt.block_on(skiff_apiserver::start(config, store))?;
        eprintln!("API server at {}", running.url);
        let stopper = running.stopper();
        let client = rt.block_on(client(&running.kubeconfig))?;
        // The server runs until stopped; its handle is not needed beyond that.
        rt.spawn(async move {
            if let Err(e) = running.wait().await {
                eprintln!("API server stopped: {e:#}");
            }
        });

        // The agent serves its streaming endpoint with a certificate the cluster
        // CA signed for its address: the gateway of the first pod range (the
        // node-IPAM controller gives the only node that range).
        let gateway = skiff_agent::net::Cidr::parse("10.244.0.0/24")?.gateway();
        skiff_apiserver::pki::agent_serving_cert(data_dir, NODE, &[gateway.into()])?;
        let mut agent = skiff_agent::AgentSettings::new(NODE, data_dir.to_path_buf());
        agent.host_images = host_images;
        // The node's address: the pod gateway (the namespace has only `lo`); an
        // ephemeral streaming port so nothing else on the machine can collide.
        agent.port = 0;
        let components = vec![
            rt.spawn(skiff_agent::run(client.clone(), agent)),
            rt.spawn({
                let c = client.clone();
                // The cluster CA for the `kube-root-ca.crt` ConfigMap every
                // pod's service-account token volume reads, as `skiff server`.
                let settings = skiff_controllers::Settings {
                    root_ca_file: Some(data_dir.join(skiff_apiserver::pki::CA)),
                    ..Default::default()
                };
                async move { Ok(skiff_controllers::run(c, settings).await?) }
            }),
        ];
        Ok(Cluster {
            client,
            stopper,
            components,
        })
    }

    /// Waits for the agent to register a Ready Node; fails early if a component died.
    pub async fn wait_node_ready(&self, timeout: Duration) -> Result<Duration> {
        let began = Instant::now();
        let api: Api<Node> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().fields(&format!("metadata.name={NODE}"));
        let mut events = watcher::watcher(api, cfg).applied_objects().boxed();
        let ready = async {
            while let Some(node) = events.try_next().await? {
                if node_ready(&node) {
                    return Ok(());
                }
            }
            bail!("the node watch ended")
        };
        tokio::select! {
            r = tokio::time::timeout(timeout, ready) => {
                r.with_context(|| format!("node {NODE} not Ready within {timeout:?}"))??;
            }
            r = self.any_component_ended() => return Err(r),
        }
        Ok(began.elapsed())
    }

    /// Resolves only if a component stopped (which it never should while running).
    async fn any_component_ended(&self) -> anyhow::Error {
        loop {
            if self.components.iter().any(JoinHandle::is_finished) {
                return anyhow::anyhow!(
                    "a cluster component (agent or controllers) stopped; see the log above"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the components and the API server (pods must be deleted first).
    pub fn stop(self) {
        for h in &self.components {
            h.abort();
        }
        self.stopper.stop();
    }
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A kube-rs client from the admin kubeconfig the API server wrote.
async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .context("kubeconfig")?;
    kube::Client::try_from(config).context("building the client")
}

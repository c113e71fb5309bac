//! The cluster under test, in-process: the API server on a fresh SQLite store and
//! the real controllers, wired as `skiff server --disable agent,proxy,dns` wires
//! them, on a runtime of their own. No agent runs: the benchmark plays the kubelet
//! (it registers a Ready Node and patches pods' status itself).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use skiff_apiserver::server::Stopper;
use skiff_store::{Backend, SqliteBackend};
use tokio::task::JoinHandle;

pub struct Cluster {
    /// The admin kubeconfig: the load generator builds its own client from it, on its
    /// own runtime (a client's connections live on the runtime that opened them).
    pub kubeconfig: PathBuf,
    stopper: Stopper,
    controllers: JoinHandle<Result<()>>,
}

impl Cluster {
    /// Starts the API server and the controllers on `rt`; returns once the server answers.
    pub fn start(rt: &tokio::runtime::Runtime, data_dir: &Path) -> Result<Self> {
        let store: Arc<dyn Backend> = Arc::new(SqliteBackend::open(data_dir.join("state.db"))?);
        let config = skiff_apiserver::Config {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir: data_dir.to_path_buf(),
            // The defaults of `skiff server`: compaction is part of a real server's load.
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
        let kubeconfig = running.kubeconfig.clone();
        let client = rt.block_on(client(&kubeconfig))?;
        // The server runs until stopped; its handle is not needed beyond that.
        rt.spawn(async move {
            if let Err(e) = running.wait().await {
                eprintln!("API server stopped: {e:#}");
            }
        });
        let controllers = rt.spawn({
            let c = client.clone();
            async move { Ok(skiff_controllers::run(c, Default::default()).await?) }
        });
        Ok(Cluster {
            kubeconfig,
            stopper,
            controllers,
        })
    }

    /// Resolves only if the controllers stopped (which they never should while running).
    pub async fn controllers_ended(&self) -> anyhow::Error {
        loop {
            if self.controllers.is_finished() {
                return anyhow::anyhow!("the controllers stopped; see the log above");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the controllers and the API server.
    pub fn stop(self) {
        self.controllers.abort();
        self.stopper.stop();
    }
}

/// A kube-rs client from the admin kubeconfig the API server wrote.
pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .context("kubeconfig")?;
    kube::Client::try_from(config).context("building the client")
}

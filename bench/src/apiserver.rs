//! The real API server in-process for benchmarks that feed one component (the
//! proxier, the enforcer) from it: a fresh SQLite store under a temp dir,
//! `127.0.0.1:<free port>`, compaction off, and a kube-rs client.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use skiff_store::{Backend, SqliteBackend};

pub struct ApiServer {
    /// A client whose connection tasks run on the runtime `start` was awaited on.
    pub client: kube::Client,
    /// The admin kubeconfig, for components that build their own client.
    pub kubeconfig: PathBuf,
    stopper: skiff_apiserver::server::Stopper,
}

/// A kube-rs client from the admin kubeconfig. Its connection tasks run on the
/// runtime it is built on, so each user builds its own.
pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

impl ApiServer {
    /// Starts the API server (on `rt`) with its store under `dir`; the client
    /// is for the benchmark's own runtime, where this must be called.
    pub async fn start(rt: &tokio::runtime::Runtime, dir: &Path) -> Result<Self> {
        let data_dir = dir.join("server");
        std::fs::create_dir_all(&data_dir)?;
        let store: Arc<dyn Backend> = Arc::new(SqliteBackend::open(data_dir.join("state.db"))?);
        let config = skiff_apiserver::Config {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir,
            // Compaction would add unrelated writes mid-measurement.
            compact_interval: Duration::from_secs(24 * 3600),
            compact_keep: 1_000_000,
            services: Default::default(),
            admission: Default::default(),
            tls_sans: Vec::new(),
            audit: None,
        };
        let running = rt
            .spawn(skiff_apiserver::start(config, store))
            .await
            .context("API server start panicked")??;
        let stopper = running.stopper();
        let kubeconfig = running.kubeconfig.clone();
        eprintln!("API server at {}", running.url);
        Ok(ApiServer {
            client: client(&kubeconfig).await?,
            kubeconfig,
            stopper,
        })
    }

    pub fn stop(&self) {
        self.stopper.stop();
    }
}

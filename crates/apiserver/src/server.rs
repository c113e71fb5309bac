//! The HTTPS server: authentication ([`crate::authn`]), the dispatcher from URL
//! to verb, and the ordered start-up (credentials, listener, built-in
//! namespaces, the default join token, lifecycle tasks).

mod dispatch;
mod start;
mod verbs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::Notify;

use crate::{metrics::Metrics, objects::Objects, pki};

pub use start::{start, BUILTIN_NAMESPACES};

/// How the API server is run.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// How often superseded history is compacted away.
    pub compact_interval: Duration,
    /// How many revisions of history compaction keeps (watchers further behind get 410).
    pub compact_keep: i64,
    /// Where Service ClusterIPs, node ports and load-balancer addresses come from.
    pub services: crate::services::Settings,
    /// Mutating admission of new objects beyond defaulting.
    pub admission: AdmissionSettings,
    /// Names and addresses the serving certificate covers besides the listen
    /// address (k3s's `--tls-san`): what nodes on other machines dial.
    pub tls_sans: Vec<String>,
    /// The audit log (`--audit-log-path`, `--audit-policy-file`); `None`: off.
    pub audit: Option<crate::audit::Settings>,
}

/// What admission adds to new objects (upstream's admission plugin flags).
#[derive(Debug, Clone, Copy)]
pub struct AdmissionSettings {
    /// `DefaultTolerationSeconds`: how long a new pod tolerates its node being
    /// not ready (`--default-not-ready-toleration-seconds`).
    pub not_ready_toleration_seconds: i64,
    /// ... or unreachable (`--default-unreachable-toleration-seconds`).
    pub unreachable_toleration_seconds: i64,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            not_ready_toleration_seconds: skiff_api::admission::DEFAULT_TOLERATION_SECONDS,
            unreachable_toleration_seconds: skiff_api::admission::DEFAULT_TOLERATION_SECONDS,
        }
    }
}

/// Shared state of every request.
pub struct Api {
    pub objects: Objects,
    /// Lists, gets and watches are served from here ([`crate::cache`]).
    pub cache: crate::cache::Caches,
    pub metrics: Metrics,
    pub admin_token: String,
    /// The cluster CA: served at `/cacerts`, signs joining nodes' certificates.
    pub ca: pki::Ca,
    /// How the API server dials node agents' streaming endpoints: their serving
    /// certificates verified against the cluster CA, presenting
    /// `apiserver-kubelet-client`.
    pub kubelet_tls: Arc<rustls::ClientConfig>,
    pub server_address: String,
    /// Wakes the namespace lifecycle task when a namespace starts terminating.
    pub namespaces_changed: Notify,
    /// Service ClusterIP / NodePort / LoadBalancer allocations.
    pub services: crate::services::State,
    pub admission: AdmissionSettings,
    /// The data directory: what a joining server is handed comes from its files.
    pub data_dir: PathBuf,
    /// Signs and verifies service-account tokens (`<data-dir>/sa.key`).
    pub service_account_keys: crate::serviceaccount::Keys,
    /// The RBAC index requests are authorized with, kept current by
    /// [`crate::authz::live::run`].
    pub rbac: crate::authz::live::LiveIndex,
    /// What each node's pods reference, for the Node authorizer, kept current
    /// by [`crate::authz::node::live::run`].
    pub node_graph: crate::authz::node::NodeGraph,
    /// The namespaces a create checks, kept current by
    /// [`crate::namespace_cache::run`].
    pub namespace_cache: crate::namespace_cache::NamespaceCache,
    /// What service-account tokens are bound to, as the store has it now.
    pub bound_objects: crate::serviceaccount::bound_objects::BoundObjects,
    /// The audit log, when one is written.
    pub auditor: Option<Arc<crate::audit::Auditor>>,
}

/// A started API server.
pub struct Running {
    pub url: String,
    pub kubeconfig: PathBuf,
    pub addr: SocketAddr,
    /// The default join token for other nodes (`K10...::<id>.<secret>`), also in
    /// [`Running::join_token_file`]; `None` once it was deleted or has expired.
    pub join_token: Option<String>,
    pub join_token_file: PathBuf,
    /// What another `skiff server` on the same store joins with (`--token`).
    pub server_token: String,
    pub server_token_file: PathBuf,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Serves until the listener fails or [`Running::shutdown`] is called.
    pub async fn wait(self) -> Result<()> {
        self.task.await.context("server task panicked")??;
        Ok(())
    }

    /// A handle that stops the server gracefully from elsewhere.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.handle.clone())
    }
}

#[derive(Clone)]
pub struct Stopper(axum_server::Handle<SocketAddr>);

impl Stopper {
    pub fn stop(&self) {
        self.0.graceful_shutdown(Some(Duration::from_secs(1)));
    }
}

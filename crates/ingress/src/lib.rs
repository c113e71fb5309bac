//! The ingress component: an HTTP/1.1 and HTTP/2 reverse proxy on hyper and
//! rustls for the Ingresses of the IngressClass `skiff` (issue #19).
//!
//! Start at [`run`]. [`watch`] follows Ingresses, IngressClasses, Services,
//! EndpointSlices and Secrets and swaps in a new [`routes::RouteTable`] (built by
//! the pure [`routes::build()`]) and certificate set ([`tls`]) after each change;
//! [`proxy`] serves requests from the snapshot it loads. [`publish`] keeps the
//! `kube-system/skiff-ingress` LoadBalancer Service and this node's
//! EndpointSlice of it, and [`status`] writes that Service's address into each
//! served Ingress. ingress-nginx's annotations are read in [`annotations`].

pub mod access;
pub mod affinity;
pub mod annotations;
pub mod class;
mod events;
mod forward;
pub mod metrics;
mod pool;
pub mod proxy;
pub mod publish;
pub mod routes;
mod settings;
pub mod state;
pub mod status;
pub mod tls;
mod upstream;
pub mod watch;

pub use settings::IngressSettings;

/// Errors that stop the ingress component.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the default certificate: {0}")]
    Certificate(String),
    #[error("the watches on the cluster ended")]
    WatchEnded,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the ingress component until an error stops it.
pub async fn run(client: kube::Client, settings: IngressSettings) -> Result<()> {
    let r = state::run(client, settings).await;
    if let Err(e) = &r {
        // Said here too: the caller may not watch the task's result.
        tracing::error!(error = %e, "ingress stopped");
    }
    r
}

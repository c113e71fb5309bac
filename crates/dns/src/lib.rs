//! Cluster DNS: the Kubernetes DNS specification (schema 1.1.0) served from an
//! in-memory index that kube-rs reflectors on Services and EndpointSlices keep
//! current, over UDP (one SO_REUSEPORT socket per core) and TCP, with names
//! outside the cluster zone forwarded to the node's resolvers.
//!
//! The path of a query: [`request::handle`] decodes it, [`qname::parse`] says
//! what the name asks for, [`answer::answer`] reads the [`index::Index`], and
//! the response is encoded with EDNS0 and truncation. See `docs/dns.md`.

pub mod answer;
mod cache;
pub mod index;
mod metrics;
pub mod qname;
pub mod request;
mod server;
mod settings;
mod sources;
mod upstream;
mod watch;

pub use settings::{parse_upstream, DnsSettings};

/// Errors that stop the DNS component.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the DNS component until an error stops it: listeners, reflectors,
/// the kube-dns EndpointSlice for this node, metrics and health.
pub async fn run(client: kube::Client, settings: DnsSettings) -> Result<()> {
    let r = server::run(client, settings).await;
    if let Err(e) = &r {
        // Said here too: the caller may not watch the task's result.
        tracing::error!(error = %e, "dns stopped");
    }
    r
}

/// Serves a fixed index with no API server: for benchmarks and tools.
pub async fn serve_index(index: index::Index, settings: DnsSettings) -> Result<()> {
    server::serve_index(index, settings).await
}

//! What the ingress component is told by the process that runs it.

use std::net::IpAddr;

/// Where the ingress listens and who it is.
#[derive(Debug, Clone)]
pub struct IngressSettings {
    /// This node's name (its EndpointSlice of `kube-system/skiff-ingress`).
    pub node_name: String,
    /// The address to listen on and to list in the EndpointSlice; `None`: the
    /// Node's `InternalIP`, once the node agent has registered it.
    pub node_ip: Option<IpAddr>,
    /// Plain HTTP (and h2c) port.
    pub http_port: u16,
    /// HTTPS port (HTTP/1.1 and HTTP/2 by ALPN).
    pub https_port: u16,
    /// Prometheus metrics (`/metrics`) port, on the same address.
    pub metrics_port: u16,
    /// Proxy threads, each with its own event loop and listeners (nginx's
    /// `worker_processes`); by default one per core.
    pub workers: usize,
}

impl IngressSettings {
    pub fn new(node_name: &str) -> Self {
        IngressSettings {
            node_name: node_name.into(),
            node_ip: None,
            http_port: 80,
            https_port: 443,
            metrics_port: 10254,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

//! The proxier's Prometheus metrics. Create one [`Metrics`], register it where
//! the process exposes metrics, and hand a clone to [`crate::ProxySettings`].

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Time to generate and apply one transaction.
    pub sync_duration: Histogram,
    pub full_syncs: Counter,
    pub failed_syncs: Counter,
    /// Generated chains and map/set elements in the table.
    pub chains: Gauge,
    pub elements: Gauge,
    /// From an EndpointSlice's `last-change-trigger-time` to its rules being live,
    /// upstream's network programming SLI.
    pub network_programming_duration: Histogram,
    /// Load-balancer addresses this node holds on `lo` (answers ARP for).
    pub load_balancer_ips_held: Gauge,
    /// Load-balancer Leases this node created or took over (see [`crate::election`]).
    pub lease_acquisitions: Counter,
    /// Load-balancer Lease calls that failed (other than losing a race).
    pub lease_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            sync_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            full_syncs: Counter::default(),
            failed_syncs: Counter::default(),
            chains: Gauge::default(),
            elements: Gauge::default(),
            network_programming_duration: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            load_balancer_ips_held: Gauge::default(),
            lease_acquisitions: Counter::default(),
            lease_errors: Counter::default(),
        }
    }
}

impl Metrics {
    /// Registers under `skiff_proxy_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("skiff_proxy");
        r.register(
            "sync_duration_seconds",
            "Time to generate and apply one nft transaction",
            self.sync_duration.clone(),
        );
        r.register(
            "full_syncs",
            "Full resyncs of the table",
            self.full_syncs.clone(),
        );
        r.register(
            "failed_syncs",
            "nft transactions that failed",
            self.failed_syncs.clone(),
        );
        r.register(
            "chains",
            "Generated chains in the table",
            self.chains.clone(),
        );
        r.register(
            "elements",
            "Map and set elements in the table",
            self.elements.clone(),
        );
        r.register(
            "network_programming_duration_seconds",
            "From an endpoints change (last-change-trigger-time) to its rules being live",
            self.network_programming_duration.clone(),
        );
        r.register(
            "load_balancer_ips_held",
            "Load-balancer addresses this node holds and answers ARP for",
            self.load_balancer_ips_held.clone(),
        );
        r.register(
            "load_balancer_lease_acquisitions",
            "Load-balancer address Leases this node created or took over",
            self.lease_acquisitions.clone(),
        );
        r.register(
            "load_balancer_lease_errors",
            "Load-balancer address Lease calls that failed",
            self.lease_errors.clone(),
        );
    }
}

/// Serves `GET /metrics` (Prometheus text format) on `addr` until the task is
/// dropped. Deliberately tiny: one response per connection, no HTTP stack.
pub async fn serve(addr: std::net::SocketAddr, registry: Registry) -> crate::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::Error::Spawn {
            cmd: format!("metrics listener on {addr}"),
            source,
        })?;
    let registry = std::sync::Arc::new(registry);
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let mut body = String::new();
            let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
        });
    }
}

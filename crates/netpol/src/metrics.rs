//! The enforcer's Prometheus metrics, served on their own loopback port
//! (`127.0.0.1:9091` by default, as Calico's Felix does). Denied packets and
//! bytes per policy come from the table's named counters, read from `nft` at
//! each scrape, so the kernel's hot path carries no extra work for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ruleset::Table;

/// `namespace`, `policy`, `direction`.
pub type PolicyLabels = Vec<(String, String)>;

/// One table counter as last read: its labels and values, to turn readings
/// into increments (a counter recreated by a full resync starts from zero).
#[derive(Debug, Clone)]
struct Tracked {
    labels: PolicyLabels,
    packets: u64,
    bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Time to generate and apply one transaction.
    pub sync_duration: Histogram,
    pub full_syncs: Counter,
    pub failed_syncs: Counter,
    pub policies: Gauge,
    /// Local pods isolated in at least one direction.
    pub isolated_pods: Gauge,
    /// Set and map elements in the table.
    pub elements: Gauge,
    pub denied_packets: Family<PolicyLabels, Counter>,
    pub denied_bytes: Family<PolicyLabels, Counter>,
    tracked: Arc<Mutex<HashMap<String, Tracked>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            sync_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            full_syncs: Counter::default(),
            failed_syncs: Counter::default(),
            policies: Gauge::default(),
            isolated_pods: Gauge::default(),
            elements: Gauge::default(),
            denied_packets: Family::default(),
            denied_bytes: Family::default(),
            tracked: Arc::default(),
        }
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Registers under `skiff_netpol_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("skiff_netpol");
        r.register(
            "sync_duration_seconds",
            "Time to generate and apply one nft transaction",
            self.sync_duration.clone(),
        );
        r.register(
            "full_syncs",
            "Full loads of the table",
            self.full_syncs.clone(),
        );
        r.register(
            "failed_syncs",
            "nft transactions that failed",
            self.failed_syncs.clone(),
        );
        r.register(
            "policies",
            "NetworkPolicies in the cluster",
            self.policies.clone(),
        );
        r.register(
            "isolated_pods",
            "Pods on this node isolated by at least one policy",
            self.isolated_pods.clone(),
        );
        r.register(
            "elements",
            "Set and map elements in the table",
            self.elements.clone(),
        );
        r.register(
            "denied_packets",
            "Packets dropped because no policy selecting the pod allowed them",
            self.denied_packets.clone(),
        );
        r.register(
            "denied_bytes",
            "Bytes dropped because no policy selecting the pod allowed them",
            self.denied_bytes.clone(),
        );
    }

    /// After a sync: the table's counters are the ones to report.
    pub(crate) fn track(&self, table: &Table, policies: usize) {
        self.policies.set(gauge(policies));
        self.isolated_pods.set(gauge(table.isolated_pods()));
        self.elements.set(gauge(table.elements.len()));
        let Ok(mut tracked) = self.tracked.lock() else {
            return;
        };
        tracked.retain(|name, t| {
            let keep = table.counters.contains_key(name);
            if !keep {
                self.denied_packets.remove(&t.labels);
                self.denied_bytes.remove(&t.labels);
            }
            keep
        });
        for (name, info) in &table.counters {
            tracked.entry(name.clone()).or_insert_with(|| Tracked {
                labels: vec![
                    ("namespace".into(), info.namespace.clone()),
                    ("policy".into(), info.policy.clone()),
                    ("direction".into(), info.direction.label().into()),
                ],
                packets: 0,
                bytes: 0,
            });
        }
    }

    /// Folds a reading of the table's counters into the metric families.
    pub fn observe_counters(&self, readings: &HashMap<String, (u64, u64)>) {
        let Ok(mut tracked) = self.tracked.lock() else {
            return;
        };
        for (name, t) in tracked.iter_mut() {
            let Some(&(packets, bytes)) = readings.get(name) else {
                continue;
            };
            let delta = |now: u64, before: u64| if now >= before { now - before } else { now };
            self.denied_packets
                .get_or_create(&t.labels)
                .inc_by(delta(packets, t.packets));
            self.denied_bytes
                .get_or_create(&t.labels)
                .inc_by(delta(bytes, t.bytes));
            t.packets = packets;
            t.bytes = bytes;
        }
    }

    /// Reads the kernel's counters and folds them in (before each scrape).
    pub async fn refresh(&self) {
        match crate::net::read_counters().await {
            Ok(readings) => self.observe_counters(&readings),
            Err(e) => tracing::debug!(error = %e, "netpol: counters not readable"),
        }
    }
}

/// Serves `GET /metrics` (Prometheus text format) on `addr` until the task is
/// dropped, refreshing the denied-packet counters first. Deliberately tiny:
/// one response per connection, no HTTP stack.
pub async fn serve(addr: std::net::SocketAddr, metrics: Metrics) -> crate::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::Error::Spawn {
            cmd: format!("metrics listener on {addr}"),
            source,
        })?;
    let registry = Arc::new(registry);
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let (registry, metrics) = (registry.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            metrics.refresh().await;
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

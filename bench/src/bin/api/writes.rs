//! Create throughput: Services POSTed through the API server by concurrent clients,
//! against the same number of creates straight into a fresh `SqliteBackend`.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;
use skiff_bench::client::{Conn, Proto, Server};
use skiff_bench::stats::Samples;
use skiff_store::{Backend, SqliteBackend};

use crate::{key, name, NAMESPACE};

#[derive(Default)]
pub struct Creates {
    pub count: usize,
    pub elapsed: Duration,
    pub latency: Samples,
    /// The rate of each round, in order, to pair with the other side's.
    pub round_rates: Vec<f64>,
}

impl Creates {
    /// Counts one round of `count` creates that took `elapsed` (latencies apart).
    pub fn add_round(&mut self, count: usize, elapsed: Duration) {
        self.elapsed += elapsed;
        self.count += count;
        self.round_rates.push(count as f64 / elapsed.as_secs_f64());
    }

    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    /// The median over rounds of this side's rate divided by `floor`'s in the same
    /// round: neighbours in time share the machine's mood, so this is the steadiest
    /// ratio a noisy disk allows.
    pub fn paired_ratio(&self, floor: &Creates) -> Option<f64> {
        let mut r: Vec<f64> = self
            .round_rates
            .iter()
            .zip(&floor.round_rates)
            .map(|(a, b)| a / b)
            .filter(|r| r.is_finite())
            .collect();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied()
    }
}

/// A small ClusterIP-less Service, about the size `kubectl expose` makes.
pub fn service(i: usize) -> Bytes {
    let n = name(i);
    Bytes::from(
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": n, "labels": {"app": n, "bench": "api"}},
            "spec": {
                "selector": {"app": n},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            },
        })
        .to_string(),
    )
}

pub async fn create_namespace(server: &Server, proto: Proto) -> Result<()> {
    let mut conn = server.connect(proto).await?;
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    conn.expect(
        StatusCode::CREATED,
        Method::POST,
        "/api/v1/namespaces",
        Some("application/json"),
        Bytes::from(body.to_string()),
    )
    .await?;
    Ok(())
}

/// Creates are interleaved with the floor in rounds of this many: fsync latency on a
/// shared VM swings tenfold within seconds, and short alternating rounds make such
/// swings hit both sides alike.
pub const PER_ROUND: usize = 250;

/// The ranges of indices, one per round, covering `0..n`.
pub fn rounds(n: usize) -> impl Iterator<Item = Range<usize>> {
    (0..n)
        .step_by(PER_ROUND)
        .map(move |s| s..(s + PER_ROUND).min(n))
}

/// The API side: `clients` connections, each sending one request at a time (like
/// `clients` independent controllers), indices handed out from one counter.
pub struct ApiCreator {
    conns: Vec<Conn>,
    path: String,
}

impl ApiCreator {
    pub async fn connect(server: &Server, proto: Proto, clients: usize) -> Result<Self> {
        let path = format!("/api/v1/namespaces/{NAMESPACE}/services");
        Self::connect_to(server, proto, clients, path).await
    }

    /// Creators that POST to the collection at `path`.
    pub async fn connect_to(
        server: &Server,
        proto: Proto,
        clients: usize,
        path: String,
    ) -> Result<Self> {
        let mut conns = Vec::with_capacity(clients);
        for _ in 0..clients.max(1) {
            conns.push(server.connect(proto).await?);
        }
        Ok(ApiCreator { conns, path })
    }

    /// Creates the Services numbered `range`, adding to `total`.
    pub async fn create(&mut self, range: Range<usize>, total: &mut Creates) -> Result<()> {
        // Bodies are made up front so the clock measures the server, not serde_json.
        self.create_bodies(range.map(service).collect(), total)
            .await
    }

    /// POSTs every one of `bodies` (one round), adding to `total`.
    pub async fn create_bodies(&mut self, bodies: Vec<Bytes>, total: &mut Creates) -> Result<()> {
        let count = bodies.len();
        let bodies = Arc::new(bodies);
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(self.conns.len());
        for mut conn in self.conns.drain(..) {
            let (next, bodies, path) = (next.clone(), bodies.clone(), self.path.clone());
            tasks.push(tokio::spawn(async move {
                let mut latency = Samples::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let t = Instant::now();
                    conn.expect(
                        StatusCode::CREATED,
                        Method::POST,
                        &path,
                        Some("application/json"),
                        body.clone(),
                    )
                    .await?;
                    latency.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>((conn, latency))
            }));
        }
        for t in tasks {
            let (conn, latency) = t.await.context("create client panicked")??;
            self.conns.push(conn);
            total.latency.extend(latency);
        }
        let elapsed = started.elapsed();
        total.add_round(count, elapsed);
        Ok(())
    }
}

/// The floor: the same creates of `value` (the bytes the API server stored for one of
/// its Services) on `threads` threads calling `Backend::create` directly, so each is a
/// durable SQLite transaction exactly as behind the API, minus the API.
pub async fn raw(
    store: Arc<SqliteBackend>,
    value: Bytes,
    range: Range<usize>,
    threads: usize,
    total: &mut Creates,
) -> Result<()> {
    direct(store, value, range.map(key).collect(), threads, total).await
}

/// `Backend::create` of `value` at each of `keys` (one round) on `threads` threads,
/// adding to `total`: the raw-store floor, or a store's own cost without the API.
pub async fn direct(
    store: Arc<dyn Backend>,
    value: Bytes,
    keys: Vec<String>,
    threads: usize,
    total: &mut Creates,
) -> Result<()> {
    let (elapsed, latency) = tokio::task::spawn_blocking(move || {
        let next = AtomicUsize::new(0);
        let all = Mutex::new(Samples::with_capacity(keys.len()));
        let started = Instant::now();
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    s.spawn(|| {
                        let mut latency = Samples::default();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(k) = keys.get(i) else { break };
                            let t = Instant::now();
                            store.create(k, &value)?;
                            latency.push(t.elapsed());
                        }
                        all.lock()
                            .map_err(|_| anyhow::anyhow!("a raw writer panicked"))?
                            .extend(latency);
                        Ok::<_, anyhow::Error>(())
                    })
                })
                .collect();
            for w in workers {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a raw writer panicked"))??;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        let elapsed = started.elapsed();
        let latency = all
            .into_inner()
            .map_err(|_| anyhow::anyhow!("a raw writer panicked"))?;
        Ok::<_, anyhow::Error>((elapsed, latency))
    })
    .await??;
    total.add_round(latency.len(), elapsed);
    total.latency.extend(latency);
    Ok(())
}

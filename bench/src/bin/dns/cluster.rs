//! skiff's side: the real API server in-process on a fresh SQLite store, skiff's DNS
//! fed by it through kube-rs reflectors (exactly as `skiff server` wires it), and
//! the records written through the API.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;
use skiff_apiserver::server::Stopper;
use skiff_bench::client::{Proto, Server};
use skiff_store::{Backend, SqliteBackend};

use crate::records::{Records, ZONE};
use crate::wire;

/// The running API server and what reaches it.
pub struct Api {
    pub server: Server,
    pub kubeconfig: std::path::PathBuf,
    stopper: Stopper,
}

impl Api {
    pub fn stop(&self) {
        self.stopper.stop();
    }
}

/// Starts the API server on `127.0.0.1:<free port>` with its store in `data_dir`.
pub async fn start_api(data_dir: &Path) -> Result<Api> {
    let store = Arc::new(SqliteBackend::open(data_dir.join("state.db"))?);
    let config = skiff_apiserver::Config {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: data_dir.to_path_buf(),
        compact_interval: Duration::from_secs(24 * 3600),
        compact_keep: i64::MAX / 2,
        services: Default::default(),
        admission: Default::default(),
        tls_sans: Vec::new(),
        audit: None,
    };
    let backend: Arc<dyn Backend> = store;
    let running = skiff_apiserver::start(config, backend).await?;
    let server = Server::new(running.addr, data_dir)?;
    Ok(Api {
        server,
        kubeconfig: running.kubeconfig.clone(),
        stopper: running.stopper(),
    })
}

/// Runs skiff's DNS component, fed by the API server, until it fails. Listens on
/// `listen` (UDP, one socket per core, and TCP), metrics on port 9153 of the same
/// address; forwards nowhere (the mix has no outside names).
pub async fn run_dns(kubeconfig: std::path::PathBuf, listen: SocketAddr) -> Result<()> {
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let mut settings =
        skiff_dns::DnsSettings::new(ZONE, "10.96.0.10".parse()?, "10.244.0.0/16", "bench");
    settings.listen = listen;
    settings.metrics_listen = SocketAddr::new(listen.ip(), 9153);
    // No kube-dns EndpointSlice: there is no proxy to lead anyone to it.
    settings.endpoint_ip = None;
    // Nothing listens there; nothing in the mix is forwarded anyway.
    settings.upstreams = vec![SocketAddr::from(([127, 0, 0, 9], 53))];
    Ok(skiff_dns::run(client, settings).await?)
}

/// Creates the namespaces, then every Service and EndpointSlice of `records`
/// over `conns` connections at once.
pub async fn populate(
    server: &Server,
    records: &Records,
    extra_ns: &[&str],
    conns: usize,
) -> Result<()> {
    let mut conn = server.connect(Proto::Http2).await?;
    let namespaces = records
        .namespaces()
        .chain(extra_ns.iter().map(|s| s.to_string()));
    for ns in namespaces {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        conn.expect(
            StatusCode::CREATED,
            Method::POST,
            "/api/v1/namespaces",
            Some("application/json"),
            Bytes::from(body.to_string()),
        )
        .await?;
    }
    let objects = Arc::new(records.api_objects());
    let mut tasks = Vec::new();
    for c in 0..conns.max(1) {
        let mut conn = server.connect(Proto::Http2).await?;
        let objects = objects.clone();
        tasks.push(tokio::spawn(async move {
            for (path, obj) in objects.iter().skip(c).step_by(conns.max(1)) {
                conn.expect(
                    StatusCode::CREATED,
                    Method::POST,
                    path,
                    Some("application/json"),
                    Bytes::from(obj.to_string()),
                )
                .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await.context("a create task panicked")??;
    }
    Ok(())
}

/// Waits until the DNS server at `addr` answers `name` with `count` addresses.
pub async fn wait_for(addr: SocketAddr, name: &str, count: usize) -> Result<()> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(addr).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut buf = vec![0u8; 4096];
    for id in 0u16.. {
        sock.send(&wire::query_a(id, name)).await?;
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf)).await
        {
            if wire::parse(&buf[..n]).is_some_and(|a| a.id == id && a.addrs.len() == count) {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "skiff's DNS at {addr} did not answer {name} with {count} addresses within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

//! The component's start: the IngressClass, the Service and this node's
//! EndpointSlice, the watches, the status writer, the listeners and metrics.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tokio::net::{TcpListener, TcpSocket};

use crate::events::Recorder;
use crate::metrics::{Metrics, RouteMetrics};
use crate::routes::RouteTable;
use crate::{class, proxy, publish, status, tls, watch};
use crate::{Error, IngressSettings, Result};

/// What every request reads.
pub struct Shared {
    pub table: ArcSwap<RouteTable>,
    pub certs: Arc<tls::Resolver>,
    pub metrics: Arc<Metrics>,
    /// The series of requests no route took (empty labels).
    pub unrouted: RouteMetrics,
    /// Where redirects to HTTPS point.
    pub https_port: u16,
    /// Bumped after each new table (see [`Shared::swap_table`]).
    pub table_changes: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// An empty table, the default certificate only, new backend clients.
    pub fn new(https_port: u16) -> Result<Self> {
        let default_cert = tls::default_certificate().map_err(Error::Certificate)?;
        Ok(Shared {
            table: ArcSwap::from_pointee(RouteTable::default()),
            certs: Arc::new(tls::Resolver::new(default_cert)),
            metrics: Arc::new(Metrics::new()),
            unrouted: RouteMetrics::new("", "", ""),
            https_port,
            table_changes: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Puts `table` in service and tells the requests waiting on endpoints.
    pub fn swap_table(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
        self.table_changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The TLS acceptor choosing certificates from [`Shared::certs`].
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(self.certs.clone())))
    }
}

/// Retries `f` with backoff until it succeeds (the API server may still be
/// starting, or our role not yet bootstrapped).
async fn until_ok<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %e, "ingress: {what}; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The Node's `InternalIP`, once its agent has registered it.
async fn node_ip(client: &kube::Client, node: &str) -> IpAddr {
    let api: Api<Node> = Api::all(client.clone());
    loop {
        if let Ok(Some(n)) = api.get_opt(node).await {
            let ip = n
                .status
                .and_then(|s| s.addresses)
                .into_iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")
                .and_then(|a| a.address.parse().ok());
            if let Some(ip) = ip {
                return ip;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Binds `addr`, waiting while the address is not on the node yet (the
/// agent may still be bringing up the interface that holds it).
async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    bind_socket(addr, false).await
}

/// Backlog of each proxy listener (nginx's default on Linux is 511; a burst
/// of new connections under load should wait, not be refused).
const LISTEN_BACKLOG: u32 = 4096;

/// [`bind`], with `SO_REUSEPORT` when `reuse_port`: each proxy thread then
/// has a listener of its own on the same address, and the kernel spreads new
/// connections over them (nginx's `listen ... reuseport`).
async fn bind_socket(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener> {
    let listen = || -> std::io::Result<TcpListener> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // As TcpListener::bind: a restarted server binds while the old
        // connections are in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        if reuse_port {
            socket.set_reuseport(true)?;
        }
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    let mut tries = 0;
    loop {
        match listen() {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable && tries < 120 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(source) => return Err(Error::Listen { addr, source }),
        }
    }
}

/// The plain and TLS listeners of one proxy thread.
struct Listeners {
    http: TcpListener,
    https: TcpListener,
}

/// One pair of listeners per proxy thread, all on the same two addresses.
async fn bind_proxy(ip: IpAddr, settings: &IngressSettings) -> Result<Vec<Listeners>> {
    let workers = settings.workers.max(1);
    let http = bind_group(SocketAddr::new(ip, settings.http_port), workers).await?;
    let https = bind_group(SocketAddr::new(ip, settings.https_port), workers).await?;
    Ok(http
        .into_iter()
        .zip(https)
        .map(|(http, https)| Listeners { http, https })
        .collect())
}

/// `n` listeners on `addr`. The address is first bound once without
/// `SO_REUSEPORT`: a port another process holds is then refused ("address in
/// use") as with one listener, rather than silently shared, and port 0 picks
/// one port for the whole group.
async fn bind_group(addr: SocketAddr, n: usize) -> Result<Vec<TcpListener>> {
    let probe = bind(addr).await?;
    if n <= 1 {
        return Ok(vec![probe]);
    }
    let addr = probe
        .local_addr()
        .map_err(|source| Error::Listen { addr, source })?;
    drop(probe);
    let mut group = Vec::with_capacity(n);
    for _ in 0..n {
        group.push(bind_socket(addr, true).await?);
    }
    Ok(group)
}

/// Serves one pair of listeners on a thread of its own with a single-threaded
/// runtime, as an nginx worker is one event loop: a request, its backend
/// connection's task and the response then never cross threads, where the
/// shared multi-threaded runtime woke another worker for each hop (bench/ingress:
/// context switches were the server threads' largest cost). There is one such
/// thread per core, as nginx's `worker_processes auto`.
fn spawn_proxy(
    index: usize,
    listeners: Listeners,
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
) -> Result<()> {
    let addr = |l: &TcpListener| {
        l.local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    };
    let (http_addr, https_addr) = (addr(&listeners.http), addr(&listeners.https));
    let http_std = listeners.http.into_std().map_err(|source| Error::Listen {
        addr: http_addr,
        source,
    })?;
    let https_std = listeners.https.into_std().map_err(|source| Error::Listen {
        addr: https_addr,
        source,
    })?;
    std::thread::Builder::new()
        .name(format!("ingress-proxy-{index}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "ingress proxy runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let (http, https) = match (
                    TcpListener::from_std(http_std),
                    TcpListener::from_std(https_std),
                ) {
                    (Ok(h), Ok(s)) => (h, s),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::error!(error = %e, "ingress listeners");
                        return;
                    }
                };
                let worker = proxy::Worker::new(shared);
                tokio::join!(
                    proxy::serve_plain(http, worker.clone()),
                    proxy::serve_tls(https, worker, acceptor)
                );
            });
        })
        .map_err(|source| Error::Listen {
            addr: http_addr,
            source,
        })?;
    Ok(())
}

pub async fn run(client: kube::Client, settings: IngressSettings) -> Result<()> {
    let shared = Arc::new(Shared::new(settings.https_port)?);
    until_ok("creating the IngressClass", || {
        class::ensure(client.clone())
    })
    .await;
    let ip = match settings.node_ip {
        Some(ip) => ip,
        None => node_ip(&client, &settings.node_name).await,
    };
    let proxy_listeners = bind_proxy(ip, &settings).await?;
    let metrics_listener = bind(SocketAddr::new(ip, settings.metrics_port)).await?;
    let acceptor = shared.acceptor();
    let publication = publish::Publication {
        node: settings.node_name.clone(),
        ip,
        http_port: settings.http_port,
        https_port: settings.https_port,
    };
    let (status_tx, status_rx) = tokio::sync::watch::channel(Default::default());
    tokio::spawn(status::write(client.clone(), status_rx));
    tokio::spawn(crate::metrics::serve(
        metrics_listener,
        shared.metrics.clone(),
    ));
    let workers = proxy_listeners.len();
    for (index, listeners) in proxy_listeners.into_iter().enumerate() {
        spawn_proxy(index, listeners, shared.clone(), acceptor.clone())?;
    }
    tracing::info!(
        address = %ip,
        http = settings.http_port,
        https = settings.https_port,
        metrics = settings.metrics_port,
        workers,
        "ingress listening"
    );
    let recorder = Recorder::new(client.clone(), &settings.node_name);
    watch::keep_current(client, shared, recorder, status_tx, publication).await;
    Err(Error::WatchEnded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_group_shares_one_port_and_a_taken_port_is_refused() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let group = bind_group(any, 3).await.expect("group");
        let ports: Vec<u16> = group
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0), "{ports:?}");
        // A second group on the taken port fails as a single listener would.
        let taken = SocketAddr::from(([127, 0, 0, 1], ports[0]));
        match bind_group(taken, 2).await {
            Err(Error::Listen { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse)
            }
            other => panic!("bound a taken port: {:?}", other.map(|g| g.len())),
        }
    }
}

//! Sockets: one UDP socket per core bound with SO_REUSEPORT (the kernel
//! spreads clients across them), each served by its own thread with blocking
//! reads; one TCP listener, the metrics port, and the tasks that keep the
//! index current, on the async runtime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use hickory_proto::op::ResponseCode;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cache::{Meta, ResponseCache};
use crate::index::{Index, Zone};
use crate::metrics::{Batch, Metrics};
use crate::request::{handle, Reply, Transport};
use crate::settings::DnsSettings;
use crate::{upstream, Error, Result};

/// An idle TCP connection is closed after this long (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections served at once; more wait in the accept queue.
const TCP_MAX: usize = 1024;
/// A UDP thread with nothing to read wakes this often, to hand its metrics
/// over and to notice it should stop.
const UDP_IDLE_TICK: Duration = Duration::from_millis(50);
/// A busy UDP thread hands its metrics over after this many requests.
const UDP_METRICS_BATCH: usize = 256;

/// What every socket task shares.
struct Shared {
    /// The cluster zone (lowercase), for decisions made without an index.
    zone: String,
    index: Arc<ArcSwapOption<Index>>,
    metrics: Arc<Metrics>,
    forwarder: upstream::Forwarder,
    recursion_allowed: Vec<(std::net::IpAddr, u8)>,
}

/// The bound sockets and what the serving tasks share.
struct Bound {
    udp: Vec<std::net::UdpSocket>,
    tcp: TcpListener,
    http: TcpListener,
    shared: Arc<Shared>,
}

async fn bind_all(settings: &DnsSettings) -> Result<Bound> {
    let workers = match settings.udp_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut udp = Vec::with_capacity(workers);
    for _ in 0..workers {
        udp.push(udp_socket(settings.listen)?);
    }
    // A wildcard socket answers from whatever source the reply's route picks: a
    // query another node's pod sent (DNATed to this node's endpoint address)
    // would be answered from this node's LAN address, which that node's
    // conntrack does not recognise. A socket bound to the endpoint address (the
    // most specific bind wins) answers from it; free-bind, since the address
    // may reach its bridge a moment after this.
    if settings.listen.ip().is_unspecified() {
        if let Some(ip) = settings.endpoint_ip {
            let addr = SocketAddr::new(ip, settings.listen.port());
            udp.push(endpoint_udp_socket(addr)?);
        }
    }
    let tcp = tcp_listener(settings.listen)?;
    let http = TcpListener::bind(settings.metrics_listen)
        .await
        .map_err(|source| Error::Listen {
            addr: settings.metrics_listen,
            source,
        })?;
    let upstreams = if settings.upstreams.is_empty() {
        let mut avoid = vec![settings.cluster_dns];
        avoid.extend(settings.endpoint_ip);
        if !settings.listen.ip().is_unspecified() {
            avoid.push(settings.listen.ip());
        }
        upstream::from_resolv_conf(&avoid)
    } else {
        settings.upstreams.clone()
    };
    tracing::info!(listen = %settings.listen, udp_sockets = workers, ?upstreams, zone = %settings.zone, "dns serving");
    let shared = Arc::new(Shared {
        zone: settings.zone.clone(),
        index: Arc::new(ArcSwapOption::empty()),
        metrics: Metrics::new(),
        forwarder: upstream::Forwarder::new(upstreams),
        recursion_allowed: settings.recursion_allowed.clone(),
    });
    Ok(Bound {
        udp,
        tcp,
        http,
        shared,
    })
}

impl Shared {
    /// A SERVFAIL given only because no index exists yet, for a name outside
    /// the zone: that one need not wait for the cluster, it is forwarded.
    fn outside_before_sync(&self, rcode: ResponseCode, lower: &str) -> bool {
        rcode == ResponseCode::ServFail
            && !lower.is_empty()
            && crate::qname::parse(lower, &self.zone) == crate::qname::Qname::Outside
    }
}

pub async fn run(client: kube::Client, settings: DnsSettings) -> Result<()> {
    let bound = bind_all(&settings).await?;
    let zone = Zone {
        domain: settings.zone.clone(),
        ttl: settings.ttl,
        dns_ip: settings.cluster_dns,
    };
    tokio::spawn(crate::watch::keep_current(
        client.clone(),
        zone,
        bound.shared.index.clone(),
        bound.shared.metrics.clone(),
    ));
    if let Some(ip) = settings.endpoint_ip {
        tokio::spawn(crate::watch::publish_kube_dns(
            client,
            settings.node_name.clone(),
            ip,
        ));
    }
    serve(bound).await
}

/// Serves a fixed index (benchmarks, tools): no API server involved.
pub async fn serve_index(index: Index, settings: DnsSettings) -> Result<()> {
    let bound = bind_all(&settings).await?;
    bound.shared.index.store(Some(Arc::new(index)));
    bound
        .shared
        .metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    serve(bound).await
}

/// Tells the UDP threads to stop when the serving future ends or is dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn serve(bound: Bound) -> Result<()> {
    let Bound {
        udp,
        tcp,
        http,
        shared,
    } = bound;
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let rt = tokio::runtime::Handle::current();
    for (i, sock) in udp.into_iter().enumerate() {
        let (shared, rt, stop, ended_tx) =
            (shared.clone(), rt.clone(), stop.0.clone(), ended_tx.clone());
        std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || {
                let r = serve_udp(Arc::new(sock), &shared, &rt, &stop);
                let _ = ended_tx.send(r);
            })?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(serve_tcp(tcp, shared.clone()));
    tasks.spawn(crate::metrics::serve(http, shared.metrics.clone()));
    // Everything runs forever; the first to end ends the component.
    tokio::select! {
        r = tasks.join_next() => match r {
            Some(Ok(Err(e))) => Err(e.into()),
            Some(Err(e)) => Err(std::io::Error::other(e).into()),
            _ => Ok(()),
        },
        Some(r) = ended.recv() => Ok(r?),
    }
}

/// A UDP socket in blocking mode, for a thread of its own.
fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    let sock = bind(addr, Type::DGRAM, Protocol::UDP)
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
        .map_err(|source| Error::Listen { addr, source })?;
    Ok(sock.into())
}

fn endpoint_udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .and_then(|s| {
            match addr {
                SocketAddr::V4(_) => s.set_freebind_v4(true)?,
                SocketAddr::V6(_) => s.set_freebind_v6(true)?,
            }
            s.set_reuse_address(true)?;
            s.bind(&addr.into())?;
            Ok(s)
        })
        .map_err(|source| Error::Listen { addr, source })?;
    Ok(sock.into())
}

fn tcp_listener(addr: SocketAddr) -> Result<TcpListener> {
    let sock =
        bind(addr, Type::STREAM, Protocol::TCP).map_err(|source| Error::Listen { addr, source })?;
    sock.listen(1024)
        .map_err(|source| Error::Listen { addr, source })?;
    TcpListener::from_std(sock.into()).map_err(|source| Error::Listen { addr, source })
}

fn bind(addr: SocketAddr, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    // REUSEPORT: one socket per core in the same group; also lets a resolver
    // bound to a specific address on port 53 (with REUSEPORT) coexist.
    sock.set_reuse_port(true)?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(sock)
}

/// Serves one UDP socket on the calling thread until it fails or `stop` is
/// set. A thread of its own, reading with blocking calls, costs two system
/// calls a query and no wake-ups through the async runtime; forwarding, which
/// waits on an upstream, goes to the runtime.
fn serve_udp(
    sock: Arc<std::net::UdpSocket>,
    shared: &Arc<Shared>,
    rt: &tokio::runtime::Handle,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    sock.set_read_timeout(Some(UDP_IDLE_TICK))?;
    let mut buf = vec![0u8; 65535];
    let mut lower = String::with_capacity(256);
    let mut cache = ResponseCache::default();
    let mut out = Vec::with_capacity(usize::from(crate::request::EDNS_PAYLOAD));
    let mut batch = Batch::default();
    loop {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                shared.metrics.flush(&mut batch);
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                continue;
            }
            // ICMP errors from earlier sends surface here on some kernels: keep serving.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            // A signal (a child's SIGCHLD, say) landed on this thread mid-read.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if batch.len() >= UDP_METRICS_BATCH {
            shared.metrics.flush(&mut batch);
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
        let start = Instant::now();
        let packet = &buf[..n];
        let index = shared.index.load();
        if let Some(ix) = index.as_deref() {
            cache.check_generation(ix.serial);
            if let Some(meta) = cache.get(packet, &mut out) {
                let _ = sock.send_to(&out, peer);
                batch.observe(
                    Transport::Udp,
                    Some(meta.qtype),
                    meta.rcode,
                    start.elapsed(),
                );
                continue;
            }
        }
        let mut h = handle(index.as_deref(), packet, Transport::Udp, &mut lower);
        if index.is_none() && shared.outside_before_sync(h.rcode, &lower) {
            h.reply = Reply::Forward;
        }
        match h.reply {
            Reply::Send(bytes) => {
                let _ = sock.send_to(&bytes, peer);
                if let (Some(_), Some(qtype)) = (index.as_deref(), h.qtype) {
                    let meta = Meta {
                        qtype,
                        rcode: h.rcode,
                    };
                    cache.put(packet, &bytes, meta);
                }
                batch.observe(Transport::Udp, h.qtype, h.rcode, start.elapsed());
            }
            Reply::Forward => {
                let (sock, shared, query) = (sock.clone(), shared.clone(), packet.to_vec());
                rt.spawn(async move {
                    let bytes = forward_or_refuse(&shared, peer, &query, Transport::Udp).await;
                    if let Some(b) = bytes {
                        // A blocking send from a task: UDP sends do not wait
                        // unless the socket's buffer is full.
                        let _ = sock.send_to(&b, peer);
                    }
                    shared.metrics.observe(
                        Transport::Udp,
                        h.qtype,
                        ResponseCode::NoError,
                        start.elapsed(),
                    );
                });
            }
            Reply::Chase(c) => {
                let (sock, shared) = (sock.clone(), shared.clone());
                rt.spawn(async move {
                    if let Some(b) = chase(&shared, peer, c, Transport::Udp).await {
                        let _ = sock.send_to(&b, peer);
                    }
                    shared.metrics.observe(
                        Transport::Udp,
                        h.qtype,
                        ResponseCode::NoError,
                        start.elapsed(),
                    );
                });
            }
            Reply::Drop => {}
        }
    }
}

/// Completes an answer whose CNAME chain leaves the zone with the target's
/// records from upstream. Following the target is recursion, so clients that
/// may not recurse get the CNAMEs alone; a loop back to us is caught by the
/// forwarder's in-flight check (SERVFAIL, so again the CNAMEs alone).
async fn chase(
    shared: &Shared,
    peer: SocketAddr,
    c: Box<crate::request::Chase>,
    t: Transport,
) -> Option<Vec<u8>> {
    let mut upstream = None;
    if upstream::may_recurse(peer.ip(), &shared.recursion_allowed) {
        if let Some(q) = c.query() {
            shared.metrics.forwarded();
            upstream = shared.forwarder.forward(&q, t).await;
            // Truncated over UDP: the whole answer is worth a TCP round trip,
            // the client's own response may still fit (or be truncated itself).
            if upstream.as_ref().is_some_and(|b| b[2] & 0x02 != 0) {
                upstream = shared.forwarder.forward(&q, Transport::Tcp).await;
            }
        }
    }
    match c.complete(upstream.as_deref()).reply {
        Reply::Send(b) => Some(b),
        _ => None,
    }
}

/// The upstream's answer, or REFUSED for clients that may not recurse,
/// or SERVFAIL when no upstream answered.
async fn forward_or_refuse(
    shared: &Shared,
    peer: SocketAddr,
    query: &[u8],
    t: Transport,
) -> Option<Vec<u8>> {
    let rcode = if !upstream::may_recurse(peer.ip(), &shared.recursion_allowed) {
        ResponseCode::Refused
    } else if shared.forwarder.is_loop(query) {
        tracing::warn!("an upstream resolver leads back to skiff's DNS: not forwarding");
        ResponseCode::ServFail
    } else {
        shared.metrics.forwarded();
        match shared.forwarder.forward(query, t).await {
            Some(resp) => return Some(resp),
            None => ResponseCode::ServFail,
        }
    };
    crate::request::error_reply(query, rcode)
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(TCP_MAX));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait, do not spin or die.
                tracing::warn!(error = %e, "dns tcp accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = serve_conn(stream, peer, &shared).await;
        });
    }
}

/// Serves length-prefixed requests on one connection until it goes idle.
async fn serve_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut lower = String::with_capacity(256);
    let mut buf = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(n)) => usize::from(n),
            _ => return Ok(()),
        };
        buf.resize(len, 0);
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        let start = Instant::now();
        let index = shared.index.load();
        let mut h = handle(index.as_deref(), &buf, Transport::Tcp, &mut lower);
        if index.is_none() && shared.outside_before_sync(h.rcode, &lower) {
            h.reply = Reply::Forward;
        }
        let bytes = match h.reply {
            Reply::Send(b) => Some(b),
            Reply::Forward => forward_or_refuse(shared, peer, &buf, Transport::Tcp).await,
            Reply::Chase(c) => chase(shared, peer, c, Transport::Tcp).await,
            Reply::Drop => None,
        };
        let Some(bytes) = bytes else {
            return Ok(());
        };
        let n = u16::try_from(bytes.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
        let mut out = Vec::with_capacity(bytes.len() + 2);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&bytes);
        stream.write_all(&out).await?;
        shared
            .metrics
            .observe(Transport::Tcp, h.qtype, h.rcode, start.elapsed());
    }
}

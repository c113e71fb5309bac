//! DNS programming latency: from the start of an API write (an EndpointSlice patch,
//! a Service create) to the first DNS answer that reflects it, found by a thread
//! asking skiff's DNS over UDP in a tight loop. The floor is the API write alone
//! (request sent to response read), which the DNS path cannot beat: the watch event
//! leaves the API server only once the write is durable.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;
use skiff_bench::client::{Proto, Server};
use skiff_bench::stats::Samples;
use tokio::sync::oneshot;

use crate::histogram;
use crate::records::ZONE;
use crate::wire;

/// The namespace the changes are made in.
pub const NAMESPACE: &str = "prog";
/// The headless service whose endpoint moves with every EndpointSlice change.
const MOVING: &str = "moving";

/// How long one change may take to show in DNS before the run fails.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A quiet moment between changes, as between real ones; it also lets the previous
/// change's leftovers (freeing the old index, the store's WAL) settle.
const BETWEEN_CHANGES: Duration = Duration::from_millis(2);

#[derive(Default)]
pub struct Programming {
    /// EndpointSlice patch: write start to the first answer with the new address.
    pub slice_answer: Samples,
    /// The patch alone.
    pub slice_write: Samples,
    /// Service create: write start to the first answer for the new name.
    pub create_answer: Samples,
    /// The create alone.
    pub create_write: Samples,
    /// How long after the API's response the answer changed (zero when it changed
    /// before the response reached the writer): what DNS adds to the write.
    pub lag: Samples,
    /// Changes answered by DNS before the API's response reached the writer.
    pub before_response: usize,
    /// skiff's own histogram over the changes: watch event to index swap.
    pub own_share: histogram::Buckets,
}

/// What the poller waits for.
enum Want {
    /// An answer with this address among its A records.
    Has(Ipv4Addr),
    /// Any A answer (the name exists now).
    Resolves,
}

impl Want {
    fn met(&self, a: &wire::Answer) -> bool {
        match self {
            Want::Has(ip) => a.addrs.contains(ip),
            Want::Resolves => a.rcode == 0 && !a.addrs.is_empty(),
        }
    }
}

struct Job {
    name: String,
    want: Want,
    /// Sent once the poller has seen the old answer: the write may start.
    polling: oneshot::Sender<Result<()>>,
    /// When the first answer meeting `want` arrived.
    seen: oneshot::Sender<Result<Instant>>,
}

/// One query and its answer (matched by id; stale answers are skipped).
fn ask(
    sock: &UdpSocket,
    id: &mut u16,
    name: &str,
    buf: &mut [u8],
) -> std::io::Result<wire::Answer> {
    *id = id.wrapping_add(1);
    sock.send(&wire::query_a(*id, name))?;
    loop {
        let n = sock.recv(buf)?;
        if let Some(a) = wire::parse(&buf[..n]).filter(|a| a.id == *id) {
            return Ok(a);
        }
    }
}

/// The poller thread: for each job, confirms the change is not visible yet, then
/// asks again the moment each answer arrives until it is.
fn poll_loop(sock: UdpSocket, jobs: mpsc::Receiver<Job>) {
    let mut id = 0u16;
    let mut buf = vec![0u8; 4096];
    for job in jobs {
        let before = match ask(&sock, &mut id, &job.name, &mut buf) {
            Ok(a) if job.want.met(&a) => Err(anyhow!("{} already answers the change", job.name)),
            Ok(_) => Ok(()),
            Err(e) => Err(anyhow!(e).context("asking skiff's DNS")),
        };
        let failed = before.is_err();
        let _ = job.polling.send(before);
        if failed {
            continue;
        }
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        let seen = loop {
            match ask(&sock, &mut id, &job.name, &mut buf) {
                Ok(a) if job.want.met(&a) => break Ok(Instant::now()),
                // A lost datagram times out; ask again.
                Ok(_) | Err(_) if Instant::now() < deadline => {}
                _ => {
                    break Err(anyhow!(
                        "{} did not change within {CHANGE_TIMEOUT:?}",
                        job.name
                    ))
                }
            }
        };
        let _ = job.seen.send(seen);
    }
}

/// The headless service whose endpoint the EndpointSlice changes move.
pub async fn setup(server: &Server) -> Result<()> {
    let mut conn = server.connect(Proto::Http2).await?;
    let objects = [
        (
            format!("/api/v1/namespaces/{NAMESPACE}/services"),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": MOVING, "namespace": NAMESPACE},
                   "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}),
        ),
        (
            format!("/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": format!("{MOVING}-1"), "namespace": NAMESPACE,
                                "labels": {"kubernetes.io/service-name": MOVING}},
                   "addressType": "IPv4",
                   "endpoints": [{"addresses": ["10.251.0.1"], "conditions": {"ready": true}}],
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        ),
    ];
    for (path, obj) in objects {
        conn.expect(
            StatusCode::CREATED,
            Method::POST,
            &path,
            Some("application/json"),
            Bytes::from(obj.to_string()),
        )
        .await?;
    }
    Ok(())
}

/// `changes` EndpointSlice patches and as many Service creates, alternating.
pub async fn measure(
    server: &Server,
    dns: SocketAddr,
    metrics: SocketAddr,
    changes: usize,
) -> Result<Programming> {
    let histogram_before = histogram::read(metrics)?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(dns)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let (jobs, queue) = mpsc::channel::<Job>();
    let poller = std::thread::Builder::new()
        .name("dns-poller".into())
        .spawn(move || poll_loop(sock, queue))?;

    let mut conn = server.connect(Proto::Http2).await?;
    let slice_path =
        format!("/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/{MOVING}-1");
    let services_path = format!("/api/v1/namespaces/{NAMESPACE}/services");
    let moving = format!("{MOVING}.{NAMESPACE}.svc.{ZONE}");
    let mut out = Programming::default();
    for i in 0..changes {
        // The endpoint moves to a new address.
        let ip = Ipv4Addr::new(10, 250, (i / 250 % 256) as u8, (1 + i % 250) as u8);
        let patch = json!({"endpoints": [{"addresses": [ip.to_string()],
                                          "conditions": {"ready": true}}]});
        let (answer, write) = change(&jobs, moving.clone(), Want::Has(ip), async {
            conn.expect(
                StatusCode::OK,
                Method::PATCH,
                &slice_path,
                Some("application/merge-patch+json"),
                Bytes::from(patch.to_string()),
            )
            .await
            .map(drop)
        })
        .await
        .with_context(|| format!("EndpointSlice change {i}"))?;
        out.slice_answer.push(answer);
        out.slice_write.push(write);
        out.lag.push(answer.saturating_sub(write));
        out.before_response += usize::from(answer < write);
        tokio::time::sleep(BETWEEN_CHANGES).await;

        // A new Service appears.
        let name = format!("new-{i}");
        let svc = json!({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": name, "namespace": NAMESPACE},
                         "spec": {"ports": [{"name": "http", "port": 80}]}});
        let fqdn = format!("{name}.{NAMESPACE}.svc.{ZONE}");
        let (answer, write) = change(&jobs, fqdn, Want::Resolves, async {
            conn.expect(
                StatusCode::CREATED,
                Method::POST,
                &services_path,
                Some("application/json"),
                Bytes::from(svc.to_string()),
            )
            .await
            .map(drop)
        })
        .await
        .with_context(|| format!("Service create {i}"))?;
        out.create_answer.push(answer);
        out.create_write.push(write);
        out.lag.push(answer.saturating_sub(write));
        out.before_response += usize::from(answer < write);
        tokio::time::sleep(BETWEEN_CHANGES).await;
    }
    drop(jobs);
    poller
        .join()
        .map_err(|_| anyhow!("the DNS poller thread panicked"))?;
    out.own_share = histogram::read(metrics)?.since(&histogram_before);
    Ok(out)
}

/// Makes one change with `write` while the poller watches `name`; returns
/// (write start to the answer, the write alone).
async fn change(
    jobs: &mpsc::Sender<Job>,
    name: String,
    want: Want,
    write: impl std::future::Future<Output = Result<()>>,
) -> Result<(Duration, Duration)> {
    let (polling_tx, polling) = oneshot::channel();
    let (seen_tx, seen) = oneshot::channel();
    jobs.send(Job {
        name,
        want,
        polling: polling_tx,
        seen: seen_tx,
    })
    .map_err(|_| anyhow!("the DNS poller is gone"))?;
    polling.await.context("the DNS poller is gone")??;
    let start = Instant::now();
    write.await?;
    let wrote = start.elapsed();
    let at = seen.await.context("the DNS poller is gone")??;
    if at < start {
        bail!("the answer changed before the write started");
    }
    Ok((at - start, wrote))
}

//! The load generator: hyper HTTP/1.1 clients on keep-alive connections, each
//! sending one GET after another for a fixed time and timing every answer; and
//! the three-way comparison (straight to the pods, through skiff's ingress,
//! through nginx) in rounds whose order rotates, so drift on a shared machine
//! hits every path alike.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::header::HOST;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use skiff_bench::stats::Samples;
use tokio::net::TcpStream;

use crate::cluster::{Cluster, Pods, BACKEND_PORT, HOST as BENCH_HOST};
use crate::nginx::Nginx;

/// How hard each path is loaded.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub connections: usize,
    pub duration: Duration,
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: http1::SendRequest<Empty<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    /// GET `path` with `Host: host`; the status and the whole body.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let req = Request::get(path).header(HOST, host).body(Empty::new())?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// One request on a new connection: the status and the body as text.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Result<(u16, String)> {
    let mut c = Conn::open(addr).await?;
    let (status, body) = c.get(host, path).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Sends GET `path` to `addr` back to back (one keep-alive connection, reopened
/// after an error) until a 200 comes from a pod of `app`, for at most `limit`;
/// returns the time until that answer.
pub async fn wait_answer(
    addr: SocketAddr,
    path: &str,
    app: &str,
    limit: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    let mut conn: Option<Conn> = None;
    let needle = format!("Hostname: {app}-");
    while start.elapsed() < limit {
        if conn.is_none() {
            conn = Conn::open(addr).await.ok();
        }
        let answer = match conn.as_mut() {
            Some(c) => c.get(BENCH_HOST, path).await,
            None => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        match answer {
            Ok((200, body)) if String::from_utf8_lossy(&body).contains(&needle) => {
                return Ok(start.elapsed())
            }
            Ok(_) => {}
            Err(_) => conn = None,
        }
    }
    bail!("no answer from {app} at {addr}{path} within {limit:?}")
}

/// What one path did in one or more runs.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies: Samples,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn add(&mut self, other: Outcome) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }
}

/// `shape.connections` keep-alive connections (connection `i` to `targets[i %
/// len]`), each sending GET `path` back to back for `shape.duration`.
pub async fn run(targets: &[SocketAddr], path: &str, shape: Shape) -> Result<Outcome> {
    let mut conns = Vec::with_capacity(shape.connections);
    for i in 0..shape.connections {
        conns.push(Conn::open(targets[i % targets.len()]).await?);
    }
    let start = Instant::now();
    let end = start + shape.duration;
    let mut tasks = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let target = targets[i % targets.len()];
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            while Instant::now() < end {
                let t = Instant::now();
                match conn.get(BENCH_HOST, &path).await {
                    Ok((200, _)) => {
                        out.latencies.push(t.elapsed());
                        out.requests += 1;
                    }
                    Ok(_) => out.errors += 1,
                    Err(_) => {
                        out.errors += 1;
                        match Conn::open(target).await {
                            Ok(c) => conn = c,
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                }
            }
            out
        }));
    }
    let mut total = Outcome::default();
    for t in tasks {
        let o = t.await?;
        total.requests += o.requests;
        total.errors += o.errors;
        total.latencies.extend(o.latencies);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// The three paths, loaded one after another in every round.
#[derive(Debug, Default)]
pub struct Compared {
    pub direct: Outcome,
    pub ingress: Outcome,
    pub nginx: Outcome,
    /// Per round: (ingress ÷ direct, ingress ÷ nginx) requests/s.
    pub round_ratios: Vec<(f64, f64)>,
    pub shape: Option<Shape>,
    pub rounds: usize,
}

/// `rounds` rounds of direct, ingress and nginx (rotating which goes first),
/// after one short unrecorded run of each that opens every upstream connection.
pub async fn compare(
    cluster: &Cluster,
    nginx: &Nginx,
    pods: &Pods,
    shape: Shape,
    rounds: usize,
) -> Result<Compared> {
    let direct: Vec<SocketAddr> = pods
        .a
        .iter()
        .map(|ip| SocketAddr::from((*ip, BACKEND_PORT)))
        .collect();
    let paths: [(&str, Vec<SocketAddr>); 3] = [
        ("direct", direct),
        ("ingress", vec![cluster.ingress_addr]),
        ("nginx", vec![nginx.addr]),
    ];
    let warm = Shape {
        duration: Duration::from_millis(500),
        ..shape
    };
    for (_, targets) in &paths {
        run(targets, "/a", warm).await?;
    }
    let mut out = Compared {
        shape: Some(shape),
        rounds,
        ..Default::default()
    };
    for round in 0..rounds {
        let mut rates = [0.0f64; 3];
        for k in 0..3 {
            let which = (round + k) % 3;
            let (name, targets) = &paths[which];
            let o = run(targets, "/a", shape).await?;
            eprintln!(
                "  round {}: {name:<8} {:>8.0}/s, {} errors",
                round + 1,
                o.rate(),
                o.errors
            );
            rates[which] = o.rate();
            match which {
                0 => out.direct.add(o),
                1 => out.ingress.add(o),
                _ => out.nginx.add(o),
            }
        }
        out.round_ratios
            .push((rates[1] / rates[0].max(1e-9), rates[1] / rates[2].max(1e-9)));
    }
    Ok(out)
}

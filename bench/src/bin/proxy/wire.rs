//! The programs the benchmark runs inside its "pod" namespaces, as hidden
//! subcommands of the benchmark binary itself: a tiny HTTP server that names its
//! pod, the load generator (the same code against the pod IP and the ClusterIP),
//! and a prober that waits until an address answers with a given pod's name.
//!
//! The HTTP is the least a keep-alive HTTP/1.1 exchange needs, so the server and
//! the generator cost little next to the packet path being measured.

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream as AsyncTcpStream};

/// The request every client sends; `Connection: close` asks the server to close
/// after its answer (the server closes first, so the client keeps no TIME_WAIT
/// sockets and its ephemeral ports never run out).
const KEEP_ALIVE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
const CLOSE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn asks_to_close(head: &[u8]) -> bool {
    head.windows(17)
        .any(|w| w.eq_ignore_ascii_case(b"connection: close"))
}

/// `serve`: answers every request on `port` with `id` as the body.
pub async fn serve(id: String, port: u16) -> Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("listening on {port}"))?;
    let keep = Arc::new(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{id}",
            id.len()
        )
        .into_bytes(),
    );
    let close = Arc::new(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{id}",
            id.len()
        )
        .into_bytes(),
    );
    // Started by the benchmark through `ip netns exec` (which execs): if the
    // benchmark dies without killing us, we are reparented, and stop.
    let parent = std::os::unix::process::parent_id();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(0);
            }
        }
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let (keep, close) = (keep.clone(), close.clone());
        tokio::spawn(async move {
            let _ = serve_connection(stream, &keep, &close).await;
        });
    }
}

async fn serve_connection(mut s: AsyncTcpStream, keep: &[u8], close: &[u8]) -> Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(());
        }
        have += n;
        while let Some(end) = header_end(&buf[..have]) {
            let closing = asks_to_close(&buf[..end]);
            s.write_all(if closing { close } else { keep }).await?;
            if closing {
                return Ok(());
            }
            buf.copy_within(end + 4..have, 0);
            have -= end + 4;
        }
        if have == buf.len() {
            bail!("request header too large");
        }
    }
}

/// How the generator uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Each worker keeps one connection and sends requests one after another.
    KeepAlive,
    /// Each worker opens a connection per request (`Connection: close`).
    Close,
}

/// What one generator run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The line the `load` subcommand prints and the benchmark parses.
    pub fn line(&self) -> String {
        format!(
            "{} {} {}",
            self.requests,
            self.errors,
            self.elapsed.as_nanos()
        )
    }

    pub fn parse(line: &str) -> Result<Self> {
        let mut w = line.split_whitespace().map(str::parse::<u64>);
        let mut next = || -> Result<u64> {
            w.next()
                .context("short result line")?
                .with_context(|| format!("bad result line {line:?}"))
        };
        Ok(LoadResult {
            requests: next()?,
            errors: next()?,
            elapsed: Duration::from_nanos(next()?),
        })
    }
}

/// `load`: `workers` concurrent clients against `target` for `duration`.
pub async fn load(
    target: SocketAddr,
    source: Ipv4Addr,
    mode: Mode,
    workers: usize,
    duration: Duration,
) -> Result<()> {
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Keep-alive connections are opened before the clock starts.
    let mut streams = Vec::new();
    if mode == Mode::KeepAlive {
        for _ in 0..workers {
            let s = connect(source, target)
                .await
                .with_context(|| format!("connecting to {target}"))?;
            streams.push(s);
        }
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..workers {
        let (requests, errors, stop) = (requests.clone(), errors.clone(), stop.clone());
        let stream = streams.pop();
        tasks.push(tokio::spawn(async move {
            match (mode, stream) {
                (Mode::KeepAlive, Some(s)) => {
                    if keep_alive_worker(s, &requests, &stop).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => close_worker(source, target, &requests, &errors, &stop).await,
            }
            i
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    // Requests finishing after the deadline are not counted: the count is read now.
    let done = requests.load(Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let result = LoadResult {
        requests: done,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
    };
    println!("{}", result.line());
    Ok(())
}

async fn read_response(s: &mut AsyncTcpStream, buf: &mut [u8]) -> Result<()> {
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..]).await?;
        if n == 0 {
            bail!("connection closed mid-response");
        }
        have += n;
        if let Some(end) = header_end(&buf[..have]) {
            let len = content_length(&buf[..end]).context("no Content-Length")?;
            while have < end + 4 + len {
                let n = s.read(&mut buf[have..]).await?;
                if n == 0 {
                    bail!("connection closed mid-body");
                }
                have += n;
            }
            return Ok(());
        }
        if have == buf.len() {
            bail!("response header too large");
        }
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

async fn keep_alive_worker(
    mut s: AsyncTcpStream,
    requests: &AtomicU64,
    stop: &AtomicBool,
) -> Result<()> {
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        s.write_all(KEEP_ALIVE_REQUEST).await?;
        read_response(&mut s, &mut buf).await?;
        requests.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn close_worker(
    source: Ipv4Addr,
    target: SocketAddr,
    requests: &AtomicU64,
    errors: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match one_closed_request(source, target, &mut buf).await {
            Ok(()) => requests.fetch_add(1, Ordering::Relaxed),
            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// A connection from `source` (any port) with Nagle off.
async fn connect(source: Ipv4Addr, target: SocketAddr) -> Result<AsyncTcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.set_nodelay(true)?;
    Ok(socket.connect(target).await?)
}

async fn one_closed_request(source: Ipv4Addr, target: SocketAddr, buf: &mut [u8]) -> Result<()> {
    let mut s = connect(source, target).await?;
    s.write_all(CLOSE_REQUEST).await?;
    read_response(&mut s, buf).await?;
    // Wait for the server's FIN, so the server (not us) holds TIME_WAIT.
    let mut rest = [0u8; 64];
    while s.read(&mut rest).await? > 0 {}
    Ok(())
}

/// One GET over a new connection; the body (the answering pod's name).
fn probe_once(target: SocketAddr) -> Result<String> {
    // Short: a SYN lost while the table changes is retried at once, not
    // after the kernel's one-second retransmit.
    let mut s = TcpStream::connect_timeout(&target, Duration::from_millis(100))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.set_nodelay(true)?;
    s.write_all(CLOSE_REQUEST)?;
    let mut out = Vec::with_capacity(256);
    s.read_to_end(&mut out)?;
    let end = header_end(&out).context("no response header")?;
    Ok(String::from_utf8_lossy(&out[end + 4..]).into_owned())
}

/// Pause between probe attempts: short enough for sub-millisecond resolution,
/// long enough that the prober leaves the cores to the proxy it is timing.
const PROBE_PAUSE: Duration = Duration::from_micros(250);
const PROBE_GIVE_UP: Duration = Duration::from_secs(60);

/// `probe`: reads `ADDR EXPECT` lines on stdin; for each, connects to ADDR over
/// and over until the answer is EXPECT (`*`: any answer), then prints `ok N`
/// (N attempts) or `timeout`.
pub fn probe() -> Result<()> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let (Some(addr), Some(expect)) = (words.next(), words.next()) else {
            bail!("bad probe command {line:?}");
        };
        let target: SocketAddr = addr.parse().context("probe address")?;
        let start = Instant::now();
        let mut attempts = 0u64;
        let answer = loop {
            attempts += 1;
            if let Ok(body) = probe_once(target) {
                if expect == "*" || body == expect {
                    break format!("ok {attempts}");
                }
            }
            if start.elapsed() > PROBE_GIVE_UP {
                break "timeout".to_string();
            }
            std::thread::sleep(PROBE_PAUSE);
        };
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}

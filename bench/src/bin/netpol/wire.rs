//! The programs the benchmark runs inside its "pod" namespaces, as hidden
//! subcommands of the benchmark binary: a TCP server that answers one byte per
//! connection, the new-connection load generator, a one-shot connect check, and
//! the enforcement prober.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};

/// `serve`: accepts on `port`, writes one byte, waits for the client to go.
pub fn serve(port: u16) -> Result<()> {
    // Never outlive the benchmark: a server orphaned by a killed run stops.
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(0);
        }
    });
    let listener =
        TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("listening on {port}"))?;
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        std::thread::spawn(move || {
            let _ = s.write_all(b"k");
            let mut buf = [0u8; 16];
            // Until the client's reset: the client closes first.
            let _ = s.read(&mut buf);
        });
    }
    Ok(())
}

/// One connection: connect, read the byte, close with a reset (linger 0), so
/// neither side nor conntrack keeps a TIME_WAIT entry per connection.
fn one(target: SocketAddr, timeout: Duration) -> Result<()> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.set_linger(Some(Duration::ZERO))?;
    sock.connect_timeout(&target.into(), timeout)?;
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(timeout))?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(())
}

/// `load`: `workers` threads open new connections back to back for `millis`;
/// prints `connections errors elapsed_ns`.
pub fn load(target: SocketAddr, workers: usize, millis: u64) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (stop, done, errors) = (stop.clone(), done.clone(), errors.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match one(target, Duration::from_secs(1)) {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(millis));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let elapsed = start.elapsed();
    println!(
        "{} {} {}",
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        elapsed.as_nanos()
    );
    Ok(())
}

/// `connect`: one connection with a short timeout; prints `ok` or `denied`.
pub fn connect(target: SocketAddr) -> Result<()> {
    match one(target, Duration::from_millis(300)) {
        Ok(()) => println!("ok"),
        Err(e) if e.to_string().contains("timed out") => println!("denied"),
        Err(e) => bail!("connect {target}: {e}"),
    }
    Ok(())
}

/// How long a probe connection may take before it counts as dropped.
const PROBE_TIMEOUT: Duration = Duration::from_millis(50);
/// A new probe connection starts this often.
const PROBE_PERIOD: Duration = Duration::from_micros(500);

/// `probe`: for each stdin line `allow|deny ADDR`, opens a new connection to
/// ADDR every 0.5 ms until one behaves as expected, and prints `ok <µs>`: from
/// reading the line to the start of the first connection that did. A dropped
/// SYN is dropped when sent, so a connection's start is when the verdict was
/// taken.
pub async fn probe() -> Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let (want, addr) = line.split_once(' ').context("expected `allow|deny ADDR`")?;
        let allow = match want {
            "allow" => true,
            "deny" => false,
            _ => bail!("expected allow or deny, got {want}"),
        };
        let addr: SocketAddr = addr.trim().parse()?;
        let t0 = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, bool)>();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let tx = tx.clone();
                tokio::spawn(async move {
                    let start = Instant::now();
                    let ok = matches!(
                        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr))
                            .await,
                        Ok(Ok(_))
                    );
                    let _ = tx.send((start, ok));
                });
            }
        });
        let deadline = t0 + Duration::from_secs(30);
        let mut first: Option<Instant> = None;
        // After the first match, wait for every earlier attempt to finish: one
        // started before it may still match (its result comes later).
        let mut settle_until: Option<Instant> = None;
        loop {
            let until = settle_until.unwrap_or(deadline);
            match tokio::time::timeout_at(until.into(), rx.recv()).await {
                Ok(Some((start, ok))) => {
                    if ok == allow && first.is_none_or(|f| start < f) {
                        first = Some(start);
                        settle_until.get_or_insert(Instant::now() + PROBE_TIMEOUT * 2);
                    }
                }
                Ok(None) => break,
                Err(_) => break,
            }
        }
        ticker.abort();
        match first {
            Some(f) => println!("ok {}", f.saturating_duration_since(t0).as_micros()),
            None => println!("timeout"),
        }
    }
    Ok(())
}

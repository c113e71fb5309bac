//! The ClusterIP prober: this benchmark's binary run (hidden `probe`
//! subcommand) in the network namespace of a pod on node 1, so its
//! connections take a pod's path through node 1's service proxy. Each of its
//! loops opens a TCP connection to the ClusterIP, closes it, pauses and goes
//! again, and prints one line per connection: when it started and ended (wall
//! clock, nanoseconds since the epoch, comparable with the benchmark's own
//! clock and the API's timestamps) and whether it was established.
//!
//! A connection, not an HTTP request: the whoami stand-in starts an `ip`
//! process per request, so requests at this rate would load the cores the
//! control plane being timed runs on; what fails when a dead node's endpoint
//! is chosen is the connection (SYNs to an address nobody answers for). The
//! stand-in is Python's `ThreadingHTTPServer`, whose accept queue holds 5:
//! on a busy machine a SYN is sometimes dropped there and retransmitted a
//! second later, which the round counts as slow, not failed.

use std::io::Write;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Wall-clock nanoseconds since the epoch.
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// `probe`: `loops` threads connecting to `target` until stdout is closed.
pub fn run(target: SocketAddr, loops: usize, pause: Duration, timeout: Duration) -> Result<()> {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..loops)
        .map(|i| {
            let out = out.clone();
            std::thread::spawn(move || {
                // Loops start spread over one pause.
                std::thread::sleep(pause.mul_f64(i as f64 / loops as f64));
                loop {
                    let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, None) else {
                        return;
                    };
                    let start = now_ns();
                    let ok = socket.connect_timeout(&target.into(), timeout).is_ok();
                    let end = now_ns();
                    // The source port the kernel chose (kept until the socket
                    // closes, also after a failed connect).
                    let port = socket
                        .local_addr()
                        .ok()
                        .and_then(|a| a.as_socket())
                        .map_or(0, |a| a.port());
                    // The socket is closed (FIN) as it drops: the server reads
                    // an empty request and returns quietly.
                    drop(socket);
                    let line = format!("{start} {end} {} {port}\n", u8::from(ok));
                    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                    if o.write_all(line.as_bytes())
                        .and_then(|()| o.flush())
                        .is_err()
                    {
                        // The benchmark stopped reading: done.
                        return;
                    }
                    drop(o);
                    std::thread::sleep(pause);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// One connection the prober made.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub start: i128,
    pub end: i128,
    pub ok: bool,
    /// The connection's source port.
    pub port: u16,
}

/// The running prober (killed on drop) and what it reported so far.
pub struct Prober {
    child: Child,
    pub attempts: Arc<Mutex<Vec<Attempt>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Prober {
    /// Starts the prober in the network namespace of process `pid` (a pod's
    /// sandbox), against `target`.
    pub fn start(
        pid: u32,
        target: SocketAddr,
        loops: usize,
        pause: Duration,
        timeout: Duration,
    ) -> Result<Self> {
        let exe = std::env::current_exe().context("locating the benchmark binary")?;
        let mut child = tokio::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "--"])
            .arg(exe)
            .args(["probe", "--target", &target.to_string()])
            .args(["--loops", &loops.to_string()])
            .args(["--interval-ms", &pause.as_millis().to_string()])
            .args(["--timeout-ms", &timeout.as_millis().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the prober with nsenter")?;
        let stdout = child.stdout.take().context("prober stdout")?;
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let sink = attempts.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut w = l.split_whitespace().map(str::parse::<i128>);
                if let (Some(Ok(start)), Some(Ok(end)), Some(Ok(ok)), Some(Ok(port))) =
                    (w.next(), w.next(), w.next(), w.next())
                {
                    let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
                    sink.push(Attempt {
                        start,
                        end,
                        ok: ok == 1,
                        port: port as u16,
                    });
                }
            }
        });
        Ok(Prober {
            child,
            attempts,
            reader,
        })
    }

    /// Connections made so far, and how many were established.
    pub fn counts(&self) -> (usize, usize) {
        let a = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        (a.len(), a.iter().filter(|a| a.ok).count())
    }

    /// Stops the prober (by its PID: it is this benchmark's child) and returns
    /// every connection it reported.
    pub async fn stop(mut self) -> Vec<Attempt> {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let _ = (&mut self.reader).await;
        let a = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        a.clone()
    }
}

//! A 3-member etcd cluster (Debian's `etcd-server`, `/usr/bin/etcd`) for the backend
//! comparison, started by the inner run, so inside the network namespace the benchmark
//! made: members on 127.0.0.1-3 of that namespace's `lo`, data on tmpfs (etcd fsyncs
//! every write on every member; a shared VM's disk would measure the neighbours), as the
//! store's conformance fixture does. Members are SIGKILLed by PID on drop; the outer run
//! also kills whatever is left in the namespace, by PID, before deleting it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skiff_store::{EtcdBackend, EtcdConfig};

pub const MEMBERS: usize = 3;
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

/// How long a new cluster may take to elect a leader and answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where skiff's keys live; the raw floor writes under another prefix of the same etcd.
pub const PREFIX: &str = "/skiff";

pub struct Members {
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

/// Member `i` listens on its own loopback address, so ports never need picking.
fn member_ip(i: usize) -> String {
    format!("127.0.0.{}", i + 1)
}

impl Members {
    /// Starts the members; they elect a leader in the background (see `open`).
    pub fn start() -> Result<Self> {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        // Built before the first spawn: from here on, an error drops (kills) what started.
        let mut members = Members {
            children: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix("skiff-bench-etcd-")
                .tempdir_in(base)?,
        };
        let peers = (0..MEMBERS)
            .map(|i| format!("m{i}=http://{}:{PEER_PORT}", member_ip(i)))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..MEMBERS {
            let ip = member_ip(i);
            let log = File::create(members.dir.path().join(format!("m{i}.log")))?;
            let child = Command::new("etcd")
                .arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    members.dir.path().join(format!("m{i}")).display()
                ))
                .arg(format!("--listen-client-urls=http://{ip}:{CLIENT_PORT}"))
                .arg(format!("--advertise-client-urls=http://{ip}:{CLIENT_PORT}"))
                .arg(format!("--listen-peer-urls=http://{ip}:{PEER_PORT}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://{ip}:{PEER_PORT}"
                ))
                .arg(format!("--initial-cluster={peers}"))
                .args([
                    "--initial-cluster-state=new",
                    "--initial-cluster-token=skiff-bench",
                    // The fixtures' timings: a leader within a second of starting.
                    "--heartbeat-interval=50",
                    "--election-timeout=500",
                    "--logger=zap",
                    "--log-level=warn",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting etcd (Debian package etcd-server)")?;
            members.children.push(child);
        }
        Ok(members)
    }

    pub fn endpoints(&self) -> Vec<String> {
        (0..MEMBERS)
            .map(|i| format!("http://{}:{CLIENT_PORT}", member_ip(i)))
            .collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Opens skiff's store on the cluster once it has a leader, as `skiff server
    /// --store etcd` would (no TLS: the floor speaks plain gRPC too).
    pub fn open(&self) -> Result<EtcdBackend> {
        let config = EtcdConfig {
            endpoints: self.endpoints(),
            prefix: PREFIX.into(),
            cluster: "bench".into(),
            tls: None,
            watch_capacity: skiff_store::DEFAULT_WATCH_CAPACITY,
        };
        let addrs: Vec<SocketAddr> = (0..MEMBERS)
            .map(|i| format!("{}:{CLIENT_PORT}", member_ip(i)).parse())
            .collect::<Result<_, _>>()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let listening = addrs
                .iter()
                .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok());
            if listening {
                match EtcdBackend::connect(config.clone()) {
                    Ok(store) => return Ok(store),
                    // Before the first election etcd answers "no leader".
                    Err(e) if Instant::now() < deadline && e.to_string().contains("leader") => {}
                    Err(e) => return Err(e).context(self.logs()),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "etcd did not start within {START_TIMEOUT:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// gRPC requests every member has handled so far, summed by method (`Range`,
    /// `Txn`, ...), from their `/metrics`: how many etcd requests a create costs.
    /// A member that does not answer counts as none (this is a diagnostic).
    pub fn requests() -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for i in 0..MEMBERS {
            let Ok(text) = metrics(&format!("{}:{CLIENT_PORT}", member_ip(i))) else {
                continue;
            };
            for (method, n) in text.lines().filter_map(handled) {
                *out.entry(method).or_default() += n;
            }
        }
        out
    }

    /// The last lines of each member's log, for an error message.
    pub fn logs(&self) -> String {
        (0..MEMBERS)
            .map(|i| {
                let p = self.dir.path().join(format!("m{i}.log"));
                let log = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- etcd m{i}\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        // SIGKILL by PID: a member asked to stop politely may wait for its peers, and
        // nothing it holds (tmpfs data) needs to survive.
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET /metrics` from a member, over plain HTTP/1.0 (no client library for one page).
fn metrics(addr: &str) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: etcd\r\n\r\n")?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    Ok(text)
}

/// `(method, count)` from a `grpc_server_handled_total{...grpc_method="M"...} N` line.
fn handled(line: &str) -> Option<(String, f64)> {
    let rest = line.strip_prefix("grpc_server_handled_total{")?;
    let (labels, value) = rest.rsplit_once("} ")?;
    let method = labels
        .split(',')
        .find_map(|l| l.strip_prefix("grpc_method=\""))?
        .trim_end_matches('"');
    Some((method.to_string(), value.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::handled;

    #[test]
    fn reads_handled_requests_by_method() {
        let line = r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1.234e+03"#;
        assert_eq!(handled(line), Some(("Range".into(), 1234.0)));
        assert_eq!(handled("grpc_server_started_total{} 3"), None);
    }
}

//! Three etcd members (Debian's `etcd-server`) inside a test's network
//! namespace, for clusters whose servers share one store. Clients reach member
//! `i` on port `CLIENT_PORT + i` of every address in the namespace (the nodes of
//! `skiff up` dial the bridge's address); peers talk on loopback. The members
//! are ended by PID on drop, and with the namespace in any case.

use std::fs::File;
use std::process::Stdio;

use super::{Background, Netns};

pub const MEMBERS: usize = 3;
const CLIENT_PORT: u16 = 23790;
const PEER_PORT: u16 = 23800;

pub struct EtcdMembers {
    members: Vec<Option<Background>>,
    ns: String,
    pub dir: tempfile::TempDir,
}

impl EtcdMembers {
    pub fn start(netns: &Netns) -> Self {
        // tmpfs when there is one: etcd fsyncs every write on every member.
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("skiff-ha-etcd-")
            .tempdir_in(base)
            .expect("tempdir");
        let peers = (0..MEMBERS)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", PEER_PORT + i as u16))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for i in 0..MEMBERS {
            let client = CLIENT_PORT + i as u16;
            let peer = PEER_PORT + i as u16;
            let log = File::create(dir.path().join(format!("m{i}.log"))).expect("log");
            let child = netns
                .command("etcd")
                .arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    dir.path().join(format!("m{i}")).display()
                ))
                .arg(format!("--listen-client-urls=http://0.0.0.0:{client}"))
                .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
                ))
                .arg(format!("--initial-cluster={peers}"))
                .args([
                    "--initial-cluster-state=new",
                    "--initial-cluster-token=skiff-ha-test",
                    "--heartbeat-interval=50",
                    "--election-timeout=500",
                    "--logger=zap",
                    "--log-level=warn",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start etcd (Debian package etcd-server)");
            members.push(Some(Background(child)));
        }
        Self {
            members,
            ns: netns.name.clone(),
            dir,
        }
    }

    /// `--etcd-endpoints` for servers that reach this namespace at `host`.
    pub fn endpoints(&self, host: &str) -> String {
        (0..MEMBERS)
            .map(|i| format!("http://{host}:{}", CLIENT_PORT + i as u16))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The member that is the raft leader now (from each member's metrics).
    pub fn leader(&self) -> Option<usize> {
        (0..MEMBERS).find(|&i| {
            if self.members[i].is_none() {
                return false;
            }
            let url = format!("http://127.0.0.1:{}/metrics", CLIENT_PORT + i as u16);
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &self.ns, "curl", "-sf", "-m", "2", &url])
                .output()
                .expect("curl");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == "etcd_server_is_leader 1")
        })
    }

    /// SIGKILLs member `i`, as a machine that dies would stop it.
    pub fn kill(&mut self, i: usize) {
        self.members[i] = None;
    }

    /// The members' logs, for a failed test's message.
    pub fn logs(&self) -> String {
        (0..MEMBERS)
            .map(|i| {
                let p = self.dir.path().join(format!("m{i}.log"));
                let log = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                format!(
                    "--- etcd m{i}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

//! The cluster of one round: the release `skiff up --nodes 3` run in the
//! benchmark's namespace (the nodes' LAN), `skiff down` when the guard drops
//! (also after a failed or interrupted round), and node 3 killed as the e2e
//! kills it: by the PIDs `skiff up` recorded in `up.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use skiff_agent::runtime::Proc;

use crate::Args;

/// The cluster's name: names its bridge (`skup-<name>`), veths and nodes.
pub const NAME: &str = "bench";
/// The nodes' LAN: the benchmark's namespace holds `.1`, node i `.(i+1)`.
pub const NODE_NETWORK: &str = "10.250.0.0/24";
/// The node that dies.
pub const VICTIM: u8 = 3;

/// What `skiff up` records of the processes it started.
#[derive(Debug)]
struct UpState {
    holders: Vec<Proc>,
    nodes: Vec<Proc>,
}

/// A cluster made by `skiff up`; `skiff down` on drop.
pub struct Cluster {
    skiff: PathBuf,
    data_dir: PathBuf,
}

impl Cluster {
    /// `skiff up --nodes 3` with the round's settings. The guard exists before
    /// `up` starts, so whatever a failed or interrupted `up` recorded is removed.
    pub async fn up(args: &Args, skiff: &Path, data_dir: &Path) -> Result<Self> {
        let c = Cluster {
            skiff: skiff.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
        };
        let out = tokio::process::Command::new(skiff)
            .args(["up", "--nodes", "3", "--name", NAME])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--node-network", NODE_NETWORK])
            .args(["--flannel-backend", &args.backend])
            .arg("--host-images")
            .arg(format!(
                "--server-arg=--node-monitor-grace-period={}s",
                args.grace
            ))
            .arg(format!(
                "--server-arg=--default-unreachable-toleration-seconds={}",
                args.toleration
            ))
            .arg(format!(
                "--server-arg=--node-lease-duration-seconds={}",
                args.lease
            ))
            .arg(format!(
                "--agent-arg=--node-lease-duration-seconds={}",
                args.lease
            ))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("running skiff up")?;
        if !out.status.success() {
            bail!(
                "skiff up failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(c)
    }

    pub fn dir(&self) -> PathBuf {
        self.data_dir.join(NAME)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir().join("kubeconfig")
    }

    pub fn node_name(i: u8) -> String {
        format!("{NAME}-node{i}")
    }

    /// Where node i's agent keeps its pods' state.
    pub fn agent_dir(&self, i: u8) -> PathBuf {
        self.dir().join(format!("node{i}/agent"))
    }

    fn state(&self) -> Result<UpState> {
        let p = self.dir().join("up.json");
        let b = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        let v: serde_json::Value =
            serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display()))?;
        let procs = |key: &str| -> Result<Vec<Proc>> {
            serde_json::from_value(v[key].clone())
                .with_context(|| format!("{key} in {}", p.display()))
        };
        Ok(UpState {
            holders: procs("holders")?,
            nodes: procs("nodes")?,
        })
    }

    /// The last `n` lines of node `i`'s log, for a failed round's message.
    pub fn log_tail(&self, i: u8, n: usize) -> String {
        let p = self.dir().join(format!("node{i}/skiff.log"));
        let log = std::fs::read_to_string(&p).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The MAC address of the nodes' bridge (`skup-<name>`) in this namespace.
    pub fn bridge_mac(&self) -> String {
        std::fs::read_to_string(format!("/sys/class/net/skup-{NAME}/address"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// The PID of the process holding node `i`'s network namespace.
    pub fn netns_pid(&self, i: u8) -> Result<u32> {
        let s = self.state()?;
        let p = s
            .holders
            .get(usize::from(i - 1))
            .with_context(|| format!("up.json has no node {i}"))?;
        Ok(p.pid)
    }

    /// Kills node `i` as the e2e does: SIGKILL of its `skiff` process and of
    /// the process holding its network namespace (by PID, each checked to be
    /// the process `skiff up` recorded), then its veth on the bridge removed.
    /// Its pods' processes are left running, cut off (their node's namespace,
    /// and with it their links, is gone); `skiff down` ends them.
    pub fn kill_node(&self, i: u8) -> Result<()> {
        let s = self.state()?;
        let idx = usize::from(i - 1);
        let procs = [s.nodes.get(idx), s.holders.get(idx)];
        for p in procs {
            let p = p.with_context(|| format!("up.json has no node {i}"))?;
            if !p.alive() {
                bail!("node {i}'s process {} is not running", p.pid);
            }
            let st = Command::new("kill")
                .args(["-KILL", &p.pid.to_string()])
                .status()
                .context("running kill")?;
            if !st.success() {
                bail!("kill -KILL {} failed", p.pid);
            }
        }
        let veth = format!("sku{i}-{NAME}");
        let out = Command::new("ip")
            .args(["link", "del", &veth])
            .output()
            .context("running ip")?;
        if !out.status.success() {
            bail!(
                "ip link del {veth}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.dir().join("up.json").exists() {
            return;
        }
        let recorded = self.state().ok();
        let out = Command::new(&self.skiff)
            .args(["down", "--name", NAME])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: skiff down failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("warning: could not run skiff down: {e}"),
        }
        // `down` removed up.json with the directory: check what it recorded.
        if let Some(s) = recorded {
            let left: Vec<u32> = s
                .nodes
                .iter()
                .chain(&s.holders)
                .filter(|p| p.alive())
                .map(|p| p.pid)
                .collect();
            if !left.is_empty() {
                eprintln!(
                    "warning: processes of the cluster still running after skiff down: {left:?}"
                );
            }
        }
    }
}

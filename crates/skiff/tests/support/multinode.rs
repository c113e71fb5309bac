//! Several nodes on one machine for e2e tests: `skiff up` run inside the test's
//! own network namespace, so the nodes' bridge, the nodes (network namespaces
//! held by processes) and everything they route stay inside it; the test's
//! namespace is the nodes' LAN and plays the "outside host". Torn down on drop
//! with `skiff down` (by the PIDs `up` recorded), then the namespace goes.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use super::{eventually, skiff_bin, Netns};

/// The nodes' LAN (`skiff up --node-network`): the test namespace holds `.1`,
/// node i holds `.(i+1)`.
pub const NODE_NETWORK: &str = "10.250.0.0/24";

pub fn node_ip(i: u8) -> String {
    format!("10.250.0.{}", i + 1)
}

pub struct MultiNode {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub nodes: u8,
    // Dropped last: `skiff down` needs the namespace.
    pub netns: Netns,
}

impl MultiNode {
    /// `skiff up --nodes N` with `extra` flags; panics with the nodes' logs if it
    /// fails.
    pub fn up(nodes: u8, extra: &[&str]) -> Self {
        Self::up_in(Netns::new(), nodes, extra)
    }

    /// [`MultiNode::up`] in a namespace the test prepared (a registry in it, say).
    pub fn up_in(netns: Netns, nodes: u8, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Unique per test process and cluster: names network devices.
        let name = format!(
            "t{}",
            (std::process::id() % 100_000) * 10
                + super::NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) as u32 % 10
        );
        let c = MultiNode {
            name,
            dir,
            nodes,
            netns,
        };
        let out = c
            .netns
            .command(skiff_bin())
            .args(["up", "--nodes", &nodes.to_string(), "--name", &c.name])
            .arg("--data-dir")
            .arg(c.dir.path())
            .args(["--node-network", NODE_NETWORK])
            .args(extra)
            .output()
            .expect("run skiff up");
        if !out.status.success() {
            panic!(
                "skiff up failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                c.logs()
            );
        }
        c
    }

    pub fn cluster_dir(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }

    pub fn node_name(&self, i: u8) -> String {
        format!("{}-node{i}", self.name)
    }

    /// The nodes' bridge in the test's namespace.
    pub fn bridge(&self) -> String {
        format!("skup-{}", self.name)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.cluster_dir().join("kubeconfig")
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.nodes {
            let p = self.cluster_dir().join(format!("node{i}/skiff.log"));
            let log = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            out.push_str(&format!("--- node {i} ({}):\n", p.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn state(&self) -> serde_json::Value {
        let b = std::fs::read(self.cluster_dir().join("up.json")).expect("up.json");
        serde_json::from_slice(&b).expect("up.json")
    }

    /// PID of node i's `skiff` process.
    pub fn node_pid(&self, i: u8) -> u32 {
        self.state()["nodes"][usize::from(i - 1)]["pid"]
            .as_u64()
            .expect("node pid") as u32
    }

    /// PID of the process holding node i's network namespace.
    pub fn holder_pid(&self, i: u8) -> u32 {
        self.state()["holders"][usize::from(i - 1)]["pid"]
            .as_u64()
            .expect("holder pid") as u32
    }

    /// A command run inside node i's network namespace.
    pub fn on_node(&self, i: u8, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder_pid(i).to_string(), "-n", "--", program]);
        c
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.netns
            .command("kubectl")
            .args(args)
            .env("KUBECONFIG", self.cluster_dir().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .output()
            .expect("run kubectl")
    }

    /// kubectl that must succeed; returns its stdout.
    pub fn k(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `manifest`.
    pub fn apply(&self, manifest: &str) -> String {
        let mut c = self.netns.command("kubectl");
        c.args(["apply", "-f", "-"])
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path());
        let out = super::output_with_stdin(c, manifest);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `script` with sh in the test namespace (the nodes' "outside host").
    pub fn outside(&self, script: &str) -> Output {
        self.netns
            .command("sh")
            .args(["-c", script])
            .output()
            .expect("run sh")
    }

    /// Waits until `kubectl get` of `what` with jsonpath `path` prints `want`.
    pub fn wait_for(&self, timeout: Duration, args: &[&str], want: &str) {
        eventually(timeout, || {
            let out = self.kubectl(args);
            (String::from_utf8_lossy(&out.stdout).trim() == want).then_some(())
        });
    }
}

impl Drop for MultiNode {
    fn drop(&mut self) {
        let out = self
            .netns
            .command(skiff_bin())
            .args(["down", "--name", &self.name])
            .arg("--data-dir")
            .arg(self.dir.path())
            .output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!("skiff down: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
    }
}

//! End-to-end harness: every cluster runs inside a network namespace made for the
//! test (only `lo`, no route off the machine) and is torn down on drop, even when
//! the test panics. kubectl, curl and friends run inside the same namespace.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub mod agent;
pub mod etcd;
pub mod layered_image;
pub mod multinode;
pub mod registry;

pub const API: &str = "127.0.0.1:6443";

/// A process a test started and must not outlive it, even when the test
/// panics: killed by its PID and reaped on drop.
pub struct Background(pub std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A network namespace owned by the test; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let name = format!(
            "skiff-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        run_ok(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    /// Ends what the test left running inside (a failed walkthrough's "outside"
    /// server, say), by PID, then deletes the namespace: a process would keep its
    /// links and addresses alive after the name is gone.
    fn drop(&mut self) {
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Another machine on the node's network: a veth pair from the node's namespace
/// (`node_if`, holding `node_ip`/24) to a new namespace (`eth0`, `outside_ip`/24)
/// that routes each of `via_node` through the node, as a LAN router would. Make it
/// before the cluster starts, so the address a `--node-ip` names is there to bind.
pub fn outside_machine(
    node: &Netns,
    node_if: &str,
    node_ip: &str,
    outside_ip: &str,
    via_node: &[&str],
) -> Netns {
    let ns = Netns::new();
    let (n, o) = (node.name.as_str(), ns.name.as_str());
    let node_addr = format!("{node_ip}/24");
    let outside_addr = format!("{outside_ip}/24");
    let mut steps: Vec<Vec<&str>> = vec![
        vec![
            "-n", n, "link", "add", node_if, "type", "veth", "peer", "name", "eth0", "netns", o,
        ],
        vec!["-n", n, "addr", "add", &node_addr, "dev", node_if],
        vec!["-n", n, "link", "set", node_if, "up"],
        vec!["-n", o, "addr", "add", &outside_addr, "dev", "eth0"],
        vec!["-n", o, "link", "set", "eth0", "up"],
    ];
    for dst in via_node {
        steps.push(vec!["-n", o, "route", "add", dst, "via", node_ip]);
    }
    for args in steps {
        run_ok(Command::new("ip").args(args));
    }
    ns
}

/// Runs `c` with `input` on its stdin; returns its output.
pub fn output_with_stdin(mut c: Command, input: &str) -> Output {
    use std::io::Write;
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("output")
}

fn run_ok(c: &mut Command) {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn skiff_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
}

/// A running `skiff server` in its own namespace and data directory.
pub struct Cluster {
    child: Option<Child>,
    /// The flags the cluster was started with; restarts reuse them.
    args: Vec<String>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub netns: Netns,
    /// Pods run the built-in catalog's host programs (`--host-images`), as every
    /// suite written before real images did; image suites turn it off.
    pub host_images: bool,
}

impl Cluster {
    /// An API-level cluster: the API server and controllers, no node agent, proxy
    /// or DNS (so no pod processes run). Full-stack tests use [`Cluster::start_with`].
    pub fn start() -> Self {
        Self::start_with(&["--disable", "agent,proxy,dns"])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_in(Netns::new(), extra)
    }

    /// Starts the cluster in a namespace the test already prepared (e.g. with the
    /// address a `--node-ip` names, which the agent binds at start).
    pub fn start_in(netns: Netns, extra: &[&str]) -> Self {
        Self::start_configured(netns, extra, true)
    }

    /// A cluster whose pods run real images (no `--host-images`).
    pub fn start_with_images(netns: Netns, extra: &[&str]) -> Self {
        Self::start_configured(netns, extra, false)
    }

    fn start_configured(netns: Netns, extra: &[&str], host_images: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Cluster {
            child: None,
            args: extra.iter().map(|a| a.to_string()).collect(),
            kubeconfig: dir.path().join("data/admin.kubeconfig"),
            dir,
            netns,
            host_images,
        };
        c.spawn(&[]);
        c
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// (Re)starts the server: with `flags` when given (they become the cluster's
    /// flags), else with the flags it was started with.
    pub fn spawn(&mut self, flags: &[&str]) {
        if !flags.is_empty() {
            self.args = flags.iter().map(|a| a.to_string()).collect();
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("skiff.log"))
            .expect("log file");
        let child = self
            .netns
            .command(skiff_bin())
            .args(["server", "--listen", API, "--data-dir"])
            .arg(self.data_dir())
            .args(self.host_images.then_some("--host-images"))
            .args(&self.args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start skiff");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("skiff exited early ({status}):\n{}", self.log());
                }
            }
            if self.kubeconfig.exists() {
                let out = self.sh("curl -sk https://127.0.0.1:6443/readyz");
                if out.status.success() && String::from_utf8_lossy(&out.stdout) == "ok" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "skiff not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("skiff.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server: SIGKILL if `hard`, else SIGTERM; waits for it to exit.
    pub fn stop(&mut self, hard: bool) {
        if let Some(mut child) = self.child.take() {
            // `ip netns exec` execs skiff, so the child PID is skiff's own.
            let sig = if hard { "-KILL" } else { "-TERM" };
            let _ = Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn env(&self, c: &mut Command) {
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST");
    }

    /// Runs kubectl (the machine's dispatcher unless `bin` says otherwise).
    pub fn kubectl_bin(&self, bin: &Path, args: &[&str]) -> Output {
        let mut c = self.netns.command(bin);
        c.args(args);
        self.env(&mut c);
        c.output().expect("run kubectl")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_bin(Path::new("kubectl"), args)
    }

    /// kubectl with `stdin` fed to it.
    pub fn kubectl_in(&self, args: &[&str], stdin: &str) -> Output {
        let mut c = self.netns.command("kubectl");
        c.args(args);
        self.env(&mut c);
        output_with_stdin(c, stdin)
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

    /// kubectl that must fail; returns its stderr.
    pub fn k_err(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `kubectl apply -f -` of a manifest; returns stdout.
    pub fn apply(&self, manifest: &str) -> String {
        let out = self.kubectl_in(&["apply", "-f", "-"], manifest);
        assert!(
            out.status.success(),
            "apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A shell command inside the namespace, with KUBECONFIG set.
    pub fn sh(&self, script: &str) -> Output {
        let mut c = self.netns.command("sh");
        c.args(["-c", script]);
        self.env(&mut c);
        c.output().expect("run sh")
    }

    /// [`token_kubeconfig`] for this cluster, written as `<name>.kubeconfig`
    /// beside its files.
    pub fn token_kubeconfig(&self, name: &str, token: &str, namespace: &str) -> PathBuf {
        let server = self.k(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ]);
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        let ca = self.data_dir().join("ca.crt");
        token_kubeconfig(&path, &server, &ca, name, token, namespace);
        path
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("admin.token"))
            .expect("token")
            .trim()
            .to_string()
    }
}

impl Cluster {
    /// PIDs of every process in a pod network namespace of this cluster (the
    /// sandboxes the agent recorded under the data directory).
    pub fn pod_processes(&self) -> Vec<u64> {
        let netns = |pid: u64| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let inodes: Vec<_> = self.sandbox_pids().into_iter().filter_map(netns).collect();
        let host = netns(u64::from(std::process::id()));
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            if let Some(ino) = netns(pid) {
                if Some(&ino) != host.as_ref() && inodes.contains(&ino) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// The sandbox holders' PIDs, from the agent's pod state files.
    pub fn sandbox_pids(&self) -> Vec<u64> {
        let dir = self.data_dir().join("agent/pods");
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let b = std::fs::read(e.path().join("state.json")).ok()?;
                let state: serde_json::Value = serde_json::from_slice(&b).ok()?;
                state["sandbox"]["pid"].as_u64()
            })
            .collect()
    }

    /// [`Cluster::pod_processes`] without the sandbox holders' short-lived helpers
    /// (the `sleep` and `ip` each holder runs to watch its link), which come and
    /// go on their own.
    pub fn lasting_pod_processes(&self) -> Vec<u64> {
        let holders = self.sandbox_pids();
        let parent = |pid: u64| -> Option<u64> {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .and_then(|v| v.trim().parse().ok())
        };
        // A holder's helpers include grandchildren: `$(ip ...)` in its loop
        // runs `ip` under a subshell, so every ancestor is looked at.
        let under_a_holder = |pid: u64| {
            let mut p = parent(pid);
            for _ in 0..16 {
                match p {
                    Some(pp) if holders.contains(&pp) => return true,
                    Some(pp) if pp > 1 => p = parent(pp),
                    _ => return false,
                }
            }
            false
        };
        self.pod_processes()
            .into_iter()
            .filter(|&pid| !under_a_holder(pid))
            .collect()
    }

    /// SIGKILLs every pod process: pods are processes that outlive the server by
    /// design, so a test must end them itself.
    pub fn kill_pods(&self) {
        for pid in self.pod_processes() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        self.remove_pod_cgroups();
    }

    /// Removes the cgroups image containers of this cluster's pods left when the
    /// agent was killed before it could (`skiff/<pod uid>` in every hierarchy).
    fn remove_pod_cgroups(&self) {
        fn remove_tree(dir: &Path) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&e.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        let uids: Vec<String> = std::fs::read_dir(self.data_dir().join("agent/pods"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        if uids.is_empty() {
            return;
        }
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
        roots.extend(
            std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        );
        // The killed processes leave their cgroups a moment after the signal.
        for _ in 0..50 {
            let mut left = false;
            for r in &roots {
                for uid in &uids {
                    let d = r.join("skiff").join(uid);
                    remove_tree(&d);
                    left |= d.exists();
                }
                let _ = std::fs::remove_dir(r.join("skiff"));
            }
            if !left {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    /// The server first (so nothing restarts pods), then every pod process, then
    /// (as the fields drop) the namespace and the data directory.
    fn drop(&mut self) {
        self.stop(true);
        self.kill_pods();
        if std::thread::panicking() {
            // The data directory goes with the test: its server log is the only
            // record of why a condition was never met.
            let log = self.log();
            let tail = log.len().saturating_sub(LOG_TAIL_BYTES);
            let start = (tail..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(log.len());
            eprintln!(
                "--- skiff.log (last {} bytes) ---\n{}",
                log.len() - start,
                &log[start..]
            );
        }
    }
}

/// How much of a failed test's server log is printed.
const LOG_TAIL_BYTES: usize = 16 * 1024;

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the named `#[ignore]`d test of this binary inside a fresh network namespace.
pub fn run_inside_netns(test: &str) {
    let ns = Netns::new();
    let exe = std::env::current_exe().expect("test exe");
    let out = ns
        .command(exe)
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SKIFF_E2E_INNER", "1")
        .output()
        .expect("run inner test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "inner test failed:\n{text}"
    );
}

/// Writes to `path` a kubeconfig for `server` trusting `ca` with bearer
/// `token` alone: kubectl given `--token` with the admin kubeconfig also
/// presents its client certificate, which authenticates first, as upstream.
pub fn token_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    name: &str,
    token: &str,
    namespace: &str,
) {
    let config = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: skiff\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n- name: {name}\n  user:\n    token: {token}\n\
         contexts:\n- name: {name}\n  context:\n    cluster: skiff\n    user: {name}\n    namespace: {namespace}\n\
         current-context: {name}\n",
        ca = ca.display(),
        token = token.trim(),
    );
    std::fs::write(path, config).expect("write kubeconfig");
}

//! `skiff up --nodes N` and `skiff down`: a multi-node cluster on one machine,
//! for development and tests, as kind makes one from containers. Each node is a
//! network namespace of its own, held by a process (unnamed: nothing is left in
//! `/run/netns`), with `eth0` on a bridge in the namespace `skiff up` runs in,
//! which is the nodes' LAN and their way out. The first `--servers` nodes run
//! `skiff server` (node 1 makes the cluster, the others join it with its server
//! token: they share its etcd, external or embedded with
//! `--server-arg=--cluster-init`); the others run `skiff agent`, joining node 1
//! with the token it printed.
//!
//! Everything made is recorded in `<data-dir>/<name>/up.json` as soon as it
//! exists, so `skiff down` removes exactly that, by PID and by name, even after
//! a half-finished `up`.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use skiff_agent::net::Cidr;
use skiff_agent::runtime::Proc;

/// The API server's port on the server nodes.
const API_PORT: u16 = 6443;
/// How long `up` waits for every node to be Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long `down` lets a node's processes stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Number of nodes; the first also runs the control plane.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=50))]
    nodes: u8,
    /// How many of the nodes (the first ones) run `skiff server`; more than one
    /// needs a shared store: embedded etcd (`--server-arg=--cluster-init`), or
    /// `--server-arg=--store=etcd --server-arg=--etcd-endpoints=...`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=50))]
    servers: u8,
    #[command(flatten)]
    cluster: ClusterRef,
    /// The nodes' LAN: the bridge takes its first address, node i the (i+1)-th.
    #[arg(long, default_value = "10.250.0.0/24")]
    node_network: String,
    /// How pods reach other nodes' pods: host-gw, vxlan or auto.
    #[arg(long, default_value = "auto")]
    flannel_backend: skiff_agent::crossnode::Backend,
    /// Nodes run the built-in catalog's host programs instead of pulling images.
    #[arg(long)]
    host_images: bool,
    /// Registry mirrors and credentials for every node (k3s `registries.yaml`).
    #[arg(long)]
    registry_config: Option<PathBuf>,
    /// A further flag for every `skiff server`, e.g.
    /// `--server-arg=--node-monitor-grace-period=10s` (repeatable).
    /// `--cluster-init` goes to node 1 only: it makes the cluster (and its embedded
    /// etcd), the other servers join it, each with an etcd member of its own.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// A further flag for every `skiff agent` (repeatable).
    #[arg(long = "agent-arg", allow_hyphen_values = true)]
    agent_args: Vec<String>,
}

/// Which local cluster: its name and where its nodes keep their state.
#[derive(clap::Args, Debug)]
pub struct ClusterRef {
    /// The cluster's name (1-8 of a-z, 0-9): names its bridge, nodes and directory.
    #[arg(long, default_value = "skiff", value_parser = parse_name)]
    name: String,
    /// Where local clusters live; this one under `<data-dir>/<name>`.
    #[arg(long, default_value = "/var/lib/skiff-up")]
    data_dir: PathBuf,
}

fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 8
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid cluster name {s:?}: 1 to 8 characters of a-z and 0-9 (it names network devices)"
        ))
    }
}

impl ClusterRef {
    fn dir(&self) -> PathBuf {
        self.data_dir.join(&self.name)
    }
    fn bridge(&self) -> String {
        format!("skup-{}", self.name)
    }
    fn veth(&self, node: u8) -> String {
        format!("sku{node}-{}", self.name)
    }
    fn nft_table(&self) -> String {
        format!("skiff-up-{}", self.name)
    }
    fn node_name(&self, node: u8) -> String {
        format!("{}-node{node}", self.name)
    }
}

/// What `up` made, as `down` must undo it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    bridge: Option<String>,
    nft_table: Option<String>,
    veths: Vec<String>,
    /// The processes holding each node's network namespace.
    holders: Vec<Proc>,
    /// `skiff server` and the `skiff agent`s.
    nodes: Vec<Proc>,
    /// Each node's data directory.
    node_dirs: Vec<PathBuf>,
}

fn state_path(c: &ClusterRef) -> PathBuf {
    c.dir().join("up.json")
}

fn save(c: &ClusterRef, s: &State) -> Result<()> {
    let p = state_path(c);
    std::fs::write(&p, serde_json::to_vec_pretty(s)?)
        .with_context(|| format!("writing {}", p.display()))
}

fn load(c: &ClusterRef) -> Option<State> {
    let b = std::fs::read(state_path(c)).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Sets the bridge's MAC address to the random one it was made with. A Linux
/// bridge whose address was never set follows the lowest MAC among its ports,
/// so removing a node's veth can change it, and the other nodes' neighbour
/// entries for the LAN's address then point at a MAC nobody has until they
/// expire (watches to the host stalled for up to a minute). A switch keeps its
/// address when a cable is pulled; this makes the LAN behave so.
fn pin_mac(bridge: &str) -> Result<()> {
    let path = format!("/sys/class/net/{bridge}/address");
    let mac = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    ip(&["link", "set", bridge, "address", mac.trim()])
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn run_stdin(program: &str, args: &[&str], input: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Starts `program` in the background, detached from this process's group (a
/// Ctrl-C to `skiff up` must not reach the nodes), output to `log`.
fn spawn_detached(c: &mut Command, log: &Path) -> Result<Proc> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let child = c
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {c:?}"))?;
    let pid = child.id();
    // Not waited for: the node outlives `skiff up`; `skiff down` ends it by PID.
    std::mem::forget(child);
    Proc::of(pid).with_context(|| format!("{c:?} exited at once; see {}", log.display()))
}

pub async fn up(args: UpArgs) -> Result<()> {
    let c = &args.cluster;
    if let Some(s) = load(c) {
        if s.nodes.iter().chain(&s.holders).any(|p| p.alive()) {
            bail!(
                "cluster {:?} is already up (see {}); `skiff down --name {}` first",
                c.name,
                state_path(c).display(),
                c.name
            );
        }
        teardown(c, s);
    }
    let net = Cidr::parse(&args.node_network).context("--node-network")?;
    if net.size() < u32::from(args.nodes) + 3 {
        bail!("--node-network {net} is too small for {} nodes", args.nodes);
    }
    std::fs::create_dir_all(c.dir()).with_context(|| format!("creating {}", c.dir().display()))?;
    let mut state = State::default();
    let made = make(&args, net, &mut state).await;
    if let Err(e) = made {
        save(c, &state)?;
        teardown(c, state);
        return Err(e);
    }
    save(c, &state)?;
    println!(
        "skiff: {} nodes up. To use the cluster:\n  export KUBECONFIG={}\n  kubectl get nodes -o wide\nRemove it with: skiff down --name {}",
        args.nodes,
        c.dir().join("kubeconfig").display(),
        c.name
    );
    Ok(())
}

async fn make(args: &UpArgs, net: Cidr, state: &mut State) -> Result<()> {
    let c = &args.cluster;
    let gateway = net.nth(1);
    let node_ip = |i: u8| net.nth(1 + u32::from(i));
    let bridge = c.bridge();
    ip(&["link", "add", &bridge, "type", "bridge"])
        .with_context(|| format!("making the nodes' bridge {bridge}"))?;
    state.bridge = Some(bridge.clone());
    pin_mac(&bridge)?;
    ip(&[
        "addr",
        "add",
        &format!("{gateway}/{}", net.len),
        "dev",
        &bridge,
    ])?;
    ip(&["link", "set", &bridge, "up"])?;
    // The nodes' way out (image registries, upstream DNS), as a home router's.
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
    let table = c.nft_table();
    run_stdin(
        "nft",
        &["-f", "-"],
        &format!(
            "table ip {table} {{\n  chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n    ip saddr {net} oifname != \"{bridge}\" masquerade\n  }}\n}}\n"
        ),
    )?;
    state.nft_table = Some(table);
    let exe = std::env::current_exe().context("finding the skiff binary")?;
    let api = format!("https://{}:{API_PORT}", node_ip(1));
    let mut token = String::new();
    let mut server_token = String::new();
    if args.servers > args.nodes {
        bail!(
            "--servers {} is more than --nodes {}",
            args.servers,
            args.nodes
        );
    }
    for i in 1..=args.nodes {
        let holder = spawn_detached(
            Command::new("unshare").args(["--net", "--", "sleep", "infinity"]),
            &c.dir().join(format!("holder{i}.log")),
        )?;
        state.holders.push(holder);
        wait_own_netns(holder)?;
        let veth = c.veth(i);
        ip(&[
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &holder.pid.to_string(),
        ])?;
        state.veths.push(veth.clone());
        ip(&["link", "set", &veth, "master", &bridge, "up"])?;
        let pid = holder.pid.to_string();
        run_stdin(
            "nsenter",
            &["-t", &pid, "-n", "ip", "-batch", "-"],
            &format!(
                "link set lo up\naddr add {}/{} dev eth0\nlink set eth0 up\nroute add default via {gateway}\n",
                node_ip(i),
                net.len
            ),
        )?;
        let dir = c.dir().join(format!("node{i}"));
        std::fs::create_dir_all(&dir)?;
        state.node_dirs.push(dir.clone());
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid, "-n", "--"]).arg(&exe);
        let is_server = i <= args.servers;
        if is_server {
            cmd.arg("server")
                .args(["--listen", &format!("{}:{API_PORT}", node_ip(i))]);
            if i > 1 {
                cmd.args(["--server", &api, "--token", &server_token]);
            }
        } else {
            cmd.args(["agent", "--server", &api, "--token", &token]);
        }
        cmd.arg("--data-dir")
            .arg(&dir)
            .args(["--node-name", &c.node_name(i)])
            .args(["--node-ip", &node_ip(i).to_string()])
            .args(["--flannel-backend", &args.flannel_backend.to_string()]);
        if args.host_images {
            cmd.arg("--host-images");
        }
        if let Some(r) = &args.registry_config {
            cmd.arg("--registry-config").arg(r);
        }
        if is_server {
            cmd.args(server_args(&args.server_args, i));
        } else {
            cmd.args(&args.agent_args);
        }
        let node = spawn_detached(&mut cmd, &dir.join("skiff.log"))?;
        state.nodes.push(node);
        save(c, state)?;
        if is_server {
            let t = wait_server(i, &dir, node, node_ip(i)).await?;
            if i == 1 {
                token = t;
                server_token = read_server_token(&dir)?;
                write_kubeconfig(c, &dir, &api)?;
            }
        }
    }
    wait_ready(c, args.nodes, state).await
}

/// Server `i`'s further flags: `--cluster-init` only for node 1, which makes the
/// cluster; the others join it (`--server`), which that flag would contradict.
fn server_args(given: &[String], i: u8) -> Vec<&String> {
    given
        .iter()
        .filter(|a| i == 1 || !is_cluster_init(a))
        .collect()
}

fn is_cluster_init(arg: &str) -> bool {
    arg == CLUSTER_INIT
        || arg
            .strip_prefix(CLUSTER_INIT)
            .is_some_and(|v| v.starts_with('='))
}

/// `skiff server`'s flag for a new cluster with embedded etcd.
const CLUSTER_INIT: &str = "--cluster-init";

/// Waits until `holder` is in a network namespace of its own (`unshare` makes it
/// just before it execs): a link moved there earlier would land in ours.
fn wait_own_netns(holder: Proc) -> Result<()> {
    let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let ours = ns(std::process::id());
    let deadline = Instant::now() + Duration::from_secs(5);
    while ns(holder.pid) == ours {
        if !holder.alive() || Instant::now() > deadline {
            bail!("the process holding a node's network namespace did not start");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The token further servers join node 1's with.
fn read_server_token(dir: &Path) -> Result<String> {
    let p = dir.join(skiff_apiserver::server_join::SERVER_TOKEN_FILE);
    let t = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(t.trim().to_string())
}

/// Waits for node `i`'s server to write its join token and answer on its address.
async fn wait_server(i: u8, dir: &Path, server: Proc, addr: Ipv4Addr) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if !server.alive() {
            bail!(
                "skiff server on node {i} exited:\n{}",
                log_tail(&dir.join("skiff.log"))
            );
        }
        let token = std::fs::read_to_string(dir.join("node-token")).ok();
        let listening = tokio::net::TcpStream::connect((addr, API_PORT))
            .await
            .is_ok();
        if let (Some(t), true) = (token, listening) {
            return Ok(t.trim().to_string());
        }
        if Instant::now() > deadline {
            bail!(
                "skiff server on node {i} did not come up within 60 s; see {}",
                dir.join("skiff.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last lines of a node's log, for an error that removes the node with it.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The admin kubeconfig, pointed at node 1's address on the bridge.
fn write_kubeconfig(c: &ClusterRef, server_dir: &Path, api: &str) -> Result<()> {
    let admin = std::fs::read_to_string(server_dir.join("admin.kubeconfig"))
        .context("reading the server's admin kubeconfig")?;
    let out: String = admin
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("server:") {
                format!("    server: {api}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    use std::os::unix::fs::OpenOptionsExt;
    let path = c.dir().join("kubeconfig");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, format!("{out}\n").as_bytes())?;
    Ok(())
}

async fn wait_ready(c: &ClusterRef, nodes: u8, state: &State) -> Result<()> {
    let client = crate::components::client(&c.dir().join("kubeconfig")).await?;
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        for (i, p) in state.nodes.iter().enumerate() {
            if !p.alive() {
                bail!(
                    "node {} exited:\n{}",
                    i + 1,
                    log_tail(&state.node_dirs[i].join("skiff.log"))
                );
            }
        }
        let ready = match api.list(&Default::default()).await {
            Ok(list) => list
                .items
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .count(),
            Err(_) => 0,
        };
        if ready >= usize::from(nodes) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{ready} of {nodes} nodes Ready after {} s; logs under {}",
                READY_TIMEOUT.as_secs(),
                c.dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn down(c: ClusterRef) -> Result<()> {
    let Some(state) = load(&c) else {
        bail!(
            "no cluster {:?} under {} (nothing to remove)",
            c.name,
            c.data_dir.display()
        );
    };
    teardown(&c, state);
    println!("skiff: cluster {:?} removed", c.name);
    Ok(())
}

/// Ends the nodes (SIGTERM, then SIGKILL after [`STOP_GRACE`]), their pods, the
/// namespace holders, and removes the links, the nft table and the directory.
fn teardown(c: &ClusterRef, state: State) {
    use nix::sys::signal::{kill, Signal};
    let signal = |p: &Proc, s: Signal| {
        if p.alive() {
            let _ = kill(nix::unistd::Pid::from_raw(p.pid as i32), s);
        }
    };
    for p in state.nodes.iter().rev() {
        signal(p, Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while state.nodes.iter().any(|p| p.alive()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for p in &state.nodes {
        signal(p, Signal::SIGKILL);
    }
    for d in &state.node_dirs {
        skiff_agent::teardown::kill_pods(&d.join("agent"));
    }
    for p in &state.holders {
        signal(p, Signal::SIGKILL);
    }
    for v in &state.veths {
        let _ = ip(&["link", "del", v]);
    }
    if let Some(b) = &state.bridge {
        let _ = ip(&["link", "del", b]);
    }
    if let Some(t) = &state.nft_table {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", t])
            .stderr(Stdio::null())
            .status();
    }
    // Give killed processes a moment to leave, then free their mounts.
    std::thread::sleep(Duration::from_millis(200));
    skiff_agent::teardown::unmount_under(&c.dir());
    if let Err(e) = std::fs::remove_dir_all(c.dir()) {
        eprintln!("skiff: could not remove {}: {e}", c.dir().display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_init_goes_to_the_first_server_only() {
        let given: Vec<String> = ["--cluster-init", "--log=debug", "--cluster-init=true"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(server_args(&given, 1).len(), 3);
        assert_eq!(server_args(&given, 2), vec!["--log=debug"]);
        assert!(!is_cluster_init("--cluster-initx"));
    }
}

//! The benchmark's pod network, inside the namespace the benchmark runs in (the
//! "node"): a client namespace and server namespaces, each joined to the node by a
//! veth pair, with a /32 address and a default route via the node (the routed
//! layout the proxy's own e2e test uses). Traffic to a pod IP and to a ClusterIP
//! therefore takes the same path through the node's forwarding and conntrack;
//! the only difference is the proxy's DNAT.
//!
//! For the cross-node phases a second node joins: a namespace ("node B")
//! joined to this one by a veth pair (the nodes' LAN, [`LAN_A`] and [`LAN_B`]),
//! with its own pod range ([`NODE_B_POD_CIDR`]) and a server pod in it. How
//! one node reaches the other's pods (host-gw routes or VXLAN) is programmed
//! by `crossnode.rs` with the agent's own functions.
//!
//! Everything made here is removed on drop: helper processes (by PID), then
//! the namespaces (which takes their veths along).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The node's side of every veth, and the pods' default gateway.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
/// The pod network the proxy is told about (pods are not masqueraded).
pub const POD_CIDR: &str = "10.244.0.0/16";
/// The client pod's main address (the prober's).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 2);
/// Source addresses of the load generator, one per side of a comparison. Both
/// sides end at the same server socket, and the client's ephemeral ports wrap
/// every few seconds at these rates: from one address, a pod-IP connection's
/// conntrack entry (TIME_WAIT for two minutes) would clash with a later
/// ClusterIP connection's reply tuple, and the server's TIME_WAIT socket
/// would refuse a SYN whose timestamps come from another path's offset.
pub const LOAD_SOURCE_A: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 3);
pub const LOAD_SOURCE_B: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 4);
/// Two more, for the cross-node comparison of backends (pod IP against pod IP):
/// A's earlier ClusterIP connections to the same server left conntrack entries
/// whose reply tuples a direct connection from A would clash with for two
/// minutes (the clashing SYNs are dropped and retransmitted a second later).
pub const LOAD_SOURCE_C: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 5);
pub const LOAD_SOURCE_D: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 6);
/// The port every server pod listens on.
pub const SERVER_PORT: u16 = 8080;

/// This node's pod range (node A's; its pods are the /32s above).
pub const NODE_A_POD_CIDR: &str = "10.244.0.0/24";
/// Node B's pod range, its pods' gateway, and its server pod.
pub const NODE_B_POD_CIDR: &str = "10.244.1.0/24";
pub const NODE_B_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
pub const REMOTE_SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 11);
pub const REMOTE_SERVER: &str = "podb1";
/// The nodes' LAN (a veth pair): node A's and node B's addresses.
pub const LAN_A: Ipv4Addr = Ipv4Addr::new(10, 250, 1, 1);
pub const LAN_B: Ipv4Addr = Ipv4Addr::new(10, 250, 1, 2);
pub const LAN_PREFIX: u8 = 24;
/// Node A's end of the LAN, and node B's.
pub const LAN_DEV_A: &str = "lan-b";
pub const LAN_DEV_B: &str = "eth0";

/// Server pod `i` (1-based): `pod<i>` at 10.244.0.(10 + i).
pub fn server_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 0, 10 + i)
}

pub fn server_name(i: u8) -> String {
    format!("pod{i}")
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `sysctl -w` in this namespace, or in pod namespace `ns`.
fn sysctl(ns: Option<&str>, setting: &str) -> Result<()> {
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "sysctl"]);
            c
        }
        None => Command::new("sysctl"),
    };
    let out = c
        .args(["-qw", setting])
        .output()
        .context("running sysctl")?;
    if !out.status.success() {
        bail!(
            "sysctl {setting}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A pod namespace; deleted on drop.
struct PodNs {
    name: String,
}

impl Drop for PodNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete namespace {}: {e:#}", self.name);
        }
    }
}

/// The pods and the processes running in them.
pub struct Topology {
    prefix: String,
    // Processes before namespaces: fields drop in declaration order.
    servers: Vec<Child>,
    namespaces: Vec<PodNs>,
    client: String,
    /// Node B's namespace, once [`Topology::add_node_b`] made it.
    node_b: Option<String>,
}

/// Where a pod's host side lives: this namespace (node A) or node B's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    A,
    B,
}

impl Topology {
    /// Makes the client and `servers` server pods. `prefix` names them (the
    /// benchmark's own namespace name, so a leftover is easy to attribute).
    pub fn create(prefix: &str, servers: u8) -> Result<Self> {
        // Forwarding is off in a fresh namespace. ICMP errors are rate-limited
        // per peer (one a second): the prober, retrying a ClusterIP that is
        // not programmed yet every 250 µs, would see its SYNs dropped silently
        // and wait for a retransmit instead of noticing the moment it goes live.
        sysctl(None, "net.ipv4.ip_forward=1")?;
        sysctl(None, "net.ipv4.icmp_ratelimit=0")?;
        let mut t = Topology {
            prefix: prefix.to_string(),
            servers: Vec::new(),
            namespaces: Vec::new(),
            client: format!("{prefix}-client"),
            node_b: None,
        };
        t.pod(
            "client",
            &[
                CLIENT_IP,
                LOAD_SOURCE_A,
                LOAD_SOURCE_B,
                LOAD_SOURCE_C,
                LOAD_SOURCE_D,
            ],
        )?;
        // Fewer reuses of a port within conntrack's TIME_WAIT.
        sysctl(
            Some(&t.ns_name("client")),
            "net.ipv4.ip_local_port_range=10000 65000",
        )?;
        for i in 1..=servers {
            t.pod(&server_name(i), &[server_ip(i)])?;
        }
        Ok(t)
    }

    fn ns_name(&self, pod: &str) -> String {
        format!("{}-{pod}", self.prefix)
    }

    /// A pod on node A with `addrs` (the first is its source address by default).
    fn pod(&mut self, pod: &str, addrs: &[Ipv4Addr]) -> Result<()> {
        self.pod_on(Node::A, pod, addrs)
    }

    /// A pod whose host side is on `node`.
    fn pod_on(&mut self, node: Node, pod: &str, addrs: &[Ipv4Addr]) -> Result<()> {
        let ns = self.ns_name(pod);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(PodNs { name: ns.clone() });
        let host_if = format!("vb-{pod}");
        let (gw, on_node) = match node {
            Node::A => (GATEWAY.to_string(), Vec::new()),
            Node::B => (
                NODE_B_GATEWAY.to_string(),
                vec!["-n".to_string(), self.node_b_ns()?.to_string()],
            ),
        };
        // `ip` on the pod's node.
        let host = |args: &[&str]| {
            let mut all: Vec<&str> = on_node.iter().map(String::as_str).collect();
            all.extend_from_slice(args);
            ip(&all)
        };
        host(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        host(&["addr", "add", &format!("{gw}/32"), "dev", &host_if])?;
        host(&["link", "set", &host_if, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        for addr in addrs {
            let a = format!("{addr}/32");
            host(&["route", "add", &a, "dev", &host_if])?;
            ip(&["-n", &ns, "addr", "add", &a, "dev", "eth0"])?;
        }
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "route", "add", &gw, "dev", "eth0"])?;
        ip(&["-n", &ns, "route", "add", "default", "via", &gw])?;
        Ok(())
    }

    /// Node B's namespace name.
    pub fn node_b_ns(&self) -> Result<&str> {
        self.node_b.as_deref().context("node B was not made")
    }

    /// The network namespace of pod `pod` (for `ip -n`).
    pub fn pod_ns(&self, pod: &str) -> String {
        self.ns_name(pod)
    }

    /// Makes node B: a namespace joined to this one by the LAN veth pair,
    /// forwarding on, with the server pod [`REMOTE_SERVER`] (its HTTP server
    /// started). No route to the other node's pods yet: see `crossnode.rs`.
    pub fn add_node_b(&mut self) -> Result<()> {
        let nb = self.ns_name("nodeb");
        ip(&["netns", "add", &nb])?;
        self.namespaces.push(PodNs { name: nb.clone() });
        self.node_b = Some(nb.clone());
        sysctl(Some(&nb), "net.ipv4.ip_forward=1")?;
        sysctl(Some(&nb), "net.ipv4.icmp_ratelimit=0")?;
        ip(&["-n", &nb, "link", "set", "lo", "up"])?;
        ip(&[
            "link", "add", LAN_DEV_A, "type", "veth", "peer", "name", LAN_DEV_B, "netns", &nb,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{LAN_A}/{LAN_PREFIX}"),
            "dev",
            LAN_DEV_A,
        ])?;
        ip(&["link", "set", LAN_DEV_A, "up"])?;
        ip(&[
            "-n",
            &nb,
            "addr",
            "add",
            &format!("{LAN_B}/{LAN_PREFIX}"),
            "dev",
            LAN_DEV_B,
        ])?;
        ip(&["-n", &nb, "link", "set", LAN_DEV_B, "up"])?;
        self.pod_on(Node::B, REMOTE_SERVER, &[REMOTE_SERVER_IP])?;
        self.start_server_named(REMOTE_SERVER)
    }

    /// This benchmark binary, re-executed inside pod `pod` with `args`.
    fn helper(&self, pod: &str, args: &[String]) -> Result<tokio::process::Command> {
        let exe = std::env::current_exe().context("locating the benchmark binary")?;
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", &self.ns_name(pod)])
            .arg(exe)
            .args(args)
            .kill_on_drop(true);
        Ok(c)
    }

    /// Starts the HTTP server of server pod `i`.
    pub fn start_server(&mut self, i: u8) -> Result<()> {
        self.start_server_named(&server_name(i))
    }

    /// Starts the HTTP server of pod `name` (it answers its name).
    fn start_server_named(&mut self, name: &str) -> Result<()> {
        let name = name.to_string();
        let child = self
            .helper(
                &name,
                &[
                    "serve".into(),
                    "--id".into(),
                    name.clone(),
                    "--port".into(),
                    SERVER_PORT.to_string(),
                ],
            )?
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting the server in {name}"))?;
        self.servers.push(child);
        Ok(())
    }

    /// Runs the load generator in the client pod and returns its result line.
    pub async fn load(&self, args: &[String]) -> Result<String> {
        let out = self
            .helper("client", args)?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .output()
            .await
            .context("running the load generator")?;
        if !out.status.success() {
            bail!(
                "load generator failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Starts the prober in the client pod.
    pub fn prober(&self) -> Result<Prober> {
        let mut child = self
            .helper("client", &["probe".into()])?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the prober")?;
        let stdin = child.stdin.take().context("prober stdin")?;
        let stdout = child.stdout.take().context("prober stdout")?;
        Ok(Prober {
            _child: child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    pub fn client_ns(&self) -> &str {
        &self.client
    }
}

/// The running prober (see `wire::probe`); killed on drop.
pub struct Prober {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Prober {
    /// Starts probing `addr` until it answers `expect` (`*`: anything).
    pub async fn start(&mut self, addr: &str, expect: &str) -> Result<()> {
        self.stdin
            .write_all(format!("{addr} {expect}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Waits for the answer to the last [`Prober::start`]; the attempts it took.
    pub async fn done(&mut self) -> Result<u64> {
        let line = self.lines.next_line().await?.context("the prober exited")?;
        match line.strip_prefix("ok ") {
            Some(n) => Ok(n.parse()?),
            None => bail!("probe failed: {line}"),
        }
    }

    /// Probes and waits.
    pub async fn wait_for(&mut self, addr: &str, expect: &str) -> Result<u64> {
        self.start(addr, expect).await?;
        self.done().await
    }
}

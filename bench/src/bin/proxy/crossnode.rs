//! Across nodes: the client pod on node A (this namespace, where the proxier
//! runs) and a server pod on node B, the nodes joined by a LAN veth pair (see
//! `topo.rs`). The routes between their pod ranges are programmed with the
//! agent's own functions from `skiff_agent::crossnode`, as `skiff agent` does
//! on each node: host-gw is the `plan` + `diff` batch of direct routes; VXLAN
//! is `underlay` + `setup_vxlan` on both nodes (once) and the FDB, neighbour
//! and route batches; pods on VXLAN nodes get the overlay MTU. Switching
//! backends applies `diff(old plan, new plan)` on both nodes.
//!
//! Measured: ClusterIP ÷ pod IP across nodes per backend (keep-alive requests
//! and new connections), and the pod-IP path on VXLAN ÷ on host-gw with the
//! backend switched between the two runs of every round, so drift hits both.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use skiff_agent::crossnode::{
    diff, plan, setup_vxlan, underlay, Backend, Peer, Plan, VXLAN_DEVICE, VXLAN_OVERHEAD,
};
use skiff_agent::net::Cidr;

use crate::cluster::{ApiServer, NODE, SERVICE_PORT};
use crate::dataplane::{self, Comparison, Phase, Shape};
use crate::topo::{
    Prober, Topology, LAN_A, LAN_B, LOAD_SOURCE_C, LOAD_SOURCE_D, NODE_A_POD_CIDR, NODE_B_POD_CIDR,
    REMOTE_SERVER, REMOTE_SERVER_IP, SERVER_PORT,
};
use crate::wire::Mode;

/// Node B's Node name (names its VTEP MAC, as the agent's node name does).
pub const NODE_B: &str = "bench-node-b";
/// The service whose one endpoint is the server pod on node B.
pub const REMOTE: &str = "web-remote";

/// What the cross-node phases measured.
#[derive(Debug, Clone)]
pub struct CrossNode {
    /// ClusterIP (a) ÷ pod IP (b), host-gw.
    pub host_gw: Phase,
    /// ClusterIP (a) ÷ pod IP (b), VXLAN.
    pub vxlan: Phase,
    /// Pod IP on VXLAN (a) ÷ on host-gw (b).
    pub backends: Phase,
    /// The LAN's MTU and the pods' MTU on VXLAN.
    pub underlay_mtu: u32,
    pub overlay_mtu: u32,
}

/// `ip [-n ns] -batch -` of `script`; nothing to do for an empty one.
fn batch(program: &str, ns: Option<&str>, script: &str) -> Result<()> {
    if script.is_empty() {
        return Ok(());
    }
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    };
    let mut child = c
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} -batch on {}: {}: {}",
            ns.unwrap_or("node A"),
            String::from_utf8_lossy(&out.stderr).trim(),
            script.trim()
        );
    }
    Ok(())
}

fn cidr(s: &str) -> Result<Cidr> {
    Cidr::parse(s).map_err(|e| anyhow::anyhow!("{s}: {e}"))
}

/// The two nodes' routing state and how to switch it.
pub struct Routes {
    node_b: String,
    client_ns: String,
    server_ns: String,
    underlay_mtu: u32,
    /// The backend programmed now (none at first).
    current: Option<Backend>,
}

impl Routes {
    /// Makes the VXLAN device on both nodes, as the agent does on a node that
    /// may encapsulate: the underlay (the device holding the node's address)
    /// and its MTU, then `setup_vxlan` with the MTU less the VXLAN overhead.
    /// Node B's is made by this binary run inside its namespace (`vxlan-setup`).
    pub async fn setup(topo: &Topology) -> Result<Self> {
        let (dev, mtu) = underlay(LAN_A).await?;
        setup_vxlan(
            NODE,
            LAN_A,
            &dev,
            mtu.saturating_sub(VXLAN_OVERHEAD),
            cidr(NODE_A_POD_CIDR)?,
        )
        .await
        .context("the VXLAN device on node A")?;
        let node_b = topo.node_b_ns()?.to_string();
        let exe = std::env::current_exe().context("locating the benchmark binary")?;
        let out = Command::new("ip")
            .args(["netns", "exec", &node_b])
            .arg(exe)
            .args([
                "vxlan-setup",
                "--node",
                NODE_B,
                "--node-ip",
                &LAN_B.to_string(),
                "--cidr",
                NODE_B_POD_CIDR,
            ])
            .stdin(Stdio::null())
            .output()
            .context("running vxlan-setup on node B")?;
        if !out.status.success() {
            bail!(
                "the VXLAN device on node B: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Routes {
            node_b,
            client_ns: topo.pod_ns("client"),
            server_ns: topo.pod_ns(REMOTE_SERVER),
            underlay_mtu: mtu,
            current: None,
        })
    }

    pub fn overlay_mtu(&self) -> u32 {
        self.underlay_mtu.saturating_sub(VXLAN_OVERHEAD)
    }

    /// The plans of node A and node B for `backend` (each node's one peer is
    /// the other; both are on the LAN, so directly reachable).
    fn plans(backend: Backend) -> Result<(Plan, Plan)> {
        let a = Peer {
            name: NODE.into(),
            cidr: cidr(NODE_A_POD_CIDR)?,
            ip: LAN_A,
        };
        let b = Peer {
            name: NODE_B.into(),
            cidr: cidr(NODE_B_POD_CIDR)?,
            ip: LAN_B,
        };
        Ok((plan(backend, &[b], |_| true), plan(backend, &[a], |_| true)))
    }

    /// Programs `backend` on both nodes: the agent's `diff` from the current
    /// plan (bridge batch, then ip batch, as the agent applies them), and the
    /// pods' MTU on both ends of their veths.
    pub fn set(&mut self, backend: Backend) -> Result<()> {
        if self.current == Some(backend) {
            return Ok(());
        }
        let (old_a, old_b) = match self.current {
            Some(c) => Self::plans(c)?,
            None => (Plan::new(), Plan::new()),
        };
        let (new_a, new_b) = Self::plans(backend)?;
        let mtu = if backend.may_encapsulate() {
            self.overlay_mtu()
        } else {
            self.underlay_mtu
        };
        let (ip_a, bridge_a) = diff(&old_a, &new_a);
        let (ip_b, bridge_b) = diff(&old_b, &new_b);
        batch("bridge", None, &bridge_a)?;
        batch("ip", None, &format!("{ip_a}link set vb-client mtu {mtu}\n"))?;
        batch("bridge", Some(&self.node_b), &bridge_b)?;
        batch(
            "ip",
            Some(&self.node_b),
            &format!("{ip_b}link set vb-{REMOTE_SERVER} mtu {mtu}\n"),
        )?;
        for ns in [&self.client_ns, &self.server_ns] {
            batch("ip", Some(ns), &format!("link set eth0 mtu {mtu}\n"))?;
        }
        self.current = Some(backend);
        Ok(())
    }
}

impl Drop for Routes {
    /// Node A's part (node B's goes with its namespace): the routes to node
    /// B's pods and the VXLAN device, and the client pod's MTU back.
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["route", "del", NODE_B_POD_CIDR])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", VXLAN_DEVICE])
            .stderr(Stdio::null())
            .status();
        let mtu = self.underlay_mtu.to_string();
        let _ = Command::new("ip")
            .args(["link", "set", "vb-client", "mtu", &mtu])
            .status();
        let _ = Command::new("ip")
            .args(["-n", &self.client_ns, "link", "set", "eth0", "mtu", &mtu])
            .status();
    }
}

/// The hidden `vxlan-setup` subcommand, run inside node B's namespace.
pub async fn vxlan_setup(node: &str, node_ip: Ipv4Addr, pod_cidr: &str) -> Result<()> {
    let (dev, mtu) = underlay(node_ip).await?;
    setup_vxlan(
        node,
        node_ip,
        &dev,
        mtu.saturating_sub(VXLAN_OVERHEAD),
        cidr(pod_cidr)?,
    )
    .await
}

/// Pod IP with `a` programmed against pod IP with `b`, switching the backend
/// before every run; `shape.rounds` rounds alternating which goes first.
async fn compare_backends(
    topo: &Topology,
    routes: &mut Routes,
    (a, b): (Backend, Backend),
    target: SocketAddr,
    mode: Mode,
    shape: Shape,
) -> Result<Comparison> {
    let mut c = Comparison::default();
    for round in 0..shape.rounds {
        let order = if round % 2 == 0 { [a, b] } else { [b, a] };
        for backend in order {
            routes.set(backend)?;
            // Each side from its own source address, neither used before
            // against this server through a ClusterIP (see `topo::LOAD_SOURCE_C`).
            let (source, runs) = if backend == a {
                (LOAD_SOURCE_C, &mut c.a)
            } else {
                (LOAD_SOURCE_D, &mut c.b)
            };
            runs.push(dataplane::run(topo, (target, source), mode, shape).await?);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(c)
}

/// Every cross-node phase; the remote service is created first and deleted
/// after, so the later phases see the cluster they always saw.
pub async fn measure(
    topo: &Topology,
    prober: &mut Prober,
    api: &ApiServer,
    shape: Shape,
) -> Result<CrossNode> {
    let mut routes = Routes::setup(topo).await?;
    let vip_ip = api
        .create_service_at(REMOTE, &[(REMOTE_SERVER_IP, NODE_B)])
        .await?;
    let vip = SocketAddr::from((vip_ip, SERVICE_PORT));
    let pod = SocketAddr::from((REMOTE_SERVER_IP, SERVER_PORT));
    routes.set(Backend::HostGw)?;
    // The remote pod answers directly and through the ClusterIP.
    for addr in [pod, vip] {
        prober
            .wait_for(&addr.to_string(), REMOTE_SERVER)
            .await
            .with_context(|| format!("{addr} on node B never answered over host-gw"))?;
    }
    eprintln!("across nodes, host-gw (client {})", topo.client_ns());
    let host_gw = dataplane::phase(topo, vip, pod, shape).await?;
    routes.set(Backend::Vxlan)?;
    for addr in [pod, vip] {
        prober
            .wait_for(&addr.to_string(), REMOTE_SERVER)
            .await
            .with_context(|| format!("{addr} on node B never answered over VXLAN"))?;
    }
    eprintln!("across nodes, vxlan");
    let vxlan = dataplane::phase(topo, vip, pod, shape).await?;
    eprintln!(
        "  keep-alive requests to the pod IP: vxlan vs host-gw, switched every run, {} rounds",
        shape.rounds
    );
    let pair = (Backend::Vxlan, Backend::HostGw);
    let keep_alive = compare_backends(topo, &mut routes, pair, pod, Mode::KeepAlive, shape).await?;
    eprintln!(
        "  new connections to the pod IP: vxlan vs host-gw, switched every run, {} rounds",
        shape.rounds
    );
    let close = compare_backends(topo, &mut routes, pair, pod, Mode::Close, shape).await?;
    let result = CrossNode {
        host_gw,
        vxlan,
        backends: Phase { keep_alive, close },
        underlay_mtu: routes.underlay_mtu,
        overlay_mtu: routes.overlay_mtu(),
    };
    api.delete_service(REMOTE).await?;
    drop(routes);
    Ok(result)
}

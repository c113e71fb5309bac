//! The pod network across nodes, with the kernel's own devices and no user-space
//! forwarding, as flannel's backends do it: every other Node's pod CIDR is routed
//! either straight to that node's address (`host-gw`: the nodes share an L2
//! segment) or through a VXLAN device (`vxlan`: the kernel encapsulates, with one
//! static FDB and neighbour entry per peer, so nothing is learnt by flooding).
//! `auto` picks per peer: direct when its address is on a connected subnet, VXLAN
//! otherwise (flannel's vxlan `DirectRouting`).
//!
//! Start at [`run`]: it watches the Nodes, [`plan`]s the routes (pure), and
//! applies only what changed since the last sync, one `ip -batch` (and one
//! `bridge -batch` for the FDB) per sync. Pod addresses cross nodes unchanged:
//! the agent's masquerade rule spares destinations inside the cluster network.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::Api;

use crate::cmd;
use crate::net::Cidr;

/// The VXLAN device (flannel's `flannel.1`).
pub const VXLAN_DEVICE: &str = "skiff.vxlan";
/// The VXLAN network identifier every node uses.
pub const VXLAN_VNI: u32 = 1;
/// The UDP port of the encapsulation: the Linux default, and flannel's.
pub const VXLAN_PORT: u16 = 8472;
/// Bytes VXLAN adds to each packet (outer IPv4 20, UDP 8, VXLAN 8, Ethernet 14):
/// pods on a node that may encapsulate get an MTU this much below the underlay's.
pub const VXLAN_OVERHEAD: u32 = 50;

/// How packets reach other nodes' pods (`--flannel-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Plain routes via each node's address; every node must be on one L2 segment.
    HostGw,
    /// A VXLAN overlay for every peer.
    Vxlan,
    /// Direct routes where the peer is on a connected subnet, VXLAN elsewhere.
    Auto,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host-gw" => Ok(Self::HostGw),
            "vxlan" => Ok(Self::Vxlan),
            "auto" => Ok(Self::Auto),
            _ => Err(format!(
                "unknown pod network backend {s:?}: expected host-gw, vxlan or auto"
            )),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::HostGw => "host-gw",
            Self::Vxlan => "vxlan",
            Self::Auto => "auto",
        })
    }
}

impl Backend {
    /// Whether this node may encapsulate, so needs the VXLAN device and a
    /// smaller pod MTU.
    pub fn may_encapsulate(self) -> bool {
        self != Self::HostGw
    }
}

/// Another node, as its Node object describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub cidr: Cidr,
    pub ip: Ipv4Addr,
}

/// How one peer's pod CIDR is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// `route <cidr> via <node ip>`.
    Direct(Ipv4Addr),
    /// Through the VXLAN device to the peer's VTEP: its address (the first of its
    /// pod CIDR, as flannel), its MAC, and the node address the FDB sends to.
    Vxlan {
        vtep: Ipv4Addr,
        mac: String,
        node_ip: Ipv4Addr,
    },
}

/// The routes to program: pod CIDR -> hop.
pub type Plan = BTreeMap<Cidr, Hop>;

/// The VTEP MAC of a node: derived from its name, so every node computes every
/// peer's without publishing it, and it survives restarts. Locally administered
/// unicast (first octet `0e`).
pub fn vtep_mac(node: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!(
        "0e:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// The peers among `nodes`: every Node but `me` with a pod CIDR and an
/// `InternalIP` (a Node not yet given either is skipped until it has them).
pub fn peers<'a>(nodes: impl IntoIterator<Item = &'a Node>, me: &str) -> Vec<Peer> {
    let mut out = Vec::new();
    for n in nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        if name == me || n.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let cidr = n
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(|c| Cidr::parse(c).ok());
        let ip = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse::<Ipv4Addr>().ok());
        if let (Some(cidr), Some(ip)) = (cidr, ip) {
            out.push(Peer { name, cidr, ip });
        }
    }
    out
}

/// The routes for `peers`; `direct(ip)` tells whether a node address is on a
/// connected subnet. A peer `host-gw` cannot reach directly is left out (and
/// reported by the caller), as flannel refuses it.
pub fn plan(backend: Backend, peers: &[Peer], direct: impl Fn(Ipv4Addr) -> bool) -> Plan {
    let mut out = Plan::new();
    for p in peers {
        let vxlan = Hop::Vxlan {
            vtep: p.cidr.addr,
            mac: vtep_mac(&p.name),
            node_ip: p.ip,
        };
        let hop = match backend {
            Backend::Vxlan => vxlan,
            Backend::HostGw if direct(p.ip) => Hop::Direct(p.ip),
            Backend::HostGw => continue,
            Backend::Auto if direct(p.ip) => Hop::Direct(p.ip),
            Backend::Auto => vxlan,
        };
        out.insert(p.cidr, hop);
    }
    out
}

/// The `ip -batch` and `bridge -batch` scripts that take the kernel from `old` to
/// `new`: removals first (so a CIDR that changed hop is re-added cleanly), then
/// additions; FDB before neighbour before route, as the route needs both.
pub fn diff(old: &Plan, new: &Plan) -> (String, String) {
    let (mut ip, mut bridge) = (String::new(), String::new());
    for (cidr, hop) in old {
        if new.get(cidr) == Some(hop) {
            continue;
        }
        ip.push_str(&format!("route del {cidr}\n"));
        if let Hop::Vxlan { vtep, mac, node_ip } = hop {
            ip.push_str(&format!("neigh del {vtep} dev {VXLAN_DEVICE}\n"));
            bridge.push_str(&format!(
                "fdb del {mac} dev {VXLAN_DEVICE} dst {node_ip} self\n"
            ));
        }
    }
    for (cidr, hop) in new {
        if old.get(cidr) == Some(hop) {
            continue;
        }
        match hop {
            Hop::Direct(via) => ip.push_str(&format!("route replace {cidr} via {via}\n")),
            Hop::Vxlan { vtep, mac, node_ip } => {
                bridge.push_str(&format!(
                    "fdb append {mac} dev {VXLAN_DEVICE} dst {node_ip} self permanent\n"
                ));
                ip.push_str(&format!(
                    "neigh replace {vtep} lladdr {mac} dev {VXLAN_DEVICE} nud permanent\n\
                     route replace {cidr} via {vtep} dev {VXLAN_DEVICE} onlink\n"
                ));
            }
        }
    }
    (ip, bridge)
}

/// The underlay: the device holding `node_ip`, and its MTU.
pub async fn underlay(node_ip: Ipv4Addr) -> Result<(String, u32)> {
    let out = cmd::run("ip", &["-4", "-o", "addr", "show"]).await?;
    let dev = out
        .lines()
        .find(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)
                .is_some_and(|a| a.split('/').next() == Some(&node_ip.to_string()))
        })
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|d| d.split('@').next().unwrap_or(d).to_string())
        .with_context(|| format!("no device holds the node address {node_ip}"))?;
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{dev}/mtu"))
        .ok()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(1500);
    Ok((dev, mtu))
}

/// Makes (or remakes, if its parameters changed) the VXLAN device: VNI
/// [`VXLAN_VNI`], sourced from `node_ip` on `dev`, port [`VXLAN_PORT`], no
/// learning (every entry is static), this node's VTEP MAC and address (the first
/// of its pod CIDR, a /32, as flannel).
pub async fn setup_vxlan(
    node: &str,
    node_ip: Ipv4Addr,
    dev: &str,
    mtu: u32,
    cidr: Cidr,
) -> Result<()> {
    let want = format!("vxlan id {VXLAN_VNI} local {node_ip} dev {dev} ");
    let mac = vtep_mac(node);
    let current = cmd::run("ip", &["-d", "-o", "link", "show", VXLAN_DEVICE])
        .await
        .unwrap_or_default();
    let matches = current.contains(&want)
        && current.contains(&format!("dstport {VXLAN_PORT}"))
        && current.contains(&format!("link/ether {mac}"));
    let mut script = String::new();
    if !matches {
        if !current.is_empty() {
            script.push_str(&format!("link del {VXLAN_DEVICE}\n"));
        }
        script.push_str(&format!(
            "link add {VXLAN_DEVICE} address {mac} type vxlan id {VXLAN_VNI} local {node_ip} dev {dev} dstport {VXLAN_PORT} nolearning\n"
        ));
    }
    script.push_str(&format!(
        "link set {VXLAN_DEVICE} mtu {mtu}\n\
         addr replace {}/32 dev {VXLAN_DEVICE}\n\
         link set {VXLAN_DEVICE} up\n",
        cidr.addr
    ));
    cmd::run_stdin("ip", &["-batch", "-"], &script)
        .await
        .context("setting up the VXLAN device")?;
    Ok(())
}

/// Whether `ip` is on a subnet this node is connected to (the kernel routes it
/// with no gateway).
async fn is_direct(ip: Ipv4Addr) -> bool {
    match cmd::run("ip", &["-4", "-o", "route", "get", &ip.to_string()]).await {
        Ok(out) => !out.contains(" via ") && !out.contains(&format!(" dev {VXLAN_DEVICE} ")),
        Err(_) => false,
    }
}

/// This node, as the routes to the others need it.
#[derive(Debug, Clone)]
pub struct Local {
    pub name: String,
    pub ip: Ipv4Addr,
    pub cidr: Cidr,
    pub backend: Backend,
}

/// Follows the Nodes and keeps the routes to their pod CIDRs programmed, until
/// the task is dropped.
pub async fn run(client: kube::Client, me: Local) -> Result<()> {
    if me.backend == Backend::HostGw && me.ip == me.cidr.gateway() {
        bail!("the node has no address of its own for host-gw routes (pass --node-ip)");
    }
    let (reader, writer) = reflector::store();
    let api: Api<Node> = Api::all(client);
    let mut events =
        reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
            .default_backoff()
            .boxed();
    let mut applied = Plan::new();
    let mut direct: HashMap<Ipv4Addr, bool> = HashMap::new();
    let mut refused: Vec<String> = Vec::new();
    while let Some(ev) = events.next().await {
        if let Err(e) = ev {
            tracing::warn!(error = %e, "node watch");
            continue;
        }
        // A burst of Node updates (heartbeats) is one sync.
        while let Some(Some(more)) = futures::FutureExt::now_or_never(events.next()) {
            if let Err(e) = more {
                tracing::warn!(error = %e, "node watch");
            }
        }
        let nodes = reader.state();
        let peers = peers(nodes.iter().map(|n| n.as_ref()), &me.name);
        for p in &peers {
            if let std::collections::hash_map::Entry::Vacant(v) = direct.entry(p.ip) {
                v.insert(is_direct(p.ip).await);
            }
        }
        let want = plan(me.backend, &peers, |ip| {
            direct.get(&ip).copied().unwrap_or(false)
        });
        for p in &peers {
            if !want.contains_key(&p.cidr) && !refused.contains(&p.name) {
                tracing::error!(peer = %p.name, ip = %p.ip, "host-gw backend: node is not on a connected subnet; its pods are unreachable (use --flannel-backend vxlan or auto)");
                refused.push(p.name.clone());
            }
        }
        if want == applied {
            continue;
        }
        let (ip, bridge) = diff(&applied, &want);
        // Deletions of entries already gone must not stop the rest: `-force`.
        if !bridge.is_empty() {
            if let Err(e) = cmd::run_stdin("bridge", &["-force", "-batch", "-"], &bridge).await {
                tracing::warn!(error = %format!("{e:#}"), "programming VXLAN forwarding entries");
            }
        }
        if !ip.is_empty() {
            if let Err(e) = cmd::run_stdin("ip", &["-force", "-batch", "-"], &ip).await {
                tracing::warn!(error = %format!("{e:#}"), "programming routes to other nodes");
            }
        }
        tracing::info!(peers = want.len(), backend = %me.backend, "routes to other nodes' pods synced");
        applied = want;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, cidr: &str, ip: &str) -> Peer {
        Peer {
            name: name.into(),
            cidr: Cidr::parse(cidr).unwrap(),
            ip: ip.parse().unwrap(),
        }
    }

    fn three() -> Vec<Peer> {
        vec![
            peer("b", "10.244.1.0/24", "192.168.50.2"),
            peer("c", "10.244.2.0/24", "172.16.0.3"),
        ]
    }

    fn on_lan(ip: Ipv4Addr) -> bool {
        ip.octets()[0] == 192
    }

    #[test]
    fn backends_choose_hops() {
        let hg = plan(Backend::HostGw, &three(), on_lan);
        assert_eq!(hg.len(), 1, "host-gw leaves out the routed peer");
        assert_eq!(
            hg.values().next(),
            Some(&Hop::Direct("192.168.50.2".parse().unwrap()))
        );
        let vx = plan(Backend::Vxlan, &three(), on_lan);
        assert!(vx.values().all(|h| matches!(h, Hop::Vxlan { .. })));
        let auto = plan(Backend::Auto, &three(), on_lan);
        let hops: Vec<_> = auto.values().collect();
        assert!(matches!(hops[0], Hop::Direct(_)));
        assert!(matches!(hops[1], Hop::Vxlan { .. }));
    }

    #[test]
    fn golden_batches() {
        let none = Plan::new();
        let vx = plan(Backend::Vxlan, &three(), on_lan);
        let mac_b = vtep_mac("b");
        let mac_c = vtep_mac("c");
        let (ip, bridge) = diff(&none, &vx);
        assert_eq!(
            ip,
            format!(
                "neigh replace 10.244.1.0 lladdr {mac_b} dev skiff.vxlan nud permanent\n\
                 route replace 10.244.1.0/24 via 10.244.1.0 dev skiff.vxlan onlink\n\
                 neigh replace 10.244.2.0 lladdr {mac_c} dev skiff.vxlan nud permanent\n\
                 route replace 10.244.2.0/24 via 10.244.2.0 dev skiff.vxlan onlink\n"
            )
        );
        assert_eq!(
            bridge,
            format!(
                "fdb append {mac_b} dev skiff.vxlan dst 192.168.50.2 self permanent\n\
                 fdb append {mac_c} dev skiff.vxlan dst 172.16.0.3 self permanent\n"
            )
        );
        // Unchanged: nothing to send.
        assert_eq!(diff(&vx, &vx), (String::new(), String::new()));
        // Node c gone, b moved to host-gw.
        let auto = plan(Backend::Auto, &three()[..1], on_lan);
        let (ip, bridge) = diff(&vx, &auto);
        assert_eq!(
            ip,
            "route del 10.244.1.0/24\n\
             neigh del 10.244.1.0 dev skiff.vxlan\n\
             route del 10.244.2.0/24\n\
             neigh del 10.244.2.0 dev skiff.vxlan\n\
             route replace 10.244.1.0/24 via 192.168.50.2\n"
        );
        assert_eq!(
            bridge,
            format!(
                "fdb del {mac_b} dev skiff.vxlan dst 192.168.50.2 self\n\
                 fdb del {mac_c} dev skiff.vxlan dst 172.16.0.3 self\n"
            )
        );
    }

    #[test]
    fn vtep_macs_are_stable_local_unicast_and_distinct() {
        assert_eq!(vtep_mac("node-a"), vtep_mac("node-a"));
        assert_ne!(vtep_mac("node-a"), vtep_mac("node-b"));
        let first = u8::from_str_radix(&vtep_mac("x")[..2], 16).unwrap();
        assert_eq!(first & 0b11, 0b10, "locally administered, unicast");
    }

    #[test]
    fn peers_skip_self_and_unready_nodes() {
        let node = |name: &str, cidr: Option<&str>, ip: Option<&str>| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": cidr.map(|c| serde_json::json!({"podCIDR": c})).unwrap_or_default(),
                "status": {"addresses": ip.map(|i| vec![serde_json::json!({"type": "InternalIP", "address": i})]).unwrap_or_default()},
            }))
            .unwrap()
        };
        let nodes = [
            node("a", Some("10.244.0.0/24"), Some("10.0.0.1")),
            node("b", Some("10.244.1.0/24"), Some("10.0.0.2")),
            node("c", None, Some("10.0.0.3")),
            node("d", Some("10.244.3.0/24"), None),
        ];
        let p = peers(nodes.iter(), "a");
        assert_eq!(p, vec![peer("b", "10.244.1.0/24", "10.0.0.2")]);
    }

    #[test]
    fn backend_flag_values() {
        assert_eq!("host-gw".parse::<Backend>(), Ok(Backend::HostGw));
        assert_eq!("auto".parse::<Backend>(), Ok(Backend::Auto));
        assert!("udp"
            .parse::<Backend>()
            .unwrap_err()
            .contains("host-gw, vxlan or auto"));
    }
}

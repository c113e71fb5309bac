//! Pod networking as a bridge CNI plugin does it, driven through iproute2 and nft:
//! bridge `skiff0` holding the gateway, a veth per pod with `eth0` inside the pod's
//! network namespace, and masquerade for traffic leaving the pod network.
//!
//! Everything here acts on the network namespace the agent runs in (the node's), and
//! on pod namespaces reached by the PID of their sandbox process.

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};

use crate::cmd;

pub const BRIDGE: &str = "skiff0";
/// The agent's own nft table; the proxy owns `ip skiff`, so this one is separate.
pub const NFT_TABLE: &str = "skiff-agent";

/// An IPv4 network, `addr/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self> {
        let (a, l) = s
            .split_once('/')
            .with_context(|| format!("{s:?} is not a CIDR"))?;
        let addr: Ipv4Addr = a.parse().with_context(|| format!("{s:?}: bad address"))?;
        let len: u8 = l
            .parse()
            .with_context(|| format!("{s:?}: bad prefix length"))?;
        if len > 32 {
            bail!("{s:?}: prefix length over 32");
        }
        let c = Self { addr, len };
        Ok(Self {
            addr: Ipv4Addr::from(u32::from(addr) & c.mask()),
            len,
        })
    }

    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Whether `other` lies wholly inside this network.
    pub fn covers(&self, other: Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    /// The `index`-th address of the network (0 = the network address).
    pub fn nth(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(index))
    }

    pub fn size(&self) -> u32 {
        if self.len == 0 {
            u32::MAX
        } else {
            1u32 << (32 - u32::from(self.len))
        }
    }

    /// The first /24 of the cluster pod network: what a node claims for itself
    /// when no node-IPAM controller runs (`skiff server --disable controllers`).
    /// A cluster network smaller than a /24 is used whole.
    pub fn node_subnet(&self) -> Cidr {
        if self.len >= 24 {
            *self
        } else {
            Cidr {
                addr: self.addr,
                len: 24,
            }
        }
    }

    /// The gateway: the first usable address, held by the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.nth(1)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Node-wide setup, idempotent: the bridge with the gateway address, forwarding,
/// and masquerade of pod traffic that leaves the cluster pod network.
pub async fn setup_node(subnet: Cidr, cluster: Cidr) -> Result<()> {
    let exists = cmd::run("ip", &["link", "show", BRIDGE]).await.is_ok();
    if !exists {
        cmd::run("ip", &["link", "add", BRIDGE, "type", "bridge"]).await?;
    }
    let gw = format!("{}/{}", subnet.gateway(), subnet.len);
    let addrs = cmd::run("ip", &["-4", "-o", "addr", "show", "dev", BRIDGE]).await?;
    if !addrs.contains(&format!(" {gw} ")) {
        cmd::run("ip", &["addr", "add", &gw, "dev", BRIDGE]).await?;
    }
    cmd::run("ip", &["link", "set", BRIDGE, "up"]).await?;
    // Per-namespace sysctls: these act on the node's namespace only.
    write_sysctl("net/ipv4/ip_forward", "1");
    // Bridged pod-to-pod traffic must traverse nftables for service DNAT to work
    // between pods on the same bridge (as kube-proxy requires br_netfilter).
    write_sysctl("net/bridge/bridge-nf-call-iptables", "1");
    // A Service whose endpoint is the node's loopback (`default/kubernetes` of
    // a server listening on 127.0.0.1, the default) is DNATed to 127.0.0.1 for
    // pods too: their packets may be routed to loopback only with this (as
    // kube-proxy sets it for localhost node ports); the table's `localnet`
    // chain drops anything else arriving from pods for 127.0.0.0/8.
    write_sysctl(&format!("net/ipv4/conf/{BRIDGE}/route_localnet"), "1");
    sync_rules(cluster, &[])
        .await
        .context("installing the masquerade rule")?;
    Ok(())
}

/// A host port forwarded to a pod (`hostPort` of a container port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

/// The agent's nft table, whole: masquerade of pod traffic leaving the pod
/// network, DNAT of host ports (to any local address but loopback) to pods,
/// as the portmap CNI plugin does, and the guard that lets pods reach loopback
/// only through a Service's DNAT (`route_localnet` is on for the bridge).
pub fn ruleset(cluster: Cidr, ports: &[HostPort]) -> String {
    let mut forwards = String::new();
    for p in ports {
        let proto = p.protocol.to_ascii_lowercase();
        if proto == "tcp" || proto == "udp" || proto == "sctp" {
            forwards.push_str(&format!(
                "    {proto} dport {} dnat to {}:{}\n",
                p.host_port, p.pod_ip, p.container_port
            ));
        }
    }
    format!(
        "table ip {t}\n\
         delete table ip {t}\n\
         table ip {t} {{\n\
           chain postrouting {{\n\
             type nat hook postrouting priority 110; policy accept;\n\
             ip saddr {c} ip daddr != {c} oifname != \"{b}\" masquerade\n\
           }}\n\
           chain prerouting {{\n\
             type nat hook prerouting priority -90; policy accept;\n\
             fib daddr type local ip daddr != 127.0.0.0/8 jump hostports\n\
           }}\n\
           chain output {{\n\
             type nat hook output priority -90; policy accept;\n\
             fib daddr type local ip daddr != 127.0.0.0/8 jump hostports\n\
           }}\n\
           chain hostports {{\n\
         {forwards}  }}\n\
           chain localnet {{\n\
             type filter hook prerouting priority 0; policy accept;\n\
             iifname \"{b}\" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop\n\
           }}\n\
         }}\n",
        t = NFT_TABLE,
        c = cluster,
        b = BRIDGE,
    )
}

/// Replaces the agent's table in one transaction.
pub async fn sync_rules(cluster: Cidr, ports: &[HostPort]) -> Result<()> {
    cmd::run_stdin("nft", &["-f", "-"], &ruleset(cluster, ports))
        .await
        .context("installing the agent's nft rules")?;
    Ok(())
}

fn write_sysctl(path: &str, value: &str) {
    let p = format!("/proc/sys/{path}");
    if let Err(e) = std::fs::write(&p, value) {
        tracing::debug!(path = %p, error = %e, "sysctl not set");
    }
}

/// The host end of a pod's veth: short enough for IFNAMSIZ, unique per pod.
pub fn veth_name(uid: &str) -> String {
    let short: String = uid.chars().filter(|c| *c != '-').take(8).collect();
    format!("vsk{short}")
}

/// The `ip -batch` script a pod's sandbox runs inside its new network namespace
/// (see `runtime::start_sandbox`): the veth pair made from inside, `eth0` here and
/// its peer `veth` moved at once into the network namespace of `node_pid` (the
/// agent's, i.e. the node's), then `lo` and `eth0` up with the pod IP and a default
/// route via the gateway. Made from inside, the pod's end needs no `nsenter` and
/// no second `ip` run; the route is added while `eth0` has no carrier yet (the
/// node end is still down), which the kernel allows.
pub fn pod_network_batch(
    node_pid: u32,
    veth: &str,
    ip: Ipv4Addr,
    subnet: Cidr,
    mtu: Option<u32>,
) -> String {
    let mtu = mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
    format!(
        "link add eth0{mtu} type veth peer name {veth}{mtu} netns {node_pid}\n\
         link set lo up\n\
         addr add {ip}/{len} dev eth0\n\
         link set eth0 up\n\
         route add default via {gw} dev eth0\n",
        len = subnet.len,
        gw = subnet.gateway()
    )
}

/// Wires the node's end of a pod's veth (made by its sandbox): onto the bridge,
/// hairpin on (so a pod reaches itself through a service address), and up, which
/// gives the pod's `eth0` its carrier. One `ip` run.
pub async fn attach_pod(veth: &str) -> Result<()> {
    prepare_attach()?.attach(veth).await
}

/// An `ip -batch -` started before the pod's veth exists (while its sandbox
/// starts), so that attaching costs only its netlink requests.
pub struct PendingAttach(cmd::Started);

/// Starts the `ip` that [`PendingAttach::attach`] then gives its commands.
pub fn prepare_attach() -> Result<PendingAttach> {
    Ok(PendingAttach(cmd::start_stdin("ip", &["-batch", "-"])?))
}

impl PendingAttach {
    /// As [`attach_pod`].
    pub async fn attach(self, veth: &str) -> Result<()> {
        let host = format!(
            "link set {veth} master {BRIDGE}\n\
             link set {veth} type bridge_slave hairpin on\n\
             link set {veth} up\n"
        );
        self.0.finish(&host).await?;
        Ok(())
    }
}

/// Removes a pod's veth (its peer goes with it); absent is fine.
pub async fn detach_pod(veth: &str) {
    let _ = cmd::run("ip", &["link", "del", veth]).await;
}

/// The first non-loopback IPv4 address of this namespace, if any.
pub async fn first_ipv4() -> Option<Ipv4Addr> {
    let out = cmd::run("ip", &["-4", "-o", "addr", "show"]).await.ok()?;
    out.lines()
        .filter(|l| !l.contains(" lo ") && !l.contains(&format!(" {BRIDGE} ")))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .find(|ip: &Ipv4Addr| !ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.244.0.0/16").unwrap();
        let n = c.node_subnet();
        assert_eq!(n.to_string(), "10.244.0.0/24");
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 244, 0, 1));
        assert!(c.contains(Ipv4Addr::new(10, 244, 3, 4)));
        assert!(!c.contains(Ipv4Addr::new(10, 245, 0, 1)));
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(n.size(), 256);
        assert!(Cidr::parse("10.0.0.0").is_err());
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        let small = Cidr::parse("192.168.5.0/26").unwrap();
        assert_eq!(small.node_subnet(), small);
    }

    #[test]
    fn rules() {
        let r = ruleset(
            Cidr::parse("10.244.0.0/16").unwrap(),
            &[HostPort {
                protocol: "TCP".into(),
                host_port: 8080,
                pod_ip: Ipv4Addr::new(10, 244, 0, 5),
                container_port: 80,
            }],
        );
        assert!(r.contains(
            "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 oifname != \"skiff0\" masquerade"
        ));
        assert!(r.contains("tcp dport 8080 dnat to 10.244.0.5:80\n"));
        assert!(r.starts_with("table ip skiff-agent\ndelete table ip skiff-agent\n"));
        assert!(r.contains("iifname \"skiff0\" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop\n"));
    }

    #[test]
    fn pod_side_batch() {
        let b = pod_network_batch(
            42,
            "vsk0f1e2d3c",
            Ipv4Addr::new(10, 244, 0, 7),
            Cidr::parse("10.244.0.0/24").unwrap(),
            None,
        );
        assert_eq!(
            b,
            "link add eth0 type veth peer name vsk0f1e2d3c netns 42\n\
             link set lo up\n\
             addr add 10.244.0.7/24 dev eth0\n\
             link set eth0 up\n\
             route add default via 10.244.0.1 dev eth0\n"
        );
        let overlay = pod_network_batch(
            42,
            "vsk0f1e2d3c",
            Ipv4Addr::new(10, 244, 0, 7),
            Cidr::parse("10.244.0.0/24").unwrap(),
            Some(1450),
        );
        assert!(overlay.starts_with(
            "link add eth0 mtu 1450 type veth peer name vsk0f1e2d3c mtu 1450 netns 42\n"
        ));
    }

    #[test]
    fn veth_names_fit() {
        let v = veth_name("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert_eq!(v, "vsk0f1e2d3c");
        assert!(v.len() <= 15);
    }
}

//! The proxier's view of the cluster: Services reduced to what the data plane
//! needs, with their endpoints already matched to each port. Pure data; the
//! conversion from API objects lives in `k8s.rs`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::Error;

/// Transport protocol of a service port, named as nft names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// From the Kubernetes spelling (`TCP`, `UDP`, `SCTP`); `None` defaults to TCP
    /// as the API does.
    pub fn from_k8s(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        })
    }
}

/// An IPv4 prefix such as `10.96.0.0/12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl FromStr for Cidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Config(format!("{s:?} is not an IPv4 CIDR"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let c = Cidr { addr, prefix };
        // Normalise so the printed prefix is what the kernel stores.
        Ok(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & c.mask()),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Node-wide inputs of rule generation.
#[derive(Debug, Clone)]
pub struct Config {
    /// Sources inside it are pods: ClusterIP traffic from them is not masqueraded.
    pub pod_cidr: Option<Cidr>,
    /// Addresses in it that no service holds are rejected.
    pub service_cidr: Cidr,
    /// The node's own addresses: the only ones NodePorts answer on.
    pub node_ips: Vec<Ipv4Addr>,
}

/// One endpoint address and port of a service port, with its conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node (for the `Local` traffic policies).
    pub local: bool,
}

impl Endpoint {
    /// A ready endpoint (the common case in fixtures).
    pub fn ready(ip: Ipv4Addr, port: u16) -> Self {
        Self {
            ip,
            port,
            ready: true,
            serving: true,
            terminating: false,
            local: true,
        }
    }
}

/// One port of a service with the endpoints that serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub name: String,
    pub proto: Proto,
    pub port: u16,
    pub node_port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
}

/// A Service as the data plane sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    /// IPv4 ClusterIPs (empty for headless services).
    pub cluster_ips: Vec<Ipv4Addr>,
    /// `spec.externalIPs` and `status.loadBalancer.ingress` addresses.
    pub external_ips: Vec<Ipv4Addr>,
    /// The `status.loadBalancer.ingress` ones among them: the node answers for
    /// these (it owns them), not for external IPs, which the admin routes.
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `sessionAffinity: ClientIP` timeout in seconds.
    pub affinity_timeout: Option<u32>,
    pub internal_local: bool,
    pub external_local: bool,
    pub ports: Vec<PortInfo>,
}

impl ServiceInfo {
    /// `namespace/name`, the key of the service everywhere in the proxier.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The endpoints traffic may go to, as upstream chooses them: ready ones, or when
/// none is ready, serving endpoints that are terminating (so connections drain
/// instead of failing while a rollout replaces the last pod).
pub fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<(Ipv4Addr, u16)> {
    let mut out: Vec<(Ipv4Addr, u16)> = eps
        .clone()
        .filter(|e| e.ready)
        .map(|e| (e.ip, e.port))
        .collect();
    if out.is_empty() {
        out = eps
            .filter(|e| e.serving && e.terminating)
            .map(|e| (e.ip, e.port))
            .collect();
    }
    out.sort();
    out.dedup();
    out
}

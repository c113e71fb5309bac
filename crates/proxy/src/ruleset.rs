//! Rule generation, pure: a service becomes a [`Fragment`] — map and set elements
//! plus the few chains it needs. The table's shape keeps chains few (DESIGN §8):
//! per-service data lives in verdict maps keyed `daddr . l4proto . dport`, and the
//! endpoint is chosen by one shared chain per endpoint count,
//! `dnat to daddr . l4proto . dport . numgen random mod N map @endpoints`.
//! Only services with session affinity get chains of their own.

use std::fmt;
use std::net::Ipv4Addr;

use crate::model::{usable, Cidr, Config, Proto, ServiceInfo};

/// Address family and name of the one table the proxier owns.
pub const FAMILY: &str = "ip";
pub const TABLE: &str = "skiff";

// Base chains (hooked).
pub const NAT_PREROUTING: &str = "nat-prerouting";
pub const NAT_OUTPUT: &str = "nat-output";
pub const NAT_POSTROUTING: &str = "nat-postrouting";
pub const FILTER_INPUT: &str = "filter-input";
pub const FILTER_FORWARD: &str = "filter-forward";
pub const FILTER_OUTPUT: &str = "filter-output";
pub const AFFINITY_PREROUTING: &str = "affinity-prerouting";
pub const AFFINITY_OUTPUT: &str = "affinity-output";

// Regular chains of the skeleton.
pub const SERVICES: &str = "services";
pub const ENDPOINTS_CHECK: &str = "endpoints-check";
pub const MARK_MASQ: &str = "mark-for-masquerade";
pub const MASQUERADING: &str = "masquerading";
pub const REJECT: &str = "reject-chain";

// Sets and maps.
pub const CLUSTER_IPS: &str = "cluster-ips";
/// Load-balancer addresses the node holds as its own (see [`crate::lb`]): a port
/// no service serves on them is refused, never handed to a node socket.
pub const LOAD_BALANCER_IPS: &str = "load-balancer-ips";
pub const NODEPORT_IPS: &str = "nodeport-ips";
pub const HAIRPIN: &str = "hairpin";
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_EP_SERVICES: &str = "no-endpoint-services";
pub const NO_EP_NODEPORTS: &str = "no-endpoint-nodeports";
/// Endpoints, one map per protocol: a `typeof` map's key names a protocol
/// (`tcp dport`), and nft makes every rule using it match that protocol only.
pub const ENDPOINTS_TCP: &str = "endpoints-tcp";
pub const ENDPOINTS_UDP: &str = "endpoints-udp";
pub const ENDPOINTS_SCTP: &str = "endpoints-sctp";

/// The endpoints map of `proto`.
pub fn endpoints_map(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => ENDPOINTS_TCP,
        Proto::Udp => ENDPOINTS_UDP,
        Proto::Sctp => ENDPOINTS_SCTP,
    }
}
pub const AFFINITY_RECORD: &str = "affinity-record";

// Prefixes of generated chains and maps.
/// `pick-N`: DNAT to one of N endpoints at random.
pub const PICK: &str = "pick-";
/// `cluster-N`: masquerade sources outside the pod network, then pick.
pub const CLUSTER: &str = "cluster-";
/// `external-N`: always masquerade (node ports, external and LB addresses), then pick.
pub const EXTERNAL: &str = "external-";
/// `local-L-C`: an external address of an `externalTrafficPolicy: Local` service
/// with L local of C endpoints. Traffic from pods and from the node itself is
/// short-circuited to all C endpoints, as upstream does (it never left the
/// cluster, so the policy does not apply); the rest goes to the L local ones
/// with its source kept, or falls through to the filter's drop when L is 0.
pub const LOCAL: &str = "local-";
/// `pick-N-at-O`: [`PICK`] over the N slots from slot O on: such an address
/// keeps its local endpoints in the first slots and all endpoints after them.
pub const PICK_AT: &str = "-at-";
/// Per service port with session affinity: internal, external, external-local,
/// and the external-local port's short-circuit (pods and the node, all endpoints).
pub const AFF_INTERNAL: &str = "ci-";
pub const AFF_EXTERNAL: &str = "xi-";
pub const AFF_LOCAL: &str = "li-";
pub const AFF_SHORT_CIRCUIT: &str = "si-";
/// Records the chosen endpoint in the affinity map.
pub const AFF_RECORD: &str = "rec-";
/// The affinity map of a service port: client address -> endpoint.
pub const AFF_MAP: &str = "aff-";

/// Bit of the packet mark that asks `masquerading` to SNAT.
pub const MASQ_MARK: u32 = 0x4000;
/// NAT priorities, numeric: nft 1.0.6 does not accept `dstnat` on the output hook.
pub const DSTNAT_PRIORITY: i32 = -100;
pub const SRCNAT_PRIORITY: i32 = 100;
/// Prerouting/output priority that runs right after DNAT: the affinity record
/// needs the chosen endpoint, which only exists once the nat chains ran.
pub const AFTER_DNAT_PRIORITY: i32 = -99;
/// Filter priority of the endpoint checks; before ordinary filter rules.
pub const FILTER_PRIORITY: i32 = -5;

/// Where a map element sends a packet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Goto(String),
    Drop,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Goto(c) => write!(f, "goto {c}"),
            Self::Drop => f.write_str("drop"),
        }
    }
}

/// One element of one of the skeleton's sets and maps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    ClusterIp(Ipv4Addr),
    LoadBalancerIp(Ipv4Addr),
    NodeIp(Ipv4Addr),
    /// An endpoint address; `ip . ip` matches a pod reaching itself via a service.
    Hairpin(Ipv4Addr),
    ServiceIp {
        addr: Ipv4Addr,
        proto: Proto,
        port: u16,
        verdict: Verdict,
    },
    NodePort {
        proto: Proto,
        port: u16,
        verdict: Verdict,
    },
    NoEndpoints {
        addr: Ipv4Addr,
        proto: Proto,
        port: u16,
        verdict: Verdict,
    },
    NoEndpointsNodePort {
        proto: Proto,
        port: u16,
        verdict: Verdict,
    },
    /// Slot `slot` of the service address `addr:port` is endpoint `ep:ep_port`.
    Endpoint {
        addr: Ipv4Addr,
        proto: Proto,
        port: u16,
        slot: u32,
        ep: Ipv4Addr,
        ep_port: u16,
    },
    AffinityRecord {
        addr: Ipv4Addr,
        proto: Proto,
        port: u16,
        chain: String,
    },
}

impl Element {
    /// The set or map holding this element.
    pub fn map(&self) -> &'static str {
        match self {
            Self::ClusterIp(_) => CLUSTER_IPS,
            Self::LoadBalancerIp(_) => LOAD_BALANCER_IPS,
            Self::NodeIp(_) => NODEPORT_IPS,
            Self::Hairpin(_) => HAIRPIN,
            Self::ServiceIp { .. } => SERVICE_IPS,
            Self::NodePort { .. } => SERVICE_NODEPORTS,
            Self::NoEndpoints { .. } => NO_EP_SERVICES,
            Self::NoEndpointsNodePort { .. } => NO_EP_NODEPORTS,
            Self::Endpoint { proto, .. } => endpoints_map(*proto),
            Self::AffinityRecord { .. } => AFFINITY_RECORD,
        }
    }

    /// The key as nft prints it.
    pub fn key(&self) -> String {
        match self {
            Self::ClusterIp(a) | Self::LoadBalancerIp(a) | Self::NodeIp(a) => a.to_string(),
            Self::Hairpin(a) => format!("{a} . {a}"),
            Self::ServiceIp {
                addr, proto, port, ..
            }
            | Self::NoEndpoints {
                addr, proto, port, ..
            }
            | Self::AffinityRecord {
                addr, proto, port, ..
            } => format!("{addr} . {proto} . {port}"),
            Self::NodePort { proto, port, .. } | Self::NoEndpointsNodePort { proto, port, .. } => {
                format!("{proto} . {port}")
            }
            Self::Endpoint {
                addr,
                proto,
                port,
                slot,
                ..
            } => format!("{addr} . {proto} . {port} . {slot}"),
        }
    }

    /// The key with its value (`key : value`), as `add element` takes it.
    pub fn entry(&self) -> String {
        match self {
            Self::ServiceIp { verdict, .. }
            | Self::NodePort { verdict, .. }
            | Self::NoEndpoints { verdict, .. }
            | Self::NoEndpointsNodePort { verdict, .. } => format!("{} : {verdict}", self.key()),
            Self::Endpoint { ep, ep_port, .. } => format!("{} : {ep} . {ep_port}", self.key()),
            Self::AffinityRecord { chain, .. } => format!("{} : goto {chain}", self.key()),
            _ => self.key(),
        }
    }
}

/// A rule of a generated chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Masquerade unless the source is a pod (`ip saddr != <pod cidr>`).
    MasqueradeIfNotPod(Cidr),
    /// Always masquerade.
    Masquerade,
    /// Masquerade traffic the node itself sends (`fib saddr type local`): its
    /// source may be the very address it connects to, which an endpoint on
    /// another node cannot answer.
    MasqueradeIfLocal,
    /// Pod traffic (`ip saddr <pod cidr>`) goes on in another chain.
    GotoIfPod(Cidr, String),
    /// The node's own traffic goes on in another chain.
    GotoIfLocal(String),
    /// DNAT to the endpoint this client was last sent to, if any.
    Affinity {
        proto: Proto,
        map: String,
    },
    /// DNAT to slot `offset + numgen random mod N` of this address' endpoints.
    Pick {
        proto: Proto,
        n: u32,
        offset: u32,
    },
    Goto(String),
    /// Remember (refresh) client -> endpoint for `timeout` seconds.
    Record {
        map: String,
        timeout: u32,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MasqueradeIfNotPod(c) => write!(f, "ip saddr != {c} jump {MARK_MASQ}"),
            Self::Masquerade => write!(f, "jump {MARK_MASQ}"),
            Self::MasqueradeIfLocal => write!(f, "fib saddr type local jump {MARK_MASQ}"),
            Self::GotoIfPod(c, chain) => write!(f, "ip saddr {c} goto {chain}"),
            Self::GotoIfLocal(chain) => write!(f, "fib saddr type local goto {chain}"),
            Self::Affinity { proto, map } => {
                write!(f, "meta l4proto {proto} dnat ip to ip saddr map @{map}")
            }
            Self::Pick { proto, n, offset } => {
                write!(
                    f,
                    "meta l4proto {proto} dnat ip to ip daddr . meta l4proto . {proto} dport . numgen random mod {n}"
                )?;
                if *offset > 0 {
                    write!(f, " offset {offset}")?;
                }
                write!(f, " map @{}", endpoints_map(*proto))
            }
            Self::Goto(c) => write!(f, "goto {c}"),
            Self::Record { map, timeout } => write!(
                f,
                "update @{map} {{ ip saddr timeout {timeout}s : ip daddr . th dport }}"
            ),
        }
    }
}

/// A generated (non-base) chain and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub rules: Vec<Rule>,
}

impl Chain {
    /// Deletion order: a chain may only go once nothing jumps to it, so
    /// per-service chains go first, then `cluster-N`/`external-N`/`local-L-C`,
    /// then `pick-N`.
    pub fn level(&self) -> u8 {
        if self.name.starts_with(PICK) {
            2
        } else if self.name.starts_with(CLUSTER)
            || self.name.starts_with(EXTERNAL)
            || self.name.starts_with(LOCAL)
        {
            1
        } else {
            0
        }
    }
}

/// A session-affinity map: client address -> endpoint, entries expiring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityMap {
    pub name: String,
    pub timeout: u32,
}

impl AffinityMap {
    pub fn declaration(&self) -> String {
        format!(
            "add map {FAMILY} {TABLE} {} {{ type ipv4_addr : ipv4_addr . inet_service ; flags dynamic,timeout ; timeout {}s ; size 65536 ; }}",
            self.name, self.timeout
        )
    }
}

/// Everything one service contributes to the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    pub elements: Vec<Element>,
    pub chains: Vec<Chain>,
    pub maps: Vec<AffinityMap>,
    /// `(proto, endpoint, port)` of every endpoint in use, for conntrack cleanup.
    pub endpoints: Vec<(Proto, Ipv4Addr, u16)>,
}

impl Fragment {
    fn element(&mut self, e: Element) {
        if !self.elements.contains(&e) {
            self.elements.push(e);
        }
    }

    fn chain(&mut self, c: Chain) {
        if !self.chains.iter().any(|x| x.name == c.name) {
            self.chains.push(c);
        }
    }
}

/// Which path traffic to an address takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// ClusterIP: masquerade unless from a pod.
    Internal,
    /// Node port, external or LB address with `externalTrafficPolicy: Cluster`.
    External,
    /// External with `externalTrafficPolicy: Local`: outside clients keep their
    /// address and reach local endpoints only; pods and the node itself are
    /// short-circuited to every endpoint (see [`LOCAL`]).
    Local,
}

/// `pick-N` (or `pick-N-at-O`): DNAT to one of the `n` slots from slot `offset` on.
fn pick_chain(frag: &mut Fragment, n: u32, offset: u32) -> String {
    let name = if offset == 0 {
        format!("{PICK}{n}")
    } else {
        format!("{PICK}{n}{PICK_AT}{offset}")
    };
    frag.chain(Chain {
        name: name.clone(),
        rules: [Proto::Tcp, Proto::Udp, Proto::Sctp]
            .into_iter()
            .map(|proto| Rule::Pick { proto, n, offset })
            .collect(),
    });
    name
}

/// The first rules of an external-local address: traffic from pods and from the
/// node itself goes to `short` (every endpoint), the node's masqueraded.
fn short_circuit(cfg: &Config, short: &str) -> Vec<Rule> {
    let mut rules: Vec<Rule> = cfg
        .pod_cidr
        .map(|c| Rule::GotoIfPod(c, short.to_string()))
        .into_iter()
        .collect();
    rules.push(Rule::MasqueradeIfLocal);
    rules.push(Rule::GotoIfLocal(short.to_string()));
    rules
}

/// The shared chain in front of `pick-N` for traffic taking `path` to `n`
/// endpoints (`cluster-N`, `external-N`), or for `Local` the chain `local-N-A`
/// of an address with `n` local of `all` endpoints.
fn shared_chains(frag: &mut Fragment, cfg: &Config, path: Path, n: u32, all: u32) -> String {
    let (name, mut rules) = match path {
        Path::Internal => (
            format!("{CLUSTER}{n}"),
            cfg.pod_cidr
                .map(Rule::MasqueradeIfNotPod)
                .into_iter()
                .collect::<Vec<_>>(),
        ),
        Path::External => (format!("{EXTERNAL}{n}"), vec![Rule::Masquerade]),
        Path::Local => {
            let short = pick_chain(frag, all, n);
            (format!("{LOCAL}{n}-{all}"), short_circuit(cfg, &short))
        }
    };
    // With no local endpoint, what was not short-circuited falls through to
    // the filter's drop.
    if n > 0 {
        rules.push(Rule::Goto(pick_chain(frag, n, 0)));
    }
    frag.chain(Chain {
        name: name.clone(),
        rules,
    });
    name
}

/// The name all generated objects of one service port share:
/// `namespace/name/proto/port` (unique, readable in `nft list`).
pub fn port_id(svc: &ServiceInfo, proto: Proto, port: u16) -> String {
    format!("{}/{}/{proto}/{port}", svc.namespace, svc.name)
}

/// What the verdict of a service port's addresses depends on.
struct PortCtx<'a> {
    cfg: &'a Config,
    id: String,
    proto: Proto,
    affinity: Option<u32>,
    /// Verdict for addresses without endpoints.
    missing: Verdict,
    /// Every usable endpoint of the port, wherever it runs: where traffic
    /// short-circuited at an external-local address goes.
    all: &'a [(Ipv4Addr, u16)],
}

impl PortCtx<'_> {
    /// The verdict for traffic taking `path` to `n` endpoints; adds the chains
    /// (and affinity map) it needs.
    fn verdict(&self, frag: &mut Fragment, path: Path, n: u32) -> Verdict {
        let all = count(self.all);
        let Some(timeout) = self.affinity else {
            return Verdict::Goto(shared_chains(frag, self.cfg, path, n, all));
        };
        if path != Path::Local {
            shared_chains(frag, self.cfg, path, n, all);
        }
        let map = format!("{AFF_MAP}{}", self.id);
        if !frag.maps.iter().any(|m| m.name == map) {
            frag.maps.push(AffinityMap {
                name: map.clone(),
                timeout,
            });
        }
        frag.chain(Chain {
            name: format!("{AFF_RECORD}{}", self.id),
            rules: vec![Rule::Record {
                map: map.clone(),
                timeout,
            }],
        });
        let affinity = Rule::Affinity {
            proto: self.proto,
            map,
        };
        let (prefix, mut rules) = match path {
            Path::Internal => (
                AFF_INTERNAL,
                self.cfg
                    .pod_cidr
                    .map(Rule::MasqueradeIfNotPod)
                    .into_iter()
                    .collect::<Vec<_>>(),
            ),
            Path::External => (AFF_EXTERNAL, vec![Rule::Masquerade]),
            Path::Local => {
                // Short-circuited clients stick to any endpoint, outside ones
                // to local endpoints: one map serves both, keyed by client.
                let short = format!("{AFF_SHORT_CIRCUIT}{}", self.id);
                let pick = pick_chain(frag, all, n);
                frag.chain(Chain {
                    name: short.clone(),
                    rules: vec![affinity.clone(), Rule::Goto(pick)],
                });
                (AFF_LOCAL, short_circuit(self.cfg, &short))
            }
        };
        if n > 0 {
            rules.push(affinity);
            rules.push(Rule::Goto(pick_chain(frag, n, 0)));
        }
        let name = format!("{prefix}{}", self.id);
        frag.chain(Chain {
            name: name.clone(),
            rules,
        });
        Verdict::Goto(name)
    }

    /// Elements for one address of the port. `node_port`: the address is a node
    /// address, whose verdict lives in the node-port map instead.
    fn address(
        &self,
        frag: &mut Fragment,
        addr: Ipv4Addr,
        port: u16,
        path: Path,
        eps: &[(Ipv4Addr, u16)],
        node_port: bool,
    ) {
        // An external-local address keeps every endpoint after its local ones,
        // for the traffic it short-circuits: even with no local endpoint, pods
        // and the node reach the service there (only outside traffic drops).
        let short: &[(Ipv4Addr, u16)] = if path == Path::Local { self.all } else { &[] };
        if eps.is_empty() && !node_port {
            frag.element(Element::NoEndpoints {
                addr,
                proto: self.proto,
                port,
                verdict: self.missing.clone(),
            });
        }
        if eps.is_empty() && short.is_empty() {
            return;
        }
        let verdict = self.verdict(frag, path, count(eps));
        if !node_port {
            frag.element(Element::ServiceIp {
                addr,
                proto: self.proto,
                port,
                verdict,
            });
        }
        for (slot, &(ep, ep_port)) in eps.iter().chain(short).enumerate() {
            frag.element(Element::Endpoint {
                addr,
                proto: self.proto,
                port,
                slot: u32::try_from(slot).unwrap_or(u32::MAX),
                ep,
                ep_port,
            });
            frag.element(Element::Hairpin(ep));
        }
        if self.affinity.is_some() {
            frag.element(Element::AffinityRecord {
                addr,
                proto: self.proto,
                port,
                chain: format!("{AFF_RECORD}{}", self.id),
            });
        }
    }
}

fn count(eps: &[(Ipv4Addr, u16)]) -> u32 {
    u32::try_from(eps.len()).unwrap_or(u32::MAX)
}

/// One service -> its fragment. Headless services without node ports give nothing.
pub fn service_fragment(cfg: &Config, svc: &ServiceInfo) -> Fragment {
    let mut frag = Fragment::default();
    for p in &svc.ports {
        let cluster = usable(p.endpoints.iter());
        // No endpoints at all: reject. Endpoints, but none local for a Local
        // policy: drop, as upstream does (another node may still answer).
        let missing = if cluster.is_empty() {
            Verdict::Goto(REJECT.to_string())
        } else {
            Verdict::Drop
        };
        let ctx = PortCtx {
            cfg,
            id: port_id(svc, p.proto, p.port),
            proto: p.proto,
            affinity: svc.affinity_timeout,
            missing,
            all: &cluster,
        };
        let local = usable(p.endpoints.iter().filter(|e| e.local));
        let internal = if svc.internal_local { &local } else { &cluster };
        let (external, ext_path) = if svc.external_local {
            (&local, Path::Local)
        } else {
            (&cluster, Path::External)
        };
        for &(ip, port) in &cluster {
            frag.endpoints.push((p.proto, ip, port));
        }
        for &ip in &svc.cluster_ips {
            frag.element(Element::ClusterIp(ip));
            ctx.address(&mut frag, ip, p.port, Path::Internal, internal, false);
        }
        for &ip in &svc.load_balancer_ips {
            frag.element(Element::LoadBalancerIp(ip));
        }
        for &ip in &svc.external_ips {
            ctx.address(&mut frag, ip, p.port, ext_path, external, false);
        }
        if let Some(np) = p.node_port {
            // The endpoints map is keyed by the destination the packet carries,
            // so a node port has its endpoints once per node address.
            for &ip in &cfg.node_ips {
                ctx.address(&mut frag, ip, np, ext_path, external, true);
            }
            // Short-circuited traffic needs the nat verdict even when outside
            // traffic is dropped by the filter.
            let short = ext_path == Path::Local && !cluster.is_empty();
            if !external.is_empty() || short {
                let verdict = ctx.verdict(&mut frag, ext_path, count(external));
                frag.element(Element::NodePort {
                    proto: p.proto,
                    port: np,
                    verdict,
                });
            }
            if external.is_empty() {
                frag.element(Element::NoEndpointsNodePort {
                    proto: p.proto,
                    port: np,
                    verdict: ctx.missing.clone(),
                });
            }
        }
    }
    frag.endpoints.sort();
    frag.endpoints.dedup();
    frag
}

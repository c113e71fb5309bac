//! Rule generation, pure: the cluster state becomes a [`Table`] — named sets,
//! counters, chains and set elements. The table's shape keeps pod churn out of
//! the rules (DESIGN §8): every pod-dependent fact is a set element.
//!
//! - Two base chains on the forward hook (after the proxy's DNAT, so they see
//!   the pod that finally receives a service connection): `forward-egress`,
//!   then `forward-ingress`. Each accepts established/related traffic and a
//!   pod's traffic to itself, then dispatches on the local pod address through
//!   a verdict map (`egress-pods` by source, `ingress-pods` by destination) to
//!   the isolation chain of that pod.
//! - An isolation chain (`isolate-in-<hash>`) exists per distinct list of
//!   policies selecting a pod, so pods with the same policies share it: it jumps
//!   to each policy's chain (any `accept` there allows the packet), counts the
//!   packet on each policy's `denied/...` counter, and drops it.
//! - A policy chain (`in/<namespace>/<name>`) holds one rule per (peer, port)
//!   combination of each policy rule. Pod peers are a set of pod addresses per
//!   rule (`.../<n>/peers`), named ports a set of `address . protocol . port`
//!   resolved on each receiving pod (`.../<n>/ports`); ipBlocks and numeric
//!   ports are literal, as they depend on the policy alone.
//!
//! Traffic that does not cross the forward hook — the node to its pods, pods
//! to the node (where skiff's cluster DNS answers) — is never filtered.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use crate::model::{ClusterState, Direction, Peer, PodInfo, PolicyInfo, PortRef, Proto};

/// Address family and name of the one table the enforcer owns.
pub const FAMILY: &str = "ip";
pub const TABLE: &str = "skiff-netpol";

// Base chains (hooked) and their priorities: after the proxy's filter chains
// (-5); egress first, so a packet passes its sender's egress policies, then
// its receiver's ingress policies (an `accept` ends one base chain only).
pub const FORWARD_EGRESS: &str = "forward-egress";
pub const FORWARD_INGRESS: &str = "forward-ingress";
pub const EGRESS_PRIORITY: i32 = 0;
pub const INGRESS_PRIORITY: i32 = 1;

// Fixed sets and maps.
/// `pod . pod` for every isolated pod: a pod reaching itself (through a
/// service) is always allowed.
pub const SELF: &str = "self";
/// Local pod address -> its ingress isolation chain.
pub const INGRESS_PODS: &str = "ingress-pods";
/// Local pod address -> its egress isolation chain.
pub const EGRESS_PODS: &str = "egress-pods";

// Prefixes and suffixes of generated names.
/// `isolate-in-<hash>` / `isolate-eg-<hash>`: a pod's list of policies.
pub const ISOLATE: &str = "isolate-";
/// `denied/in/<namespace>/<name>`: packets a policy's pods dropped.
pub const DENIED: &str = "denied/";
pub const PEERS: &str = "peers";
pub const PORTS: &str = "ports";

/// Longest name we generate; the kernel's limit is 256 bytes. Longer names
/// (a 253-character policy name) fall back to a hash.
const MAX_NAME: usize = 200;

/// 64-bit FNV-1a: stable across runs and Rust versions, unlike `DefaultHasher`.
pub fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `in/<namespace>/<name>`: the policy's chain for `dir`, and the stem of its
/// sets' and counter's names.
pub fn policy_chain(p: &PolicyInfo, dir: Direction) -> String {
    let id = format!("{}/{}", p.namespace, p.name);
    if id.len() > MAX_NAME {
        format!("{}/#{:016x}", dir.short(), fnv(&id))
    } else {
        format!("{}/{id}", dir.short())
    }
}

/// The named counter of a policy chain.
pub fn counter_name(chain: &str) -> String {
    format!("{DENIED}{chain}")
}

/// Which address of the packet a match looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    Src,
    Dst,
}

impl Addr {
    /// The peer's address: the source for ingress, the destination for egress.
    pub fn peer(dir: Direction) -> Self {
        match dir {
            Direction::Ingress => Self::Src,
            Direction::Egress => Self::Dst,
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Src => "ip saddr",
            Self::Dst => "ip daddr",
        })
    }
}

/// One match of a policy rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// The address is in a set of pod addresses.
    PeerSet { addr: Addr, set: String },
    /// The address is in `cidr` and in none of `except`.
    Block {
        addr: Addr,
        cidr: crate::model::Cidr,
        except: Vec<crate::model::Cidr>,
    },
    /// Destination port of `proto` in one of the inclusive ranges.
    Ports {
        proto: Proto,
        ranges: Vec<(u16, u16)>,
    },
    /// Any port of `proto`.
    Proto(Proto),
    /// `daddr . proto . dport` in a set of named ports resolved per pod.
    NamedPorts(String),
}

fn range(r: &(u16, u16)) -> String {
    if r.0 == r.1 {
        r.0.to_string()
    } else {
        format!("{}-{}", r.0, r.1)
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerSet { addr, set } => write!(f, "{addr} @{set}"),
            Self::Block { addr, cidr, except } => {
                write!(f, "{addr} {cidr}")?;
                if !except.is_empty() {
                    let list: Vec<String> = except.iter().map(|c| c.to_string()).collect();
                    write!(f, " {addr} != {{ {} }}", list.join(", "))?;
                }
                Ok(())
            }
            Self::Ports { proto, ranges } => match ranges.as_slice() {
                [one] => write!(f, "{proto} dport {}", range(one)),
                _ => {
                    let list: Vec<String> = ranges.iter().map(range).collect();
                    write!(f, "{proto} dport {{ {} }}", list.join(", "))
                }
            },
            Self::Proto(p) => write!(f, "meta l4proto {p}"),
            Self::NamedPorts(set) => write!(f, "ip daddr . meta l4proto . th dport @{set}"),
        }
    }
}

/// A rule of a generated chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Accept when every match holds (no matches: always).
    Accept(Vec<Match>),
    Jump(String),
    /// Count the packet on a named counter.
    Count(String),
    Drop,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accept(ms) => {
                for m in ms {
                    write!(f, "{m} ")?;
                }
                f.write_str("accept")
            }
            Self::Jump(c) => write!(f, "jump {c}"),
            Self::Count(c) => write!(f, "counter name {c}"),
            Self::Drop => f.write_str("drop"),
        }
    }
}

/// A generated chain: a policy's, or a pod's isolation chain (which jumps to
/// policy chains, so it must go first when both are deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub isolation: bool,
    pub rules: Vec<Rule>,
}

/// The element type of a generated set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetType {
    /// Pod addresses.
    Addrs,
    /// `address . protocol . port`.
    AddrPorts,
}

impl SetType {
    pub fn nft(self) -> &'static str {
        match self {
            Self::Addrs => "ipv4_addr",
            Self::AddrPorts => "ipv4_addr . inet_proto . inet_service",
        }
    }
}

/// What a named counter counts, for metrics labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterInfo {
    pub namespace: String,
    pub policy: String,
    pub direction: Direction,
}

/// One element of a set or map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// A local pod isolated in `dir`: its address -> its isolation chain.
    Isolated {
        dir: Direction,
        pod: Ipv4Addr,
        chain: String,
    },
    SelfPair(Ipv4Addr),
    Peer {
        set: String,
        ip: Ipv4Addr,
    },
    Port {
        set: String,
        ip: Ipv4Addr,
        proto: Proto,
        port: u16,
    },
}

impl Element {
    /// The set or map holding this element.
    pub fn set(&self) -> &str {
        match self {
            Self::Isolated { dir, .. } => match dir {
                Direction::Ingress => INGRESS_PODS,
                Direction::Egress => EGRESS_PODS,
            },
            Self::SelfPair(_) => SELF,
            Self::Peer { set, .. } | Self::Port { set, .. } => set,
        }
    }

    /// The key as nft takes it.
    pub fn key(&self) -> String {
        match self {
            Self::Isolated { pod, .. } => pod.to_string(),
            Self::SelfPair(a) => format!("{a} . {a}"),
            Self::Peer { ip, .. } => ip.to_string(),
            Self::Port {
                ip, proto, port, ..
            } => format!("{ip} . {proto} . {port}"),
        }
    }

    /// The key with its value, as `add element` takes it.
    pub fn entry(&self) -> String {
        match self {
            Self::Isolated { chain, .. } => format!("{} : goto {chain}", self.key()),
            _ => self.key(),
        }
    }
}

/// Everything the table holds beyond its fixed skeleton.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub sets: BTreeMap<String, SetType>,
    pub counters: BTreeMap<String, CounterInfo>,
    pub chains: BTreeMap<String, Chain>,
    pub elements: BTreeSet<Element>,
}

impl Table {
    /// Local pods isolated in at least one direction.
    pub fn isolated_pods(&self) -> usize {
        self.elements
            .iter()
            .filter(|e| matches!(e, Element::SelfPair(_)))
            .count()
    }
}

/// The pods this node enforces for: local, with an address, one pod per
/// address (a reused address goes to the first pod by `namespace/name`).
fn local_pods(cluster: &ClusterState) -> BTreeMap<Ipv4Addr, &PodInfo> {
    let mut out = BTreeMap::new();
    for pod in cluster.pods.values().filter(|p| p.local) {
        if let Some(ip) = pod.ip {
            out.entry(ip).or_insert(pod);
        }
    }
    out
}

/// The rules of one policy's chain for `dir`, adding the sets and elements
/// they use to `table`. `targets`: the local pods the policy selects.
fn policy_rules(
    cluster: &ClusterState,
    p: &PolicyInfo,
    dir: Direction,
    chain: &str,
    targets: &[&PodInfo],
    table: &mut Table,
) -> Vec<Rule> {
    let mut rules = Vec::new();
    let addr = Addr::peer(dir);
    for (n, rule) in p.rules(dir).into_iter().flatten().enumerate() {
        let peer_matches: Vec<Option<Match>> = match &rule.peers {
            None => vec![None],
            Some(peers) => {
                let mut v = Vec::new();
                let selectors: Vec<&Peer> = peers
                    .iter()
                    .filter(|x| matches!(x, Peer::Pods { .. }))
                    .collect();
                if !selectors.is_empty() {
                    let set = format!("{chain}/{n}/{PEERS}");
                    table.sets.insert(set.clone(), SetType::Addrs);
                    for pod in cluster.pods.values() {
                        let Some(ip) = pod.ip else { continue };
                        if selectors
                            .iter()
                            .any(|s| cluster.peer_selects(&p.namespace, s, pod))
                        {
                            table.elements.insert(Element::Peer {
                                set: set.clone(),
                                ip,
                            });
                        }
                    }
                    v.push(Some(Match::PeerSet { addr, set }));
                }
                for peer in peers {
                    if let Peer::Block { cidr, except } = peer {
                        v.push(Some(Match::Block {
                            addr,
                            cidr: *cidr,
                            except: except.clone(),
                        }));
                    }
                }
                v
            }
        };
        let port_matches: Vec<Option<Match>> = match &rule.ports {
            None => vec![None],
            Some(ports) => {
                let mut v = Vec::new();
                let named: Vec<(&str, Proto)> = ports
                    .iter()
                    .filter_map(|x| match &x.port {
                        PortRef::Named(name) => Some((name.as_str(), x.proto)),
                        _ => None,
                    })
                    .collect();
                if !named.is_empty() {
                    let set = format!("{chain}/{n}/{PORTS}");
                    table.sets.insert(set.clone(), SetType::AddrPorts);
                    // Ingress: resolved on the receiving pods, the policy's own.
                    // Egress: on whichever pod the traffic goes to.
                    let receivers: Vec<&PodInfo> = match dir {
                        Direction::Ingress => targets.to_vec(),
                        Direction::Egress => cluster.pods.values().collect(),
                    };
                    for pod in receivers {
                        let Some(ip) = pod.ip else { continue };
                        for &(name, proto) in &named {
                            if let Some(port) = pod.named_port(name, proto) {
                                table.elements.insert(Element::Port {
                                    set: set.clone(),
                                    ip,
                                    proto,
                                    port,
                                });
                            }
                        }
                    }
                    v.push(Some(Match::NamedPorts(set)));
                }
                for proto in Proto::ALL {
                    let of_proto = || ports.iter().filter(move |x| x.proto == proto);
                    if of_proto().any(|x| x.port == PortRef::Any) {
                        v.push(Some(Match::Proto(proto)));
                        continue;
                    }
                    let mut ranges: Vec<(u16, u16)> = of_proto()
                        .filter_map(|x| match x.port {
                            PortRef::Range(a, b) => Some((a, b.max(a))),
                            _ => None,
                        })
                        .collect();
                    ranges.sort();
                    ranges.dedup();
                    if !ranges.is_empty() {
                        v.push(Some(Match::Ports { proto, ranges }));
                    }
                }
                v
            }
        };
        for pm in &peer_matches {
            for qm in &port_matches {
                rules.push(Rule::Accept(pm.iter().chain(qm.iter()).cloned().collect()));
            }
        }
    }
    rules
}

/// The isolation chain for pods selected by exactly `chains` (in `dir`),
/// added to `table` if new; returns its name.
fn isolation_chain(table: &mut Table, dir: Direction, chains: &[String]) -> String {
    let name = format!("{ISOLATE}{}-{:016x}", dir.short(), fnv(&chains.join(",")));
    if !table.chains.contains_key(&name) {
        let mut rules: Vec<Rule> = chains.iter().map(|c| Rule::Jump(c.clone())).collect();
        rules.extend(chains.iter().map(|c| Rule::Count(counter_name(c))));
        rules.push(Rule::Drop);
        table.chains.insert(
            name.clone(),
            Chain {
                isolation: true,
                rules,
            },
        );
    }
    name
}

/// The whole desired table for `cluster`.
pub fn desired(cluster: &ClusterState) -> Table {
    let mut table = Table::default();
    let local = local_pods(cluster);
    // (direction, pod) -> the policy chains isolating it, in policy-key order.
    let mut isolation: BTreeMap<(Direction, Ipv4Addr), Vec<String>> = BTreeMap::new();
    for p in cluster.policies.values() {
        let targets: Vec<&PodInfo> = local.values().copied().filter(|x| p.selects(x)).collect();
        for dir in [Direction::Ingress, Direction::Egress] {
            if p.rules(dir).is_none() {
                continue;
            }
            let chain = policy_chain(p, dir);
            let rules = policy_rules(cluster, p, dir, &chain, &targets, &mut table);
            table.chains.insert(
                chain.clone(),
                Chain {
                    isolation: false,
                    rules,
                },
            );
            table.counters.insert(
                counter_name(&chain),
                CounterInfo {
                    namespace: p.namespace.clone(),
                    policy: p.name.clone(),
                    direction: dir,
                },
            );
            for t in &targets {
                if let Some(ip) = t.ip {
                    isolation.entry((dir, ip)).or_default().push(chain.clone());
                }
            }
            // A policy's own isolation chain exists as long as the policy
            // does, so a pod it starts (or stops) selecting alone is an
            // element update, not a new chain.
            isolation_chain(&mut table, dir, std::slice::from_ref(&chain));
        }
    }
    for ((dir, ip), chains) in isolation {
        let name = isolation_chain(&mut table, dir, &chains);
        table.elements.insert(Element::Isolated {
            dir,
            pod: ip,
            chain: name,
        });
        table.elements.insert(Element::SelfPair(ip));
    }
    table
}

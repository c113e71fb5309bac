//! A packet tracer over a generated table: where does the first packet of a new
//! connection go? It follows the skeleton's dispatch (see
//! `program::skeleton`) and interprets every generated chain rule, so tests can
//! check (source, destination, port) -> endpoint / reject / drop, masquerade and
//! session affinity without a kernel.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::model::Proto;
use crate::program::Program;
use crate::ruleset::{Element, Rule, Verdict, REJECT};

/// The first packet of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: Proto,
    pub dport: u16,
}

impl Packet {
    pub fn tcp(src: &str, dst: &str, dport: u16) -> Self {
        Self::new(src, dst, Proto::Tcp, dport)
    }

    pub fn udp(src: &str, dst: &str, dport: u16) -> Self {
        Self::new(src, dst, Proto::Udp, dport)
    }

    fn new(src: &str, dst: &str, proto: Proto, dport: u16) -> Self {
        let ip = |s: &str| s.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        Self {
            src: ip(src),
            dst: ip(dst),
            proto,
            dport,
        }
    }
}

/// What happens to the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Dnat {
        ep: Ipv4Addr,
        port: u16,
        masquerade: bool,
    },
    Reject,
    Drop,
    /// Not a service address: the table lets it pass untouched.
    Accept,
}

type Key = (Ipv4Addr, Proto, u16);

/// The table's maps, indexed, plus the affinity entries recorded so far.
pub struct Tracer<'a> {
    program: &'a Program,
    service_ips: HashMap<Key, Verdict>,
    node_ports: HashMap<(Proto, u16), Verdict>,
    no_eps: HashMap<Key, Verdict>,
    no_eps_np: HashMap<(Proto, u16), Verdict>,
    endpoints: HashMap<(Ipv4Addr, Proto, u16, u32), (Ipv4Addr, u16)>,
    cluster_ips: HashSet<Ipv4Addr>,
    load_balancer_ips: HashSet<Ipv4Addr>,
    node_ips: HashSet<Ipv4Addr>,
    hairpin: HashSet<Ipv4Addr>,
    record: HashMap<Key, String>,
    /// Dynamic affinity maps: (map, client) -> endpoint.
    pub affinity: HashMap<(String, Ipv4Addr), (Ipv4Addr, u16)>,
}

struct State {
    masq: bool,
    dnat: Option<(Ipv4Addr, u16)>,
    drop: bool,
}

impl<'a> Tracer<'a> {
    pub fn new(program: &'a Program) -> Self {
        let mut t = Self {
            program,
            service_ips: HashMap::new(),
            node_ports: HashMap::new(),
            no_eps: HashMap::new(),
            no_eps_np: HashMap::new(),
            endpoints: HashMap::new(),
            cluster_ips: HashSet::new(),
            load_balancer_ips: HashSet::new(),
            node_ips: HashSet::new(),
            hairpin: HashSet::new(),
            record: HashMap::new(),
            affinity: HashMap::new(),
        };
        for e in program.elements() {
            match e.clone() {
                Element::ClusterIp(a) => {
                    t.cluster_ips.insert(a);
                }
                Element::LoadBalancerIp(a) => {
                    t.load_balancer_ips.insert(a);
                }
                Element::NodeIp(a) => {
                    t.node_ips.insert(a);
                }
                Element::Hairpin(a) => {
                    t.hairpin.insert(a);
                }
                Element::ServiceIp {
                    addr,
                    proto,
                    port,
                    verdict,
                } => {
                    t.service_ips.insert((addr, proto, port), verdict);
                }
                Element::NodePort {
                    proto,
                    port,
                    verdict,
                } => {
                    t.node_ports.insert((proto, port), verdict);
                }
                Element::NoEndpoints {
                    addr,
                    proto,
                    port,
                    verdict,
                } => {
                    t.no_eps.insert((addr, proto, port), verdict);
                }
                Element::NoEndpointsNodePort {
                    proto,
                    port,
                    verdict,
                } => {
                    t.no_eps_np.insert((proto, port), verdict);
                }
                Element::Endpoint {
                    addr,
                    proto,
                    port,
                    slot,
                    ep,
                    ep_port,
                } => {
                    t.endpoints.insert((addr, proto, port, slot), (ep, ep_port));
                }
                Element::AffinityRecord {
                    addr,
                    proto,
                    port,
                    chain,
                } => {
                    t.record.insert((addr, proto, port), chain);
                }
            }
        }
        t
    }

    /// Traces `pkt`; `pick(n)` plays `numgen random mod n`.
    pub fn trace(&mut self, pkt: Packet, pick: &mut dyn FnMut(u32) -> u32) -> Outcome {
        let mut st = State {
            masq: false,
            dnat: None,
            drop: false,
        };
        // nat prerouting/output -> services
        let key = (pkt.dst, pkt.proto, pkt.dport);
        let verdict = self.service_ips.get(&key).cloned().or_else(|| {
            self.node_ips
                .contains(&pkt.dst)
                .then(|| self.node_ports.get(&(pkt.proto, pkt.dport)).cloned())
                .flatten()
        });
        if let Some(v) = verdict {
            self.verdict(&v, &pkt, &mut st, pick);
        }
        if st.drop {
            return Outcome::Drop;
        }
        if let Some((ep, port)) = st.dnat {
            // nat postrouting -> masquerading
            let masquerade = (pkt.src == ep && self.hairpin.contains(&ep)) || st.masq;
            // affinity-prerouting/output: record the choice
            if let Some(chain) = self.record.get(&key).cloned() {
                if let Some(c) = self.program.chain(&chain) {
                    for r in &c.rules {
                        if let Rule::Record { map, .. } = r {
                            self.affinity.insert((map.clone(), pkt.src), (ep, port));
                        }
                    }
                }
            }
            return Outcome::Dnat {
                ep,
                port,
                masquerade,
            };
        }
        // filter input/forward/output -> endpoints-check
        let v = self.no_eps.get(&key).cloned().or_else(|| {
            self.node_ips
                .contains(&pkt.dst)
                .then(|| self.no_eps_np.get(&(pkt.proto, pkt.dport)).cloned())
                .flatten()
        });
        match v {
            Some(Verdict::Drop) => return Outcome::Drop,
            Some(Verdict::Goto(c)) if c == REJECT => return Outcome::Reject,
            _ => {}
        }
        if self.cluster_ips.contains(&pkt.dst)
            || self.load_balancer_ips.contains(&pkt.dst)
            || self.program.config().service_cidr.contains(pkt.dst)
        {
            return Outcome::Reject;
        }
        Outcome::Accept
    }

    /// `fib saddr type local`: the node's own addresses as the table knows them
    /// (node addresses, load-balancer addresses, loopback).
    fn is_local(&self, src: Ipv4Addr) -> bool {
        src.is_loopback() || self.node_ips.contains(&src) || self.load_balancer_ips.contains(&src)
    }

    fn verdict(&self, v: &Verdict, pkt: &Packet, st: &mut State, pick: &mut dyn FnMut(u32) -> u32) {
        match v {
            Verdict::Drop => st.drop = true,
            Verdict::Goto(c) => self.chain(c, pkt, st, pick),
        }
    }

    fn chain(&self, name: &str, pkt: &Packet, st: &mut State, pick: &mut dyn FnMut(u32) -> u32) {
        let Some(c) = self.program.chain(name) else {
            panic!("goto {name}: no such chain in the table");
        };
        for r in &c.rules {
            if st.dnat.is_some() {
                return;
            }
            match r {
                Rule::MasqueradeIfNotPod(cidr) => {
                    if !cidr.contains(pkt.src) {
                        st.masq = true;
                    }
                }
                Rule::Masquerade => st.masq = true,
                Rule::MasqueradeIfLocal => {
                    if self.is_local(pkt.src) {
                        st.masq = true;
                    }
                }
                Rule::GotoIfPod(cidr, c) if cidr.contains(pkt.src) => {
                    return self.chain(c, pkt, st, pick)
                }
                Rule::GotoIfLocal(c) if self.is_local(pkt.src) => {
                    return self.chain(c, pkt, st, pick)
                }
                Rule::Affinity { proto, map } => {
                    if *proto == pkt.proto {
                        if let Some(&ep) = self.affinity.get(&(map.clone(), pkt.src)) {
                            st.dnat = Some(ep);
                        }
                    }
                }
                Rule::Pick { proto, n, offset } if *proto == pkt.proto => {
                    let slot = offset + pick(*n) % n;
                    if let Some(&ep) = self.endpoints.get(&(pkt.dst, pkt.proto, pkt.dport, slot)) {
                        st.dnat = Some(ep);
                    }
                }
                Rule::Goto(c) => return self.chain(c, pkt, st, pick),
                Rule::Pick { .. }
                | Rule::Record { .. }
                | Rule::GotoIfPod(..)
                | Rule::GotoIfLocal(_) => {}
            }
        }
    }
}

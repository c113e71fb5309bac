//! A packet tracer over a generated table: is the first packet of a new
//! connection through the forward hook allowed? It follows the skeleton's base
//! chains (see `program::skeleton`) and interprets every generated chain rule
//! and set, so tests can check (source, destination, protocol, port) ->
//! allow / drop, and which counters a drop bumps, without a kernel.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::model::{Direction, Proto};
use crate::ruleset::{Addr, Element, Match, Rule, Table};

/// The first packet of a connection, after the proxy's DNAT.
#[derive(Debug, Clone, Copy)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: Proto,
    pub dport: u16,
}

/// What the table does with the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    /// Dropped; the named counters the drop was counted on.
    Drop(Vec<String>),
}

/// How a chain ended.
enum End {
    Accept,
    Drop,
    /// Fell off the end of a jumped-to chain: back to the caller.
    Return,
}

/// The table's sets, indexed.
pub struct Tracer<'a> {
    table: &'a Table,
    dispatch: HashMap<(Direction, Ipv4Addr), String>,
    self_pairs: HashSet<Ipv4Addr>,
    peers: HashSet<(String, Ipv4Addr)>,
    ports: HashSet<(String, Ipv4Addr, Proto, u16)>,
}

impl<'a> Tracer<'a> {
    pub fn new(table: &'a Table) -> Self {
        let mut t = Self {
            table,
            dispatch: HashMap::new(),
            self_pairs: HashSet::new(),
            peers: HashSet::new(),
            ports: HashSet::new(),
        };
        for e in &table.elements {
            match e.clone() {
                Element::Isolated { dir, pod, chain } => {
                    t.dispatch.insert((dir, pod), chain);
                }
                Element::SelfPair(a) => {
                    t.self_pairs.insert(a);
                }
                Element::Peer { set, ip } => {
                    t.peers.insert((set, ip));
                }
                Element::Port {
                    set,
                    ip,
                    proto,
                    port,
                } => {
                    t.ports.insert((set, ip, proto, port));
                }
            }
        }
        t
    }

    /// Traces `pkt` through `forward-egress`, then `forward-ingress`.
    pub fn trace(&self, pkt: Packet) -> Outcome {
        let mut counted = Vec::new();
        for (dir, pod) in [(Direction::Egress, pkt.src), (Direction::Ingress, pkt.dst)] {
            // ct state established,related: only new connections are traced.
            if pkt.src == pkt.dst && self.self_pairs.contains(&pkt.src) {
                continue;
            }
            let Some(chain) = self.dispatch.get(&(dir, pod)) else {
                continue;
            };
            // A vmap `goto`: the isolation chain's end is the base chain's end,
            // whose policy is accept.
            match self.chain(chain, &pkt, &mut counted) {
                End::Accept | End::Return => {}
                End::Drop => return Outcome::Drop(counted),
            }
        }
        Outcome::Allow
    }

    fn chain(&self, name: &str, pkt: &Packet, counted: &mut Vec<String>) -> End {
        let Some(c) = self.table.chains.get(name) else {
            panic!("jump {name}: no such chain in the table");
        };
        for r in &c.rules {
            match r {
                Rule::Accept(ms) => {
                    if ms.iter().all(|m| self.matches(m, pkt)) {
                        return End::Accept;
                    }
                }
                Rule::Jump(target) => match self.chain(target, pkt, counted) {
                    End::Return => {}
                    end => return end,
                },
                Rule::Count(counter) => {
                    assert!(
                        self.table.counters.contains_key(counter),
                        "counter {counter} is not declared"
                    );
                    counted.push(counter.clone());
                }
                Rule::Drop => return End::Drop,
            }
        }
        End::Return
    }

    fn matches(&self, m: &Match, pkt: &Packet) -> bool {
        let addr = |a: &Addr| match a {
            Addr::Src => pkt.src,
            Addr::Dst => pkt.dst,
        };
        match m {
            Match::PeerSet { addr: a, set } => {
                assert!(self.table.sets.contains_key(set), "set {set} not declared");
                self.peers.contains(&(set.clone(), addr(a)))
            }
            Match::Block {
                addr: a,
                cidr,
                except,
            } => cidr.contains(addr(a)) && !except.iter().any(|e| e.contains(addr(a))),
            Match::Ports { proto, ranges } => {
                *proto == pkt.proto
                    && ranges
                        .iter()
                        .any(|&(lo, hi)| (lo..=hi).contains(&pkt.dport))
            }
            Match::Proto(p) => *p == pkt.proto,
            Match::NamedPorts(set) => {
                assert!(self.table.sets.contains_key(set), "set {set} not declared");
                self.ports
                    .contains(&(set.clone(), pkt.dst, pkt.proto, pkt.dport))
            }
        }
    }
}

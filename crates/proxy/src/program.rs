//! What the table holds, kept in memory: every service's fragment and the
//! reference-counted union of their elements and chains. A sync replaces some
//! fragments and turns the difference into one nft transaction; the kernel table
//! is never read back.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{Config, Proto};
use crate::ruleset::*;

/// The table as the proxier last programmed it (or is about to).
#[derive(Debug)]
pub struct Program {
    cfg: Config,
    fragments: HashMap<String, Fragment>,
    elements: HashMap<Element, u32>,
    /// Elements by map and key: two services may claim the same key (the same
    /// external IP and port); the kernel holds one of them, never a conflict
    /// that would fail every transaction.
    by_key: HashMap<ElementKey, BTreeSet<Element>>,
    /// What the kernel table holds for each key.
    kernel: HashMap<ElementKey, Element>,
    chains: HashMap<String, (u32, Chain)>,
    /// Services using each endpoint, to tell when one is gone for good.
    endpoint_refs: HashMap<(Proto, Ipv4Addr, u16), u32>,
    maps: HashMap<String, (u32, AffinityMap)>,
    /// The [`Element::LoadBalancerIp`]s of `kernel`, kept apart because every
    /// sync hands them to [`crate::lb`] and `kernel` is large.
    load_balancer_ips: BTreeSet<Ipv4Addr>,
}

type ElementKey = (&'static str, String);

fn element_key(e: &Element) -> ElementKey {
    (e.map(), e.key())
}

/// The result of [`Program::update`]: the transaction text and the follow-up work.
#[derive(Debug, Default)]
pub struct Transaction {
    pub text: String,
    /// Endpoints no service uses any more, for conntrack cleanup.
    pub removed_endpoints: Vec<(Proto, Ipv4Addr, u16)>,
    /// Elements added and deleted (for metrics and tests).
    pub added: usize,
    pub deleted: usize,
}

impl Transaction {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// Elements per `add element` statement: nft sends one netlink message per
/// statement, and a few thousand elements overflow its buffer (ENOBUFS).
const ELEMENTS_PER_STATEMENT: usize = 256;

fn add_element_lines(out: &mut String, verb: &str, elements: &[&Element], with_values: bool) {
    let mut by_map: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for e in elements {
        by_map
            .entry(e.map())
            .or_default()
            .push(if with_values { e.entry() } else { e.key() });
    }
    for (map, mut items) in by_map {
        items.sort();
        for chunk in items.chunks(ELEMENTS_PER_STATEMENT) {
            let _ = writeln!(
                out,
                "{verb} element {FAMILY} {TABLE} {map} {{ {} }}",
                chunk.join(", ")
            );
        }
    }
}

fn chain_rules(out: &mut String, c: &Chain) {
    for r in &c.rules {
        let _ = writeln!(out, "add rule {FAMILY} {TABLE} {} {r}", c.name);
    }
}

impl Program {
    pub fn new(cfg: Config) -> Self {
        let mut p = Self {
            cfg,
            fragments: HashMap::new(),
            elements: HashMap::new(),
            by_key: HashMap::new(),
            kernel: HashMap::new(),
            chains: HashMap::new(),
            endpoint_refs: HashMap::new(),
            maps: HashMap::new(),
            load_balancer_ips: BTreeSet::new(),
        };
        let node = Fragment {
            elements: p.cfg.node_ips.iter().map(|&a| Element::NodeIp(a)).collect(),
            ..Default::default()
        };
        p.insert(String::new(), node);
        p.kernel = p
            .by_key
            .iter()
            .filter_map(|(k, set)| set.first().map(|e| (k.clone(), e.clone())))
            .collect();
        p
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Replaces the node's own addresses (where node ports answer). Bookkeeping
    /// only: every service with a node port renders per node address, so the caller
    /// follows with a full sync.
    pub fn set_node_ips(&mut self, ips: Vec<std::net::Ipv4Addr>) {
        let node = Fragment {
            elements: ips.iter().map(|&a| Element::NodeIp(a)).collect(),
            ..Default::default()
        };
        self.cfg.node_ips = ips;
        self.apply(vec![(String::new(), Some(node))], false);
    }

    pub fn service_keys(&self) -> impl Iterator<Item = &String> {
        self.fragments.keys().filter(|k| !k.is_empty())
    }

    /// Number of elements across all maps and sets.
    pub fn element_count(&self) -> usize {
        self.kernel.len()
    }

    /// Number of generated chains.
    pub fn chain_count(&self) -> usize {
        self.chains.len()
    }

    /// The load-balancer addresses the table holds (the node answers for these).
    pub fn load_balancer_ips(&self) -> &BTreeSet<Ipv4Addr> {
        &self.load_balancer_ips
    }

    pub fn has(&self, e: &Element) -> bool {
        self.kernel.get(&element_key(e)) == Some(e)
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.get(name).map(|(_, c)| c)
    }

    /// The elements the kernel table holds.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.kernel.values()
    }

    fn insert(&mut self, key: String, frag: Fragment) {
        for e in &frag.elements {
            let n = self.elements.entry(e.clone()).or_default();
            *n += 1;
            if *n == 1 {
                self.by_key
                    .entry(element_key(e))
                    .or_default()
                    .insert(e.clone());
            }
        }
        for c in &frag.chains {
            let slot = self.chains.entry(c.name.clone()).or_insert((0, c.clone()));
            if slot.0 == 0 {
                slot.1 = c.clone();
            } else if slot.1 != *c {
                // Only per-service chains can change content; they have one owner.
                slot.1 = c.clone();
            }
            slot.0 += 1;
        }
        for m in &frag.maps {
            let slot = self.maps.entry(m.name.clone()).or_insert((0, m.clone()));
            slot.1 = m.clone();
            slot.0 += 1;
        }
        for e in &frag.endpoints {
            *self.endpoint_refs.entry(*e).or_default() += 1;
        }
        self.fragments.insert(key, frag);
    }

    fn remove(&mut self, key: &str) -> Option<Fragment> {
        let frag = self.fragments.remove(key)?;
        for e in &frag.endpoints {
            if let Some(n) = self.endpoint_refs.get_mut(e) {
                *n -= 1;
                if *n == 0 {
                    self.endpoint_refs.remove(e);
                }
            }
        }
        for e in &frag.elements {
            if let Some(n) = self.elements.get_mut(e) {
                *n -= 1;
                if *n == 0 {
                    self.elements.remove(e);
                    let k = element_key(e);
                    if let Some(set) = self.by_key.get_mut(&k) {
                        set.remove(e);
                        if set.is_empty() {
                            self.by_key.remove(&k);
                        }
                    }
                }
            }
        }
        for c in &frag.chains {
            if let Some(slot) = self.chains.get_mut(&c.name) {
                slot.0 -= 1;
                if slot.0 == 0 {
                    self.chains.remove(&c.name);
                }
            }
        }
        for m in &frag.maps {
            if let Some(slot) = self.maps.get_mut(&m.name) {
                slot.0 -= 1;
                if slot.0 == 0 {
                    self.maps.remove(&m.name);
                }
            }
        }
        Some(frag)
    }

    /// Replaces the fragments of some services (`None`: the service is gone) and
    /// returns the transaction that takes the table from the old state to the new.
    pub fn update(&mut self, changes: Vec<(String, Option<Fragment>)>) -> Transaction {
        self.apply(changes, true)
    }

    /// [`Program::update`] for a caller about to send [`Program::full`]: the
    /// same bookkeeping without rendering a diff nobody sends.
    pub fn load(&mut self, changes: Vec<(String, Option<Fragment>)>) -> Transaction {
        self.apply(changes, false)
    }

    fn apply(&mut self, changes: Vec<(String, Option<Fragment>)>, render: bool) -> Transaction {
        let mut touched_keys: HashSet<ElementKey> = HashSet::new();
        let mut touched_chains: HashMap<String, Option<Chain>> = HashMap::new();
        let mut touched_maps: HashMap<String, Option<AffinityMap>> = HashMap::new();
        let mut old_endpoints: BTreeSet<(Proto, Ipv4Addr, u16)> = BTreeSet::new();
        // Affinity maps whose service lost an endpoint: their entries may point at it.
        let mut flush: BTreeSet<String> = BTreeSet::new();
        for (key, new) in changes {
            let old = self.fragments.get(&key).cloned();
            if old.as_ref() == new.as_ref() {
                continue;
            }
            for f in old.iter().chain(new.iter()) {
                touched_keys.extend(f.elements.iter().map(element_key));
                for c in &f.chains {
                    touched_chains
                        .entry(c.name.clone())
                        .or_insert_with(|| self.chains.get(&c.name).map(|(_, c)| c.clone()));
                }
                for m in &f.maps {
                    touched_maps
                        .entry(m.name.clone())
                        .or_insert_with(|| self.maps.get(&m.name).map(|(_, m)| m.clone()));
                }
            }
            if let Some(old) = &old {
                old_endpoints.extend(old.endpoints.iter().copied());
                let kept: BTreeSet<_> = new
                    .iter()
                    .flat_map(|n| n.endpoints.iter().copied())
                    .collect();
                if old.endpoints.iter().any(|e| !kept.contains(e)) {
                    flush.extend(old.maps.iter().map(|m| m.name.clone()));
                }
            }
            self.remove(&key);
            if let Some(new) = new {
                self.insert(key, new);
            }
        }
        let removed_endpoints = old_endpoints
            .into_iter()
            .filter(|e| !self.endpoint_refs.contains_key(e))
            .collect();

        let mut t = Transaction {
            removed_endpoints,
            ..Default::default()
        };
        let out = &mut t.text;
        let mut new_maps: Vec<&AffinityMap> = Vec::new();
        let mut gone_maps: Vec<&String> = Vec::new();
        for (name, was) in &touched_maps {
            match (was, self.maps.get(name)) {
                (None, Some((_, m))) => new_maps.push(m),
                (Some(_), None) => gone_maps.push(name),
                _ => {}
            }
        }
        new_maps.sort_by(|a, b| a.name.cmp(&b.name));
        gone_maps.sort();
        let mut new_chains: Vec<&Chain> = Vec::new();
        let mut changed_chains: Vec<&Chain> = Vec::new();
        let mut gone_chains: Vec<&Chain> = Vec::new();
        for (name, was) in &touched_chains {
            match (was, self.chains.get(name)) {
                (None, Some((_, c))) => new_chains.push(c),
                (Some(old), None) => gone_chains.push(old),
                (Some(old), Some((_, c))) if old != c => changed_chains.push(c),
                _ => {}
            }
        }
        new_chains.sort_by(|a, b| a.name.cmp(&b.name));
        changed_chains.sort_by(|a, b| a.name.cmp(&b.name));
        gone_chains.sort_by(|a, b| (a.level(), &a.name).cmp(&(b.level(), &b.name)));

        // The map's own timeout is only a default: every `update` sets the
        // element's timeout, so a changed timeoutSeconds needs no new map.
        for m in &new_maps {
            let _ = writeln!(out, "{}", m.declaration());
        }
        for c in &new_chains {
            let _ = writeln!(out, "add chain {FAMILY} {TABLE} {}", c.name);
        }
        for c in &new_chains {
            chain_rules(out, c);
        }
        for c in &changed_chains {
            let _ = writeln!(out, "flush chain {FAMILY} {TABLE} {}", c.name);
            chain_rules(out, c);
        }
        let mut deleted: Vec<Element> = Vec::new();
        let mut added: Vec<Element> = Vec::new();
        for k in touched_keys {
            let want = self.by_key.get(&k).and_then(|s| s.first()).cloned();
            let have = self.kernel.get(&k).cloned();
            if want == have {
                continue;
            }
            if let Some(h) = have {
                if let Element::LoadBalancerIp(a) = h {
                    self.load_balancer_ips.remove(&a);
                }
                deleted.push(h);
                self.kernel.remove(&k);
            }
            if let Some(w) = want {
                if let Element::LoadBalancerIp(a) = w {
                    self.load_balancer_ips.insert(a);
                }
                added.push(w.clone());
                self.kernel.insert(k, w);
            }
        }
        let deleted: Vec<&Element> = deleted.iter().collect();
        let added: Vec<&Element> = added.iter().collect();
        t.added = added.len();
        t.deleted = deleted.len();
        if render {
            add_element_lines(out, "delete", &deleted, false);
            add_element_lines(out, "add", &added, true);
        }
        for m in &flush {
            if self.maps.contains_key(m) && !new_maps.iter().any(|n| &n.name == m) {
                let _ = writeln!(out, "flush map {FAMILY} {TABLE} {m}");
            }
        }
        for c in &gone_chains {
            let _ = writeln!(out, "delete chain {FAMILY} {TABLE} {}", c.name);
        }
        for m in &gone_maps {
            let _ = writeln!(out, "delete map {FAMILY} {TABLE} {m}");
        }
        t
    }

    /// The whole table from scratch, replacing whatever the kernel holds, in
    /// one transaction (start, after a failed transaction, periodic resync).
    pub fn full(&self) -> String {
        self.whole(false)
    }

    /// The whole table again without deleting it (the periodic resync): every
    /// fixed set, map and chain is flushed and refilled in one transaction, but
    /// session-affinity maps keep their entries, so clients stay where they are.
    pub fn refill(&self) -> String {
        self.whole(true)
    }

    fn whole(&self, refill: bool) -> String {
        let mut out = skeleton_with(&self.cfg, refill);
        let mut maps: Vec<&AffinityMap> = self.maps.values().map(|(_, m)| m).collect();
        maps.sort_by(|a, b| a.name.cmp(&b.name));
        for m in maps {
            let _ = writeln!(out, "{}", m.declaration());
        }
        let mut chains: Vec<&Chain> = self.chains.values().map(|(_, c)| c).collect();
        chains.sort_by(|a, b| a.name.cmp(&b.name));
        for c in &chains {
            let _ = writeln!(out, "add chain {FAMILY} {TABLE} {}", c.name);
            if refill {
                let _ = writeln!(out, "flush chain {FAMILY} {TABLE} {}", c.name);
            }
        }
        for c in &chains {
            chain_rules(&mut out, c);
        }
        let elements: Vec<&Element> = self.kernel.values().collect();
        add_element_lines(&mut out, "add", &elements, true);
        out
    }
}

/// The fixed part of the table: base chains, the dispatch rules and the maps.
pub fn skeleton(cfg: &Config) -> String {
    skeleton_with(cfg, false)
}

/// The skeleton replacing the table (`refill` false) or flushing and refilling
/// its fixed parts in place.
fn skeleton_with(cfg: &Config, refill: bool) -> String {
    let t = format!("{FAMILY} {TABLE}");
    let mut o = String::new();
    // `add` then `delete` makes the delete valid whether or not the table exists.
    let _ = writeln!(o, "add table {t}");
    if !refill {
        let _ = writeln!(o, "delete table {t}");
        let _ = writeln!(o, "add table {t}");
    }
    let _ = writeln!(o, "add set {t} {CLUSTER_IPS} {{ type ipv4_addr ; }}");
    let _ = writeln!(o, "add set {t} {LOAD_BALANCER_IPS} {{ type ipv4_addr ; }}");
    let _ = writeln!(o, "add set {t} {NODEPORT_IPS} {{ type ipv4_addr ; }}");
    let _ = writeln!(
        o,
        "add set {t} {HAIRPIN} {{ type ipv4_addr . ipv4_addr ; }}"
    );
    for m in [SERVICE_IPS, NO_EP_SERVICES, AFFINITY_RECORD] {
        let _ = writeln!(
            o,
            "add map {t} {m} {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}"
        );
    }
    for m in [SERVICE_NODEPORTS, NO_EP_NODEPORTS] {
        let _ = writeln!(
            o,
            "add map {t} {m} {{ type inet_proto . inet_service : verdict ; }}"
        );
    }
    // `typeof` because `numgen` has no named type; `tcp dport` (not `th dport`)
    // because nft 1.0.6 cannot re-read a `th` typeof from the kernel, which
    // makes every later transaction that references the map fail.
    for proto in [Proto::Tcp, Proto::Udp, Proto::Sctp] {
        let _ = writeln!(
            o,
            "add map {t} {} {{ typeof ip daddr . meta l4proto . {proto} dport . numgen random mod 1 : ip daddr . {proto} dport ; }}",
            endpoints_map(proto)
        );
    }
    if refill {
        for set in [CLUSTER_IPS, LOAD_BALANCER_IPS, NODEPORT_IPS, HAIRPIN] {
            let _ = writeln!(o, "flush set {t} {set}");
        }
        for map in [
            SERVICE_IPS,
            NO_EP_SERVICES,
            AFFINITY_RECORD,
            SERVICE_NODEPORTS,
            NO_EP_NODEPORTS,
            ENDPOINTS_TCP,
            ENDPOINTS_UDP,
            ENDPOINTS_SCTP,
        ] {
            let _ = writeln!(o, "flush map {t} {map}");
        }
    }
    let base = [
        (
            NAT_PREROUTING,
            "nat",
            "prerouting",
            DSTNAT_PRIORITY.to_string(),
        ),
        (NAT_OUTPUT, "nat", "output", DSTNAT_PRIORITY.to_string()),
        (
            NAT_POSTROUTING,
            "nat",
            "postrouting",
            SRCNAT_PRIORITY.to_string(),
        ),
        (FILTER_INPUT, "filter", "input", FILTER_PRIORITY.to_string()),
        (
            FILTER_FORWARD,
            "filter",
            "forward",
            FILTER_PRIORITY.to_string(),
        ),
        (
            FILTER_OUTPUT,
            "filter",
            "output",
            FILTER_PRIORITY.to_string(),
        ),
        (
            AFFINITY_PREROUTING,
            "filter",
            "prerouting",
            AFTER_DNAT_PRIORITY.to_string(),
        ),
        (
            AFFINITY_OUTPUT,
            "filter",
            "output",
            AFTER_DNAT_PRIORITY.to_string(),
        ),
    ];
    for (name, kind, hook, prio) in &base {
        let _ = writeln!(
            o,
            "add chain {t} {name} {{ type {kind} hook {hook} priority {prio} ; }}"
        );
    }
    for name in [SERVICES, ENDPOINTS_CHECK, MARK_MASQ, MASQUERADING, REJECT] {
        let _ = writeln!(o, "add chain {t} {name}");
    }
    if refill {
        for name in base.iter().map(|b| b.0).chain([
            SERVICES,
            ENDPOINTS_CHECK,
            MARK_MASQ,
            MASQUERADING,
            REJECT,
        ]) {
            let _ = writeln!(o, "flush chain {t} {name}");
        }
    }
    let rules: Vec<(&str, String)> = vec![
        (NAT_PREROUTING, format!("jump {SERVICES}")),
        (NAT_OUTPUT, format!("jump {SERVICES}")),
        (NAT_POSTROUTING, format!("jump {MASQUERADING}")),
        (
            SERVICES,
            format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
        ),
        // Node ports answer on the node's own addresses only, never on localhost.
        (
            SERVICES,
            format!(
                "ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"
            ),
        ),
        (MARK_MASQ, format!("meta mark set meta mark | {MASQ_MARK:#x}")),
        // A pod reaching itself through a service must see the reply come from
        // elsewhere, or it would answer itself directly.
        (
            MASQUERADING,
            format!("ct status dnat ip saddr . ip daddr @{HAIRPIN} masquerade"),
        ),
        (
            MASQUERADING,
            format!("meta mark & {MASQ_MARK:#x} == 0 return"),
        ),
        (
            MASQUERADING,
            format!("meta mark set meta mark ^ {MASQ_MARK:#x}"),
        ),
        (MASQUERADING, "masquerade fully-random".to_string()),
        (FILTER_INPUT, format!("ct state new jump {ENDPOINTS_CHECK}")),
        (FILTER_FORWARD, format!("ct state new jump {ENDPOINTS_CHECK}")),
        (FILTER_OUTPUT, format!("ct state new jump {ENDPOINTS_CHECK}")),
        (
            ENDPOINTS_CHECK,
            format!("ip daddr . meta l4proto . th dport vmap @{NO_EP_SERVICES}"),
        ),
        (
            ENDPOINTS_CHECK,
            format!("ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_EP_NODEPORTS}"),
        ),
        // A live ClusterIP on a port it does not serve: refuse at once.
        (
            ENDPOINTS_CHECK,
            format!("ip daddr @{CLUSTER_IPS} goto {REJECT}"),
        ),
        // The node holds load-balancer addresses as its own so that it answers ARP
        // for them; a port no service serves there must not reach a node socket.
        (
            ENDPOINTS_CHECK,
            format!("ip daddr @{LOAD_BALANCER_IPS} goto {REJECT}"),
        ),
        // Nobody holds this service address: fail fast rather than time out.
        (
            ENDPOINTS_CHECK,
            format!(
                "ip daddr {} reject with icmp type host-unreachable",
                cfg.service_cidr
            ),
        ),
        (REJECT, "reject".to_string()),
        (
            AFFINITY_PREROUTING,
            format!("ct state new ct status dnat meta l4proto {{ tcp, udp, sctp }} ct original ip daddr . meta l4proto . ct original proto-dst vmap @{AFFINITY_RECORD}"),
        ),
        (
            AFFINITY_OUTPUT,
            format!("ct state new ct status dnat meta l4proto {{ tcp, udp, sctp }} ct original ip daddr . meta l4proto . ct original proto-dst vmap @{AFFINITY_RECORD}"),
        ),
    ];
    for (chain, rule) in rules {
        let _ = writeln!(o, "add rule {t} {chain} {rule}");
    }
    o
}

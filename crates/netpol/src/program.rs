//! What the table holds, kept in memory, and the difference between two states
//! as one nft transaction. The kernel table is never read back: a failed
//! transaction is followed by a full one that replaces the table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::ruleset::*;

/// Elements per `add element` statement: nft sends one netlink message per
/// statement, and a few thousand elements overflow its buffer (ENOBUFS).
const ELEMENTS_PER_STATEMENT: usize = 256;

/// The result of [`Program::update`]: the transaction text and its size.
#[derive(Debug, Default)]
pub struct Transaction {
    pub text: String,
    /// Elements added and deleted (for metrics and tests).
    pub added: usize,
    pub deleted: usize,
}

impl Transaction {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// The table as the enforcer last programmed it (or is about to).
#[derive(Debug, Default)]
pub struct Program {
    table: Table,
}

fn element_lines(out: &mut String, verb: &str, elements: &[&Element], with_values: bool) {
    let mut by_set: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in elements {
        by_set
            .entry(e.set())
            .or_default()
            .push(if with_values { e.entry() } else { e.key() });
    }
    for (set, items) in by_set {
        for chunk in items.chunks(ELEMENTS_PER_STATEMENT) {
            let _ = writeln!(
                out,
                "{verb} element {FAMILY} {TABLE} {set} {{ {} }}",
                chunk.join(", ")
            );
        }
    }
}

fn chain_rules(out: &mut String, name: &str, c: &Chain) {
    for r in &c.rules {
        let _ = writeln!(out, "add rule {FAMILY} {TABLE} {name} {r}");
    }
}

fn set_decl(out: &mut String, name: &str, ty: SetType) {
    let _ = writeln!(
        out,
        "add set {FAMILY} {TABLE} {name} {{ type {} ; }}",
        ty.nft()
    );
}

impl Program {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Replaces the state without rendering a diff: for a caller about to send
    /// [`Program::full`].
    pub fn load(&mut self, new: Table) {
        self.table = new;
    }

    /// Moves to `new` and returns the transaction that takes the kernel table
    /// there from the current state. Order matters inside it: objects are
    /// created before anything refers to them and deleted after nothing does.
    pub fn update(&mut self, new: Table) -> Transaction {
        let old = std::mem::replace(&mut self.table, new);
        let new = &self.table;
        let mut t = Transaction::default();
        let out = &mut t.text;
        for (name, ty) in &new.sets {
            if old.sets.get(name) != Some(ty) {
                if old.sets.contains_key(name) {
                    // Same name, other type: cannot happen with generated names,
                    // but a replaced set must not keep its old declaration.
                    let _ = writeln!(out, "delete set {FAMILY} {TABLE} {name}");
                }
                set_decl(out, name, *ty);
            }
        }
        for name in new.counters.keys() {
            if !old.counters.contains_key(name) {
                let _ = writeln!(out, "add counter {FAMILY} {TABLE} {name}");
            }
        }
        let added_chains: Vec<(&String, &Chain)> = new
            .chains
            .iter()
            .filter(|(n, _)| !old.chains.contains_key(*n))
            .collect();
        for (name, _) in &added_chains {
            let _ = writeln!(out, "add chain {FAMILY} {TABLE} {name}");
        }
        for (name, c) in &added_chains {
            chain_rules(out, name, c);
        }
        for (name, c) in &new.chains {
            if old.chains.get(name).is_some_and(|o| o != c) {
                let _ = writeln!(out, "flush chain {FAMILY} {TABLE} {name}");
                chain_rules(out, name, c);
            }
        }
        // Elements of a deleted set go with it; everything else is explicit.
        let deleted: Vec<&Element> = old
            .elements
            .difference(&new.elements)
            .filter(|e| new.sets.contains_key(e.set()) || !old.sets.contains_key(e.set()))
            .collect();
        let added: Vec<&Element> = new.elements.difference(&old.elements).collect();
        t.deleted = deleted.len();
        t.added = added.len();
        element_lines(out, "delete", &deleted, false);
        element_lines(out, "add", &added, true);
        // Isolation chains jump to policy chains: they go first.
        let mut gone: Vec<(&String, &Chain)> = old
            .chains
            .iter()
            .filter(|(n, _)| !new.chains.contains_key(*n))
            .collect();
        gone.sort_by_key(|(n, c)| (!c.isolation, *n));
        for (name, _) in gone {
            let _ = writeln!(out, "delete chain {FAMILY} {TABLE} {name}");
        }
        for name in old.counters.keys() {
            if !new.counters.contains_key(name) {
                let _ = writeln!(out, "delete counter {FAMILY} {TABLE} {name}");
            }
        }
        for name in old.sets.keys() {
            if !new.sets.contains_key(name) {
                let _ = writeln!(out, "delete set {FAMILY} {TABLE} {name}");
            }
        }
        t
    }

    /// The whole table from scratch, replacing whatever the kernel holds, in
    /// one transaction (start, after a failed transaction).
    pub fn full(&self) -> String {
        let mut out = skeleton();
        for (name, ty) in &self.table.sets {
            set_decl(&mut out, name, *ty);
        }
        for name in self.table.counters.keys() {
            let _ = writeln!(out, "add counter {FAMILY} {TABLE} {name}");
        }
        for name in self.table.chains.keys() {
            let _ = writeln!(out, "add chain {FAMILY} {TABLE} {name}");
        }
        for (name, c) in &self.table.chains {
            chain_rules(&mut out, name, c);
        }
        let elements: Vec<&Element> = self.table.elements.iter().collect();
        element_lines(&mut out, "add", &elements, true);
        out
    }
}

/// The fixed part of the table: the base chains, their dispatch rules and the
/// dispatch maps.
pub fn skeleton() -> String {
    let t = format!("{FAMILY} {TABLE}");
    let mut o = String::new();
    // `add` then `delete` makes the delete valid whether or not the table exists.
    let _ = writeln!(o, "add table {t}");
    let _ = writeln!(o, "delete table {t}");
    let _ = writeln!(o, "add table {t}");
    let _ = writeln!(o, "add set {t} {SELF} {{ type ipv4_addr . ipv4_addr ; }}");
    for m in [INGRESS_PODS, EGRESS_PODS] {
        let _ = writeln!(o, "add map {t} {m} {{ type ipv4_addr : verdict ; }}");
    }
    for (name, prio) in [
        (FORWARD_EGRESS, EGRESS_PRIORITY),
        (FORWARD_INGRESS, INGRESS_PRIORITY),
    ] {
        let _ = writeln!(
            o,
            "add chain {t} {name} {{ type filter hook forward priority {prio} ; }}"
        );
    }
    for (name, addr, map) in [
        (FORWARD_EGRESS, "ip saddr", EGRESS_PODS),
        (FORWARD_INGRESS, "ip daddr", INGRESS_PODS),
    ] {
        // Replies of allowed connections pass; policies judge new flows only.
        let _ = writeln!(o, "add rule {t} {name} ct state established,related accept");
        let _ = writeln!(o, "add rule {t} {name} ip saddr . ip daddr @{SELF} accept");
        let _ = writeln!(o, "add rule {t} {name} {addr} vmap @{map}");
    }
    o
}

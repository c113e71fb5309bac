//! The node-IPAM controller (upstream `nodeipam`, the range allocator): every
//! Node without `spec.podCIDR` gets the next free block of the cluster pod CIDR
//! (`--cluster-cidr`, blocks of `--node-cidr-mask-size`), written as
//! `spec.podCIDR` and `spec.podCIDRs` in one patch.
//!
//! The used blocks are not kept as state: they are the podCIDRs of the Nodes in
//! the cache (plus blocks written but not yet seen there), so ranges that Nodes
//! already hold when the controller starts stay theirs, and a range is free
//! again once its Node is deleted. As upstream's `cidrset`, the search starts
//! after the last block handed out, so a released range is not reused at once
//! (a node that comes back would otherwise find its old pod IPs on another node).
//!
//! A Node whose podCIDR lies outside the cluster CIDR or overlaps an older
//! Node's is left alone, with a Warning Event `CIDRNotAvailable` (upstream does
//! not check for overlaps; skiff's agents claim ranges themselves in some
//! set-ups, so it does). When no block is free, the Event is upstream's
//! `Node <name> status is now: CIDRNotAvailable`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use crate::runtime::{Ctx, Key};
use crate::{Error, Result, Settings};

const COMPONENT: &str = "cidrAllocator";
const REASON: &str = "CIDRNotAvailable";

/// An IPv4 or IPv6 prefix, as a number (host bits cleared) and a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: u128,
    pub prefix: u8,
    pub v6: bool,
}

/// All ones in the low `bits` bits.
fn low_mask(bits: u8) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

impl Cidr {
    /// `a.b.c.d/n` or `x::/n`; host bits are cleared, as Go's `net.ParseCIDR`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = s.trim().split_once('/')?;
        let prefix: u8 = len.parse().ok()?;
        let (addr, v6) = match ip.parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(a) => (u128::from(u32::from(a)), false),
            std::net::IpAddr::V6(a) => (u128::from(a), true),
        };
        let c = Cidr { addr, prefix, v6 };
        if prefix > c.width() {
            return None;
        }
        Some(Cidr {
            addr: addr & !low_mask(c.width() - prefix),
            ..c
        })
    }

    fn width(&self) -> u8 {
        if self.v6 {
            128
        } else {
            32
        }
    }

    fn last(&self) -> u128 {
        self.addr | low_mask(self.width() - self.prefix)
    }

    pub fn overlaps(&self, o: &Cidr) -> bool {
        self.v6 == o.v6 && self.addr <= o.last() && o.addr <= self.last()
    }

    /// Whether `o` lies wholly inside this prefix.
    pub fn contains(&self, o: &Cidr) -> bool {
        self.v6 == o.v6 && o.prefix >= self.prefix && self.addr <= o.addr && o.last() <= self.last()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v6 {
            write!(f, "{}/{}", std::net::Ipv6Addr::from(self.addr), self.prefix)
        } else {
            // Truncation is exact: an IPv4 Cidr never holds more than 32 bits.
            let a = u32::try_from(self.addr).unwrap_or(u32::MAX);
            write!(f, "{}/{}", std::net::Ipv4Addr::from(a), self.prefix)
        }
    }
}

/// The cluster pod CIDR cut into node blocks (upstream `cidrset.CidrSet`).
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub cluster: Cidr,
    pub mask: u8,
}

impl Range {
    /// Checks the flags as upstream does: the node mask must be at least the
    /// cluster's and at most 16 bits longer (`--node-cidr-mask-size`).
    pub fn new(cluster: &str, mask: u8) -> std::result::Result<Range, String> {
        let c = Cidr::parse(cluster)
            .ok_or_else(|| format!("invalid --cluster-cidr {cluster:?}: not a CIDR"))?;
        if mask < c.prefix || mask > c.width() {
            return Err(format!(
                "--node-cidr-mask-size {mask} must be between the mask size of --cluster-cidr {cluster} ({}) and {}",
                c.prefix,
                c.width()
            ));
        }
        if mask - c.prefix > 16 {
            return Err(format!(
                "--node-cidr-mask-size {mask} is more than 16 bits longer than the mask of --cluster-cidr {cluster}: too many node ranges"
            ));
        }
        Ok(Range { cluster: c, mask })
    }

    /// How many node blocks there are.
    pub fn blocks(&self) -> u64 {
        1u64 << (self.mask - self.cluster.prefix)
    }

    fn shift(&self) -> u8 {
        self.cluster.width() - self.mask
    }

    pub fn block(&self, i: u64) -> Cidr {
        Cidr {
            addr: self.cluster.addr + (u128::from(i) << self.shift()),
            prefix: self.mask,
            v6: self.cluster.v6,
        }
    }

    /// The blocks `c` covers, if any.
    fn blocks_of(&self, c: &Cidr) -> Option<std::ops::RangeInclusive<u64>> {
        if !self.cluster.overlaps(c) {
            return None;
        }
        let lo = c.addr.max(self.cluster.addr) - self.cluster.addr;
        let hi = c.last().min(self.cluster.last()) - self.cluster.addr;
        let idx = |a: u128| u64::try_from(a >> self.shift()).unwrap_or(u64::MAX);
        Some(idx(lo)..=idx(hi))
    }
}

/// Another Node's ranges, and whether it was created before the Node decided on.
#[derive(Debug)]
pub struct Peer<'a> {
    pub name: &'a str,
    pub cidrs: Vec<&'a str>,
    pub older: bool,
}

#[derive(Debug, PartialEq)]
pub enum Decision {
    /// The Node's podCIDR is valid and its own.
    Keep,
    /// Block `index` is free: it becomes the Node's podCIDR.
    Assign { index: u64, cidr: String },
    /// The Node's podCIDR cannot be used; the message says why.
    Conflict(String),
    /// No block is free.
    Exhausted,
}

/// The pure allocation for one Node: `current` is its podCIDR (if any),
/// `pending` the blocks handed out but not yet in the cache, `next` where the
/// search for a free block starts.
pub fn decide(
    range: &Range,
    current: Option<&str>,
    peers: &[Peer],
    pending: &[u64],
    next: u64,
) -> Decision {
    if let Some(cur) = current {
        let Some(c) = Cidr::parse(cur) else {
            return Decision::Conflict(format!("podCIDR {cur:?} is not a valid CIDR"));
        };
        if !range.cluster.contains(&c) {
            return Decision::Conflict(format!(
                "podCIDR {c} is out of the range of cluster CIDR {}",
                range.cluster
            ));
        }
        for p in peers.iter().filter(|p| p.older) {
            for other in p.cidrs.iter().filter_map(|s| Cidr::parse(s)) {
                if other.overlaps(&c) {
                    return Decision::Conflict(format!(
                        "podCIDR {c} overlaps {other} of node {}",
                        p.name
                    ));
                }
            }
        }
        return Decision::Keep;
    }
    let mut used: BTreeSet<u64> = pending.iter().copied().collect();
    for c in peers
        .iter()
        .flat_map(|p| p.cidrs.iter())
        .filter_map(|s| Cidr::parse(s))
    {
        if let Some(blocks) = range.blocks_of(&c) {
            used.extend(blocks);
        }
    }
    let n = range.blocks();
    (0..n)
        .map(|i| (next % n + i) % n)
        .find(|i| !used.contains(i))
        .map_or(Decision::Exhausted, |index| Decision::Assign {
            index,
            cidr: range.block(index).to_string(),
        })
}

/// The controller's memory: where the next search starts, blocks written but
/// not yet seen in the cache, and the last problem reported per Node (so an
/// Event is written once per problem, not on every Node update).
pub struct State {
    range: Option<Range>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    pending: HashMap<String, u64>,
    told: HashMap<String, String>,
}

impl State {
    /// Fails on invalid flags, as kube-controller-manager refuses to start.
    pub fn new(settings: &Settings) -> Result<State> {
        let range = match &settings.cluster_cidr {
            Some(c) if settings.enabled("nodeipam") => {
                Some(Range::new(c, settings.node_cidr_mask_size).map_err(Error::Invalid)?)
            }
            _ => None,
        };
        Ok(State {
            range,
            inner: Mutex::default(),
        })
    }

    pub fn active(&self) -> bool {
        self.range.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The Node's ranges: `podCIDRs`, else `podCIDR`.
fn cidrs(n: &Node) -> Vec<&str> {
    let spec = n.spec.as_ref();
    let list: Vec<&str> = spec
        .and_then(|s| s.pod_cidrs.as_ref())
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let list = if list.is_empty() {
        spec.and_then(|s| s.pod_cidr.as_deref())
            .into_iter()
            .collect()
    } else {
        list
    };
    list.into_iter().filter(|c| !c.is_empty()).collect()
}

/// Nodes still waiting for a range (retried when a Node goes away).
pub fn waiting(n: &Node) -> bool {
    cidrs(n).is_empty()
}

fn age(n: &Node) -> (Option<i64>, String) {
    (
        n.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond()),
        n.name_any(),
    )
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let state = &ctx.ipam;
    let Some(range) = &state.range else {
        return Ok(None);
    };
    let nodes = ctx.cache.nodes.state();
    let node = nodes.iter().find(|n| n.name_any() == key.name).cloned();
    let (pending, next) = {
        let mut s = state.lock();
        // Written blocks count as used until the cache shows them on their Node.
        s.pending
            .retain(|name, _| nodes.iter().any(|n| n.name_any() == *name && waiting(n)));
        if node.is_none() {
            s.told.remove(&key.name);
        }
        if s.pending.contains_key(&key.name) {
            return Ok(None);
        }
        (s.pending.values().copied().collect::<Vec<_>>(), s.next)
    };
    let Some(node) = node else { return Ok(None) };
    let mine = age(&node);
    let peers: Vec<Peer> = nodes
        .iter()
        .filter(|n| n.name_any() != key.name)
        .map(|n| Peer {
            name: n.metadata.name.as_deref().unwrap_or(""),
            cidrs: cidrs(n),
            older: age(n) < mine,
        })
        .collect();
    let own = cidrs(&node);
    let tell = |message: String, warning: bool| {
        let mut s = state.lock();
        if s.told.get(&key.name) != Some(&message) {
            s.told.insert(key.name.clone(), message.clone());
            ctx.events
                .record(&*node, COMPONENT, warning, REASON, message);
        }
    };
    match decide(range, own.first().copied(), &peers, &pending, next) {
        Decision::Keep => {
            state.lock().told.remove(&key.name);
            Ok(None)
        }
        Decision::Conflict(why) => {
            tracing::warn!(node = %key.name, "{why}");
            tell(why, true);
            Ok(None)
        }
        Decision::Exhausted => {
            tell(format!("Node {} status is now: {REASON}", key.name), false);
            // Node deletions requeue waiting Nodes; this is the safety net.
            Ok(Some(Duration::from_secs(30)))
        }
        Decision::Assign { index, cidr } => {
            let api: Api<Node> = Api::all(ctx.clients.of("nodeipam"));
            // The resourceVersion makes the patch conditional: a Node that got a
            // range from elsewhere meanwhile (its agent) keeps that one.
            let patch = json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            });
            match api
                .patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            tracing::info!(node = %key.name, %cidr, "assigned pod CIDR");
            let mut s = state.lock();
            s.pending.insert(key.name.clone(), index);
            s.next = index + 1;
            s.told.remove(&key.name);
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer<'a>(name: &'a str, cidrs: &[&'a str], older: bool) -> Peer<'a> {
        Peer {
            name,
            cidrs: cidrs.to_vec(),
            older,
        }
    }

    #[test]
    fn cidr_parsing_and_flags() {
        let c = Cidr::parse("10.244.3.7/24");
        assert_eq!(c.map(|c| c.to_string()), Some("10.244.3.0/24".into()));
        assert_eq!(Cidr::parse("10.244.0.0/33"), None);
        assert_eq!(Cidr::parse("nope"), None);
        assert_eq!(
            Cidr::parse("fd00:10:244::/56").map(|c| c.to_string()),
            Some("fd00:10:244::/56".into())
        );
        assert!(Range::new("10.244.0.0/16", 24).is_ok());
        assert!(Range::new("10.244.0.0/16", 8).is_err());
        assert!(Range::new("10.0.0.0/8", 25).is_err());
        assert!(Range::new("10.244.0.0", 24).is_err());
        let r = Range::new("fd00:10:244::/56", 64);
        assert_eq!(
            r.map(|r| r.block(3).to_string()),
            Ok("fd00:10:244:3::/64".into())
        );
    }

    #[test]
    fn allocation_table() {
        let r = match Range::new("10.244.0.0/16", 24) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let assign = |index: u64| Decision::Assign {
            index,
            cidr: r.block(index).to_string(),
        };
        let conflict = |s: &str| Decision::Conflict(s.to_string());
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Vec<Peer<'a>>,
            Vec<u64>,
            u64,
            Decision,
        );
        let cases: Vec<Case> = vec![
            ("first node", None, vec![], vec![], 0, assign(0)),
            (
                "an existing node's range stays its own",
                None,
                vec![peer("a", &["10.244.0.0/24"], true)],
                vec![],
                0,
                assign(1),
            ),
            (
                "a block written but not yet cached is used",
                None,
                vec![peer("a", &["10.244.0.0/24"], true)],
                vec![1],
                0,
                assign(2),
            ),
            (
                "the search starts after the last block handed out",
                None,
                vec![],
                vec![],
                7,
                assign(7),
            ),
            (
                "and wraps around",
                None,
                vec![peer("a", &["10.244.255.0/24"], true)],
                vec![],
                255,
                assign(0),
            ),
            (
                "a bigger peer range covers several blocks",
                None,
                vec![peer("a", &["10.244.0.0/23"], true)],
                vec![],
                0,
                assign(2),
            ),
            (
                "ranges outside the cluster CIDR use no block",
                None,
                vec![peer("a", &["10.0.0.0/24"], true)],
                vec![],
                0,
                assign(0),
            ),
            (
                "a valid range is kept",
                Some("10.244.5.0/24"),
                vec![],
                vec![],
                0,
                Decision::Keep,
            ),
            (
                "the newer of two overlapping nodes is told",
                Some("10.244.5.0/24"),
                vec![peer("a", &["10.244.5.0/24"], true)],
                vec![],
                0,
                conflict("podCIDR 10.244.5.0/24 overlaps 10.244.5.0/24 of node a"),
            ),
            (
                "the older keeps its range",
                Some("10.244.5.0/24"),
                vec![peer("b", &["10.244.5.0/24"], false)],
                vec![],
                0,
                Decision::Keep,
            ),
            (
                "outside the cluster CIDR",
                Some("10.0.0.0/24"),
                vec![],
                vec![],
                0,
                conflict("podCIDR 10.0.0.0/24 is out of the range of cluster CIDR 10.244.0.0/16"),
            ),
            (
                "garbage",
                Some("ten"),
                vec![],
                vec![],
                0,
                conflict("podCIDR \"ten\" is not a valid CIDR"),
            ),
        ];
        for (name, current, peers, pending, next, want) in cases {
            assert_eq!(decide(&r, current, &peers, &pending, next), want, "{name}");
        }
        // A /30 cut into /31s has two blocks: both taken means exhausted.
        let small = match Range::new("10.0.0.0/30", 31) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let full = [
            peer("a", &["10.0.0.0/31"], true),
            peer("b", &["10.0.0.2/31"], true),
        ];
        assert_eq!(decide(&small, None, &full, &[], 0), Decision::Exhausted);
        assert_eq!(
            decide(&small, None, &full[..1], &[], 0),
            Decision::Assign {
                index: 1,
                cidr: "10.0.0.2/31".into()
            }
        );
    }
}

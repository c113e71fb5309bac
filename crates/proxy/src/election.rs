//! Which node announces each built-in load-balancer address, pure. Only the node
//! holding an address on `lo` answers ARP for it (see [`crate::lb`]); with
//! several nodes on one L2 segment exactly one may, as in MetalLB's layer-2
//! mode. The choice is a leader election per address over a
//! coordination.k8s.io/v1 Lease, as client-go's leader election does it:
//!
//! - the Lease of `10.0.0.5` is `kube-system/skiff-lb-10-0-0-5` ([`lease_name`]),
//!   labelled [`ADDRESS_LABEL`]`=10.0.0.5`, `holderIdentity` the node's name;
//! - a node that wants an address creates its Lease when there is none (a 409
//!   means another node won), takes it over when it is free or expired, and
//!   renews it every [`RENEW_PERIOD`] while it holds it; every write but the
//!   create carries the resourceVersion read, so of two nodes taking the same
//!   expired Lease one gets 409 Conflict and loses;
//! - a Lease has expired when this node has seen it unchanged for its
//!   `leaseDurationSeconds`, measured on this node's own monotonic clock from
//!   when it first saw that version (client-go's `observedTime`), never by
//!   comparing the holder's `renewTime` with this node's wall clock: nodes'
//!   clocks differ, and a node running ahead would steal live Leases;
//! - a node releases (deletes) the Leases of addresses it no longer wants, and
//!   deletes expired Leases nobody renews (their node is gone, and so may be
//!   their service), so none pile up; a node that wants one creates it anew.
//!
//! [`decide`] is the whole rule; `announce` does the Lease IO around it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::model::ServiceInfo;

/// Where the Leases live: a namespace every cluster has, beside the control
/// plane's own leader-election Leases.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// `skiff-lb-` + the address with dots as dashes (a Lease name is a DNS
/// subdomain; dashes keep it a single readable label).
pub const LEASE_PREFIX: &str = "skiff-lb-";
/// Label on each Lease naming its address, for `kubectl get lease -l`.
pub const ADDRESS_LABEL: &str = "skiff.dev/load-balancer-ip";

/// `leaseDurationSeconds` of the Leases this node writes. Short because it
/// bounds how long an address stays dark after its node dies (the issue asks
/// for seconds), yet three renew periods long, so one or two lost renewals
/// (a slow API server, a busy node) do not move a healthy node's address.
pub const LEASE_DURATION: Duration = Duration::from_secs(6);
/// How often the holder renews, and how often every node re-reads the Leases.
/// Takeover after a holder dies: at most [`LEASE_DURATION`] + this.
pub const RENEW_PERIOD: Duration = Duration::from_secs(2);
/// A holder that has not renewed for this long stops announcing (takes the
/// address off `lo`) although it may still think it holds the Lease: another
/// node may take the Lease [`LEASE_DURATION`] after the last renewal, and the
/// old holder must be silent by then, or two nodes would answer ARP.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(4);
/// Longest one round of Lease calls may take: a hung API server must not keep
/// the announcer from noticing [`RENEW_DEADLINE`]. Together they stay below
/// [`LEASE_DURATION`] (tested), so the old holder is always silent first.
pub const ROUND_TIMEOUT: Duration = Duration::from_millis(1500);

/// The Lease name of `addr`: `skiff-lb-10-0-0-5`.
pub fn lease_name(addr: Ipv4Addr) -> String {
    format!("{LEASE_PREFIX}{}", addr.to_string().replace('.', "-"))
}

/// The address a Lease name stands for; `None` for any other Lease.
pub fn lease_address(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_prefix(LEASE_PREFIX)?;
    let a: Ipv4Addr = rest.replace('-', ".").parse().ok()?;
    // One spelling per address: `skiff-lb-010-0-0-5` is not ours.
    (lease_name(a) == name).then_some(a)
}

/// `leaseDurationSeconds` as written by whoever holds the Lease; a missing or
/// nonsensical one counts as ours.
pub fn lease_duration(seconds: Option<i32>) -> Duration {
    match seconds.and_then(|s| u64::try_from(s).ok()) {
        Some(s) if s > 0 => Duration::from_secs(s),
        _ => LEASE_DURATION,
    }
}

/// A Lease as this node last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen<'a> {
    /// `holderIdentity`; empty: released.
    pub holder: &'a str,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// How long this node has seen this very version (same resourceVersion),
    /// by its own clock.
    pub unchanged_for: Duration,
}

impl Seen<'_> {
    fn expired(&self) -> bool {
        self.holder.is_empty() || self.unchanged_for >= self.duration
    }
}

/// What this node does about one address's Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// No Lease: create it, holding it.
    Create,
    /// Ours: renew it.
    Renew,
    /// Free or expired: take it over (an update with the resourceVersion seen).
    Take,
    /// Ours but not wanted any more: delete it.
    Release,
    /// Another node holds it: do not announce.
    Follow,
    /// Not wanted, not ours, expired: delete it (with the resourceVersion seen).
    Collect,
    /// Not wanted, not ours, live: nothing.
    Idle,
}

/// The election rule for one address: the Lease as last seen (`None`: there is
/// none), this node's name, and whether this node may announce the address.
pub fn decide(lease: Option<&Seen<'_>>, me: &str, wanted: bool) -> Action {
    match (lease, wanted) {
        (None, true) => Action::Create,
        (None, false) => Action::Idle,
        (Some(l), true) if l.holder == me => Action::Renew,
        (Some(l), true) if l.expired() => Action::Take,
        (Some(_), true) => Action::Follow,
        (Some(l), false) if l.holder == me => Action::Release,
        (Some(l), false) if l.expired() => Action::Collect,
        (Some(_), false) => Action::Idle,
    }
}

/// The addresses this node announces: those whose Lease it wrote (created,
/// took or renewed) less than [`RENEW_DEADLINE`] ago. `renewed`: address ->
/// how long ago its last successful write started.
pub fn announced(renewed: &BTreeMap<Ipv4Addr, Duration>) -> BTreeSet<Ipv4Addr> {
    renewed
        .iter()
        .filter(|(_, &ago)| ago < RENEW_DEADLINE)
        .map(|(&a, _)| a)
        .collect()
}

/// Whether this node may announce `svc`'s load-balancer addresses: any node for
/// `externalTrafficPolicy: Cluster`; for `Local` only a node with a ready
/// endpoint of the service (as MetalLB does, and as upstream's health check
/// node port reports), since outside traffic to a node without one is dropped.
pub fn may_announce(svc: &ServiceInfo) -> bool {
    !svc.external_local
        || svc
            .ports
            .iter()
            .any(|p| p.endpoints.iter().any(|e| e.local && e.ready))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, PortInfo, Proto};

    const ME: &str = "node-a";
    const OTHER: &str = "node-b";

    fn seen(holder: &str, unchanged_secs: u64) -> Seen<'_> {
        Seen {
            holder,
            duration: LEASE_DURATION,
            unchanged_for: Duration::from_secs(unchanged_secs),
        }
    }

    #[test]
    fn decide_table() {
        let cases: &[(Option<Seen<'_>>, bool, Action)] = &[
            // Nobody has it.
            (None, true, Action::Create),
            (None, false, Action::Idle),
            // Ours: keep renewing, however long ago we last saw it change.
            (Some(seen(ME, 0)), true, Action::Renew),
            (Some(seen(ME, 60)), true, Action::Renew),
            // Another node's, live.
            (Some(seen(OTHER, 0)), true, Action::Follow),
            (Some(seen(OTHER, 5)), true, Action::Follow),
            // Another node's, unchanged for its whole duration: expired.
            (Some(seen(OTHER, 6)), true, Action::Take),
            (Some(seen(OTHER, 600)), true, Action::Take),
            // Released (holder empty): free at once.
            (Some(seen("", 0)), true, Action::Take),
            // Not wanted: release ours, leave others' live ones alone, clear
            // away the expired.
            (Some(seen(ME, 0)), false, Action::Release),
            (Some(seen(ME, 600)), false, Action::Release),
            (Some(seen(OTHER, 5)), false, Action::Idle),
            (Some(seen(OTHER, 6)), false, Action::Collect),
            (Some(seen("", 0)), false, Action::Collect),
        ];
        for (lease, wanted, want) in cases {
            assert_eq!(
                decide(lease.as_ref(), ME, *wanted),
                *want,
                "{lease:?} wanted={wanted}"
            );
        }
    }

    #[test]
    fn a_lease_honours_its_own_duration() {
        let long = Seen {
            holder: OTHER,
            duration: Duration::from_secs(15),
            unchanged_for: Duration::from_secs(10),
        };
        assert_eq!(decide(Some(&long), ME, true), Action::Follow);
        assert_eq!(lease_duration(Some(15)), Duration::from_secs(15));
        assert_eq!(lease_duration(None), LEASE_DURATION);
        assert_eq!(lease_duration(Some(0)), LEASE_DURATION);
        assert_eq!(lease_duration(Some(-3)), LEASE_DURATION);
    }

    #[test]
    fn names_round_trip() {
        let a = Ipv4Addr::new(10, 0, 0, 5);
        assert_eq!(lease_name(a), "skiff-lb-10-0-0-5");
        assert_eq!(lease_address("skiff-lb-10-0-0-5"), Some(a));
        for other in [
            "kube-controller-manager",
            "skiff-lb-",
            "skiff-lb-10-0-0",
            "skiff-lb-010-0-0-5",
            "skiff-lb-10-0-0-5-x",
        ] {
            assert_eq!(lease_address(other), None, "{other}");
        }
    }

    #[test]
    fn the_old_holder_goes_quiet_before_anyone_may_take_over() {
        assert!(RENEW_DEADLINE + ROUND_TIMEOUT < LEASE_DURATION);
        assert!(RENEW_PERIOD < RENEW_DEADLINE);
        let renewed = BTreeMap::from([
            (Ipv4Addr::new(10, 0, 0, 1), Duration::from_secs(1)),
            (Ipv4Addr::new(10, 0, 0, 2), RENEW_DEADLINE),
        ]);
        assert_eq!(
            announced(&renewed),
            BTreeSet::from([Ipv4Addr::new(10, 0, 0, 1)])
        );
    }

    fn svc(external_local: bool, local: bool, ready: bool) -> ServiceInfo {
        let mut ep = Endpoint::ready(Ipv4Addr::new(10, 244, 1, 1), 80);
        ep.local = local;
        ep.ready = ready;
        ServiceInfo {
            external_local,
            ports: vec![PortInfo {
                name: String::new(),
                proto: Proto::Tcp,
                port: 80,
                node_port: None,
                endpoints: vec![ep],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn local_policy_candidates_need_a_ready_local_endpoint() {
        assert!(may_announce(&svc(false, false, true)));
        assert!(may_announce(&svc(false, false, false)));
        assert!(may_announce(&svc(true, true, true)));
        assert!(!may_announce(&svc(true, false, true)));
        assert!(!may_announce(&svc(true, true, false)));
        assert!(!may_announce(&ServiceInfo {
            external_local: true,
            ..Default::default()
        }));
    }
}

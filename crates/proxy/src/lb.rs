//! The node's claim on the built-in load balancer's addresses: traffic to a
//! `status.loadBalancer.ingress` address must reach the node before the table
//! can DNAT it, so on a shared network segment the node has to answer ARP for
//! it, as MetalLB's layer-2 mode or k3s's ServiceLB do. The node holds each
//! address as its own, on `lo` with `scope host` (kube-proxy's IPVS mode does
//! the same on a dummy device): the kernel then answers ARP for it on every
//! interface, node-address discovery (`scope global`) never mistakes it for a
//! node port address, and the table refuses every port no service serves there
//! ([`crate::ruleset::LOAD_BALANCER_IPS`]), so no node socket is exposed.
//!
//! The addresses carry [`LABEL`], so the ones a crashed proxier left behind are
//! found and removed at the next start.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::net::ip_batch;
use crate::Result;

/// The device the addresses live on.
pub const DEVICE: &str = "lo";
/// The label marking the proxier's addresses (`<device>:<name>`, at most 15 bytes).
pub const LABEL: &str = "lo:skiff-lb";

/// The load-balancer addresses this node holds; released on drop.
#[derive(Debug, Default)]
pub struct LoadBalancerAddresses {
    held: BTreeSet<Ipv4Addr>,
}

fn add_line(a: Ipv4Addr) -> String {
    format!("address replace {a}/32 dev {DEVICE} scope host label {LABEL}")
}

fn del_line(a: Ipv4Addr) -> String {
    format!("address del {a}/32 dev {DEVICE}")
}

/// `ip -batch` lines taking the node from holding `held` to holding `want`.
pub fn changes(held: &BTreeSet<Ipv4Addr>, want: &BTreeSet<Ipv4Addr>) -> Vec<String> {
    let gone = held.difference(want).map(|&a| del_line(a));
    let new = want.difference(held).map(|&a| add_line(a));
    gone.chain(new).collect()
}

impl LoadBalancerAddresses {
    /// Starts from nothing held, removing whatever an earlier run left.
    pub fn new() -> Self {
        release_all();
        Self::default()
    }

    /// Holds exactly `want`. On failure the addresses are re-read next time
    /// from scratch (everything released, then `want` added).
    pub async fn hold(&mut self, want: &BTreeSet<Ipv4Addr>) -> Result<()> {
        let lines = changes(&self.held, want);
        if lines.is_empty() {
            return Ok(());
        }
        match ip_batch(&lines).await {
            Ok(()) => {
                tracing::info!(addresses = ?want, "proxy: load-balancer addresses held");
                self.held = want.clone();
                Ok(())
            }
            Err(e) => {
                release_all();
                self.held.clear();
                Err(e)
            }
        }
    }
}

/// Removes every address carrying [`LABEL`]. Blocking: runs from `Drop` too.
fn release_all() {
    let out = std::process::Command::new("ip")
        .args(["-4", "address", "flush", "dev", DEVICE, "label", LABEL])
        .output();
    if let Err(e) = out {
        tracing::debug!(error = %e, "releasing load-balancer addresses");
    }
}

impl Drop for LoadBalancerAddresses {
    fn drop(&mut self) {
        if !self.held.is_empty() {
            release_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addrs: &[&str]) -> BTreeSet<Ipv4Addr> {
        addrs.iter().map(|a| a.parse().expect("address")).collect()
    }

    #[test]
    fn changes_release_the_gone_then_add_the_new() {
        let held = set(&["192.168.60.1", "192.168.60.2"]);
        let want = set(&["192.168.60.2", "192.168.60.3"]);
        assert_eq!(
            changes(&held, &want),
            vec![
                "address del 192.168.60.1/32 dev lo",
                "address replace 192.168.60.3/32 dev lo scope host label lo:skiff-lb",
            ]
        );
        assert!(changes(&want, &want).is_empty());
    }

    #[test]
    fn the_label_fits_the_kernel_limit() {
        assert!(LABEL.len() <= 15 && LABEL.starts_with(&format!("{DEVICE}:")));
    }
}

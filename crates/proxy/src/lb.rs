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
//!
//! With several nodes, only the node that won an address's election
//! ([`crate::election`]) holds it. When an address moves to this node, the
//! neighbours' ARP caches still name the old holder until their entries go
//! stale (tens of seconds on Linux), so the node sends gratuitous ARP for it
//! with iputils' `arping -U` on each of its interfaces, as MetalLB does. Debian
//! ships that `arping` in `iputils-arping`; without it the neighbours find the
//! new holder when their entries expire.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use std::sync::atomic::{AtomicBool, Ordering};

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

    /// Holds exactly `want`, and announces the addresses it adds with
    /// gratuitous ARP. On failure the addresses are re-read next time from
    /// scratch (everything released, then `want` added).
    pub async fn hold(&mut self, want: &BTreeSet<Ipv4Addr>) -> Result<()> {
        let lines = changes(&self.held, want);
        if lines.is_empty() {
            return Ok(());
        }
        match ip_batch(&lines).await {
            Ok(()) => {
                tracing::info!(addresses = ?want, "proxy: load-balancer addresses held");
                let new: Vec<Ipv4Addr> = want.difference(&self.held).copied().collect();
                if !new.is_empty() {
                    tokio::spawn(gratuitous_arp(new));
                }
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

/// The ARP tool, iputils' (Debian: `iputils-arping`).
const ARPING: &str = "arping";
/// Gratuitous ARPs per address and interface: a second in case one is lost.
const ARP_COUNT: &str = "2";
/// Set once `arping` turned out to be missing: said once, not tried again.
static NO_ARPING: AtomicBool = AtomicBool::new(false);

/// The interfaces carrying the node's global IPv4 addresses, from
/// `ip -4 -o address show scope global`: where its neighbours are.
pub fn interfaces(ip_output: &str) -> Vec<String> {
    let mut out: Vec<String> = ip_output
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|d| d.split('@').next().unwrap_or(d).to_string())
        .filter(|d| d != DEVICE)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Tells the neighbours on every interface that `addrs` are here now
/// (unsolicited ARP: sender and target address both the announced one).
async fn gratuitous_arp(addrs: Vec<Ipv4Addr>) {
    if NO_ARPING.load(Ordering::Relaxed) {
        return;
    }
    let listed = tokio::process::Command::new("ip")
        .args(["-4", "-o", "address", "show", "scope", "global"])
        .output()
        .await;
    let Ok(listed) = listed else {
        return;
    };
    for dev in interfaces(&String::from_utf8_lossy(&listed.stdout)) {
        for a in &addrs {
            let run = tokio::process::Command::new(ARPING)
                .args(["-U", "-c", ARP_COUNT, "-I", &dev, &a.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await;
            match run {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::info!("proxy: no `arping` (iputils-arping): neighbours learn moved load-balancer addresses when their ARP entries expire");
                    NO_ARPING.store(true, Ordering::Relaxed);
                    return;
                }
                Err(e) => tracing::debug!(error = %e, %dev, %a, "gratuitous ARP"),
                Ok(s) if !s.success() => tracing::debug!(%dev, %a, "gratuitous ARP failed"),
                Ok(_) => {}
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
    fn interfaces_are_the_global_ones_but_lo() {
        let out = "2: eth0    inet 192.168.50.2/24 brd 192.168.50.255 scope global eth0\\       valid_lft forever preferred_lft forever
3: skiff0    inet 10.244.0.1/24 scope global skiff0\\       valid_lft forever preferred_lft forever
2: eth0    inet 192.168.50.3/24 scope global secondary eth0\\       valid_lft forever preferred_lft forever
1: lo    inet 192.168.60.1/32 scope global lo:skiff-lb\\       valid_lft forever preferred_lft forever
";
        assert_eq!(interfaces(out), vec!["eth0", "skiff0"]);
    }

    #[test]
    fn the_label_fits_the_kernel_limit() {
        assert!(LABEL.len() <= 15 && LABEL.starts_with(&format!("{DEVICE}:")));
    }
}

//! Where the DNS component listens, what it answers for, where it forwards.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Settings of the DNS component; [`DnsSettings::new`] derives them from the
/// node settings every component shares.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// Cluster zone, e.g. `cluster.local`.
    pub zone: String,
    /// TTL of every answer.
    pub ttl: u32,
    /// UDP and TCP address; the default, `0.0.0.0:53`, covers every address of
    /// the node's network namespace, including ones added later (the pod bridge).
    pub listen: SocketAddr,
    /// Metrics (`/metrics`), liveness (`/health`) and readiness (`/ready`).
    pub metrics_listen: SocketAddr,
    /// The `kube-dns` ClusterIP: the address of `ns.dns.<zone>`.
    pub cluster_dns: IpAddr,
    /// The address published in the kube-dns EndpointSlice for this node
    /// (`None`: publish nothing).
    pub endpoint_ip: Option<IpAddr>,
    /// This node's name (the EndpointSlice's name and `nodeName`).
    pub node_name: String,
    /// Upstream resolvers; empty: the `nameserver` lines of `/etc/resolv.conf`.
    pub upstreams: Vec<SocketAddr>,
    /// Clients allowed to have names outside the zone forwarded, besides
    /// loopback and the node's own addresses: the pod network.
    pub recursion_allowed: Vec<(IpAddr, u8)>,
    /// UDP sockets (and tasks); 0: one per core.
    pub udp_workers: usize,
}

impl DnsSettings {
    /// Settings from the node's: the zone, the kube-dns address, and the pod
    /// network (`10.244.0.0/16` gives the endpoint `10.244.0.1`, the gateway of
    /// this node's first /24, which the pod bridge holds).
    pub fn new(zone: &str, cluster_dns: IpAddr, pod_cidr: &str, node_name: &str) -> Self {
        let pod_net = parse_cidr(pod_cidr);
        let endpoint_ip = pod_net.and_then(|(ip, _)| match ip {
            IpAddr::V4(v4) => Some(IpAddr::V4(Ipv4Addr::from(u32::from(v4) & !0xff | 1))),
            IpAddr::V6(_) => None,
        });
        Self {
            zone: zone.trim_end_matches('.').to_ascii_lowercase(),
            ttl: 5,
            listen: SocketAddr::from(([0, 0, 0, 0], 53)),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 9153)),
            cluster_dns,
            endpoint_ip,
            node_name: node_name.to_string(),
            upstreams: Vec::new(),
            recursion_allowed: pod_net.into_iter().collect(),
            udp_workers: 0,
        }
    }
}

impl DnsSettings {
    /// These settings forwarding to `upstreams` instead of the resolvers in
    /// `/etc/resolv.conf` (an empty list keeps resolv.conf).
    pub fn with_upstreams(mut self, upstreams: Vec<SocketAddr>) -> Self {
        self.upstreams = upstreams;
        self
    }
}

/// An upstream resolver as given on the command line: `ADDR[:PORT]`, port 53
/// by default; IPv6 with a port in brackets (`[2001:db8::1]:5353`).
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    ip.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("invalid upstream {s:?}: expected ADDR or ADDR:PORT, e.g. 192.0.2.53 or [2001:db8::53]:5353"))
}

/// `10.244.0.0/16` to its address and prefix length.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// Whether `ip` is inside `net`.
pub fn contains(net: (IpAddr, u8), ip: IpAddr) -> bool {
    match (net.0, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let shift = 32 - u32::from(net.1.min(32));
            u32::from(n).checked_shr(shift) == u32::from(i).checked_shr(shift) || shift == 32
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let shift = 128 - u32::from(net.1.min(128));
            u128::from(n).checked_shr(shift) == u128::from(i).checked_shr(shift) || shift == 128
        }
        _ => false,
    }
}

/// The `nameserver` lines of a resolv.conf.
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then_some(())?;
            // Zone ids (`fe80::1%eth0`) are not supported; skip them.
            let ip: IpAddr = w.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_node_settings() {
        let s = DnsSettings::new(
            "Cluster.Local.",
            "10.96.0.10".parse().unwrap(),
            "10.244.0.0/16",
            "n1",
        );
        assert_eq!(s.zone, "cluster.local");
        assert_eq!(s.endpoint_ip, Some("10.244.0.1".parse().unwrap()));
        assert!(contains(
            s.recursion_allowed[0],
            "10.244.3.7".parse().unwrap()
        ));
        assert!(!contains(
            s.recursion_allowed[0],
            "10.245.0.1".parse().unwrap()
        ));
        assert!(contains(
            ("0.0.0.0".parse().unwrap(), 0),
            "8.8.8.8".parse().unwrap()
        ));
    }

    #[test]
    fn upstreams_from_the_command_line() {
        assert_eq!(
            parse_upstream("192.0.2.53"),
            Ok("192.0.2.53:53".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("192.0.2.53:5353"),
            Ok("192.0.2.53:5353".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("2001:db8::53"),
            Ok("[2001:db8::53]:53".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("[2001:db8::53]"),
            Ok("[2001:db8::53]:53".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("[2001:db8::53]:5353"),
            Ok("[2001:db8::53]:5353".parse().unwrap())
        );
        for bad in [
            "",
            "dns.example",
            "192.0.2.53:",
            "192.0.2.53:99999",
            "1.2.3",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
        let s = DnsSettings::new(
            "cluster.local",
            "10.96.0.10".parse().unwrap(),
            "10.244.0.0/16",
            "n",
        )
        .with_upstreams(vec!["192.0.2.53:53".parse().unwrap()]);
        assert_eq!(s.upstreams, vec!["192.0.2.53:53".parse().unwrap()]);
    }

    #[test]
    fn resolv_conf() {
        let text = "# c\nsearch x\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver ::1\noptions ndots:5\n";
        assert_eq!(
            resolv_conf_nameservers(text),
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}

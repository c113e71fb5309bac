//! The networking.k8s.io/v1 semantics, implemented directly over the model (no
//! nft, no sets, no chains): what the tracer's verdict over the generated
//! table must agree with.

use std::net::Ipv4Addr;

use skiff_netpol::model::{ClusterState, Direction, Peer, PodInfo, PortRef, Proto};

fn pod_at(c: &ClusterState, ip: Ipv4Addr) -> Option<&PodInfo> {
    c.pods.values().find(|p| p.ip == Some(ip))
}

/// May a new connection `src -> dst:proto/port` (after DNAT) pass this node?
pub fn allowed(c: &ClusterState, src: Ipv4Addr, dst: Ipv4Addr, proto: Proto, port: u16) -> bool {
    // A pod may always reach itself.
    if src == dst {
        return true;
    }
    let src_pod = pod_at(c, src);
    let dst_pod = pod_at(c, dst);
    let egress = side_allows(c, Direction::Egress, src_pod, dst, dst_pod, proto, port);
    let ingress = side_allows(c, Direction::Ingress, dst_pod, src, src_pod, proto, port);
    egress && ingress
}

/// Does `subject` (the sender for egress, the receiver for ingress) accept
/// traffic with `peer`? Only pods on this node are enforced here; a pod no
/// policy selects for `dir` is not isolated.
fn side_allows(
    c: &ClusterState,
    dir: Direction,
    subject: Option<&PodInfo>,
    peer_ip: Ipv4Addr,
    peer_pod: Option<&PodInfo>,
    proto: Proto,
    port: u16,
) -> bool {
    let Some(subject) = subject.filter(|p| p.local) else {
        return true;
    };
    let receiver = match dir {
        Direction::Ingress => Some(subject),
        Direction::Egress => peer_pod,
    };
    let mut isolated = false;
    for p in c.policies.values() {
        let Some(rules) = p.rules(dir) else { continue };
        if !p.selects(subject) {
            continue;
        }
        isolated = true;
        for r in rules {
            let peer_ok = match &r.peers {
                None => true,
                Some(peers) => peers.iter().any(|peer| match peer {
                    Peer::Pods { .. } => {
                        peer_pod.is_some_and(|pp| c.peer_selects(&p.namespace, peer, pp))
                    }
                    Peer::Block { cidr, except } => {
                        cidr.contains(peer_ip) && !except.iter().any(|e| e.contains(peer_ip))
                    }
                }),
            };
            let port_ok = match &r.ports {
                None => true,
                Some(ports) => ports.iter().any(|pp| {
                    pp.proto == proto
                        && match &pp.port {
                            PortRef::Any => true,
                            PortRef::Range(a, b) => (*a..=*b).contains(&port),
                            PortRef::Named(n) => {
                                receiver.and_then(|r| r.named_port(n, proto)) == Some(port)
                            }
                        }
                }),
            };
            if peer_ok && port_ok {
                return true;
            }
        }
    }
    !isolated
}

//! Golden tests: fixture services of every kind produce the expected nft text
//! (`tests/golden/*.nft`; `UPDATE_GOLDEN=1` rewrites them), and the packet
//! tracer checks where the generated rules send traffic.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use skiff_proxy::model::{Config, Endpoint, PortInfo, Proto, ServiceInfo};
use skiff_proxy::program::Program;
use skiff_proxy::ruleset::service_fragment;
use skiff_proxy::trace::{Outcome, Packet, Tracer};

const NODE: &str = "192.168.50.2";
const POD: &str = "10.244.0.5";
const OUTSIDE: &str = "192.168.50.9";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

fn cfg() -> Config {
    Config {
        pod_cidr: Some("10.244.0.0/16".parse().expect("cidr")),
        service_cidr: "10.96.0.0/12".parse().expect("cidr"),
        node_ips: vec![ip(NODE)],
    }
}

fn eps(n: u8, port: u16) -> Vec<Endpoint> {
    (1..=n)
        .map(|i| Endpoint::ready(ip(&format!("10.244.1.{i}")), port))
        .collect()
}

fn svc(name: &str, cluster_ip: &str, ports: Vec<PortInfo>) -> ServiceInfo {
    ServiceInfo {
        namespace: "default".into(),
        name: name.into(),
        cluster_ips: if cluster_ip.is_empty() {
            vec![]
        } else {
            vec![ip(cluster_ip)]
        },
        ports,
        ..Default::default()
    }
}

fn port(name: &str, proto: Proto, port: u16, endpoints: Vec<Endpoint>) -> PortInfo {
    PortInfo {
        name: name.into(),
        proto,
        port,
        node_port: None,
        endpoints,
    }
}

fn program(services: &[ServiceInfo]) -> Program {
    let mut p = Program::new(cfg());
    let c = cfg();
    p.update(
        services
            .iter()
            .map(|s| (s.key(), Some(service_fragment(&c, s))))
            .collect(),
    );
    p
}

fn golden(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.nft"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        text, want,
        "{name}: generated text differs from the golden file"
    );
}

/// The part of the full text after the fixed skeleton.
fn body(p: &Program) -> String {
    let full = p.full();
    let skel = skiff_proxy::program::skeleton(p.config());
    full.strip_prefix(&skel)
        .expect("skeleton first")
        .to_string()
}

fn dnat(ep: &str, port: u16, masquerade: bool) -> Outcome {
    Outcome::Dnat {
        ep: ip(ep),
        port,
        masquerade,
    }
}

fn first(_: u32) -> u32 {
    0
}

pub fn fixtures() -> Vec<(&'static str, ServiceInfo)> {
    let mut v = Vec::new();
    v.push((
        "clusterip",
        svc(
            "web",
            "10.96.0.10",
            vec![port("", Proto::Tcp, 80, eps(3, 8080))],
        ),
    ));
    v.push((
        "multiport",
        svc(
            "multi",
            "10.96.0.11",
            vec![
                port("http", Proto::Tcp, 80, eps(2, 8080)),
                port("dns", Proto::Udp, 53, eps(2, 5353)),
            ],
        ),
    ));
    v.push((
        "headless",
        svc("headless", "", vec![port("", Proto::Tcp, 80, eps(2, 80))]),
    ));
    let mut np = svc(
        "np",
        "10.96.0.12",
        vec![port("", Proto::Tcp, 80, eps(2, 8080))],
    );
    np.ports[0].node_port = Some(30080);
    v.push(("nodeport", np));
    let mut lb = svc(
        "lb",
        "10.96.0.13",
        vec![port("", Proto::Tcp, 80, eps(2, 8080))],
    );
    lb.ports[0].node_port = Some(30081);
    lb.external_ips = vec![ip("192.168.60.1")];
    lb.load_balancer_ips = vec![ip("192.168.60.1")];
    v.push(("loadbalancer", lb));
    let mut ext = svc(
        "ext",
        "10.96.0.14",
        vec![port("", Proto::Tcp, 443, eps(1, 8443))],
    );
    ext.external_ips = vec![ip("203.0.113.7")];
    v.push(("externalips", ext));
    let mut aff = svc(
        "sticky",
        "10.96.0.15",
        vec![port("", Proto::Tcp, 80, eps(3, 8080))],
    );
    aff.affinity_timeout = Some(30);
    v.push(("affinity", aff));
    let mut none = svc(
        "empty",
        "10.96.0.16",
        vec![port("", Proto::Tcp, 80, vec![])],
    );
    none.ports[0].node_port = Some(30082);
    v.push(("noendpoints", none));
    // Local policies: endpoint .1 is on this node, .2 elsewhere.
    let mut local_eps = eps(2, 8080);
    local_eps[1].local = false;
    let mut etp = svc(
        "etp",
        "10.96.0.17",
        vec![port("", Proto::Tcp, 80, local_eps.clone())],
    );
    etp.external_local = true;
    etp.ports[0].node_port = Some(30083);
    etp.external_ips = vec![ip("192.168.60.2")];
    v.push(("etp-local", etp));
    let mut itp = svc(
        "itp",
        "10.96.0.18",
        vec![port("", Proto::Tcp, 80, local_eps)],
    );
    itp.internal_local = true;
    v.push(("itp-local", itp));
    // Only terminating endpoints left: they are used.
    let mut term = eps(2, 8080);
    term[0].ready = false;
    term[0].terminating = true;
    term[1].ready = false;
    term[1].serving = false;
    term[1].terminating = true;
    v.push((
        "terminating",
        svc("term", "10.96.0.19", vec![port("", Proto::Tcp, 80, term)]),
    ));
    // externalTrafficPolicy: Local with every endpoint on other nodes.
    let mut remote = eps(2, 8080);
    for e in &mut remote {
        e.local = false;
    }
    let mut none = svc(
        "etp-none",
        "10.96.0.20",
        vec![port("", Proto::Tcp, 80, remote)],
    );
    none.external_local = true;
    none.ports[0].node_port = Some(30084);
    none.external_ips = vec![ip("192.168.60.3")];
    none.load_balancer_ips = vec![ip("192.168.60.3")];
    v.push(("etp-local-none", none));
    // externalTrafficPolicy: Local with session affinity; .1 is local.
    let mut sticky_eps = eps(2, 8080);
    sticky_eps[1].local = false;
    let mut sticky = svc(
        "etp-sticky",
        "10.96.0.21",
        vec![port("", Proto::Tcp, 80, sticky_eps)],
    );
    sticky.external_local = true;
    sticky.affinity_timeout = Some(30);
    sticky.ports[0].node_port = Some(30085);
    sticky.external_ips = vec![ip("192.168.60.4")];
    v.push(("etp-local-affinity", sticky));
    v
}

#[test]
fn skeleton_golden() {
    golden("skeleton", &skiff_proxy::program::skeleton(&cfg()));
}

#[test]
fn fixture_goldens() {
    for (name, s) in fixtures() {
        golden(name, &body(&program(&[s])));
    }
}

#[test]
fn headless_has_no_rules() {
    let (_, s) = fixtures().remove(2);
    assert_eq!(s.name, "headless");
    assert_eq!(
        body(&program(&[s])),
        "add element ip skiff nodeport-ips { 192.168.50.2 }\n"
    );
}

#[test]
fn clusterip_spreads_and_masquerades_outside_sources() {
    let p = program(&[fixtures().remove(0).1]);
    let mut t = Tracer::new(&p);
    for slot in 0..3u32 {
        let want = dnat(&format!("10.244.1.{}", slot + 1), 8080, false);
        assert_eq!(
            t.trace(Packet::tcp(POD, "10.96.0.10", 80), &mut |_| slot),
            want
        );
    }
    assert_eq!(
        t.trace(Packet::tcp(NODE, "10.96.0.10", 80), &mut first),
        dnat("10.244.1.1", 8080, true)
    );
    // Unknown port on a live ClusterIP, and an unallocated service address.
    assert_eq!(
        t.trace(Packet::tcp(POD, "10.96.0.10", 81), &mut first),
        Outcome::Reject
    );
    assert_eq!(
        t.trace(Packet::tcp(POD, "10.96.7.7", 80), &mut first),
        Outcome::Reject
    );
    assert_eq!(
        t.trace(Packet::tcp(POD, "10.244.1.1", 8080), &mut first),
        Outcome::Accept
    );
    // Hairpin: the endpoint itself through the service is masqueraded.
    assert_eq!(
        t.trace(Packet::tcp("10.244.1.1", "10.96.0.10", 80), &mut first),
        dnat("10.244.1.1", 8080, true)
    );
}

#[test]
fn multiport_keeps_ports_apart() {
    let p = program(&[fixtures().remove(1).1]);
    let mut t = Tracer::new(&p);
    assert_eq!(
        t.trace(Packet::tcp(POD, "10.96.0.11", 80), &mut |_| 1),
        dnat("10.244.1.2", 8080, false)
    );
    assert_eq!(
        t.trace(Packet::udp(POD, "10.96.0.11", 53), &mut first),
        dnat("10.244.1.1", 5353, false)
    );
    assert_eq!(
        t.trace(Packet::tcp(POD, "10.96.0.11", 53), &mut first),
        Outcome::Reject
    );
}

#[test]
fn nodeport_only_on_node_addresses() {
    let p = program(&[fixtures().remove(3).1]);
    let mut t = Tracer::new(&p);
    assert_eq!(
        t.trace(Packet::tcp(OUTSIDE, NODE, 30080), &mut first),
        dnat("10.244.1.1", 8080, true)
    );
    assert_eq!(
        t.trace(Packet::tcp(OUTSIDE, "127.0.0.1", 30080), &mut first),
        Outcome::Accept
    );
    assert_eq!(
        t.trace(Packet::tcp(OUTSIDE, NODE, 30081), &mut first),
        Outcome::Accept
    );
}

#[test]
fn loadbalancer_and_external_ips() {
    let all = fixtures();
    let p = program(&[all[4].1.clone(), all[5].1.clone()]);
    let mut t = Tracer::new(&p);
    assert_eq!(
        t.trace(Packet::tcp(OUTSIDE, "192.168.60.1", 80), &mut |_| 1),
        dnat("10.244.1.2", 8080, true)
    );
    assert_eq!(
        t.trace(Packet::tcp(OUTSIDE, NODE, 30081), &mut first),
        dnat("10.244.1.1", 8080, true)
    );
    assert_eq!(
        t.trace(Packet::tcp(OUTSIDE, "203.0.113.7", 443), &mut first),
        dnat("10.244.1.1", 8443, true)
    );
    // An external IP is the admin's to route, and may be the node's own; a
    // load-balancer address is the node's own only for the services' ports.
    assert_eq!(
        t.trace(Packet::tcp(OUTSIDE, "203.0.113.7", 80), &mut first),
        Outcome::Accept
    );
    assert_eq!(
        t.trace(Packet::tcp(OUTSIDE, "192.168.60.1", 22), &mut first),
        Outcome::Reject
    );
}

#[test]
fn affinity_sticks_per_client() {
    let p = program(&[fixtures().remove(6).1]);
    let mut t = Tracer::new(&p);
    assert_eq!(
        t.trace(Packet::tcp(POD, "10.96.0.15", 80), &mut |_| 2),
        dnat("10.244.1.3", 8080, false)
    );
    for slot in 0..3 {
        assert_eq!(
            t.trace(Packet::tcp(POD, "10.96.0.15", 80), &mut |_| slot),
            dnat("10.244.1.3", 8080, false)
        );
    }
    // Another client chooses afresh.
    assert_eq!(
        t.trace(Packet::tcp("10.244.0.6", "10.96.0.15", 80), &mut first),
        dnat("10.244.1.1", 8080, false)
    );
}

#[test]
fn no_endpoints_rejects() {
    let p = program(&[fixtures().remove(7).1]);
    let mut t = Tracer::new(&p);
    assert_eq!(
        t.trace(Packet::tcp(POD, "10.96.0.16", 80), &mut first),
        Outcome::Reject
    );
    assert_eq!(
        t.trace(Packet::tcp(OUTSIDE, NODE, 30082), &mut first),
        Outcome::Reject
    );
}

#[test]
fn local_policies() {
    let all = fixtures();
    let p = program(&[all[8].1.clone(), all[9].1.clone()]);
    let mut t = Tracer::new(&p);
    // externalTrafficPolicy: Local: the local endpoint only, client address kept.
    for slot in 0..4 {
        assert_eq!(
            t.trace(Packet::tcp(OUTSIDE, NODE, 30083), &mut |_| slot),
            dnat("10.244.1.1", 8080, false)
        );
        assert_eq!(
            t.trace(Packet::tcp(OUTSIDE, "192.168.60.2", 80), &mut |_| slot),
            dnat("10.244.1.1", 8080, false)
        );
    }
    // The ClusterIP still spreads over all endpoints.
    assert_eq!(
        t.trace(Packet::tcp(POD, "10.96.0.17", 80), &mut |_| 1),
        dnat("10.244.1.2", 8080, false)
    );
    // internalTrafficPolicy: Local.
    for slot in 0..4 {
        assert_eq!(
            t.trace(Packet::tcp(POD, "10.96.0.18", 80), &mut |_| slot),
            dnat("10.244.1.1", 8080, false)
        );
    }
}

#[test]
fn local_policy_without_local_endpoints_drops() {
    let mut s = fixtures().remove(9).1;
    for e in &mut s.ports[0].endpoints {
        e.local = false;
    }
    let p = program(&[s]);
    let mut t = Tracer::new(&p);
    assert_eq!(
        t.trace(Packet::tcp(POD, "10.96.0.18", 80), &mut first),
        Outcome::Drop
    );
}

/// Upstream's EXT chain: pods and the node itself are not "external" clients,
/// so an externalTrafficPolicy: Local address sends them to every endpoint
/// (the node's traffic masqueraded); only outside clients are kept local.
#[test]
fn external_local_short_circuits_pods_and_the_node() {
    let p = program(&[fixtures().remove(8).1]);
    let mut t = Tracer::new(&p);
    for (slot, ep) in [(0, "10.244.1.1"), (1, "10.244.1.2")] {
        for (dst, port) in [("192.168.60.2", 80), (NODE, 30083)] {
            assert_eq!(
                t.trace(Packet::tcp(POD, dst, port), &mut |_| slot),
                dnat(ep, 8080, false),
                "pod -> {dst}:{port}"
            );
            assert_eq!(
                t.trace(Packet::tcp(NODE, dst, port), &mut |_| slot),
                dnat(ep, 8080, true),
                "node -> {dst}:{port}"
            );
            // Outside clients: the local endpoint only, their address kept.
            assert_eq!(
                t.trace(Packet::tcp(OUTSIDE, dst, port), &mut |_| slot),
                dnat("10.244.1.1", 8080, false),
                "outside -> {dst}:{port}"
            );
        }
    }
}

/// Upstream drops (never rejects) outside traffic to a node with no local
/// endpoint, so clients of a load balancer that health-checks nodes retry
/// elsewhere; pods and the node still reach the service there.
#[test]
fn external_local_without_local_endpoints_drops_outside_traffic_only() {
    let mut s = fixtures().remove(11).1;
    assert_eq!(s.name, "etp-none");
    let p = program(std::slice::from_ref(&s));
    let mut t = Tracer::new(&p);
    for (dst, port) in [("192.168.60.3", 80), (NODE, 30084)] {
        assert_eq!(
            t.trace(Packet::tcp(OUTSIDE, dst, port), &mut first),
            Outcome::Drop,
            "outside -> {dst}:{port}"
        );
        assert_eq!(
            t.trace(Packet::tcp(POD, dst, port), &mut |_| 1),
            dnat("10.244.1.2", 8080, false),
            "pod -> {dst}:{port}"
        );
        assert_eq!(
            t.trace(Packet::tcp(NODE, dst, port), &mut first),
            dnat("10.244.1.1", 8080, true),
            "node -> {dst}:{port}"
        );
    }
    // The ClusterIP is not subject to the external policy.
    assert_eq!(
        t.trace(Packet::tcp(POD, "10.96.0.20", 80), &mut |_| 1),
        dnat("10.244.1.2", 8080, false)
    );
    // No endpoint anywhere: rejected for everyone, as for any service.
    s.ports[0].endpoints.clear();
    let p = program(&[s]);
    let mut t = Tracer::new(&p);
    for src in [OUTSIDE, POD, NODE] {
        assert_eq!(
            t.trace(Packet::tcp(src, "192.168.60.3", 80), &mut first),
            Outcome::Reject
        );
        assert_eq!(
            t.trace(Packet::tcp(src, NODE, 30084), &mut first),
            Outcome::Reject
        );
    }
}

#[test]
fn external_local_affinity_keeps_outside_clients_local() {
    let p = program(&[fixtures().remove(12).1]);
    let mut t = Tracer::new(&p);
    // An outside client sticks to the local endpoint, its address kept.
    for slot in 0..3 {
        assert_eq!(
            t.trace(Packet::tcp(OUTSIDE, "192.168.60.4", 80), &mut |_| slot),
            dnat("10.244.1.1", 8080, false)
        );
    }
    // A pod is short-circuited to any endpoint, and then sticks to it.
    assert_eq!(
        t.trace(Packet::tcp(POD, "192.168.60.4", 80), &mut |_| 1),
        dnat("10.244.1.2", 8080, false)
    );
    assert_eq!(
        t.trace(Packet::tcp(POD, NODE, 30085), &mut first),
        dnat("10.244.1.2", 8080, false)
    );
}

#[test]
fn terminating_only_when_nothing_else() {
    let p = program(&[fixtures().remove(10).1]);
    let mut t = Tracer::new(&p);
    for slot in 0..3 {
        assert_eq!(
            t.trace(Packet::tcp(POD, "10.96.0.19", 80), &mut |_| slot),
            dnat("10.244.1.1", 8080, false)
        );
    }
    let mut s = fixtures().remove(10).1;
    s.ports[0]
        .endpoints
        .push(Endpoint::ready(ip("10.244.1.9"), 8080));
    let p = program(&[s]);
    let mut t = Tracer::new(&p);
    assert_eq!(
        t.trace(Packet::tcp(POD, "10.96.0.19", 80), &mut first),
        dnat("10.244.1.9", 8080, false)
    );
}

#[test]
fn endpoint_change_sends_only_the_difference() {
    let c = cfg();
    let mut s = fixtures().remove(0).1;
    let mut p = program(&[s.clone()]);
    s.ports[0].endpoints.pop();
    let t = p.update(vec![(s.key(), Some(service_fragment(&c, &s)))]);
    golden("diff-scale-down", &t.text);
    assert_eq!(
        t.removed_endpoints,
        vec![(Proto::Tcp, ip("10.244.1.3"), 8080)]
    );
    // Nothing changed: nothing sent.
    let t = p.update(vec![(s.key(), Some(service_fragment(&c, &s)))]);
    assert!(t.is_empty());
    // Service removed: its chains go once unreferenced.
    let t = p.update(vec![(s.key(), None)]);
    golden("diff-delete", &t.text);
    assert_eq!(p.chain_count(), 0);
    assert_eq!(p.element_count(), 1, "only the node address is left");
}

#[test]
fn load_balancer_addresses_follow_the_table() {
    let lb = fixtures().remove(4).1;
    let mut p = program(std::slice::from_ref(&lb));
    let held: Vec<_> = p.load_balancer_ips().iter().copied().collect();
    assert_eq!(held, vec![ip("192.168.60.1")]);
    // Another service claiming the same address keeps it held after the first goes.
    let mut twin = lb.clone();
    twin.name = "lb-twin".into();
    p.update(vec![(twin.key(), Some(service_fragment(&cfg(), &twin)))]);
    p.update(vec![(lb.key(), None)]);
    assert_eq!(p.load_balancer_ips().len(), 1);
    p.update(vec![(twin.key(), None)]);
    assert!(p.load_balancer_ips().is_empty());
}

#[test]
fn affinity_endpoint_removal_flushes_its_map() {
    let c = cfg();
    let mut s = fixtures().remove(6).1;
    let mut p = program(&[s.clone()]);
    s.ports[0].endpoints.remove(0);
    let t = p.update(vec![(s.key(), Some(service_fragment(&c, &s)))]);
    golden("diff-affinity-scale-down", &t.text);
}

#[test]
fn shared_chains_survive_while_referenced() {
    let c = cfg();
    let all = fixtures();
    let a = all[0].1.clone();
    let mut b = a.clone();
    b.name = "web2".into();
    b.cluster_ips = vec![ip("10.96.0.20")];
    let mut p = program(&[a.clone(), b.clone()]);
    let t = p.update(vec![(a.key(), None)]);
    assert!(!t.text.contains("delete chain"), "{}", t.text);
    let t = p.update(vec![(b.key(), None)]);
    assert!(
        t.text.contains("delete chain ip skiff cluster-3"),
        "{}",
        t.text
    );
    let _ = c;
}

#[test]
fn two_services_claiming_one_address_never_conflict() {
    let c = cfg();
    let mut a = fixtures().remove(5).1;
    a.ports[0].port = 443;
    let mut b = a.clone();
    b.name = "ext2".into();
    b.cluster_ips = vec![ip("10.96.0.21")];
    b.ports[0].endpoints = eps(2, 9443);
    let mut p = program(&[a.clone(), b.clone()]);
    let full = p.full();
    for key in ["203.0.113.7 . tcp . 443 :", "203.0.113.7 . tcp . 443 . 0 :"] {
        assert_eq!(full.matches(key).count(), 1, "{key} twice:\n{full}");
    }
    // The owner goes: the other service's element takes the key.
    let t = p.update(vec![(a.key(), None)]);
    assert!(
        t.text
            .contains("add element ip skiff service-ips { 203.0.113.7 . tcp . 443 : goto"),
        "{}",
        t.text
    );
    let _ = c;
}

#[test]
fn periodic_refill_golden() {
    golden(
        "refill-affinity",
        &program(&[fixtures().remove(6).1]).refill(),
    );
}

//! Golden tests: fixture policies of every kind produce the expected nft text
//! (`tests/golden/*.nft`; `UPDATE_GOLDEN=1` rewrites them), diffs between
//! states touch only what changed, and the packet tracer's verdicts over the
//! generated table agree with a direct implementation of the upstream
//! semantics for every pair of endpoints, protocol and port.

mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use common::{cluster, everything, ip, policies, upstream, EXTERNAL};
use skiff_netpol::model::{ClusterState, Proto};
use skiff_netpol::program::{skeleton, Program};
use skiff_netpol::ruleset::desired;
use skiff_netpol::trace::{Outcome, Packet, Tracer};

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

fn program(c: &ClusterState) -> Program {
    let mut p = Program::new();
    p.load(desired(c));
    p
}

/// The part of the full text after the fixed skeleton.
fn body(p: &Program) -> String {
    p.full()
        .strip_prefix(&skeleton())
        .expect("skeleton first")
        .to_string()
}

#[test]
fn skeleton_golden() {
    golden("skeleton", &skeleton());
    assert_eq!(Program::new().full(), skeleton());
}

#[test]
fn every_fixture_matches_its_golden_file() {
    for (name, p) in policies() {
        golden(name, &body(&program(&cluster(&[p]))));
    }
    golden("everything", &body(&program(&everything())));
}

/// Applies `change` to the whole fixture cluster and returns the diff.
fn diff(change: impl FnOnce(&mut ClusterState)) -> String {
    let mut c = everything();
    let mut p = program(&c);
    change(&mut c);
    p.update(desired(&c)).text
}

fn is_element_only(text: &str) -> bool {
    text.lines()
        .all(|l| l.starts_with("add element ") || l.starts_with("delete element "))
}

#[test]
fn pod_and_label_churn_is_element_updates_only() {
    let added = diff(|c| {
        let p = common::pod(
            "default",
            "broker-1",
            &[("role", "message-broker")],
            "10.244.0.13",
            &[("redis", Proto::Tcp, 6380)],
        );
        c.pods.insert(p.key(), p);
    });
    golden("diff-pod-added", &added);
    assert!(is_element_only(&added), "{added}");

    let relabelled = diff(|c| {
        if let Some(p) = c.pods.get_mut("default/client-no") {
            p.labels.insert("broker-access".into(), "true".into());
        }
    });
    golden("diff-pod-labels", &relabelled);
    assert!(is_element_only(&relabelled), "{relabelled}");

    let moved = diff(|c| {
        if let Some(p) = c.pods.get_mut("frontend/web") {
            p.ip = Some(ip("10.244.0.32"));
        }
    });
    golden("diff-pod-ip", &moved);
    assert!(is_element_only(&moved), "{moved}");

    let ns = diff(|c| {
        c.namespaces.insert(
            "other".into(),
            [("team".to_string(), "frontend".to_string())].into(),
        );
    });
    golden("diff-namespace-labels", &ns);
    assert!(is_element_only(&ns), "{ns}");

    let deleted = diff(|c| {
        c.pods.remove("prod/api");
    });
    golden("diff-pod-deleted", &deleted);

    // Nothing changed: nothing to send.
    assert_eq!(diff(|_| {}), "");
}

#[test]
fn policy_edits_and_deletion() {
    let edited = diff(|c| {
        if let Some(p) = c.policies.get_mut("default/broker") {
            if let Some(rules) = p.ingress.as_mut() {
                rules[0].ports = Some(vec![skiff_netpol::model::PolicyPort {
                    proto: Proto::Tcp,
                    port: skiff_netpol::model::PortRef::Range(6380, 6380),
                }]);
            }
        }
    });
    golden("diff-policy-edited", &edited);
    assert!(edited.starts_with("flush chain ip skiff-netpol in/default/broker\n"));

    let deleted = diff(|c| {
        c.policies.remove("default/broker");
    });
    golden("diff-policy-deleted", &deleted);
    // Everything of the policy goes, and the broker is no longer isolated.
    assert!(deleted.contains("delete chain ip skiff-netpol in/default/broker\n"));
    assert!(deleted.contains("delete counter ip skiff-netpol denied/in/default/broker\n"));
    assert!(deleted.contains("delete element ip skiff-netpol ingress-pods { 10.244.0.10 }"));

    let added = {
        let mut c = common::cluster(&[]);
        let mut p = program(&c);
        c = everything();
        p.update(desired(&c)).text
    };
    golden("diff-all-policies-added", &added);
}

/// Addresses traffic is traced between: every pod's and a few outside ones.
fn endpoints() -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = common::pods().iter().filter_map(|p| p.ip).collect();
    v.extend(EXTERNAL.iter().map(|s| ip(s)));
    v
}

/// Every protocol/port a fixture names, and some no fixture does.
const PROBES: &[(Proto, u16)] = &[
    (Proto::Tcp, 53),
    (Proto::Udp, 53),
    (Proto::Tcp, 80),
    (Proto::Tcp, 5432),
    (Proto::Tcp, 6379),
    (Proto::Tcp, 6380),
    (Proto::Udp, 7000),
    (Proto::Udp, 7005),
    (Proto::Udp, 7011),
    (Proto::Tcp, 7005),
    (Proto::Tcp, 8000),
    (Proto::Tcp, 8080),
    (Proto::Udp, 8081),
    (Proto::Tcp, 8081),
    (Proto::Sctp, 9000),
    (Proto::Tcp, 9000),
    (Proto::Tcp, 9099),
    (Proto::Tcp, 9100),
    (Proto::Tcp, 9102),
    (Proto::Tcp, 9103),
    (Proto::Udp, 12345),
];

/// The tracer and the upstream semantics agree on every connection.
fn agree(c: &ClusterState) -> (usize, usize) {
    let table = desired(c);
    let tracer = Tracer::new(&table);
    let (mut allowed, mut denied) = (0, 0);
    for &src in &endpoints() {
        for &dst in &endpoints() {
            for &(proto, dport) in PROBES {
                let pkt = Packet {
                    src,
                    dst,
                    proto,
                    dport,
                };
                let got = tracer.trace(pkt) == Outcome::Allow;
                let want = upstream::allowed(c, src, dst, proto, dport);
                assert_eq!(got, want, "{src} -> {dst} {proto}/{dport}");
                if got {
                    allowed += 1;
                } else {
                    denied += 1;
                }
            }
        }
    }
    (allowed, denied)
}

#[test]
fn tracer_agrees_with_upstream_semantics_for_every_fixture() {
    for (name, p) in policies() {
        let (a, d) = agree(&cluster(&[p]));
        assert!(a > 0, "{name}: nothing allowed");
        if name != "allow-all" {
            assert!(d > 0, "{name}: nothing denied");
        }
    }
    agree(&everything());
    agree(&cluster(&[]));
}

fn trace(c: &ClusterState, src: &str, dst: &str, proto: Proto, dport: u16) -> Outcome {
    let table = desired(c);
    Tracer::new(&table).trace(Packet {
        src: ip(src),
        dst: ip(dst),
        proto,
        dport,
    })
}

fn dropped(counters: &[&str]) -> Outcome {
    Outcome::Drop(counters.iter().map(|s| s.to_string()).collect())
}

#[test]
fn the_seed_broker_example() {
    let c = everything();
    let broker = "10.244.0.10";
    // Labelled pods reach 6379, here or on another node; nothing else does.
    assert_eq!(
        trace(&c, "10.244.0.11", broker, Proto::Tcp, 6379),
        Outcome::Allow
    );
    assert_eq!(
        trace(&c, "10.244.1.5", broker, Proto::Tcp, 6379),
        Outcome::Allow
    );
    // client-ok's own egress policy lets it reach the broker's named port
    // (6379) only; from elsewhere, 6380 falls to the broker's policy.
    assert_eq!(
        trace(&c, "10.244.0.11", broker, Proto::Tcp, 6380),
        dropped(&["denied/eg/default/client-egress"])
    );
    assert_eq!(
        trace(&c, "10.244.1.5", broker, Proto::Tcp, 6380),
        dropped(&["denied/in/default/broker"])
    );
    // client-no is egress-isolated (deny all) as well: its own policy drops it first.
    assert_eq!(
        trace(&c, "10.244.0.12", broker, Proto::Tcp, 6379),
        dropped(&["denied/eg/default/client-no-egress"])
    );
    assert_eq!(
        trace(&c, "192.168.1.5", broker, Proto::Tcp, 6379),
        dropped(&["denied/in/default/broker"])
    );
    // The broker reaching itself (through its service) always passes.
    assert_eq!(trace(&c, broker, broker, Proto::Tcp, 6379), Outcome::Allow);
}

#[test]
fn union_of_policies_and_counters_of_each() {
    let c = everything();
    // prod/api: default-deny + allow-frontend (named port http, TCP 8080 / UDP 8081).
    assert_eq!(
        trace(&c, "10.244.0.30", "10.244.0.21", Proto::Tcp, 8080),
        Outcome::Allow
    );
    assert_eq!(
        trace(&c, "10.244.0.31", "10.244.0.21", Proto::Udp, 8081),
        Outcome::Allow
    );
    assert_eq!(
        trace(&c, "10.244.0.20", "10.244.0.21", Proto::Tcp, 8080),
        dropped(&[
            "denied/in/prod/allow-frontend",
            "denied/in/prod/default-deny"
        ])
    );
    // prod/db: namespace AND pod selector, or any labelled pod of prod itself.
    // (frontend/web is egress-isolated too: its own policy lets only DNS and
    // the api's 8080 out, so the db never sees it.)
    assert_eq!(
        trace(&c, "10.244.0.30", "10.244.0.20", Proto::Tcp, 5432),
        dropped(&["denied/eg/frontend/web-egress"])
    );
    let without_egress = {
        let mut c = everything();
        c.policies.remove("frontend/web-egress");
        c
    };
    assert_eq!(
        trace(
            &without_egress,
            "10.244.0.30",
            "10.244.0.20",
            Proto::Tcp,
            5432
        ),
        Outcome::Allow
    );
    assert_eq!(
        trace(&c, "10.244.0.21", "10.244.0.20", Proto::Tcp, 9101),
        Outcome::Allow
    );
    assert_eq!(
        trace(&c, "10.244.0.31", "10.244.0.20", Proto::Tcp, 5432),
        dropped(&["denied/in/prod/db-from-web", "denied/in/prod/default-deny"])
    );
    // frontend/web egress: DNS anywhere and the api's 8080 only.
    assert_eq!(
        trace(&c, "10.244.0.30", "10.0.0.1", Proto::Udp, 53),
        Outcome::Allow
    );
    assert_eq!(
        trace(&c, "10.244.0.30", "10.244.0.20", Proto::Tcp, 5432),
        dropped(&["denied/eg/frontend/web-egress"])
    );
    // other/web: ipBlock with except, both ways.
    assert_eq!(
        trace(&c, "192.168.1.5", "10.244.0.40", Proto::Tcp, 80),
        Outcome::Allow
    );
    // ...unless another policy allows it: other/allow-all admits everything.
    assert_eq!(
        trace(&c, "192.168.2.7", "10.244.0.40", Proto::Tcp, 80),
        Outcome::Allow
    );
    let mut blocks_only = everything();
    blocks_only.policies.remove("other/allow-all");
    assert_eq!(
        trace(&blocks_only, "192.168.2.7", "10.244.0.40", Proto::Tcp, 80),
        dropped(&["denied/in/other/blocks"])
    );
    assert_eq!(
        trace(&c, "10.244.0.40", "10.0.0.1", Proto::Udp, 1),
        Outcome::Allow
    );
    assert_eq!(
        trace(&c, "10.244.0.40", "10.244.0.10", Proto::Udp, 1),
        dropped(&["denied/eg/other/blocks"])
    );
}

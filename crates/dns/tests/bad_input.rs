//! Bad input on the request path: malformed, truncated and hostile packets
//! get FORMERR / NOTIMP / BADVERS or are dropped, never a panic or a hang;
//! EDNS0 sizes and truncation; a randomized fuzz loop over the whole path.

#![allow(clippy::unwrap_used)] // test fixtures: a failed unwrap is a failed test

mod support;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use rand::{Rng, SeedableRng};
use skiff_dns::request::{handle, Reply, Transport};
use support::*;

fn rcode(packet: &[u8]) -> Option<ResponseCode> {
    let index = index();
    let mut lower = String::new();
    match handle(Some(&index), packet, Transport::Udp, &mut lower).reply {
        Reply::Send(b) => Some(Message::from_vec(&b).unwrap().metadata.response_code),
        Reply::Forward | Reply::Chase(_) => Some(ResponseCode::NoError),
        Reply::Drop => None,
    }
}

#[test]
fn short_and_response_packets_are_dropped() {
    assert_eq!(rcode(&[]), None);
    assert_eq!(rcode(&[0x12, 0x34, 0, 0, 0, 1]), None);
    let mut q = query("web.default.svc.cluster.local.", RecordType::A, None);
    q[2] |= 0x80; // QR: a response
    assert_eq!(rcode(&q), None);
}

#[test]
fn malformed_packets_get_formerr() {
    let q = query("web.default.svc.cluster.local.", RecordType::A, None);
    // Question cut short.
    assert_eq!(rcode(&q[..q.len() - 3]), Some(ResponseCode::FormErr));
    // Header claims two questions but holds one.
    let mut two = q.clone();
    two[5] = 2;
    assert_eq!(rcode(&two), Some(ResponseCode::FormErr));
    // No question at all.
    let mut none = q[..12].to_vec();
    none[5] = 0;
    assert_eq!(rcode(&none), Some(ResponseCode::FormErr));
    // A compression pointer to itself (a loop).
    let mut looped = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(rcode(&looped), Some(ResponseCode::FormErr));
    // A forward pointer past the end.
    let mut fwd = looped[..12].to_vec();
    fwd.extend_from_slice(&[0xc0, 0xff, 0, 1, 0, 1]);
    assert_eq!(rcode(&fwd), Some(ResponseCode::FormErr));
    // 200 one-byte labels: longer than the 255-byte name limit.
    let mut long = looped[..12].to_vec();
    for _ in 0..200 {
        long.extend_from_slice(&[1, b'a']);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(rcode(&long), Some(ResponseCode::FormErr));
}

#[test]
fn unsupported_opcodes_classes_and_types_get_notimp() {
    let q = query("web.default.svc.cluster.local.", RecordType::A, None);
    for opcode in [1u8, 2, 4, 5, 15] {
        let mut p = q.clone();
        p[2] = (p[2] & 0x87) | (opcode << 3);
        assert_eq!(rcode(&p), Some(ResponseCode::NotImp), "opcode {opcode}");
    }
    // Class CH (3) in the question's last two bytes.
    let mut ch = q.clone();
    let n = ch.len();
    ch[n - 1] = 3;
    assert_eq!(rcode(&ch), Some(ResponseCode::NotImp));
    let axfr = query("cluster.local.", RecordType::AXFR, None);
    assert_eq!(rcode(&axfr), Some(ResponseCode::NotImp));
}

#[test]
fn edns_version_1_gets_badvers() {
    let mut q = query("web.default.svc.cluster.local.", RecordType::A, Some(1232));
    // The OPT record ends with TTL (ext-rcode, version, flags) and RDLENGTH 0:
    // version is the sixth byte from the end.
    let n = q.len();
    q[n - 5] = 1;
    // 16 is both BADVERS and BADSIG; the decoder names it BADSIG.
    assert_eq!(rcode(&q).map(u16::from), Some(16));
}

/// A headless service with 300 ready pods: truncated over plain UDP, larger
/// with EDNS0 but still truncated, complete over TCP.
#[test]
fn truncation_and_tcp() {
    let (mut services, mut slices) = cluster();
    services.push(service(
        "big",
        "many",
        serde_json::json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
    ));
    let ips: Vec<String> = (0..300)
        .map(|i| format!("10.244.{}.{}", 1 + i / 250, 1 + i % 250))
        .collect();
    for (n, chunk) in ips.chunks(100).enumerate() {
        let eps: Vec<(&str, Option<&str>, bool)> =
            chunk.iter().map(|ip| (ip.as_str(), None, true)).collect();
        slices.push(slice(
            "big",
            &format!("many-{n}"),
            "many",
            &eps,
            serde_json::json!([{"name": "http", "port": 80}]),
        ));
    }
    let index = skiff_dns::index::Index::build(zone(), &services, &slices, 1);
    let name = "many.big.svc.cluster.local.";
    let udp = ask(
        Some(&index),
        &query(name, RecordType::A, None),
        Transport::Udp,
    )
    .unwrap();
    assert!(udp.metadata.truncation && udp.answers.is_empty());
    let edns = ask(
        Some(&index),
        &query(name, RecordType::A, Some(4096)),
        Transport::Udp,
    )
    .unwrap();
    assert!(edns.metadata.truncation);
    assert_eq!(edns.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    let tcp = ask(
        Some(&index),
        &query(name, RecordType::A, None),
        Transport::Tcp,
    )
    .unwrap();
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 300);
    let srv = ask(
        Some(&index),
        &query(
            "_http._tcp.many.big.svc.cluster.local.",
            RecordType::SRV,
            None,
        ),
        Transport::Tcp,
    )
    .unwrap();
    assert_eq!(srv.answers.len(), 300);
    assert_eq!(srv.additionals.len(), 300);
    // A small answer fits plain UDP untruncated.
    let one = ask(
        Some(&index),
        &query("web.default.svc.cluster.local.", RecordType::A, None),
        Transport::Udp,
    )
    .unwrap();
    assert!(!one.metadata.truncation);
}

/// Random bytes, random truncations and random bit flips of valid queries
/// through the whole request path. `SKIFF_DNS_FUZZ_SECS` runs it for longer
/// (the documented 10-minute run); by default a few seconds' worth.
#[test]
fn fuzz_request_path() {
    let index = index();
    let secs: u64 = std::env::var("SKIFF_DNS_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let seeds: Vec<Vec<u8>> = [
        ("web.default.svc.cluster.local.", RecordType::A),
        ("_pg._tcp.pg.db.svc.cluster.local.", RecordType::SRV),
        ("20.0.96.10.in-addr.arpa.", RecordType::PTR),
        ("ext.default.svc.cluster.local.", RecordType::ANY),
        ("example.com.", RecordType::AAAA),
    ]
    .iter()
    .map(|(n, t)| query(n, *t, Some(1232)))
    .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut lower = String::new();
    let mut n = 0u64;
    loop {
        let mut p = seeds[rng.random_range(0..seeds.len())].clone();
        match rng.random_range(0..4) {
            0 => p.truncate(rng.random_range(0..=p.len())),
            1 => {
                for _ in 0..rng.random_range(1..8) {
                    let i = rng.random_range(0..p.len());
                    p[i] ^= 1 << rng.random_range(0..8);
                }
            }
            2 => {
                let len = rng.random_range(0..600);
                p = (0..len).map(|_| rng.random()).collect();
            }
            _ => {
                let i = rng.random_range(12..p.len());
                p[i] = 0xc0;
            }
        }
        for t in [Transport::Udp, Transport::Tcp] {
            if let Reply::Send(b) = handle(Some(&index), &p, t, &mut lower).reply {
                assert!(t == Transport::Tcp || b.len() <= 1232);
                assert_eq!(b[..2], p[..2], "response id");
            }
        }
        n += 1;
        if n >= 50_000 && std::time::Instant::now() >= deadline {
            break;
        }
    }
}

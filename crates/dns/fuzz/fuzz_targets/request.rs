//! The whole request path (decode, parse, answer, encode, truncate) over
//! UDP and TCP limits, against an index with every kind of record.
//! `cargo +nightly fuzz run request -- -max_total_time=600` (from crates/dns).

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use skiff_dns::index::{Index, Zone};
use skiff_dns::request::{handle, Reply, Transport};

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let svc = |v: serde_json::Value| Arc::new(serde_json::from_value(v).expect("service"));
        let services = vec![
            svc(json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}})),
            svc(json!({"metadata": {"name": "pg", "namespace": "db"},
                "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}})),
            svc(json!({"metadata": {"name": "ext", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}})),
        ];
        let slices = vec![Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "pg-1", "namespace": "db",
                             "labels": {"kubernetes.io/service-name": "pg"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.5"], "hostname": "pg-0"},
                              {"addresses": ["10.244.0.6"]}],
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}))
            .expect("slice"),
        )];
        let zone = Zone {
            domain: "cluster.local".into(),
            ttl: 5,
            dns_ip: "10.96.0.10".parse().expect("ip"),
        };
        Index::build(zone, &services, &slices, 1)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut lower = String::new();
    for t in [Transport::Udp, Transport::Tcp] {
        if let Reply::Send(b) = handle(Some(index()), data, t, &mut lower).reply {
            assert!(b.len() >= 12 && b[..2] == data[..2]);
            assert!(t == Transport::Tcp || b.len() <= 1232);
        }
    }
});

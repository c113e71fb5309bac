//! Fixtures: a small cluster of Services and EndpointSlices, and a client that
//! sends a query through the whole request path (wire in, wire out) and
//! renders the response as zone-file lines.

#![allow(dead_code)]

use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_dns::index::{Index, Zone};
use skiff_dns::request::{handle, Reply, Transport};

pub fn zone() -> Zone {
    Zone {
        domain: "cluster.local".into(),
        ttl: 5,
        dns_ip: "10.96.0.10".parse().unwrap(),
    }
}

pub fn service(ns: &str, name: &str, spec: serde_json::Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }))
        .unwrap(),
    )
}

/// `endpoints`: (address, hostname, ready).
pub fn slice(
    ns: &str,
    name: &str,
    service: &str,
    endpoints: &[(&str, Option<&str>, bool)],
    ports: serde_json::Value,
) -> Arc<EndpointSlice> {
    let eps: Vec<_> = endpoints
        .iter()
        .map(|(ip, host, ready)| {
            let mut e = json!({"addresses": [ip], "conditions": {"ready": ready}});
            if let Some(h) = host {
                e["hostname"] = json!(h);
            }
            e
        })
        .collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns,
                          "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": eps,
            "ports": ports,
        }))
        .unwrap(),
    )
}

/// The fixture cluster every table test answers from.
pub fn cluster() -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
    let services = vec![
        service(
            "default",
            "web",
            json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                             {"name": "dns", "port": 53, "protocol": "UDP"}]}),
        ),
        service(
            "default",
            "dual",
            json!({"clusterIP": "10.96.0.21", "clusterIPs": ["10.96.0.21", "fd00::21"],
                   "ports": [{"port": 80}]}),
        ),
        service(
            "db",
            "pg",
            json!({"clusterIP": "None", "clusterIPs": ["None"],
                   "ports": [{"name": "pg", "port": 5432}]}),
        ),
        service(
            "db",
            "empty",
            json!({"clusterIP": "None", "ports": [{"port": 1}]}),
        ),
        service(
            "db",
            "unready",
            json!({"clusterIP": "None", "publishNotReadyAddresses": true, "ports": [{"port": 1}]}),
        ),
        service(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "example.com"}),
        ),
        // ExternalNames into the cluster's own zone, one a chain, two a loop.
        service(
            "default",
            "alias",
            json!({"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}),
        ),
        service(
            "db",
            "alias2",
            json!({"type": "ExternalName", "externalName": "alias.default.svc.cluster.local."}),
        ),
        service(
            "default",
            "loop-a",
            json!({"type": "ExternalName", "externalName": "loop-b.default.svc.cluster.local"}),
        ),
        service(
            "default",
            "loop-b",
            json!({"type": "ExternalName", "externalName": "loop-a.default.svc.cluster.local"}),
        ),
    ];
    let slices = vec![
        slice(
            "db",
            "pg-abc",
            "pg",
            &[
                ("10.244.0.5", Some("pg-0"), true),
                ("10.244.0.6", Some("pg-1"), true),
                ("10.244.0.7", None, true),
                ("10.244.0.8", Some("pg-3"), false),
            ],
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        ),
        slice(
            "db",
            "empty-1",
            "empty",
            &[("10.244.0.9", None, false)],
            json!([]),
        ),
        slice(
            "db",
            "unready-1",
            "unready",
            &[("10.244.0.10", Some("u-0"), false)],
            json!([]),
        ),
    ];
    (services, slices)
}

pub fn index() -> Index {
    let (s, e) = cluster();
    Index::build(zone(), &s, &e, 1)
}

pub fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// Sends the query through the request path; `None` when it is forwarded.
pub fn ask(index: Option<&Index>, packet: &[u8], t: Transport) -> Option<Message> {
    let mut lower = String::new();
    match handle(index, packet, t, &mut lower).reply {
        Reply::Send(b) => Some(Message::from_vec(&b).unwrap()),
        Reply::Forward => None,
        // What the client gets when no upstream answers for the target.
        Reply::Chase(c) => match c.complete(None).reply {
            Reply::Send(b) => Some(Message::from_vec(&b).unwrap()),
            _ => panic!("chase without an answer"),
        },
        Reply::Drop => panic!("dropped"),
    }
}

/// A response as `RCODE` plus zone-file lines per section.
pub struct Rendered {
    pub rcode: String,
    pub answer: Vec<String>,
    pub authority: Vec<String>,
    pub additional: Vec<String>,
}

pub fn render(m: &Message) -> Rendered {
    let lines = |rs: &[hickory_proto::rr::Record]| rs.iter().map(|r| r.to_string()).collect();
    Rendered {
        rcode: format!("{:?}", m.metadata.response_code).to_ascii_uppercase(),
        answer: lines(&m.answers),
        authority: lines(&m.authorities),
        additional: lines(&m.additionals),
    }
}

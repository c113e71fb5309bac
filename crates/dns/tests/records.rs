//! One case per rule of the Kubernetes DNS specification (schema 1.1.0), as
//! zone-file lines: `qname qtype -> rcode`, then the answer, authority and
//! additional sections. Every query goes through the wire path.

#![allow(clippy::unwrap_used)] // test fixtures: a failed unwrap is a failed test

mod support;

use hickory_proto::rr::RecordType;
use skiff_dns::request::Transport;
use support::*;

const SOA: &str =
    "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5";

struct Case {
    q: &'static str,
    rcode: &'static str,
    answer: &'static [&'static str],
    authority: &'static [&'static str],
    additional: &'static [&'static str],
}

const fn case(
    q: &'static str,
    rcode: &'static str,
    answer: &'static [&'static str],
    authority: &'static [&'static str],
    additional: &'static [&'static str],
) -> Case {
    Case {
        q,
        rcode,
        answer,
        authority,
        additional,
    }
}

const CASES: &[Case] = &[
    // Services with a ClusterIP: A/AAAA to the ClusterIP(s).
    case("web.default.svc.cluster.local. A", "NOERROR",
        &["web.default.svc.cluster.local. 5 IN A 10.96.0.20"], &[], &[]),
    // NODATA: the name exists, the type does not.
    case("web.default.svc.cluster.local. AAAA", "NOERROR", &[], &[SOA], &[]),
    case("dual.default.svc.cluster.local. AAAA", "NOERROR",
        &["dual.default.svc.cluster.local. 5 IN AAAA fd00::21"], &[], &[]),
    // Case-insensitive; the answer keeps the asker's spelling.
    case("WEB.Default.SVC.Cluster.Local. A", "NOERROR",
        &["WEB.Default.SVC.Cluster.Local. 5 IN A 10.96.0.20"], &[], &[]),
    // NXDOMAIN: no such service; SOA in authority.
    case("nope.default.svc.cluster.local. A", "NXDOMAIN", &[], &[SOA], &[]),
    // Headless: one record per ready endpoint, not-ready ones left out.
    case("pg.db.svc.cluster.local. A", "NOERROR", &[
        "pg.db.svc.cluster.local. 5 IN A 10.244.0.5",
        "pg.db.svc.cluster.local. 5 IN A 10.244.0.6",
        "pg.db.svc.cluster.local. 5 IN A 10.244.0.7",
    ], &[], &[]),
    // Headless with no ready endpoint: NXDOMAIN.
    case("empty.db.svc.cluster.local. A", "NXDOMAIN", &[], &[SOA], &[]),
    // ... unless publishNotReadyAddresses.
    case("unready.db.svc.cluster.local. A", "NOERROR",
        &["unready.db.svc.cluster.local. 5 IN A 10.244.0.10"], &[], &[]),
    case("u-0.unready.db.svc.cluster.local. A", "NOERROR",
        &["u-0.unready.db.svc.cluster.local. 5 IN A 10.244.0.10"], &[], &[]),
    // <hostname>.<svc>.<ns>.svc.<zone>: a StatefulSet member.
    case("pg-1.pg.db.svc.cluster.local. A", "NOERROR",
        &["pg-1.pg.db.svc.cluster.local. 5 IN A 10.244.0.6"], &[], &[]),
    // The stable name of an endpoint without a hostname: its dashed address.
    case("10-244-0-7.pg.db.svc.cluster.local. A", "NOERROR",
        &["10-244-0-7.pg.db.svc.cluster.local. 5 IN A 10.244.0.7"], &[], &[]),
    // A not-ready endpoint's name does not exist.
    case("pg-3.pg.db.svc.cluster.local. A", "NXDOMAIN", &[], &[SOA], &[]),
    case("pg-1.pg.db.svc.cluster.local. AAAA", "NOERROR", &[], &[SOA], &[]),
    // Endpoint names exist only under headless services.
    case("x.web.default.svc.cluster.local. A", "NXDOMAIN", &[], &[SOA], &[]),
    // SRV for a named port of a ClusterIP service, the address in additional.
    case("_http._tcp.web.default.svc.cluster.local. SRV", "NOERROR",
        &["_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."],
        &[], &["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]),
    case("_dns._udp.web.default.svc.cluster.local. SRV", "NOERROR",
        &["_dns._udp.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local."],
        &[], &["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]),
    // Wrong protocol or unnamed port: no such name.
    case("_http._udp.web.default.svc.cluster.local. SRV", "NXDOMAIN", &[], &[SOA], &[]),
    case("_http._tcp.web.default.svc.cluster.local. A", "NOERROR", &[], &[SOA], &[]),
    // Headless SRV: one per ready endpoint, targeting the endpoint's name.
    case("_pg._tcp.pg.db.svc.cluster.local. SRV", "NOERROR", &[
        "_pg._tcp.pg.db.svc.cluster.local. 5 IN SRV 0 33 5432 pg-0.pg.db.svc.cluster.local.",
        "_pg._tcp.pg.db.svc.cluster.local. 5 IN SRV 0 33 5432 pg-1.pg.db.svc.cluster.local.",
        "_pg._tcp.pg.db.svc.cluster.local. 5 IN SRV 0 33 5432 10-244-0-7.pg.db.svc.cluster.local.",
    ], &[], &[
        "pg-0.pg.db.svc.cluster.local. 5 IN A 10.244.0.5",
        "pg-1.pg.db.svc.cluster.local. 5 IN A 10.244.0.6",
        "10-244-0-7.pg.db.svc.cluster.local. 5 IN A 10.244.0.7",
    ]),
    // PTR for a ClusterIP and for a headless endpoint.
    case("20.0.96.10.in-addr.arpa. PTR", "NOERROR",
        &["20.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."], &[], &[]),
    case("6.0.244.10.in-addr.arpa. PTR", "NOERROR",
        &["6.0.244.10.in-addr.arpa. 5 IN PTR pg-1.pg.db.svc.cluster.local."], &[], &[]),
    case("1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. PTR", "NOERROR",
        &["1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR dual.default.svc.cluster.local."],
        &[], &[]),
    // ExternalName: a CNAME, whatever type was asked.
    case("ext.default.svc.cluster.local. A", "NOERROR",
        &["ext.default.svc.cluster.local. 5 IN CNAME example.com."], &[], &[]),
    case("ext.default.svc.cluster.local. CNAME", "NOERROR",
        &["ext.default.svc.cluster.local. 5 IN CNAME example.com."], &[], &[]),
    // A target inside the zone: the CNAME and the target's addresses, as
    // CoreDNS answers, so stub resolvers that do not chase still get them.
    case("alias.default.svc.cluster.local. A", "NOERROR", &[
        "alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
        "web.default.svc.cluster.local. 5 IN A 10.96.0.20",
    ], &[], &[]),
    case("alias.default.svc.cluster.local. CNAME", "NOERROR",
        &["alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local."], &[], &[]),
    case("alias2.db.svc.cluster.local. A", "NOERROR", &[
        "alias2.db.svc.cluster.local. 5 IN CNAME alias.default.svc.cluster.local.",
        "alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
        "web.default.svc.cluster.local. 5 IN A 10.96.0.20",
    ], &[], &[]),
    // The target has no AAAA: the CNAME alone.
    case("alias.default.svc.cluster.local. AAAA", "NOERROR",
        &["alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local."], &[], &[]),
    // A loop ends where it comes back, with no address.
    case("loop-a.default.svc.cluster.local. A", "NOERROR", &[
        "loop-a.default.svc.cluster.local. 5 IN CNAME loop-b.default.svc.cluster.local.",
        "loop-b.default.svc.cluster.local. 5 IN CNAME loop-a.default.svc.cluster.local.",
    ], &[], &[]),
    // The schema version.
    case("dns-version.cluster.local. TXT", "NOERROR",
        &["dns-version.cluster.local. 5 IN TXT 1.1.0"], &[], &[]),
    case("dns-version.cluster.local. A", "NOERROR", &[], &[SOA], &[]),
    // SOA and NS of the zone, with the name server's address.
    case("cluster.local. SOA", "NOERROR", &[SOA], &[], &[]),
    case("cluster.local. NS", "NOERROR",
        &["cluster.local. 5 IN NS ns.dns.cluster.local."], &[],
        &["ns.dns.cluster.local. 5 IN A 10.96.0.10"]),
    case("ns.dns.cluster.local. A", "NOERROR",
        &["ns.dns.cluster.local. 5 IN A 10.96.0.10"], &[], &[]),
    // Pod records.
    case("10-244-0-99.default.pod.cluster.local. A", "NOERROR",
        &["10-244-0-99.default.pod.cluster.local. 5 IN A 10.244.0.99"], &[], &[]),
    case("10-244-0-999.default.pod.cluster.local. A", "NXDOMAIN", &[], &[SOA], &[]),
    // Empty non-terminals and namespaces: NODATA; unknown namespace: NXDOMAIN.
    case("svc.cluster.local. A", "NOERROR", &[], &[SOA], &[]),
    case("db.svc.cluster.local. A", "NOERROR", &[], &[SOA], &[]),
    case("nons.svc.cluster.local. A", "NXDOMAIN", &[], &[SOA], &[]),
    case("whatever.cluster.local. A", "NXDOMAIN", &[], &[SOA], &[]),
    // Search-path expansions of a short name that miss.
    case("web.default.svc.cluster.local.default.svc.cluster.local. A", "NXDOMAIN", &[], &[SOA], &[]),
    case("web.svc.cluster.local. A", "NXDOMAIN", &[], &[SOA], &[]),
];

#[test]
fn zone_file_table() {
    let index = index();
    let mut failures = Vec::new();
    for c in CASES {
        let (name, ty) = c.q.rsplit_once(' ').unwrap();
        let qtype: RecordType = ty.parse().unwrap();
        let resp = ask(Some(&index), &query(name, qtype, None), Transport::Udp)
            .unwrap_or_else(|| panic!("{} was forwarded", c.q));
        assert!(resp.metadata.authoritative, "{}: AA", c.q);
        let r = render(&resp);
        let got = (r.rcode.as_str(), r.answer, r.authority, r.additional);
        let want = (
            c.rcode,
            c.answer.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            c.authority
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            c.additional
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        );
        if got != (want.0, want.1.clone(), want.2.clone(), want.3.clone()) {
            failures.push(format!("{}\n  got:  {got:?}\n  want: {want:?}", c.q));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn servfail_until_first_sync() {
    let resp = ask(
        None,
        &query("web.default.svc.cluster.local.", RecordType::A, None),
        Transport::Udp,
    )
    .unwrap();
    assert_eq!(render(&resp).rcode, "SERVFAIL");
    assert!(resp.answers.is_empty());
    // The server forwards outside names meanwhile; it needs the name for that.
    let mut lower = String::new();
    let q = query("Example.COM.", RecordType::A, None);
    let h = skiff_dns::request::handle(None, &q, Transport::Udp, &mut lower);
    assert_eq!(lower, "example.com");
    assert_eq!(
        skiff_dns::qname::parse(&lower, "cluster.local"),
        skiff_dns::qname::Qname::Outside
    );
    assert_eq!(u16::from(h.rcode), 2);
}

/// An ExternalName to an outside name: the server asks upstream for the
/// target and appends its answer (CNAMEs and addresses only) to the CNAME.
#[test]
fn external_name_outside_is_chased_upstream() {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::rdata::{A, TXT};
    use hickory_proto::rr::{Name, RData, Record};
    use skiff_dns::request::{handle, Reply};
    let index = index();
    let mut lower = String::new();
    let q = query("ext.default.svc.cluster.local.", RecordType::A, None);
    let Reply::Chase(c) = handle(Some(&index), &q, Transport::Udp, &mut lower).reply else {
        panic!("not chased");
    };
    let up_q = Message::from_vec(&c.query().unwrap()).unwrap();
    assert!(up_q.metadata.recursion_desired);
    assert_eq!(up_q.queries[0].to_string(), "example.com. IN A");
    let mut up = up_q.clone();
    up.metadata.message_type = MessageType::Response;
    let target = Name::from_ascii("example.com.").unwrap();
    up.answers = vec![
        Record::from_rdata(target.clone(), 300, RData::A(A::new(192, 0, 2, 1))),
        Record::from_rdata(target, 300, RData::TXT(TXT::new(vec!["x".into()]))),
    ];
    let Reply::Send(b) = c.complete(Some(&up.to_vec().unwrap())).reply else {
        panic!("no reply");
    };
    let r = render(&Message::from_vec(&b).unwrap());
    assert_eq!(r.rcode, "NOERROR");
    assert_eq!(
        r.answer,
        vec![
            "ext.default.svc.cluster.local. 5 IN CNAME example.com.",
            "example.com. 300 IN A 192.0.2.1",
        ]
    );
}

#[test]
fn outside_names_and_unknown_reverse_are_forwarded() {
    let index = index();
    for (name, t) in [
        ("example.com.", RecordType::A),
        ("cluster.local.example.com.", RecordType::A),
        ("8.8.8.8.in-addr.arpa.", RecordType::PTR),
    ] {
        assert!(
            ask(Some(&index), &query(name, t, None), Transport::Udp).is_none(),
            "{name}"
        );
    }
}

#[test]
fn ttl_is_configurable() {
    let (s, e) = cluster();
    let mut z = zone();
    z.ttl = 30;
    let index = skiff_dns::index::Index::build(z, &s, &e, 1);
    let resp = ask(
        Some(&index),
        &query("web.default.svc.cluster.local.", RecordType::A, None),
        Transport::Udp,
    )
    .unwrap();
    assert_eq!(resp.answers[0].ttl, 30);
}

/// The index swaps whole: a new index answers the change, the old one still
/// answers what it had (queries in flight see one or the other).
#[test]
fn answers_follow_the_index() {
    let (mut s, e) = cluster();
    let before = skiff_dns::index::Index::build(zone(), &s, &e, 1);
    s.push(service(
        "default",
        "new",
        serde_json::json!({"clusterIP": "10.96.0.30"}),
    ));
    let after = skiff_dns::index::Index::build(zone(), &s, &e, 2);
    let q = query("new.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(
        render(&ask(Some(&before), &q, Transport::Udp).unwrap()).rcode,
        "NXDOMAIN"
    );
    let r = render(&ask(Some(&after), &q, Transport::Udp).unwrap());
    assert_eq!(
        r.answer,
        vec!["new.default.svc.cluster.local. 5 IN A 10.96.0.30"]
    );
}

/// Not a timed test: prints the cost of the request path per query
/// (`cargo test --release -p skiff-dns --test records -- --ignored --nocapture`).
#[test]
#[ignore]
fn request_path_cost() {
    let index = index();
    let queries = [
        query("web.default.svc.cluster.local.", RecordType::A, Some(1232)),
        query(
            "_pg._tcp.pg.db.svc.cluster.local.",
            RecordType::SRV,
            Some(1232),
        ),
        query("nope.default.svc.cluster.local.", RecordType::A, Some(1232)),
        query("pg.db.svc.cluster.local.", RecordType::A, None),
    ];
    let mut lower = String::new();
    let n = 400_000;
    let start = std::time::Instant::now();
    for i in 0..n {
        let h = skiff_dns::request::handle(
            Some(&index),
            &queries[i % queries.len()],
            Transport::Udp,
            &mut lower,
        );
        std::hint::black_box(h);
    }
    let per = start.elapsed() / n as u32;
    eprintln!(
        "request path: {per:?} per query, {:.0} queries/s on one core",
        1.0 / per.as_secs_f64()
    );
}

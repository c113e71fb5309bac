use serde_json::{json, Value};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;

use super::*;
use crate::class::{Classes, CONTROLLER};

fn classes() -> Classes {
    let c = serde_json::from_value(json!({
        "metadata": {"name": "skiff", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": CONTROLLER},
    }))
    .expect("class");
    Classes::from_classes(&[c])
}

fn service(name: &str, ports: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": ports},
    }))
    .expect("service")
}

/// A slice of `svc` with a port named `port` (targetPort `target`) and the
/// addresses `ready` (ready) and `not_ready`.
fn slice(svc: &str, port: &str, target: i32, ready: &[&str], not_ready: &[&str]) -> EndpointSlice {
    let ep = |a: &&str, r: bool| json!({"addresses": [a], "conditions": {"ready": r}});
    let endpoints: Vec<Value> = ready
        .iter()
        .map(|a| ep(a, true))
        .chain(not_ready.iter().map(|a| ep(a, false)))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("{svc}-x"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": port, "port": target, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .expect("slice")
}

fn ingress(name: &str, created: &str, spec: Value, annotations: Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                     "annotations": annotations},
        "spec": spec,
    }))
    .expect("ingress")
}

fn path(p: &str, kind: &str, svc: &str, port: Value) -> Value {
    let port = if port.is_string() {
        json!({"name": port})
    } else {
        json!({"number": port})
    };
    json!({"path": p, "pathType": kind, "backend": {"service": {"name": svc, "port": port}}})
}

/// The fixture: services `a` (port 80 "http" -> 8080), `b` (port 8080
/// unnamed -> 9090), `c` (no endpoints ready).
fn cluster() -> (Vec<Service>, Vec<EndpointSlice>) {
    (
        vec![
            service("a", json!([{"name": "http", "port": 80}])),
            service("b", json!([{"port": 8080}])),
            service("c", json!([{"port": 80}])),
        ],
        vec![
            slice("a", "http", 8080, &["10.0.0.1", "10.0.0.2"], &["10.0.0.3"]),
            slice("b", "", 9090, &["10.0.1.1"], &[]),
            slice("c", "", 80, &[], &["10.0.2.1"]),
        ],
    )
}

fn table(ingresses: &[Ingress]) -> build::Built {
    let (services, slices) = cluster();
    build(&Objects::new(classes(), ingresses, &services, &slices))
}

/// Where `host` + `path` goes: `"<service>"`, `"503:<service>"`, or `"404"`.
fn goes(t: &RouteTable, host: &str, p: &str) -> String {
    match t.lookup(host, p) {
        None => "404".into(),
        Some(r) => match &r.target {
            Target::Service(b) => b.service.clone(),
            Target::Missing { service, .. } => format!("503:{service}"),
        },
    }
}

#[test]
fn path_matching_follows_the_ingress_api_table() {
    // Each case: one path of kind `kind`, then request paths and whether they match
    // (the examples table of the networking.k8s.io/v1 Ingress docs).
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, bool)]);
    let cases: &[Case] = &[
        ("Prefix", "/", &[("/", true), ("/anything", true)]),
        ("Exact", "/foo", &[("/foo", true), ("/bar", false)]),
        ("Exact", "/foo", &[("/foo/", false)]),
        ("Exact", "/foo/", &[("/foo", false), ("/foo/", true)]),
        ("Prefix", "/foo", &[("/foo", true), ("/foo/", true)]),
        ("Prefix", "/foo/", &[("/foo", true), ("/foo/", true)]),
        ("Prefix", "/aaa/bb", &[("/aaa/bbb", false)]),
        (
            "Prefix",
            "/aaa/bbb",
            &[("/aaa/bbb", true), ("/aaa/bbb/", true)],
        ),
        ("Prefix", "/aaa/bbb/", &[("/aaa/bbb", true)]),
        (
            "Prefix",
            "/aaa/bbb",
            &[("/aaa/bbb/ccc", true), ("/aaa/bbbxyz", false)],
        ),
        (
            "ImplementationSpecific",
            "/foo",
            &[("/foo/bar", true), ("/foobar", false)],
        ),
    ];
    for (kind, p, requests) in cases {
        let ing = ingress(
            "i",
            "2026-01-01T00:00:00Z",
            json!({"rules": [{"host": "h", "http": {"paths": [path(p, kind, "a", json!(80))]}}]}),
            json!({}),
        );
        let t = table(&[ing]).table;
        for (req, want) in *requests {
            let got = t.lookup("h", req).is_some();
            assert_eq!(got, *want, "{kind} {p} vs request {req}");
        }
    }
}

#[test]
fn precedence_exact_then_longest_prefix_then_wildcard_then_default() {
    let spec = json!({
        "defaultBackend": {"service": {"name": "b", "port": {"number": 8080}}},
        "rules": [
            {"host": "foo.example", "http": {"paths": [
                path("/", "Prefix", "a", json!(80)),
                path("/api", "Prefix", "b", json!(8080)),
                path("/api/v1", "Prefix", "a", json!("http")),
                path("/api", "Exact", "c", json!(80)),
            ]}},
            {"host": "*.example", "http": {"paths": [path("/", "Prefix", "b", json!(8080))]}},
            {"http": {"paths": [path("/any", "Prefix", "a", json!(80))]}},
        ],
    });
    let t = table(&[ingress("i", "2026-01-01T00:00:00Z", spec, json!({}))]).table;
    let cases = [
        ("foo.example", "/", "a"),
        ("foo.example", "/api", "c"),
        ("foo.example", "/api/", "b"),
        ("foo.example", "/api/x", "b"),
        ("foo.example", "/api/v1/x", "a"),
        ("foo.example", "/apix", "a"),
        ("bar.example", "/x", "b"),
        // A wildcard stands for one label only.
        ("a.bar.example", "/any/1", "a"),
        ("example", "/any", "a"),
        ("other", "/nothing", "b"),
    ];
    for (host, p, want) in cases {
        assert_eq!(goes(&t, host, p), want, "{host}{p}");
    }
}

#[test]
fn older_ingress_wins_a_conflict_and_classes_filter() {
    let rule = |svc: &str| json!({"rules": [{"host": "h", "http": {"paths": [path("/", "Prefix", svc, json!(80))]}}]});
    let newer = ingress("newer", "2026-02-01T00:00:00Z", rule("c"), json!({}));
    let older = ingress("older", "2026-01-01T00:00:00Z", rule("a"), json!({}));
    let mut other_class = ingress("other", "2025-01-01T00:00:00Z", rule("b"), json!({}));
    if let Some(s) = other_class.spec.as_mut() {
        s.ingress_class_name = Some("nginx".into());
    }
    let built = table(&[newer, older, other_class]);
    assert_eq!(goes(&built.table, "h", "/x"), "a");
    let served: Vec<&str> = built.served.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(served, vec!["older", "newer"]);
}

#[test]
fn endpoints_by_port_number_or_name_ready_only() {
    let spec = json!({"rules": [
        {"host": "num", "http": {"paths": [path("/", "Prefix", "a", json!(80))]}},
        {"host": "name", "http": {"paths": [path("/", "Prefix", "a", json!("http"))]}},
        {"host": "b", "http": {"paths": [path("/", "Prefix", "b", json!(8080))]}},
        {"host": "none", "http": {"paths": [path("/", "Prefix", "c", json!(80))]}},
    ]});
    let t = table(&[ingress("i", "2026-01-01T00:00:00Z", spec, json!({}))]).table;
    let addrs = |host: &str| -> Vec<String> {
        match &t.lookup(host, "/").expect("route").target {
            Target::Service(b) => b.endpoints.iter().map(|e| e.addr.to_string()).collect(),
            Target::Missing { reason, .. } => vec![reason.clone()],
        }
    };
    assert_eq!(addrs("num"), vec!["10.0.0.1:8080", "10.0.0.2:8080"]);
    assert_eq!(addrs("name"), addrs("num"));
    assert_eq!(addrs("b"), vec!["10.0.1.1:9090"]);
    assert!(addrs("none").is_empty(), "no ready endpoint");
    // A port by name and by number is one backend: one round-robin.
    let backend = |host: &str| match &t.lookup(host, "/").expect("route").target {
        Target::Service(b) => b.clone(),
        Target::Missing { reason, .. } => panic!("{reason}"),
    };
    assert!(Arc::ptr_eq(&backend("num"), &backend("name")));
    assert_eq!(backend("name").upstream_name(), "default-a-80");
}

#[test]
fn missing_service_or_port_is_503_for_that_route_only_with_a_problem() {
    let spec = json!({"rules": [{"host": "h", "http": {"paths": [
        path("/ok", "Prefix", "a", json!(80)),
        path("/gone", "Prefix", "nope", json!(80)),
        path("/badport", "Prefix", "a", json!(81)),
    ]}}]});
    let built = table(&[ingress("i", "2026-01-01T00:00:00Z", spec, json!({}))]);
    assert_eq!(goes(&built.table, "h", "/ok"), "a");
    assert_eq!(goes(&built.table, "h", "/gone/x"), "503:nope");
    assert_eq!(goes(&built.table, "h", "/badport"), "503:a");
    let msgs: Vec<&str> = built.problems.iter().map(|p| p.message.as_str()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("service \"default/nope\" not found")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("has no port 81")),
        "{msgs:?}"
    );
    assert!(built.problems.iter().all(|p| p.warning));
}

#[test]
fn rewrite_target_with_capture_groups() {
    let spec = json!({"rules": [{"host": "h", "http": {"paths": [
        path("/something(/|$)(.*)", "ImplementationSpecific", "a", json!(80)),
    ]}}]});
    let ann = json!({"nginx.ingress.kubernetes.io/rewrite-target": "/$2"});
    let t = table(&[ingress("i", "2026-01-01T00:00:00Z", spec, ann)]).table;
    let cases = [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new", "/new"),
        ("/SOMETHING/a/b", "/a/b"),
    ];
    for (req, want) in cases {
        let r = t.lookup("h", req).expect(req);
        assert_eq!(r.rewrite(req), want, "{req}");
    }
    assert!(t.lookup("h", "/other").is_none());
}

#[test]
fn tls_hosts_redirect_unless_ssl_redirect_is_off() {
    let spec = json!({
        "tls": [{"hosts": ["secure.example"], "secretName": "s"}],
        "rules": [
            {"host": "secure.example", "http": {"paths": [path("/", "Prefix", "a", json!(80))]}},
            {"host": "plain.example", "http": {"paths": [path("/", "Prefix", "a", json!(80))]}},
        ],
    });
    let built = table(&[ingress(
        "i",
        "2026-01-01T00:00:00Z",
        spec.clone(),
        json!({}),
    )]);
    let t = &built.table;
    assert!(
        t.lookup("secure.example", "/")
            .expect("r")
            .redirect_to_https
    );
    assert!(!t.lookup("plain.example", "/").expect("r").redirect_to_https);
    assert_eq!(built.tls.len(), 1);
    assert_eq!(built.tls[0].secret.as_deref(), Some("s"));
    let off = json!({"nginx.ingress.kubernetes.io/ssl-redirect": "false"});
    let t = table(&[ingress("i", "2026-01-01T00:00:00Z", spec, off)]).table;
    assert!(
        !t.lookup("secure.example", "/")
            .expect("r")
            .redirect_to_https
    );
}

#[test]
fn round_robin_skips_the_failed_endpoint_and_cookies_are_stable() {
    let eps: Vec<Endpoint> = ["10.0.0.1:80", "10.0.0.2:80"]
        .iter()
        .map(|a| Endpoint::new(a.parse().expect("addr")))
        .collect();
    let b = Backend::new("default", "a", "80", eps.clone());
    let first = b.pick(None).expect("one").addr;
    let second = b.pick(None).expect("two").addr;
    assert_ne!(first, second);
    for _ in 0..4 {
        assert_ne!(b.pick(Some(first)).expect("other").addr, first);
    }
    assert_eq!(Endpoint::new(eps[0].addr).cookie, eps[0].cookie);
    assert_ne!(eps[0].cookie, eps[1].cookie);
    assert_eq!(
        b.by_cookie(&eps[1].cookie).map(|e| e.addr),
        Some(eps[1].addr)
    );
    assert!(b.by_cookie("stale").is_none());
}

#[test]
fn a_retry_picks_an_endpoint_not_tried_yet_until_none_is_left() {
    let eps: Vec<Endpoint> = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
        .iter()
        .map(|a| Endpoint::new(a.parse().expect("addr")))
        .collect();
    let b = Backend::new("default", "a", "80", eps.clone());
    let mut tried = vec![eps[0].addr];
    for _ in 0..2 {
        let next = b.pick_untried(&tried).expect("an untried endpoint").addr;
        assert!(!tried.contains(&next));
        tried.push(next);
    }
    assert!(b.pick_untried(&tried).is_none(), "all three tried");
    let empty = Backend::new("default", "a", "80", Vec::new());
    assert!(empty.pick_untried(&[]).is_none());
}

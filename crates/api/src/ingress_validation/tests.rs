//! Table tests: each bad Ingress or IngressClass and every error it must give,
//! rendered as upstream renders them (`field: message`).

use serde_json::{json, Value};

use super::*;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn backend() -> Value {
    json!({"service": {"name": "web", "port": {"number": 80}}})
}

/// An Ingress with one rule for `host` and one path.
fn with_rule(host: &str, path: Value) -> Value {
    json!({
        "metadata": {"name": "x", "namespace": "default"},
        "spec": {"rules": [{"host": host, "http": {"paths": [path]}}]},
    })
}

fn path(path_type: &str, p: &str) -> Value {
    json!({"path": p, "pathType": path_type, "backend": backend()})
}

fn errors(obj: &Value, old: Option<&Value>) -> Vec<String> {
    ingress(obj, old).iter().map(ToString::to_string).collect()
}

fn class_errors(controller: Value, old: Option<&str>) -> Vec<String> {
    let obj = json!({"metadata": {"name": "skiff"}, "spec": {"controller": controller}});
    let old = old.map(|c| json!({"metadata": {"name": "skiff"}, "spec": {"controller": c}}));
    ingress_class(&obj, old.as_ref())
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn valid_ingresses_pass() {
    let ok = [
        with_rule("foo.example.com", path("Prefix", "/")),
        with_rule("*.example.com", path("Exact", "/a/b")),
        with_rule("", path("ImplementationSpecific", "")),
        with_rule("a.b", path("ImplementationSpecific", "/x/../y")),
        with_rule(
            "a.b",
            json!({"path": "/", "pathType": "Prefix",
                   "backend": {"service": {"name": "web", "port": {"name": "http"}}}}),
        ),
        with_rule(
            "a.b",
            json!({"path": "/", "pathType": "Prefix",
                   "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "static"}}}),
        ),
        json!({"metadata": {"name": "x"}, "spec": {"defaultBackend": backend()}}),
        json!({"metadata": {"name": "x"}, "spec": {
            "ingressClassName": "skiff",
            "defaultBackend": backend(),
            "tls": [{"hosts": ["a.example.com", "*.example.com"], "secretName": "tls-a"}],
        }}),
        // A rule with a host and no http is allowed, as upstream allows it.
        json!({"metadata": {"name": "x"}, "spec": {"rules": [{"host": "only.host"}]}}),
    ];
    for obj in ok {
        assert_eq!(errors(&obj, None), Vec::<String>::new(), "{obj}");
    }
}

#[test]
fn bad_hosts_and_paths_give_upstreams_errors() {
    let wildcard = format!("spec.rules[0].host: Invalid value: \"*\": {WILDCARD_MSG}");
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            with_rule("Foo.com", path("Prefix", "/")),
            vec![format!(
                "spec.rules[0].host: Invalid value: \"Foo.com\": {SUBDOMAIN_MSG}"
            )],
        ),
        (with_rule("*", path("Prefix", "/")), vec![wildcard]),
        (
            with_rule("foo.*.com", path("Prefix", "/")),
            vec![format!(
                "spec.rules[0].host: Invalid value: \"foo.*.com\": {WILDCARD_MSG}"
            )],
        ),
        (
            with_rule("1.2.3.4", path("Prefix", "/")),
            vec![
                "spec.rules[0].host: Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address"
                    .to_string(),
            ],
        ),
        (
            with_rule("a.b", path("Prefix", "foo")),
            vec![
                "spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path"
                    .to_string(),
            ],
        ),
        (
            with_rule("a.b", path("Exact", "/a//b/.")),
            vec![
                "spec.rules[0].http.paths[0].path: Invalid value: \"/a//b/.\": must not contain '//'"
                    .to_string(),
                "spec.rules[0].http.paths[0].path: Invalid value: \"/a//b/.\": cannot end with '/.'"
                    .to_string(),
            ],
        ),
        (
            with_rule("a.b", path("Prefix", "/a/../b%2Fc")),
            vec![
                "spec.rules[0].http.paths[0].path: Invalid value: \"/a/../b%2Fc\": must not contain '/../'"
                    .to_string(),
                "spec.rules[0].http.paths[0].path: Invalid value: \"/a/../b%2Fc\": must not contain '%2F'"
                    .to_string(),
            ],
        ),
        (
            with_rule("a.b", path("ImplementationSpecific", "x")),
            vec![
                "spec.rules[0].http.paths[0].path: Invalid value: \"x\": must be an absolute path"
                    .to_string(),
            ],
        ),
        (
            with_rule("a.b", json!({"path": "/", "backend": backend()})),
            vec![
                "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"
                    .to_string(),
            ],
        ),
        (
            with_rule("a.b", path("Regex", "/")),
            vec![
                "spec.rules[0].http.paths[0].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""
                    .to_string(),
            ],
        ),
        (
            json!({"metadata": {"name": "x"}, "spec": {"rules": [{"http": {"paths": []}}]}}),
            vec!["spec.rules[0].http.paths: Required value".to_string()],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&obj, None), want, "{obj}");
    }
}

#[test]
fn bad_backends_give_upstreams_errors() {
    let p = |b: Value| {
        with_rule(
            "a.b",
            json!({"path": "/", "pathType": "Prefix", "backend": b}),
        )
    };
    let at = "spec.rules[0].http.paths[0].backend";
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            p(json!({})),
            vec![format!(
                "{at}: Invalid value: \"\": resource or service backend is required"
            )],
        ),
        (
            p(json!({"service": {"name": "web", "port": {"number": 80}},
                     "resource": {"kind": "K", "name": "n"}})),
            vec![format!(
                "{at}: Invalid value: \"\": cannot set both resource and service backends"
            )],
        ),
        (
            p(json!({"service": {"name": "web", "port": {"number": 80, "name": "http"}}})),
            vec![format!(
                "{at}: Invalid value: \"\": cannot set both port name & port number"
            )],
        ),
        (
            p(json!({"service": {"name": "web", "port": {}}})),
            vec![format!("{at}: Required value: port name or number is required")],
        ),
        (
            p(json!({"service": {"name": "web", "port": {"number": 70000}}})),
            vec![format!(
                "{at}.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive"
            )],
        ),
        (
            p(json!({"service": {"name": "web", "port": {"name": "HTTP"}}})),
            vec![
                format!("{at}.service.port.name: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
                format!("{at}.service.port.name: Invalid value: \"HTTP\": must contain at least one letter (a-z)"),
            ],
        ),
        (
            p(json!({"service": {"name": "1web", "port": {"number": 80}}})),
            vec![format!(
                "{at}.service.name: Invalid value: \"1web\": {DNS1035_MSG}"
            )],
        ),
        (
            p(json!({"service": {"port": {"number": 80}}})),
            vec![format!("{at}.service.name: Required value")],
        ),
        (
            p(json!({"resource": {"kind": "a/b"}})),
            vec![
                format!("{at}.resource.kind: Invalid value: \"a/b\": may not contain '/'"),
                format!("{at}.resource.name: Required value"),
            ],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&obj, None), want, "{obj}");
    }
}

#[test]
fn spec_tls_class_and_annotation() {
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            json!({"metadata": {"name": "x"}, "spec": {}}),
            vec!["spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified".to_string()],
        ),
        (
            json!({"metadata": {"name": "x"}, "spec": {"rules": []}}),
            vec!["spec: Invalid value: []networking.IngressRule{}: either `defaultBackend` or `rules` must be specified".to_string()],
        ),
        (
            json!({"metadata": {"name": "x"}, "spec": {"defaultBackend": backend(),
                "tls": [{"hosts": ["*"], "secretName": "Bad"}]}}),
            vec![
                format!("spec.tls[0].hosts[0]: Invalid value: \"*\": {WILDCARD_MSG}"),
                format!("spec.tls[0].secretName: Invalid value: \"Bad\": {SUBDOMAIN_MSG}"),
            ],
        ),
        (
            json!({"metadata": {"name": "x"}, "spec": {"defaultBackend": backend(), "ingressClassName": "Skiff"}}),
            vec![format!("spec.ingressClassName: Invalid value: \"Skiff\": {SUBDOMAIN_MSG}")],
        ),
        (
            json!({"metadata": {"name": "x", "annotations": {"kubernetes.io/ingress.class": "nginx"}},
                   "spec": {"defaultBackend": backend(), "ingressClassName": "skiff"}}),
            vec!["annotations.kubernetes.io/ingress.class: Invalid value: \"nginx\": must match `ingressClassName` when both are specified".to_string()],
        ),
    ];
    for (obj, want) in cases {
        assert_eq!(errors(&obj, None), want, "{obj}");
    }
}

#[test]
fn updates_and_status_writes() {
    let old = with_rule("a.b", path("Prefix", "/"));
    // Update: the spec is checked again; the class annotation only on create.
    let mut new = with_rule("a.b", path("Prefix", "nope"));
    new["metadata"]["annotations"] = json!({"kubernetes.io/ingress.class": "other"});
    new["spec"]["ingressClassName"] = json!("skiff");
    assert_eq!(
        errors(&new, Some(&old)),
        vec!["spec.rules[0].http.paths[0].path: Invalid value: \"nope\": must be an absolute path"]
    );
    // A status write: only the status is checked.
    let mut status = old.clone();
    status["status"] = json!({"loadBalancer": {"ingress": [{"ip": "172.18.255.1"}]}});
    assert!(errors(&status, Some(&old)).is_empty());
    status["status"] =
        json!({"loadBalancer": {"ingress": [{"ip": "nope"}, {"hostname": "10.0.0.1"}]}});
    assert_eq!(
        errors(&status, Some(&old)),
        vec![
            "status.loadBalancer.ingress[0].ip: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            "status.loadBalancer.ingress[1].hostname: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
        ]
    );
}

#[test]
fn ingress_class_controller() {
    assert!(class_errors(json!("skiff.dev/ingress"), None).is_empty());
    assert!(class_errors(json!("k8s.io/ingress-nginx"), Some("k8s.io/ingress-nginx")).is_empty());
    let cases: Vec<(Value, Option<&str>, Vec<String>)> = vec![
        (Value::Null, None, vec!["spec.controller: Required value".into()]),
        (
            json!("skiff"),
            None,
            vec!["spec.controller: Invalid value: \"skiff\": must be a domain-prefixed path (such as \"acme.io/foo\")".into()],
        ),
        (
            json!("Skiff.dev/x"),
            None,
            vec![format!("spec.controller: Invalid value: \"Skiff.dev\": {SUBDOMAIN_MSG}")],
        ),
        (
            json!("skiff.dev/a b"),
            None,
            vec![format!("spec.controller: Invalid value: \"a b\": {HTTP_PATH_MSG}")],
        ),
        (
            json!(format!("skiff.dev/{}", "a".repeat(250))),
            None,
            vec!["spec.controller: Too long: may not be more than 250 bytes".into()],
        ),
        (
            json!("skiff.dev/other"),
            Some("skiff.dev/ingress"),
            vec!["spec.controller: Invalid value: \"skiff.dev/other\": field is immutable".into()],
        ),
    ];
    for (controller, old, want) in cases {
        assert_eq!(class_errors(controller.clone(), old), want, "{controller}");
    }
}

#[test]
fn ingress_class_parameters() {
    let with = |params: Value| {
        let obj = json!({"metadata": {"name": "c"},
                         "spec": {"controller": "skiff.dev/ingress", "parameters": params}});
        ingress_class(&obj, None)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert!(with(json!({"kind": "Config", "name": "c", "scope": "Cluster"})).is_empty());
    assert!(
        with(json!({"kind": "Config", "name": "c", "scope": "Namespace", "namespace": "ns"}))
            .is_empty()
    );
    assert_eq!(
        with(json!({"kind": "Config", "name": "c"})),
        vec!["spec.parameters.scope: Required value"]
    );
    assert_eq!(
        with(json!({"kind": "Config", "name": "c", "scope": "Namespace"})),
        vec!["spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]
    );
    assert_eq!(
        with(json!({"kind": "Config", "name": "c", "scope": "Cluster", "namespace": "ns"})),
        vec!["spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]
    );
    assert_eq!(
        with(json!({"kind": "Config", "name": "c", "scope": "Namespace", "namespace": "a.b"})),
        vec!["spec.parameters.namespace: Invalid value: \"a.b\": must not contain dots"]
    );
    assert_eq!(
        with(json!({"kind": "Config", "name": "c", "scope": "Node"})),
        vec!["spec.parameters.scope: Unsupported value: \"Node\": supported values: \"Cluster\", \"Namespace\""]
    );
}

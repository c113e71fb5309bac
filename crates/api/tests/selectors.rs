//! Label and field selectors against upstream's behaviour and error text.

use serde_json::{json, Map, Value};
use skiff_api::fields::{field_value, FieldSelector, FieldSelectorError};
use skiff_api::selector::{format_label_selector, format_labels, LabelSelector, Operator};

fn labels(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn err(s: &str) -> String {
    LabelSelector::parse(s).expect_err(s).to_string()
}

const NAME_PART_REGEX: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

#[test]
fn parses_every_operator_and_prints_canonically() {
    let cases = [
        ("a=b", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("a in (y,x)", "a in (x,y)"),
        ("a notin (x)", "a notin (x)"),
        ("a", "a"),
        ("!a", "!a"),
        (" b = 1 , a in ( x , y ) ", "a in (x,y),b=1"),
        (
            "x in (foo,,baz),y,z notin ()",
            "x in (,baz,foo),y,z notin ()",
        ),
        ("a>5", "a>5"),
        ("a<5", "a<5"),
        ("v in (in, notin)", "v in (in,notin)"),
        ("a=", "a="),
        ("", ""),
    ];
    for (input, want) in cases {
        let s = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(s.to_string(), want, "{input}");
    }
}

#[test]
fn matching() {
    let l = labels(json!({"app": "web", "tier": "front", "n": "7"}));
    let yes = [
        "app=web",
        "app==web",
        "app!=db",
        "app in (db,web)",
        "app notin (db)",
        "app",
        "!missing",
        "missing notin (x)",
        "missing!=x",
        "app=web,tier=front",
        "n>5",
        "n<10",
        "",
    ];
    for s in yes {
        assert!(LabelSelector::parse(s).expect(s).matches(Some(&l)), "{s}");
    }
    let no = [
        "app=db",
        "app!=web",
        "app in (db)",
        "app notin (web)",
        "missing",
        "!app",
        "missing=x",
        "app=web,tier=back",
        "n>7",
        "app>1",
    ];
    for s in no {
        assert!(!LabelSelector::parse(s).expect(s).matches(Some(&l)), "{s}");
    }
    assert!(LabelSelector::parse("!a").expect("parse").matches(None));
    assert!(!LabelSelector::parse("a").expect("parse").matches(None));
}

#[test]
fn syntax_errors_match_upstream() {
    assert_eq!(
        err("a b"),
        "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
    );
    assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
    assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
    assert_eq!(
        err(",a"),
        "found ',', expected: !, identifier, or 'end of string'"
    );
    assert_eq!(
        err("a in x"),
        "unable to parse requirement: found 'x' expected: '('"
    );
    assert_eq!(
        err("a in (x"),
        "unable to parse requirement: found '', expected: ',' or ')'"
    );
    assert_eq!(
        err("!"),
        "unable to parse requirement: found '', expected: identifier"
    );
}

#[test]
fn validation_errors_match_upstream() {
    // As a real API server answers `kubectl get pods -l app:monolith`.
    assert_eq!(
        err("app:monolith"),
        format!("unable to parse requirement: <nil>: Invalid value: \"app:monolith\": name part {NAME_PART_REGEX}")
    );
    assert_eq!(
        err("a/b/c"),
        format!("unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name {NAME_PART_REGEX} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
    );
    assert_eq!(
        err("app.kubernetes_io/name=x"),
        "unable to parse requirement: <nil>: Invalid value: \"app.kubernetes_io/name\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    assert_eq!(
        err("/a"),
        "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty"
    );
    assert_eq!(
        err("app=-x"),
        "unable to parse requirement: values[0][app]: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    );
    let long = "v".repeat(64);
    assert!(err(&format!("a={long}")).contains("must be no more than 63 characters"));
    assert_eq!(
        err("a>x"),
        "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
    );
}

#[test]
fn label_selector_json() {
    let s = LabelSelector::from_json(&json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "edge"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "Exists"},
            {"key": "env", "operator": "NotIn", "values": ["dev"]}
        ]
    }))
    .expect("valid");
    assert_eq!(
        s.to_string(),
        "app=web,!canary,env notin (dev),tier in (edge,front),zone"
    );
    let l = labels(json!({"app": "web", "tier": "edge", "zone": "a"}));
    assert!(s.matches(Some(&l)));
    let l = labels(json!({"app": "web", "tier": "edge", "zone": "a", "canary": "1"}));
    assert!(!s.matches(Some(&l)));

    let empty = LabelSelector::from_json(&json!({})).expect("empty");
    assert!(empty.is_empty() && empty.matches(None));
    let nothing = LabelSelector::from_json(&Value::Null).expect("null");
    assert!(!nothing.is_empty() && nothing.matches_nothing() && !nothing.matches(Some(&l)));

    let bad = |v: Value| {
        LabelSelector::from_json(&v)
            .expect_err("invalid")
            .to_string()
    };
    assert_eq!(
        bad(json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]})),
        "\"Equals\" is not a valid label selector operator"
    );
    assert_eq!(
        bad(json!({"matchExpressions": [{"key": "a", "operator": "In"}]})),
        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
    );
    assert_eq!(
        bad(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b", "c"]}]})),
        "values: Invalid value: []string{\"b\", \"c\"}: values set must be empty for exists and does not exist"
    );
    assert_eq!(
        bad(json!({"matchLabels": {"a b": "c"}})),
        format!("key: Invalid value: \"a b\": name part {NAME_PART_REGEX}")
    );
    assert!(bad(json!({"matchLabels": {"a": "c d"}}))
        .starts_with("values[0][a]: Invalid value: \"c d\": a valid label"));
}

#[test]
fn formatting_helpers() {
    let sel = json!({"app": "web", "a": "1"});
    assert_eq!(format_labels(sel.as_object()), "a=1,app=web");
    assert_eq!(format_labels(None), "<none>");
    assert_eq!(format_labels(Some(&Map::new())), "<none>");
    assert_eq!(format_label_selector(None), "<none>");
    assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
    assert_eq!(
        format_label_selector(Some(&json!({"matchLabels": {"app": "web"}}))),
        "app=web"
    );
    assert_eq!(
        format_label_selector(Some(
            &json!({"matchExpressions": [{"key": "a", "operator": "Bad"}]})
        )),
        "<error>"
    );
    let s = LabelSelector::parse("app=web,tier in (x)").expect("parse");
    assert_eq!(s.requires_exact_match("app"), Some("web"));
    assert_eq!(s.requires_exact_match("tier"), Some("x"));
    assert_eq!(s.requirements()[0].operator(), Operator::Equals);
}

#[test]
fn field_selector_parsing() {
    let s = FieldSelector::parse("metadata.name=a,spec.nodeName!=,status.phase==Running")
        .expect("parse");
    assert_eq!(
        s.to_string(),
        "metadata.name=a,spec.nodeName!=,status.phase=Running"
    );
    assert_eq!(s.requires_exact_match("metadata.name"), Some("a"));
    assert!(FieldSelector::parse("").expect("empty").is_empty());
    assert!(FieldSelector::parse(",,").expect("commas").is_empty());

    let esc = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").expect("escapes");
    assert_eq!(esc.terms()[0].value, r"a,b=c\d");
    assert_eq!(esc.to_string(), r"metadata.name=a\,b\=c\\d");

    let e = |s: &str| FieldSelector::parse(s).expect_err(s).to_string();
    assert_eq!(e("foo"), "invalid selector: 'foo'; can't understand 'foo'");
    assert_eq!(
        e("a=b,c"),
        "invalid selector: 'a=b,c'; can't understand 'c'"
    );
    assert_eq!(
        e(r"a=b\x"),
        r"invalid field selector: invalid escape sequence: \x"
    );
    assert_eq!(
        e(r"a=b\"),
        r"invalid field selector: invalid escape sequence: \"
    );
    assert_eq!(
        e("a=b=c"),
        "invalid field selector: unescaped character in value: 61"
    );
}

fn pod() -> Value {
    json!({
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"nodeName": "node-a", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                 "serviceAccountName": "default"},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.244.0.5"}]}
    })
}

#[test]
fn pod_fields() {
    let p = pod();
    let v = |f: &str| field_value("", "Pod", &p, f).expect(f);
    assert_eq!(v("metadata.name").as_deref(), Some("web-1"));
    assert_eq!(v("spec.nodeName").as_deref(), Some("node-a"));
    assert_eq!(v("spec.host").as_deref(), Some("node-a"));
    assert_eq!(v("spec.hostNetwork").as_deref(), Some("false"));
    assert_eq!(v("status.podIP").as_deref(), Some("10.244.0.5"));
    assert_eq!(v("status.podIPs"), None);
    assert_eq!(v("status.nominatedNodeName").as_deref(), Some(""));
    assert_eq!(
        field_value("", "Pod", &p, "spec.containers"),
        Err(FieldSelectorError::UnsupportedField(
            "field label not supported: spec.containers".into()
        ))
    );

    let m = |s: &str| FieldSelector::parse(s).expect(s).matches("", "Pod", &p);
    assert!(m("spec.nodeName=node-a,metadata.namespace=default"));
    assert!(m("status.phase!=Pending"));
    assert!(m("status.nominatedNodeName="));
    assert!(!m("status.podIPs=10.244.0.5"));
    assert!(!m("spec.nodeName=node-b"));
}

#[test]
fn unsupported_labels_per_kind() {
    let check = |group: &str, kind: &str, sel: &str, msg: &str| {
        let s = FieldSelector::parse(sel).expect(sel);
        assert_eq!(
            s.validate(group, kind).expect_err(sel).to_string(),
            msg,
            "{group}/{kind}"
        );
    };
    check(
        "",
        "Node",
        "metadata.namespace=x",
        "field label not supported: metadata.namespace",
    );
    check(
        "apps",
        "Deployment",
        "spec.replicas=1",
        "\"spec.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
    );
    check(
        "apps",
        "ReplicaSet",
        "status.replicas=1",
        "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
    );
    check(
        "events.k8s.io",
        "Event",
        "involvedObject.name=x",
        "field label not supported: involvedObject.name",
    );
    check(
        "batch",
        "Job",
        "status.active=1",
        "field label \"status.active\" not supported for batchv1.Job",
    );
    let ok = FieldSelector::parse("spec.type=ClusterIP,spec.clusterIP=10.96.0.1").expect("svc");
    assert!(ok.validate("", "Service").is_ok());
}

#[test]
fn other_kinds_fields() {
    let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
    assert_eq!(
        field_value("", "Node", &node, "spec.unschedulable").expect("node"),
        Some("true".into())
    );
    let ns = json!({"metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
    assert!(FieldSelector::parse("status.phase=Active")
        .expect("ns")
        .matches("", "Namespace", &ns));
    let secret = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"});
    assert!(FieldSelector::parse("type=kubernetes.io/tls")
        .expect("secret")
        .matches("", "Secret", &secret));
    let rc = json!({"metadata": {"name": "rc"}, "status": {"replicas": 3}});
    assert_eq!(
        field_value("", "ReplicationController", &rc, "status.replicas").expect("rc"),
        Some("3".into())
    );
    let svc =
        json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.4.4"}});
    assert!(
        FieldSelector::parse("spec.type=NodePort,spec.clusterIP=10.96.4.4")
            .expect("svc")
            .matches("", "Service", &svc)
    );
}

#[test]
fn event_fields_core_and_events_api() {
    let core = json!({
        "metadata": {"name": "web.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1",
                           "apiVersion": "v1", "fieldPath": "spec.containers{web}"},
        "reason": "Pulled", "type": "Normal", "reportingComponent": "kubelet",
        "source": {}
    });
    let sel = FieldSelector::parse(
        "involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Pod,involvedObject.uid=u1",
    )
    .expect("parse");
    assert!(sel.matches("", "Event", &core));
    assert_eq!(
        field_value("", "Event", &core, "source").expect("source"),
        Some("kubelet".into())
    );

    let v1 = json!({
        "metadata": {"name": "web.1", "namespace": "default"},
        "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Pulled", "type": "Normal", "reportingController": "kubelet",
        "deprecatedSource": {"component": "kubelet-old"}
    });
    let sel = FieldSelector::parse("regarding.name=web,reportingController=kubelet,type=Normal")
        .expect("parse");
    assert!(sel.validate("events.k8s.io", "Event").is_ok());
    assert!(sel.matches("events.k8s.io", "Event", &v1));
    assert_eq!(
        field_value("events.k8s.io", "Event", &v1, "source").expect("source"),
        Some("kubelet-old".into())
    );
}

/// A cache evaluates selectors over a projection made once per object; it must give
/// the same answers as evaluating them on the object.
#[test]
fn projections_answer_as_the_object_does() {
    use skiff_api::fields::projection;
    let objects = [
        ("", "Pod", pod()),
        (
            "",
            "Service",
            json!({"metadata": {"name": "s", "namespace": "ns", "labels": {"app": "x", "tier": "7"}},
                   "spec": {"clusterIP": "10.96.0.9", "type": "NodePort"}}),
        ),
        (
            "",
            "Node",
            json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}}),
        ),
        (
            "apps",
            "Deployment",
            json!({"metadata": {"name": "d", "namespace": "ns"}}),
        ),
    ];
    let fields = [
        "",
        "metadata.name=s",
        "metadata.name!=s",
        "metadata.namespace=ns,metadata.name=s",
        "spec.nodeName=node-1",
        "spec.host=node-1",
        "spec.nodeName=",
        "spec.nodeName!=",
        "status.podIPs=10.0.0.1",
        "spec.hostNetwork=false",
        "spec.type=NodePort",
        "spec.unschedulable=true",
        "spec.clusterIP!=None",
        "no.such=field",
    ];
    let labels_sel = [
        "",
        "app=x",
        "app in (x,y)",
        "!app",
        "tier>5",
        "app,tier notin (7)",
    ];
    for (group, kind, obj) in &objects {
        let proj = projection(group, kind, obj);
        let field = |l: &str| proj.iter().find(|(k, _)| *k == l).map(|(_, v)| v.as_str());
        let obj_labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        for f in fields {
            let sel = FieldSelector::parse(f).unwrap();
            assert_eq!(
                sel.matches_projection(group, kind, field),
                sel.matches(group, kind, obj),
                "{kind} {f:?}"
            );
        }
        for l in labels_sel {
            let sel = LabelSelector::parse(l).unwrap();
            let label = |k: &str| obj_labels.and_then(|m| m.get(k)).and_then(Value::as_str);
            assert_eq!(
                sel.matches_lookup(label),
                sel.matches(obj_labels),
                "{kind} {l:?}"
            );
        }
    }
}

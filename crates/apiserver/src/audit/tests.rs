//! The event's encoding, against lines written out by hand from upstream's
//! types (field order, omitted empties, MicroTime, Go's HTML escaping).

use std::collections::BTreeMap;

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn at(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_765_000_000, 0).single().expect("time")
        + chrono::Duration::microseconds(micros)
}

fn create_event() -> Event {
    let mut ev = Event::new(
        Level::Request,
        "5b1d4b3a-7c1e-4b8e-9a55-0d2c6c1f7e11".to_string(),
        at(123_456),
    );
    ev.stage = Stage::ResponseComplete;
    ev.stage_timestamp = at(2_000_001);
    ev.request_uri =
        "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create&fieldValidation=Strict"
            .to_string();
    ev.verb = "create".to_string();
    ev.user = UserInfo {
        username: "admin".to_string(),
        groups: vec![
            "system:masters".to_string(),
            "system:authenticated".to_string(),
        ],
        ..Default::default()
    };
    ev.source_ips = vec!["127.0.0.1".to_string()];
    ev.user_agent = "kubectl/v1.33.0 (linux/amd64) kubernetes/abc".to_string();
    ev.object_ref = Some(ObjectRef {
        resource: "configmaps".to_string(),
        namespace: "default".to_string(),
        name: "c1".to_string(),
        api_version: "v1".to_string(),
        ..Default::default()
    });
    ev.response_status = Some(ResponseStatus {
        code: 201,
        ..Default::default()
    });
    ev.request_object = Some(json!({"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "c1"}, "data": {"k": "<v>"}}));
    ev.annotations = BTreeMap::from([
        (DECISION_ANNOTATION.to_string(), "allow".to_string()),
        (REASON_ANNOTATION.to_string(), String::new()),
    ]);
    ev
}

#[test]
fn a_create_encodes_as_upstream_writes_it() {
    let line = String::from_utf8(create_event().encode()).expect("utf-8");
    let want = concat!(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","#,
        r#""auditID":"5b1d4b3a-7c1e-4b8e-9a55-0d2c6c1f7e11","stage":"ResponseComplete","#,
        r#""requestURI":"/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create\u0026fieldValidation=Strict","#,
        r#""verb":"create","user":{"username":"admin","groups":["system:masters","system:authenticated"]},"#,
        r#""sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.33.0 (linux/amd64) kubernetes/abc","#,
        r#""objectRef":{"resource":"configmaps","namespace":"default","name":"c1","apiVersion":"v1"},"#,
        r#""responseStatus":{"metadata":{},"code":201},"#,
        r#""requestObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c1"},"data":{"k":"\u003cv\u003e"}},"#,
        r#""requestReceivedTimestamp":"2025-12-06T05:46:40.123456Z","#,
        r#""stageTimestamp":"2025-12-06T05:46:42.000001Z","#,
        r#""annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#,
        "\n"
    );
    assert_eq!(line, want);
}

#[test]
fn a_denied_watch_and_a_failed_authentication_encode_as_upstream() {
    let mut ev = Event::new(Level::Metadata, "id-2".to_string(), at(0));
    ev.stage = Stage::ResponseComplete;
    ev.request_uri = "/api/v1/secrets?watch=true".to_string();
    ev.verb = "watch".to_string();
    ev.user = UserInfo {
        username: "system:serviceaccount:default:robot".to_string(),
        uid: "u-1".to_string(),
        groups: vec!["system:serviceaccounts".to_string()],
        extra: BTreeMap::from([(
            "authentication.kubernetes.io/credential-id".to_string(),
            vec!["JTI=j".to_string()],
        )]),
    };
    ev.impersonated_user = Some(UserInfo {
        username: "jane".to_string(),
        ..Default::default()
    });
    ev.object_ref = Some(ObjectRef {
        resource: "secrets".to_string(),
        api_version: "v1".to_string(),
        ..Default::default()
    });
    ev.response_status = Some(ResponseStatus {
        status: "Failure".to_string(),
        message: "secrets is forbidden: no".to_string(),
        reason: "Forbidden".to_string(),
        details: Some(json!({"kind": "secrets"})),
        code: 403,
        ..Default::default()
    });
    ev.annotations = BTreeMap::from([
        (DECISION_ANNOTATION.to_string(), "forbid".to_string()),
        (REASON_ANNOTATION.to_string(), String::new()),
    ]);
    let line = String::from_utf8(ev.encode()).expect("utf-8");
    let want = concat!(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-2","#,
        r#""stage":"ResponseComplete","requestURI":"/api/v1/secrets?watch=true","verb":"watch","#,
        r#""user":{"username":"system:serviceaccount:default:robot","uid":"u-1","groups":["system:serviceaccounts"],"#,
        r#""extra":{"authentication.kubernetes.io/credential-id":["JTI=j"]}},"#,
        r#""impersonatedUser":{"username":"jane"},"#,
        r#""objectRef":{"resource":"secrets","apiVersion":"v1"},"#,
        r#""responseStatus":{"metadata":{},"status":"Failure","message":"secrets is forbidden: no","reason":"Forbidden","details":{"kind":"secrets"},"code":403},"#,
        r#""requestReceivedTimestamp":"2025-12-06T05:46:40.000000Z","stageTimestamp":"2025-12-06T05:46:40.000000Z","#,
        r#""annotations":{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}"#,
        "\n"
    );
    assert_eq!(line, want);

    // Authentication failed: no user at all, still `"user":{}`.
    let mut ev = Event::new(Level::Metadata, "id-3".to_string(), at(0));
    ev.stage = Stage::ResponseStarted;
    ev.request_uri = "/version".to_string();
    ev.verb = "get".to_string();
    ev.response_status = Some(ResponseStatus {
        code: 401,
        ..Default::default()
    });
    let line = String::from_utf8(ev.encode()).expect("utf-8");
    assert!(
        line.contains(r#""verb":"get","user":{},"responseStatus":{"metadata":{},"code":401},"#),
        "{line}"
    );
}

#[test]
fn separators_go_escaped_and_lines_stay_single() {
    let mut ev = Event::new(Level::Metadata, "x".to_string(), at(0));
    ev.user_agent = "a\u{2028}b\u{2029}c\nd".to_string();
    let line = String::from_utf8(ev.encode()).expect("utf-8");
    assert!(
        line.contains(r#""userAgent":"a\u2028b\u2029c\nd""#),
        "{line}"
    );
    assert_eq!(line.matches('\n').count(), 1);
    assert!(line.ends_with('\n'));
}

#[test]
fn audit_ids_are_reused_or_made() {
    let mut headers = http::HeaderMap::new();
    let made = request_id(&headers);
    assert_eq!(made.len(), 36, "{made}");
    assert_ne!(made, request_id(&headers));
    headers.insert(AUDIT_ID_HEADER, http::HeaderValue::from_static("mine"));
    assert_eq!(request_id(&headers), "mine");
}

#[test]
fn a_bad_policy_file_names_the_flag_and_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yaml");
    std::fs::write(
        &file,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n",
    )
    .expect("write");
    let e = Settings::load("-".into(), Some(&file))
        .expect_err("refused")
        .to_string();
    assert!(e.starts_with("--audit-policy-file "), "{e}");
    assert!(
        e.ends_with(r#"rules[0].level: Unsupported value: "Everything": supported values: "None", "Metadata", "Request", "RequestResponse""#),
        "{e}"
    );
    let e = Settings::load("-".into(), Some(&dir.path().join("missing")))
        .expect_err("refused")
        .to_string();
    assert!(e.starts_with("--audit-policy-file "), "{e}");
    let ok = Settings::load("-".into(), None).expect("default");
    assert_eq!(ok.policy, Policy::metadata_for_all());
}

#[test]
fn a_full_channel_drops_and_counts_never_waits() {
    let (sink, mut rx) = writer::Sink::detached(2);
    let metrics = AuditMetrics::default();
    let auditor = Auditor {
        policy: Policy::metadata_for_all(),
        sink,
        metrics: metrics.clone(),
    };
    let ev = Event::new(Level::Metadata, "x".to_string(), at(0));
    for _ in 0..5 {
        auditor.emit(&ev);
    }
    assert_eq!(metrics.events.get(), 5);
    let lost = metrics
        .errors
        .get_or_create(&PluginLabel {
            plugin: "log".to_string(),
        })
        .get();
    assert_eq!(lost, 3);
    // The two that fit are the encoded event.
    assert_eq!(rx.try_recv().expect("queued"), ev.encode());
}

#[test]
fn the_counters_are_served_as_upstreams() {
    let metrics = crate::metrics::Metrics::default();
    let (sink, _rx) = writer::Sink::detached(1);
    let auditor = Auditor {
        policy: Policy::metadata_for_all(),
        sink,
        metrics: metrics.audit.clone(),
    };
    let ev = Event::new(Level::Metadata, "x".to_string(), at(0));
    auditor.emit(&ev);
    auditor.emit(&ev);
    let text = metrics.render();
    assert!(text.contains("apiserver_audit_event_total 2"), "{text}");
    assert!(
        text.contains(r#"apiserver_audit_error_total{plugin="log"} 1"#),
        "{text}"
    );
}

/// An auditor whose events stay in a channel the test reads.
fn auditor_with(
    policy: Policy,
) -> (
    std::sync::Arc<Auditor>,
    tokio::sync::mpsc::Receiver<Vec<u8>>,
) {
    let (sink, rx) = writer::Sink::detached(64);
    let auditor = Auditor {
        policy,
        sink,
        metrics: AuditMetrics::default(),
    };
    (std::sync::Arc::new(auditor), rx)
}

fn drain(rx: &mut tokio::sync::mpsc::Receiver<Vec<u8>>) -> Vec<serde_json::Value> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|line| serde_json::from_slice(&line).expect("json"))
        .collect()
}

fn request(method: &str, uri: &str) -> http::Request<axum::body::Body> {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("user-agent", "x".repeat(1100))
        .body(axum::body::Body::empty())
        .expect("request")
}

#[test]
fn a_panicking_handler_leaves_a_panic_event() {
    let (auditor, mut rx) = auditor_with(Policy::metadata_for_all());
    let mut record = Record::new(auditor, "p-1", &request("GET", "/api/v1/pods"));
    record.authenticated(&crate::authn::User::admin());
    record.panicked("boom");
    let events = drain(&mut rx);
    let stages: Vec<_> = events.iter().map(|e| e["stage"].clone()).collect();
    assert_eq!(stages, [json!("RequestReceived"), json!("Panic")]);
    assert_eq!(
        events[1]["responseStatus"],
        json!({"metadata": {}, "status": "Failure", "message": "APIServer panic'd: boom",
               "reason": "InternalError", "code": 500})
    );
    // Upstream's cap on the User-Agent.
    let ua = events[0]["userAgent"].as_str().expect("ua");
    assert_eq!(ua.len(), 1024 + "...TRUNCATED".len());
    assert!(ua.ends_with("...TRUNCATED"));
}

#[tokio::test]
async fn a_long_running_response_completes_when_its_body_ends() {
    use http_body_util::BodyExt;
    let (auditor, mut rx) = auditor_with(Policy::metadata_for_all());
    let mut record = Record::new(
        auditor,
        "w-1",
        &request("GET", "/api/v1/namespaces/default/pods?watch=true"),
    );
    record.authenticated(&crate::authn::User::admin());
    let resp = record
        .finish(axum::response::Response::new(axum::body::Body::from(
            "{\"type\":\"ADDED\"}\n",
        )))
        .await;
    let stages = |events: Vec<serde_json::Value>| -> Vec<String> {
        events
            .iter()
            .map(|e| e["stage"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        stages(drain(&mut rx)),
        ["RequestReceived", "ResponseStarted"]
    );
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"{\"type\":\"ADDED\"}\n");
    assert_eq!(stages(drain(&mut rx)), ["ResponseComplete"]);
}

#[test]
fn omitted_stages_and_level_none_send_nothing() {
    let policy = Policy::parse(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: None\n  users: [admin]\n- level: Metadata\n",
    )
    .expect("policy");
    let (auditor, mut rx) = auditor_with(policy);
    let mut record = Record::new(auditor.clone(), "n-1", &request("GET", "/api/v1/pods"));
    record.authenticated(&crate::authn::User::admin());
    record.panicked("boom");
    assert!(drain(&mut rx).is_empty());
    let mut record = Record::new(auditor, "n-2", &request("GET", "/api/v1/pods"));
    record.authenticated(&crate::authn::User::node("n1"));
    record.panicked("boom");
    let events = drain(&mut rx);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["stage"], "Panic");
}

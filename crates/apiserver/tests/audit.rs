//! The audit log (issue 17), on one in-process API server over a memory
//! store with a policy that logs secrets at Metadata, configmaps at Request
//! and the rest at Metadata: a create, a get, a ServiceAccount's 403, a
//! watch and a 401 each leave upstream's events (level, stages, user,
//! objectRef, code, decision), a secret's body never reaches the log, and
//! every response's `Audit-ID` header is its events' `auditID`.
//!
//! The server listens on loopback; run this inside a network namespace of its own
//! (`unshare -n`) when other servers share the machine.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::start_with;

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitManagedFields: true
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets"]
  - level: Request
    resources:
      - group: ""
        resources: ["configmaps"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["namespaces"]
  - level: Metadata
"#;

const SA: &str = "system:serviceaccount:default:robot";
/// What must never be in the log: a secret's value, plain and base64.
const SECRET_VALUE: &str = "hunter2-audit-secret";
const SECRET_VALUE_B64: &str = "aHVudGVyMi1hdWRpdC1zZWNyZXQ=";

fn audit_id(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(k, _)| k == "audit-id")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no Audit-ID header in {headers:?}"))
}

/// The log's events of `id`, once `stages` of them are there.
async fn events_of(log: &Path, id: &str, stages: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("one JSON event a line"))
            .filter(|e| e["auditID"] == id)
            .collect();
        if events.len() >= stages {
            return events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{id}: {} of {stages} events after 10s: {events:?}",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stages(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["stage"].as_str().expect("stage"))
        .collect()
}

/// What every event of a request shares.
fn assert_common(events: &[Value], level: &str, verb: &str, user: &str) {
    for e in events {
        assert_eq!(e["kind"], "Event", "{e}");
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1", "{e}");
        assert_eq!(e["level"], level, "{e}");
        assert_eq!(e["verb"], verb, "{e}");
        assert_eq!(e["user"]["username"].as_str().unwrap_or(""), user, "{e}");
        assert_eq!(e["sourceIPs"], json!(["127.0.0.1"]), "{e}");
        for t in ["requestReceivedTimestamp", "stageTimestamp"] {
            let ts = e[t].as_str().expect("timestamp");
            // RFC 3339 with microseconds, UTC: 2026-12-07T02:33:56.123456Z.
            assert_eq!(ts.len(), 27, "{t}: {ts}");
            assert!(
                ts.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
                "{ts}"
            );
        }
    }
    if let Some(first) = events.first().filter(|e| e["stage"] == "RequestReceived") {
        assert_eq!(
            first["stageTimestamp"], first["requestReceivedTimestamp"],
            "{first}"
        );
        assert!(first.get("annotations").is_none(), "{first}");
        assert!(first.get("responseStatus").is_none(), "{first}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_leave_upstreams_audit_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, POLICY).expect("policy");
    let log = dir.path().join("log/audit.log");
    let settings =
        skiff_apiserver::audit::Settings::load(log.clone(), Some(&policy_file)).expect("settings");
    let (_running, c) = start_with(dir.path(), Some(settings)).await;
    let admin = c.admin.clone();

    // A create with its own Audit-ID: Request level, the object in the log.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c1"}, "data": {"colour": "blue"}});
    let (code, headers, body) = c
        .call_headers(
            &admin,
            &[("Audit-ID", "test-create-c1")],
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(&cm),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(audit_id(&headers), "test-create-c1");
    let events = events_of(&log, "test-create-c1", 2).await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    assert_common(&events, "Request", "create", "admin");
    assert!(events[0].get("requestObject").is_none(), "{}", events[0]);
    let done = &events[1];
    assert_eq!(
        done["requestURI"], "/api/v1/namespaces/default/configmaps",
        "{done}"
    );
    assert_eq!(
        done["objectRef"],
        json!({"resource": "configmaps", "namespace": "default", "name": "c1", "apiVersion": "v1"})
    );
    assert_eq!(done["responseStatus"], json!({"metadata": {}, "code": 201}));
    assert_eq!(done["requestObject"], cm);
    assert!(done.get("responseObject").is_none(), "{done}");
    assert_eq!(
        done["annotations"]["authorization.k8s.io/decision"], "allow",
        "{done}"
    );
    assert!(
        done["user"]["groups"]
            .as_array()
            .expect("groups")
            .contains(&json!("system:masters")),
        "{done}"
    );

    // A get: a new audit ID, the same in the header and the log.
    let (code, headers, _) = c
        .call_headers(
            &admin,
            &[],
            "GET",
            "/api/v1/namespaces/default/configmaps/c1",
            None,
        )
        .await;
    assert_eq!(code, 200);
    let id = audit_id(&headers);
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let events = events_of(&log, &id, 2).await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    assert_common(&events, "Request", "get", "admin");
    assert_eq!(events[1]["objectRef"]["name"], "c1");
    assert_eq!(events[1]["responseStatus"]["code"], 200);
    assert!(events[1].get("requestObject").is_none());

    // A secret: Metadata only, its value nowhere in the log.
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s1"}, "data": {"password": SECRET_VALUE_B64},
        "stringData": {"other": SECRET_VALUE}});
    let (code, headers, body) = c
        .call_headers(
            &admin,
            &[],
            "POST",
            "/api/v1/namespaces/default/secrets",
            Some(&secret),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let events = events_of(&log, &audit_id(&headers), 2).await;
    assert_common(&events, "Metadata", "create", "admin");
    assert_eq!(events[1]["objectRef"]["name"], "s1");
    assert!(events[1].get("requestObject").is_none());

    // A ServiceAccount without bindings: 403, forbid, nothing read of its body.
    let token = support::robot(&c).await;
    let (code, headers, body) = c
        .call_headers(
            &token,
            &[],
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(&json!({"metadata": {"name": "refused"}})),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    let events = events_of(&log, &audit_id(&headers), 2).await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    assert_common(&events, "Request", "create", SA);
    let done = &events[1];
    assert_eq!(
        done["annotations"]["authorization.k8s.io/decision"], "forbid",
        "{done}"
    );
    assert!(
        done["annotations"]
            .get("authorization.k8s.io/reason")
            .is_some(),
        "{done}"
    );
    assert_eq!(done["responseStatus"]["code"], 403);
    assert_eq!(done["responseStatus"]["status"], "Failure");
    assert_eq!(done["responseStatus"]["reason"], "Forbidden");
    assert_eq!(done["responseStatus"]["message"], body["message"]);
    assert!(done.get("requestObject").is_none(), "{done}");
    assert!(done["user"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(
        done["user"]["groups"]
            .as_array()
            .expect("groups")
            .contains(&json!("system:serviceaccounts:default")),
        "{done}"
    );

    // A watch: long-running, so ResponseStarted before ResponseComplete.
    let (code, headers, _) = c
        .call_headers(
            &admin,
            &[],
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
            None,
        )
        .await;
    assert_eq!(code, 200);
    let events = events_of(&log, &audit_id(&headers), 3).await;
    assert_eq!(
        stages(&events),
        ["RequestReceived", "ResponseStarted", "ResponseComplete"]
    );
    assert_common(&events, "Request", "watch", "admin");
    assert_eq!(
        events[2]["requestURI"],
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1"
    );
    assert_eq!(events[1]["responseStatus"]["code"], 200);
    assert_eq!(
        events[2]["objectRef"],
        json!({"resource": "configmaps", "namespace": "default", "apiVersion": "v1"})
    );

    // A bad token: upstream's one ResponseStarted event, no user, 401.
    let (code, headers, _) = c
        .call_headers(
            "not-a-token",
            &[],
            "GET",
            "/api/v1/namespaces/default/pods",
            None,
        )
        .await;
    assert_eq!(code, 401);
    let events = events_of(&log, &audit_id(&headers), 1).await;
    assert_eq!(stages(&events), ["ResponseStarted"]);
    assert_common(&events, "Metadata", "list", "");
    assert_eq!(events[0]["user"], json!({}));
    assert_eq!(events[0]["responseStatus"]["code"], 401);
    assert_eq!(events[0]["objectRef"]["resource"], "pods");

    // Impersonation: the event names the requester and the user acted as.
    let (code, headers, _) = c
        .call_headers(
            &admin,
            &[("Impersonate-User", "jane")],
            "GET",
            "/api/v1/namespaces/default/configmaps",
            None,
        )
        .await;
    assert_eq!(code, 403);
    let events = events_of(&log, &audit_id(&headers), 2).await;
    assert_common(&events, "Request", "list", "admin");
    assert_eq!(events[1]["impersonatedUser"]["username"], "jane");
    assert_eq!(
        events[1]["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );

    // RequestResponse: both objects, without managed fields (omitManagedFields).
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "audited"}});
    let (code, headers, created) = c
        .call_headers(
            &admin,
            &[],
            "POST",
            "/api/v1/namespaces?fieldManager=audit-test",
            Some(&ns),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert!(created["metadata"]["managedFields"].is_array(), "{created}");
    let events = events_of(&log, &audit_id(&headers), 2).await;
    assert_common(&events, "RequestResponse", "create", "admin");
    let done = &events[1];
    assert_eq!(done["requestObject"], ns);
    assert_eq!(done["responseObject"]["kind"], "Namespace", "{done}");
    assert_eq!(
        done["responseObject"]["metadata"]["uid"],
        created["metadata"]["uid"]
    );
    assert!(
        done["responseObject"]["metadata"]
            .get("managedFields")
            .is_none(),
        "{done}"
    );

    // A path served before authentication: logged as the anonymous user.
    let (code, headers, _) = c.call_headers(&admin, &[], "GET", "/version", None).await;
    assert_eq!(code, 200);
    let events = events_of(&log, &audit_id(&headers), 2).await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    assert_common(&events, "Metadata", "get", "system:anonymous");
    assert!(events[1].get("objectRef").is_none(), "{}", events[1]);

    // Give the writer a moment for anything late, then: no secret anywhere.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(SECRET_VALUE), "a secret's value was logged");
    assert!(
        !text.contains(SECRET_VALUE_B64),
        "a secret's data was logged"
    );
}

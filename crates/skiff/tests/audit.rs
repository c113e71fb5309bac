//! The audit log end to end (issue 17): the real `skiff server` with
//! `--audit-log-path` and `--audit-policy-file`, real kubectl. A `kubectl create
//! configmap` is in the log with its object, a `kubectl get` carries the
//! `Audit-Id` its events have, and a bad policy file stops the server before it
//! starts, naming the flag and the field.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{skiff_bin, Cluster};

/// ConfigMaps with their bodies; nothing else (the controllers' own traffic
/// stays out of the log).
const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Request
    resources:
      - group: ""
        resources: ["configmaps"]
  - level: None
"#;

/// The first event `pick` chooses, waiting up to 10s for it; the whole log when
/// there is none.
fn find(log: &std::path::Path, pick: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = events(log).into_iter().find(&pick) {
            return e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such event in:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn events(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event a line"))
        .collect()
}

#[test]
fn kubectl_writes_show_up_in_the_audit_log() {
    let files = tempfile::tempdir().expect("tempdir");
    let policy = files.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let log = files.path().join("audit/audit.log");
    let c = Cluster::start_with(&[
        "--disable",
        "agent,proxy,dns",
        "--audit-log-path",
        log.to_str().expect("path"),
        "--audit-policy-file",
        policy.to_str().expect("path"),
    ]);

    c.k(&[
        "create",
        "configmap",
        "audited",
        "--from-literal=colour=blue",
    ]);
    let created = find(&log, |e| {
        e["verb"] == "create" && e["objectRef"]["name"] == "audited"
    });
    assert_eq!(created["kind"], "Event", "{created}");
    assert_eq!(created["apiVersion"], "audit.k8s.io/v1", "{created}");
    assert_eq!(created["level"], "Request", "{created}");
    assert_eq!(created["stage"], "ResponseComplete", "{created}");
    // The admin kubeconfig's client certificate.
    assert_eq!(created["user"]["username"], "system:admin", "{created}");
    assert_eq!(created["objectRef"]["resource"], "configmaps", "{created}");
    assert_eq!(created["objectRef"]["namespace"], "default", "{created}");
    assert_eq!(created["responseStatus"]["code"], 201, "{created}");
    assert_eq!(
        created["requestObject"]["data"]["colour"], "blue",
        "{created}"
    );
    assert!(
        created["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("kubectl")),
        "{created}"
    );
    assert_eq!(
        created["annotations"]["authorization.k8s.io/decision"], "allow",
        "{created}"
    );
    // The policy's omitStages: no RequestReceived at all.
    let all = events(&log);
    assert!(
        all.iter().all(|e| e["stage"] != "RequestReceived"),
        "{all:?}"
    );
    // Level None for the rest: only configmaps are in the log.
    assert!(
        all.iter()
            .all(|e| e["objectRef"]["resource"] == "configmaps"),
        "{all:?}"
    );

    // kubectl -v=8 shows the response headers: the Audit-Id is the event's auditID.
    let out = c.kubectl(&["get", "configmap", "audited", "-v=8"]);
    assert!(out.status.success());
    let trace = String::from_utf8_lossy(&out.stderr).into_owned();
    // Discovery went first (not in the log): the configmap's GET is the last request.
    let id = trace
        .lines()
        .rev()
        .find_map(|l| {
            l.split_once("Audit-Id: ")
                .map(|(_, id)| id.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Audit-Id header in:\n{trace}"));
    let got = find(&log, |e| e["auditID"] == id);
    assert_eq!(got["verb"], "get", "{got}");
    assert_eq!(got["objectRef"]["name"], "audited", "{got}");

    // A bad policy: the server does not start, and says which flag and field.
    let bad = files.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n  - level: Loud\n",
    )
    .expect("bad policy");
    let out = c
        .netns
        .command(skiff_bin())
        .args(["server", "--listen", "127.0.0.1:6444", "--data-dir"])
        .arg(files.path().join("refused"))
        .arg("--audit-log-path")
        .arg(files.path().join("refused.log"))
        .arg("--audit-policy-file")
        .arg(&bad)
        .output()
        .expect("run skiff");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "started with a bad policy:\n{text}");
    assert!(
        text.contains("--audit-policy-file")
            && text.contains("rules[1].level: Unsupported value: \"Loud\""),
        "{text}"
    );
    assert!(!files.path().join("refused.log").exists());
}

//! configMap, secret and projected volumes follow their objects' updates on a
//! node whose agent runs as its node identity (`system:node:<name>`), as kubelet's
//! `Watch` change detection does: one single-object watch per referenced object,
//! shared by the pods that reference it and stopped with the last of them. A real
//! `skiff server` (agent on; controllers, proxy, DNS and netpol off) in a
//! test-made network namespace, pods of real images (the stand-in busybox from a
//! registry in that namespace: volumes are mounted into image containers), read
//! with the real `kubectl exec`; the audit log shows who asked what and how it
//! was answered.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::registry::{image_node, standin_storage, start_registry};
use support::{eventually, Cluster, Netns};

const NODE: &str = "test-node";
const NODE_USER: &str = "system:node:test-node";

fn pod(name: &str, volumes: Value, mounts: Value) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox", "args": ["sleep", "3600"],
                            "volumeMounts": mounts}],
            "volumes": volumes,
        },
    })
    .to_string()
}

fn running(c: &Cluster, name: &str) {
    eventually(Duration::from_secs(60), || {
        let p: Value = serde_json::from_str(&c.k(&["get", "pod", name, "-o", "json"])).ok()?;
        (p["status"]["phase"] == "Running").then_some(())
    });
}

/// Waits until `cat` of `path` in the pod's container prints `want`; panics
/// after 30 s with what it printed.
fn wait_file(c: &Cluster, pod: &str, path: &str, want: &str) {
    let mut last = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let out = c.kubectl(&["exec", pod, "--", "cat", path]);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && last == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{pod}:{path} is {last:?}, not {want:?}\n{}", c.log());
}

/// The agent's log lines that say it started (or stopped) watching `source`.
fn watch_lines(c: &Cluster, what: &str, source: &str) -> usize {
    c.log()
        .lines()
        .filter(|l| l.contains(what) && l.contains(source))
        .count()
}

const STARTED: &str = "watching a volume source for the pods that reference it";
const STOPPED: &str = "stopped watching a volume source";

fn audit_events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn volumes_follow_their_objects_through_single_object_watches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit = dir.path().join("audit.log");
    let ns = Netns::new();
    let _registry = start_registry(&ns, standin_storage(), dir.path());
    let c = image_node(
        ns,
        dir.path(),
        NODE,
        "controllers,proxy,dns,netpol",
        &["--audit-log-path", audit.to_str().expect("path")],
    );
    eventually(Duration::from_secs(20), || {
        c.kubectl(&["get", "node", NODE])
            .status
            .success()
            .then_some(())
    });
    // What the agent did before: a cluster-wide watch, which its identity may not.
    let can = c.kubectl(&[
        "auth",
        "can-i",
        "watch",
        "configmaps",
        "--all-namespaces",
        "--as",
        NODE_USER,
        "--as-group",
        "system:nodes",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&can.stdout).trim(),
        "no - can only read namespaced object of this type"
    );

    c.k(&["create", "configmap", "shared", "--from-literal=mode=slow"]);
    c.k(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=one",
    ]);
    c.k(&["create", "configmap", "unused", "--from-literal=x=1"]);
    let cm_volume = json!([{"name": "v", "configMap": {"name": "shared"}}]);
    let mount = json!([{"name": "v", "mountPath": "/v"}]);
    c.apply(&pod("reader-a", cm_volume, mount.clone()));
    // Projected: the same ConfigMap with the Secret, in one directory.
    c.apply(&pod(
        "reader-b",
        json!([{"name": "v", "projected": {"sources": [
            {"configMap": {"name": "shared"}},
            {"secret": {"name": "creds"}},
        ]}}]),
        mount.clone(),
    ));
    c.apply(&pod(
        "reader-c",
        json!([{"name": "v", "secret": {"secretName": "creds"}}]),
        mount,
    ));
    for p in ["reader-a", "reader-b", "reader-c"] {
        running(&c, p);
    }
    wait_file(&c, "reader-a", "/v/mode", "slow");
    wait_file(&c, "reader-b", "/v/mode", "slow");
    wait_file(&c, "reader-b", "/v/password", "one");
    wait_file(&c, "reader-c", "/v/password", "one");
    // One watch per object, shared by the pods that reference it.
    assert_eq!(watch_lines(&c, STARTED, "configmap default/shared"), 1);
    assert_eq!(watch_lines(&c, STARTED, "secret default/creds"), 1);
    assert_eq!(watch_lines(&c, STARTED, "configmap default/unused"), 0);

    // Updates reach every pod that reads the object, through configMap, secret
    // and projected volumes alike.
    c.k(&[
        "patch",
        "configmap",
        "shared",
        "-p",
        r#"{"data": {"mode": "fast"}}"#,
    ]);
    wait_file(&c, "reader-a", "/v/mode", "fast");
    wait_file(&c, "reader-b", "/v/mode", "fast");
    c.k(&[
        "patch",
        "secret",
        "creds",
        "-p",
        r#"{"stringData": {"password": "two"}}"#,
    ]);
    wait_file(&c, "reader-b", "/v/password", "two");
    wait_file(&c, "reader-c", "/v/password", "two");

    // The watch goes with the last pod that references it, not the first.
    c.k(&["delete", "pod", "reader-a", "--wait=true", "--timeout=60s"]);
    eventually(Duration::from_secs(20), || {
        c.log().contains("pod removed").then_some(())
    });
    assert_eq!(watch_lines(&c, STOPPED, "configmap default/shared"), 0);
    c.k(&["delete", "pod", "reader-b", "--wait=true", "--timeout=60s"]);
    eventually(Duration::from_secs(20), || {
        (watch_lines(&c, STOPPED, "configmap default/shared") == 1).then_some(())
    });
    assert_eq!(watch_lines(&c, STOPPED, "secret default/creds"), 0);
    // reader-c still follows its Secret.
    c.k(&[
        "patch",
        "secret",
        "creds",
        "-p",
        r#"{"stringData": {"password": "three"}}"#,
    ]);
    wait_file(&c, "reader-c", "/v/password", "three");

    // The agent watched as its node identity, one object at a time, and was
    // never refused (the cluster-wide watch it used to make is a 403).
    let log = c.log();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a volume source watch failed"))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let events = audit_events(&audit);
    let agent_reads: Vec<&Value> = events
        .iter()
        .filter(|e| e["user"]["username"] == NODE_USER)
        .filter(|e| {
            matches!(
                e["objectRef"]["resource"].as_str(),
                Some("configmaps" | "secrets")
            )
        })
        .collect();
    // Every list and watch names one object: the ConfigMap and Secret the pods
    // read, never the one no pod references.
    let mut watched: Vec<(String, String, String)> = agent_reads
        .iter()
        .filter(|e| matches!(e["verb"].as_str(), Some("list" | "watch")))
        .map(|e| {
            let uri = e["requestURI"].as_str().unwrap_or_default();
            let name = selected_name(uri).unwrap_or_else(|| panic!("not one object: {uri}"));
            let resource = e["objectRef"]["resource"].as_str().unwrap_or_default();
            let namespace = e["objectRef"]["namespace"].as_str().unwrap_or_default();
            (resource.to_string(), namespace.to_string(), name)
        })
        .collect();
    watched.sort();
    watched.dedup();
    let pair = |r: &str, n: &str| (r.to_string(), "default".to_string(), n.to_string());
    assert_eq!(
        watched,
        vec![pair("configmaps", "shared"), pair("secrets", "creds")]
    );
    assert!(
        agent_reads.iter().any(|e| e["verb"] == "watch"),
        "no watch of the agent in the audit log"
    );
    // Nor anything else the agent asked (its Services, Pods, Node, Lease, events,
    // pod status).
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["user"]["username"] == NODE_USER)
        .filter(|e| e["responseStatus"]["code"] == 403)
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
}

/// The name a request's `fieldSelector=metadata.name=<name>` selects, if that
/// is its only selector.
fn selected_name(uri: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    let selector = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("fieldSelector="))?
        .replace("%3D", "=")
        .replace("%3d", "=");
    let name = selector.strip_prefix("metadata.name=")?;
    (!name.contains(',')).then(|| name.to_string())
}

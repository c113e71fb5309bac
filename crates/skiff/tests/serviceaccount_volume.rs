//! Pods get their ServiceAccount's credentials as upstream's do (issue 17): an
//! image pod finds `token`, `ca.crt` and `namespace` under
//! /var/run/secrets/kubernetes.io/serviceaccount (written atomically, through
//! `..data`), `KUBERNETES_SERVICE_HOST`/`PORT` point at the `kubernetes`
//! ClusterIP, and the token authenticates as `system:serviceaccount:<ns>:default`
//! there, with curl verifying the server against the mounted `ca.crt` at the
//! ClusterIP as in-cluster client configuration does, from inside the pod's
//! network namespace (the `kubernetes` endpoints name the API server's
//! loopback listen address; the node lets Service DNAT reach it). A pod with
//! `automountServiceAccountToken: false` gets none of it.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::registry::{image_node, run_image_script, start_registry, Registry, REGISTRY};
use support::{eventually, Cluster, Netns};

const NODE: &str = "sa-node";
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

struct ImageCluster {
    c: Cluster,
    _registry: Registry,
    _dir: tempfile::TempDir,
}

/// A full node with a registry beside it, `docker.io` mirrored to it.
fn start() -> ImageCluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = Netns::new();
    let registry = start_registry(&ns, &dir.path().join("registry"), dir.path());
    let out_dir = dir.path().join("images");
    run_image_script(None, "build", &[out_dir.as_os_str()]);
    run_image_script(
        Some(&ns),
        "build",
        &["--push".as_ref(), REGISTRY.as_ref(), out_dir.as_os_str()],
    );
    let c = image_node(ns, dir.path(), NODE, "netpol", &[]);
    ImageCluster {
        c,
        _registry: registry,
        _dir: dir,
    }
}

fn pod(name: &str, pod_extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 0
{pod_extra}
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
"#
    )
}

fn running(c: &Cluster, name: &str) -> Value {
    eventually(Duration::from_secs(90), || {
        let out = c.kubectl(&["get", "pod", name, "-o", "json"]);
        let p: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (p["status"]["phase"] == "Running").then_some(p)
    })
}

fn exec(c: &Cluster, pod: &str, script: &str) -> (bool, String, String) {
    let out = c.kubectl(&["exec", pod, "--", "sh", "-c", script]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const REVIEW: &str = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;

#[test]
fn pods_get_their_service_account_token() {
    let ic = start();
    let c = &ic.c;
    // The serviceaccount controller makes `default` (pods would wait for it).
    eventually(Duration::from_secs(30), || {
        c.kubectl(&["get", "serviceaccount", "default"])
            .status
            .success()
            .then_some(())
    });
    c.apply(&pod("with-token", ""));
    let p = running(c, "with-token");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    let vol = p["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no token volume in {}", p["spec"]));
    assert_eq!(
        p["spec"]["containers"][0]["volumeMounts"][0],
        serde_json::json!({"name": vol["name"], "mountPath": MOUNT, "readOnly": true})
    );

    // The files, written through `..data` as kubelet's atomic writer does.
    let (ok, out, err) = exec(
        c,
        "with-token",
        &format!("cd {MOUNT} && ls && readlink token && cat namespace"),
    );
    assert!(ok, "{out}{err}\n{}", c.log());
    let lines: Vec<&str> = out.lines().collect();
    for f in ["ca.crt", "namespace", "token"] {
        assert!(lines.contains(&f), "{f} missing: {out}");
    }
    assert!(out.contains("..data/token"), "{out}");
    assert!(out.trim_end().ends_with("default"), "{out}");
    let (_, ca, _) = exec(c, "with-token", &format!("cat {MOUNT}/ca.crt"));
    let want_ca = std::fs::read_to_string(c.data_dir().join("ca.crt")).expect("cluster CA");
    assert_eq!(ca, want_ca);
    let (_, token, _) = exec(c, "with-token", &format!("cat {MOUNT}/token"));
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let (_, ro, _) = exec(
        c,
        "with-token",
        &format!("echo x > {MOUNT}/token && echo writable || echo read-only"),
    );
    assert_eq!(ro.trim(), "read-only");

    // The environment names the `kubernetes` ClusterIP.
    let cluster_ip = c.k(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let (_, env, _) = exec(
        c,
        "with-token",
        "echo $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT $KUBERNETES_PORT",
    );
    assert_eq!(
        env.trim(),
        format!("{cluster_ip} 443 tcp://{cluster_ip}:443"),
        "{env}"
    );

    // In-cluster configuration: the ClusterIP, verified with the mounted CA.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca).expect("write ca");
    let uid = c.k(&["get", "pod", "with-token", "-o", "jsonpath={.metadata.uid}"]);
    let state = c
        .data_dir()
        .join(format!("agent/pods/{}/state.json", uid.trim()));
    let state: Value =
        serde_json::from_slice(&std::fs::read(&state).expect("pod state")).expect("state json");
    let sandbox = state["sandbox"]["pid"].as_u64().expect("sandbox pid");
    let script = format!(
        "nsenter -t {sandbox} -n curl -sS --max-time 10 --cacert {} -H 'Authorization: Bearer {}' \
         -H 'Content-Type: application/json' -X POST -d '{REVIEW}' \
         https://{cluster_ip}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        ca_file.display(),
        token.trim()
    );
    let review = eventually(Duration::from_secs(30), || {
        let out = c.sh(&script);
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        body.contains("username").then_some(body)
    });
    let review: Value = serde_json::from_str(&review).expect("review json");
    assert_eq!(
        review["status"]["userInfo"]["username"], "system:serviceaccount:default:default",
        "{review}"
    );
    // Automounting off: no volume, no files.
    c.apply(&pod("no-token", "  automountServiceAccountToken: false"));
    let p = running(c, "no-token");
    let names: Vec<&str> = p["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("kube-api-access-")),
        "{names:?}"
    );
    let (ok, out, _) = exec(c, "no-token", &format!("ls {MOUNT}"));
    assert!(!ok, "{out}");
}

//! Controllers end to end (issue 4): the real `skiff server` with its
//! controllers, no node agent, proxy or DNS; the test plays the node agent by
//! creating a Ready Node and patching pods' status (phase, IP, Ready), and by
//! finishing graceful pod deletions as a kubelet would.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, Cluster};

const T: Duration = Duration::from_secs(60);

fn cluster() -> Cluster {
    let c = Cluster::start_with(&["--disable", "agent,proxy,dns"]);
    add_node(&c, "node-1");
    c
}

fn add_node(c: &Cluster, name: &str) {
    c.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n"
    ));
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "reason": "KubeletReady", "message": "test kubelet"}]}});
    c.k(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

fn json_of(c: &Cluster, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&c.k(&a)).expect("kubectl json")
}

fn now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One pass of a fake kubelet over all pods: scheduled pods without an IP get
/// one and become Running and Ready (unless `ready` says otherwise);
/// terminating pods are removed.
fn kubelet(c: &Cluster, ready: impl Fn(&str) -> bool) {
    let pods = json_of(c, &["get", "pods", "-A"]);
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    let mut used: BTreeSet<String> = items
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str().map(String::from))
        .collect();
    for p in &items {
        let (ns, name) = (
            p["metadata"]["namespace"].as_str().unwrap_or(""),
            p["metadata"]["name"].as_str().unwrap_or(""),
        );
        if p["metadata"]["deletionTimestamp"].is_string() {
            let _ = c.kubectl(&[
                "delete",
                "pod",
                "-n",
                ns,
                name,
                "--grace-period=0",
                "--force",
                "--wait=false",
            ]);
            continue;
        }
        if p["spec"]["nodeName"].is_null() || p["status"]["podIP"].is_string() {
            continue;
        }
        let ip = (2..250)
            .map(|i| format!("10.244.0.{i}"))
            .find(|ip| !used.contains(ip))
            .expect("a free IP");
        used.insert(ip.clone());
        let r = if ready(name) { "True" } else { "False" };
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "hostIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": r, "lastTransitionTime": now()},
                           {"type": "ContainersReady", "status": r, "lastTransitionTime": now()}]}});
        let _ = c.kubectl(&[
            "patch",
            "pod",
            "-n",
            ns,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
    }
}

fn all_ready(_: &str) -> bool {
    true
}

/// (ready IPs, not-ready IPs) in the Service's EndpointSlices.
fn slice_ips(c: &Cluster, svc: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let v = json_of(
        c,
        &[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
        ],
    );
    let mut out = (BTreeSet::new(), BTreeSet::new());
    for s in v["items"].as_array().into_iter().flatten() {
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let ip = e["addresses"][0].as_str().unwrap_or("").to_string();
            if e["conditions"]["ready"] == json!(true) {
                out.0.insert(ip);
            } else {
                out.1.insert(ip);
            }
        }
    }
    out
}

/// The ready IPs of the v1 Endpoints object.
fn endpoints_ips(c: &Cluster, svc: &str) -> BTreeSet<String> {
    let out = c.kubectl(&["get", "endpoints", svc, "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(String::from))
        .collect()
}

fn pod_names(c: &Cluster, selector: &str) -> BTreeSet<String> {
    let v = json_of(c, &["get", "pods", "-l", selector]);
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect()
}

/// Waits until the Service has exactly `n` ready endpoints in both APIs.
fn wait_endpoints(c: &Cluster, svc: &str, n: usize) -> BTreeSet<String> {
    eventually(T, || {
        kubelet(c, all_ready);
        let (ready, not_ready) = slice_ips(c, svc);
        let legacy = endpoints_ips(c, svc);
        (ready.len() == n && not_ready.is_empty() && legacy == ready).then_some(ready)
    })
}

#[test]
fn deployment_scaling_updates_slices_and_endpoints() {
    let c = cluster();
    c.k(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=1",
        "--port=80",
    ]);
    c.k(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=80",
    ]);
    let one = wait_endpoints(&c, "web", 1);

    // The slice as upstream writes it.
    let v = json_of(
        &c,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    );
    let slice = &v["items"][0];
    assert!(slice["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .starts_with("web-"));
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["controller"], true);
    assert!(
        slice["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
            .is_string()
    );
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["port"], 80);
    let ep = &slice["endpoints"][0];
    assert_eq!(ep["nodeName"], "node-1");
    assert_eq!(ep["targetRef"]["kind"], "Pod");
    assert_eq!(
        ep["conditions"],
        json!({"ready": true, "serving": true, "terminating": false})
    );

    // Names as upstream: <deploy>-<hash>, <rs>-<5 chars>, and the revision.
    let rs = json_of(&c, &["get", "replicasets", "-l", "app=web"]);
    let rs = &rs["items"][0];
    let rs_name = rs["metadata"]["name"].as_str().unwrap_or("").to_string();
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(rs_name, format!("web-{hash}"));
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let pods = pod_names(&c, "app=web");
    let pod = pods.iter().next().cloned().unwrap_or_default();
    assert_eq!(pod.len(), rs_name.len() + 6, "{pod}");
    assert!(pod.starts_with(&format!("{rs_name}-")));

    // 1 -> 5 -> 1.
    c.k(&["scale", "deployment", "web", "--replicas=5"]);
    let five = wait_endpoints(&c, "web", 5);
    assert!(five.is_superset(&one));
    let out = c.k(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = json_of(&c, &["get", "deployment", "web"]);
    for f in [
        "replicas",
        "readyReplicas",
        "availableReplicas",
        "updatedReplicas",
    ] {
        assert_eq!(d["status"][f], 5, "{f}: {}", d["status"]);
    }
    let describe = c.k(&["describe", "svc", "web"]);
    let line = describe
        .lines()
        .find(|l| l.starts_with("Endpoints:"))
        .unwrap_or_default()
        .to_string();
    for ip in &five {
        assert!(
            line.contains(&format!("{ip}:80")) || line.contains("more..."),
            "{line}"
        );
    }
    c.k(&["scale", "deployment", "web", "--replicas=1"]);
    wait_endpoints(&c, "web", 1);

    // A deleted pod is replaced under a new name; the endpoints follow without
    // anyone touching the Service.
    let svc_rv = json_of(&c, &["get", "svc", "web"])["metadata"]["resourceVersion"].clone();
    let before = pod_names(&c, "app=web");
    let old = before.iter().next().cloned().unwrap_or_default();
    let old_ip = wait_endpoints(&c, "web", 1);
    c.k(&["delete", "pod", &old, "--wait=false"]);
    let after = eventually(T, || {
        kubelet(&c, all_ready);
        let now = pod_names(&c, "app=web");
        (now.len() == 1 && !now.contains(&old)).then_some(now)
    });
    let new_ip = eventually(T, || {
        kubelet(&c, all_ready);
        let ips = wait_endpoints(&c, "web", 1);
        (ips != old_ip).then_some(ips)
    });
    assert_ne!(after, before);
    assert_ne!(new_ip, old_ip);
    assert_eq!(
        json_of(&c, &["get", "svc", "web"])["metadata"]["resourceVersion"],
        svc_rv
    );

    // kubectl get all shows the whole family.
    let all = c.k(&["get", "all"]);
    for want in [
        "pod/web-",
        "service/web",
        "deployment.apps/web",
        &format!("replicaset.apps/{rs_name}"),
    ] {
        assert!(all.contains(want), "{want} missing:\n{all}");
    }
    let events = c.k(&["get", "events"]);
    for reason in [
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "SuccessfulDelete",
        "Scheduled",
    ] {
        assert!(events.contains(reason), "{reason} missing:\n{events}");
    }

    // Deleting the deployment removes its ReplicaSets and pods (garbage collector).
    c.k(&["delete", "deployment", "web"]);
    eventually(T, || {
        kubelet(&c, all_ready);
        let rs = json_of(&c, &["get", "replicasets"]);
        let pods = json_of(&c, &["get", "pods"]);
        (rs["items"].as_array().is_some_and(Vec::is_empty)
            && pods["items"].as_array().is_some_and(Vec::is_empty))
        .then_some(())
    });
}

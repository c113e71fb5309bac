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

/// The test's nodes are Node objects without an agent behind them (no Lease
/// renewals): the node-lifecycle controller must not mark them unreachable
/// while a test runs.
const FLAGS: &[&str] = &[
    "--disable",
    "agent,proxy,dns",
    "--node-monitor-grace-period",
    "1h",
];

fn cluster() -> Cluster {
    let c = Cluster::start_with(FLAGS);
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
    // Deleting the Service removes its slices (owned, garbage-collected) and
    // its Endpoints (endpoints controller).
    c.k(&["delete", "svc", "web"]);
    eventually(T, || {
        let slices = json_of(
            &c,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
            ],
        );
        let eps = c.kubectl(&["get", "endpoints", "web"]);
        (slices["items"].as_array().is_some_and(Vec::is_empty) && !eps.status.success())
            .then_some(())
    });
}

#[test]
fn rolling_update_history_and_undo() {
    let c = cluster();
    c.k(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
    ]);
    eventually(T, || {
        kubelet(&c, all_ready);
        let d = json_of(&c, &["get", "deployment", "web"]);
        (d["status"]["availableReplicas"] == 3).then_some(())
    });
    let hash_of = |rev: &str| {
        let rs = json_of(&c, &["get", "replicasets", "-l", "app=web"]);
        rs["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == rev)
            .map(|r| {
                r["metadata"]["labels"]["pod-template-hash"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
    };
    let first = hash_of("1").expect("revision 1");
    c.k(&["set", "image", "deployment/web", "nginx=nginx:1.25"]);
    eventually(T, || {
        kubelet(&c, all_ready);
        let out = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=1s"]);
        out.status.success().then_some(())
    });
    let second = hash_of("2").expect("revision 2");
    assert_ne!(first, second);
    // Every pod runs the new template; the old ReplicaSet is scaled to zero.
    let pods = json_of(
        &c,
        &["get", "pods", "-l", &format!("pod-template-hash={second}")],
    );
    assert_eq!(pods["items"].as_array().map(Vec::len), Some(3));
    let old = json_of(&c, &["get", "replicaset", &format!("web-{first}")]);
    assert_eq!(old["spec"]["replicas"], 0);

    let history = c.k(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    c.k(&["rollout", "undo", "deployment/web"]);
    eventually(T, || {
        kubelet(&c, all_ready);
        let out = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=1s"]);
        (out.status.success() && hash_of("3").as_deref() == Some(first.as_str())).then_some(())
    });
    let rs = json_of(&c, &["get", "replicaset", &format!("web-{first}")]);
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "1"
    );
    assert_eq!(rs["spec"]["replicas"], 3);
    let d = json_of(&c, &["get", "deployment", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
    let describe = c.k(&["describe", "deployment", "web"]);
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");
}

#[test]
fn statefulset_comes_up_in_order_with_hostnames() {
    let c = cluster();
    c.apply(
        "apiVersion: v1
kind: Service
metadata:
  name: nginx
spec:
  clusterIP: None
  selector:
    app: nginx
  ports:
  - name: web
    port: 80
    targetPort: web
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx
        ports:
        - name: web
          containerPort: 8080
",
    );
    // Each pod appears only once the previous one is Running and Ready.
    let mut order = Vec::new();
    for i in 0..3 {
        let name = format!("web-{i}");
        eventually(T, || {
            pod_names(&c, "app=nginx").contains(&name).then_some(())
        });
        let names = pod_names(&c, "app=nginx");
        assert_eq!(names.len(), i + 1, "{names:?}");
        order.push(name.clone());
        std::thread::sleep(Duration::from_millis(300));
        // Still alone until made ready.
        assert_eq!(pod_names(&c, "app=nginx").len(), i + 1);
        // Schedule and start it.
        eventually(T, || {
            kubelet(&c, all_ready);
            let p = json_of(&c, &["get", "pod", &name]);
            (p["status"]["podIP"].is_string()).then_some(())
        });
        let p = json_of(&c, &["get", "pod", &name]);
        assert_eq!(p["spec"]["hostname"], name.as_str());
        assert_eq!(p["spec"]["subdomain"], "nginx");
        assert_eq!(
            p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            name.as_str()
        );
    }
    assert_eq!(order, ["web-0", "web-1", "web-2"]);
    wait_endpoints(&c, "nginx", 3);
    let v = json_of(
        &c,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=nginx",
        ],
    );
    let slice = &v["items"][0];
    assert_eq!(
        slice["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    // The named targetPort resolves to the container port.
    assert_eq!(slice["ports"][0]["port"], 8080);
    let mut hostnames: Vec<String> = slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["hostname"].as_str().map(String::from))
        .collect();
    hostnames.sort();
    assert_eq!(hostnames, ["web-0", "web-1", "web-2"]);
    eventually(T, || {
        let s = json_of(&c, &["get", "statefulset", "web"]);
        (s["status"]["readyReplicas"] == 3 && s["status"]["replicas"] == 3).then_some(())
    });
    // Scale down: the highest ordinal goes first.
    c.k(&["scale", "statefulset", "web", "--replicas=1"]);
    let left = eventually(T, || {
        kubelet(&c, all_ready);
        let names = pod_names(&c, "app=nginx");
        (names.len() == 1).then_some(names)
    });
    assert!(left.contains("web-0"));
    wait_endpoints(&c, "nginx", 1);
}

#[test]
fn selectorless_endpoints_are_mirrored() {
    let c = cluster();
    c.apply(
        "apiVersion: v1
kind: Service
metadata:
  name: ext
spec:
  ports:
  - name: http
    port: 80
    targetPort: 9376
---
apiVersion: v1
kind: Endpoints
metadata:
  name: ext
subsets:
- addresses:
  - ip: 192.0.2.42
  ports:
  - name: http
    port: 9376
",
    );
    let slice = eventually(T, || {
        let v = json_of(
            &c,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=ext",
            ],
        );
        v["items"].as_array().and_then(|a| a.first().cloned())
    });
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(slice["endpoints"][0]["addresses"][0], "192.0.2.42");
    assert_eq!(slice["ports"][0]["port"], 9376);
    // The Endpoints controller leaves the user's Endpoints alone.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        endpoints_ips(&c, "ext"),
        BTreeSet::from(["192.0.2.42".to_string()])
    );
    // Deleting the Endpoints removes the mirrored slice.
    c.k(&["delete", "endpoints", "ext"]);
    eventually(T, || {
        let v = json_of(
            &c,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=ext",
            ],
        );
        v["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    });
}

#[test]
fn pods_stay_pending_without_a_ready_node() {
    let c = Cluster::start_with(FLAGS);
    c.k(&["run", "lonely", "--image=nginx"]);
    let events = eventually(T, || {
        let out = c.k(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=lonely",
        ]);
        out.contains("FailedScheduling").then_some(out)
    });
    assert!(
        events.contains("no nodes available to schedule pods"),
        "{events}"
    );
    let p = json_of(&c, &["get", "pod", "lonely"]);
    assert!(p["spec"]["nodeName"].is_null());
    let cond = eventually(T, || {
        let p = json_of(&c, &["get", "pod", "lonely"]);
        p["status"]["conditions"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == "PodScheduled").cloned())
    });
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("False"), Some("Unschedulable"))
    );
    // A Ready node appears: the pod is bound to it.
    add_node(&c, "node-1");
    eventually(T, || {
        let p = json_of(&c, &["get", "pod", "lonely"]);
        let cond = p["status"]["conditions"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == "PodScheduled").cloned());
        (p["spec"]["nodeName"] == "node-1" && cond.is_some_and(|c| c["status"] == "True"))
            .then_some(())
    });
}

/// A two-pod ReplicaSet named `name`, optionally created with one finalizer.
fn replica_set(name: &str, finalizer: Option<&str>) -> String {
    let finalizers = finalizer
        .map(|f| format!("\n  finalizers: [{f}]"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: {name}{finalizers}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: c
        image: nginx
"
    )
}

/// An owner carrying the `orphan` or `foregroundDeletion` finalizer (set on the
/// object by the test; `kubectl_cascade_orphan_and_foreground` has the API server
/// add them) is finalized by the garbage collector.
#[test]
fn orphan_and_foreground_finalizers() {
    let c = cluster();
    c.apply(&replica_set("keep", Some("orphan")));
    c.apply(&replica_set("gone", Some("foregroundDeletion")));
    eventually(T, || {
        kubelet(&c, all_ready);
        (pod_names(&c, "app=keep").len() == 2 && pod_names(&c, "app=gone").len() == 2).then_some(())
    });
    let kept = pod_names(&c, "app=keep");
    c.k(&["delete", "rs", "keep", "gone", "--wait=false"]);
    eventually(T, || {
        kubelet(&c, all_ready);
        let rs = json_of(&c, &["get", "replicasets"]);
        (rs["items"].as_array().is_some_and(Vec::is_empty) && pod_names(&c, "app=gone").is_empty())
            .then_some(())
    });
    // Orphaned pods stay, without the owner reference.
    assert_eq!(pod_names(&c, "app=keep"), kept);
    let pods = json_of(&c, &["get", "pods", "-l", "app=keep"]);
    for p in pods["items"].as_array().into_iter().flatten() {
        assert!(
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "{p}"
        );
    }
}

#[test]
fn kubectl_cascade_orphan_and_foreground() {
    let c = cluster();
    c.apply(&replica_set("orph", None));
    c.apply(&replica_set("fore", None));
    eventually(T, || {
        kubelet(&c, all_ready);
        (pod_names(&c, "app=orph").len() == 2 && pod_names(&c, "app=fore").len() == 2).then_some(())
    });
    let kept = pod_names(&c, "app=orph");
    // The API server hands both deletions to the garbage collector via finalizers.
    c.k(&["delete", "rs", "orph", "--cascade=orphan", "--wait=false"]);
    c.k(&[
        "delete",
        "rs",
        "fore",
        "--cascade=foreground",
        "--wait=false",
    ]);
    eventually(T, || {
        kubelet(&c, all_ready);
        let rs = json_of(&c, &["get", "replicasets"]);
        (rs["items"].as_array().is_some_and(Vec::is_empty) && pod_names(&c, "app=fore").is_empty())
            .then_some(())
    });
    assert_eq!(pod_names(&c, "app=orph"), kept, "orphaned pods must stay");
    let pods = json_of(&c, &["get", "pods", "-l", "app=orph"]);
    for p in pods["items"].as_array().into_iter().flatten() {
        assert!(
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "{p}"
        );
    }
}

//! Ephemeral containers (issue 20) with the machine's real kubectl:
//! `kubectl debug` adds one through `pods/<name>/ephemeralcontainers`,
//! which changes nothing else of the pod; upstream's refusals of bad ones.

mod support;

use serde_json::Value;
use support::Cluster;

fn pod_json(c: &Cluster, name: &str) -> Value {
    serde_json::from_str(&c.k(&["get", "pod", name, "-o", "json"])).expect("pod json")
}

#[test]
fn kubectl_debug_adds_an_ephemeral_container() {
    let c = Cluster::start();
    c.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers: [{name: app, image: busybox, args: [sleep, '3600']}]
",
    );
    let before = pod_json(&c, "web");
    let out = c.kubectl(&[
        "debug",
        "pod/web",
        "--image=busybox",
        "--target=app",
        "--container=dbg",
        "--",
        "sh",
        "-c",
        "echo hello from debug",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pod = pod_json(&c, "web");
    let eph = &pod["spec"]["ephemeralContainers"];
    assert_eq!(eph[0]["name"], "dbg", "{pod}");
    assert_eq!(eph[0]["image"], "busybox");
    assert_eq!(eph[0]["targetContainerName"], "app");
    assert_eq!(pod["spec"]["containers"], before["spec"]["containers"]);
    assert_eq!(pod["metadata"]["labels"], before["metadata"]["labels"]);

    // A second one joins the first; neither may be removed or changed.
    c.k(&[
        "debug",
        "pod/web",
        "--image=busybox",
        "--container=dbg2",
        "--",
        "true",
    ]);
    let pod = pod_json(&c, "web");
    let names: Vec<&str> = pod["spec"]["ephemeralContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["dbg", "dbg2"], "{pod}");
    let err = c.k_err(&[
        "patch",
        "pod",
        "web",
        "--subresource=ephemeralcontainers",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#,
    ]);
    assert!(
        err.contains(r#"existing ephemeral containers \"dbg\" may not be removed"#)
            || err.contains(r#"existing ephemeral containers "dbg" may not be removed"#),
        "{err}"
    );
    // One named like a container, with ports, aimed at no container.
    let err = c.k_err(&[
        "patch",
        "pod",
        "web",
        "--subresource=ephemeralcontainers",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/ephemeralContainers/-","value":{"name":"app","image":"busybox","ports":[{"containerPort":80}],"targetContainerName":"nope"}}]"#,
    ]);
    assert!(
        err.contains("spec.ephemeralContainers[2].name: Duplicate value: \"app\""),
        "{err}"
    );
    assert!(
        err.contains("spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container"),
        "{err}"
    );
    assert!(
        err.contains("spec.ephemeralContainers[2].targetContainerName: Not found: \"nope\""),
        "{err}"
    );
    // Not on create.
    let out = c.kubectl_in(
        &["apply", "-f", "-"],
        "apiVersion: v1
kind: Pod
metadata: {name: early}
spec:
  containers: [{name: app, image: busybox}]
  ephemeralContainers: [{name: dbg, image: busybox}]
",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.ephemeralContainers: Forbidden: cannot be set on create"),
        "{err}"
    );
}

/// With a node agent: the ephemeral container runs once in the pod (its
/// hostname is the pod's), `kubectl logs -c` reads its output, and its end is
/// in `ephemeralContainerStatuses`.
#[test]
fn an_ephemeral_container_runs_in_the_pod() {
    let c = Cluster::start_with(&["--disable", "proxy,dns"]);
    c.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: app, image: busybox, args: [sleep, '3600']}]
",
    );
    c.k(&["wait", "--for=condition=Ready", "pod/web", "--timeout=90s"]);
    c.k(&[
        "debug",
        "pod/web",
        "--image=busybox",
        "--container=dbg",
        "--",
        "sh",
        "-c",
        "echo hello from debug; hostname",
    ]);
    let status = support::eventually(std::time::Duration::from_secs(30), || {
        let pod = pod_json(&c, "web");
        let s = pod["status"]["ephemeralContainerStatuses"][0].clone();
        (!s["state"]["terminated"].is_null()).then_some(s)
    });
    assert_eq!(status["name"], "dbg", "{status}");
    assert_eq!(status["state"]["terminated"]["exitCode"], 0, "{status}");
    assert_eq!(
        status["state"]["terminated"]["reason"], "Completed",
        "{status}"
    );
    let logs = c.k(&["logs", "web", "-c", "dbg"]);
    assert_eq!(logs, "hello from debug\nweb\n");
    // The pod itself is untouched: still Ready, its container still running.
    let pod = pod_json(&c, "web");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    assert!(
        pod["status"]["containerStatuses"][0]["state"]["running"].is_object(),
        "{pod}"
    );
}

//! policy/v1 end to end with the machine's real kubectl (issue 20):
//! PodDisruptionBudgets with the status the disruption controller keeps,
//! upstream's Table and refusals, and `kubectl drain` through the eviction
//! subresource, blocked by a budget (429, upstream's message, kubectl
//! retrying) until the budget allows it.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{eventually, Cluster};

const VIOLATES: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn json_of(c: &Cluster, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&c.k(&a)).expect("kubectl json")
}

/// Waits until the budget's status says `allowed` disruptions for its
/// current generation; returns the budget.
fn budget_allows(c: &Cluster, name: &str, allowed: i64) -> Value {
    eventually(Duration::from_secs(30), || {
        let b = json_of(c, &["get", "pdb", name]);
        let observed = b["status"]["observedGeneration"] == b["metadata"]["generation"];
        (observed && b["status"]["disruptionsAllowed"] == allowed).then_some(b)
    })
}

fn web_pods_on(c: &Cluster, node: &str) -> Vec<String> {
    let out = c.k(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "--field-selector",
        &format!("spec.nodeName={node}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    out.split_whitespace().map(str::to_string).collect()
}

#[test]
fn drain_waits_for_the_disruption_budget() {
    let c = Cluster::start_with(&["--disable", "proxy,dns"]);
    c.apply(
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: busybox, args: [sleep, '3600']}]
",
    );
    c.k(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let node = c.k(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let node = node.trim().to_string();

    let out = c.k(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=2",
    ]);
    assert_eq!(out.trim(), "poddisruptionbudget.policy/web created");
    let b = budget_allows(&c, "web", 0);
    assert_eq!(b["status"]["currentHealthy"], 2, "{b}");
    assert_eq!(b["status"]["desiredHealthy"], 2, "{b}");
    assert_eq!(b["status"]["expectedPods"], 2, "{b}");
    let cond = &b["status"]["conditions"][0];
    assert_eq!(cond["type"], "DisruptionAllowed", "{b}");
    assert_eq!(cond["status"], "False", "{b}");
    assert_eq!(cond["reason"], "InsufficientPods", "{b}");

    let table = c.k(&["get", "pdb"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MIN",
            "AVAILABLE",
            "MAX",
            "UNAVAILABLE",
            "ALLOWED",
            "DISRUPTIONS",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "2", "N/A", "0"], "{table}");

    // One eviction by hand: 429 with upstream's message.
    let pods = web_pods_on(&c, &node);
    assert_eq!(pods.len(), 2, "{pods:?}");
    let eviction = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{}","namespace":"default"}}}}"#,
        pods[0]
    );
    let out = c.kubectl_in(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{}/eviction", pods[0]),
            "-f",
            "-",
        ],
        &eviction,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "eviction allowed");
    assert!(err.contains(VIOLATES), "{err}");

    // The drain cordons, is refused and retries until its timeout.
    let err = c.k_err(&["drain", &node, "--ignore-daemonsets", "--timeout=12s"]);
    assert!(err.contains(VIOLATES), "{err}");
    assert!(err.contains("will retry after 5s"), "{err}");
    let unschedulable = c.k(&["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"]);
    assert_eq!(unschedulable.trim(), "true");
    assert_eq!(web_pods_on(&c, &node).len(), 2, "nothing evicted");

    // One disruption allowed: one pod goes, its replacement cannot be placed
    // on the cordoned node, so the other stays.
    c.k(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    budget_allows(&c, "web", 1);
    let out = c.kubectl(&["drain", &node, "--ignore-daemonsets", "--timeout=15s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert_eq!(stdout.matches(" evicted").count(), 1, "{stdout}\n{stderr}");
    assert!(stderr.contains(VIOLATES), "{stderr}");
    let b = json_of(&c, &["get", "pdb", "web"]);
    assert_eq!(b["status"]["disruptionsAllowed"], 0, "{b}");

    // Budget lifted: the drain finishes.
    c.k(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":0}}"#,
    ]);
    budget_allows(&c, "web", 1);
    let out = c.k(&["drain", &node, "--ignore-daemonsets", "--timeout=60s"]);
    assert!(out.contains(&format!("node/{node} drained")), "{out}");
    eventually(Duration::from_secs(30), || {
        web_pods_on(&c, &node).is_empty().then_some(())
    });
}

#[test]
fn bad_budgets_are_refused_as_upstream() {
    let c = Cluster::start();
    let out = c.kubectl_in(
        &["apply", "-f", "-"],
        "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: bad}
spec:
  minAvailable: 1
  maxUnavailable: 50%
  selector: {matchLabels: {app: web}}
",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"The PodDisruptionBudget "bad" is invalid: spec.minAvailable: Invalid value: 1: minAvailable and maxUnavailable cannot be both set"#),
        "{err}"
    );
    let out = c.kubectl_in(
        &["apply", "-f", "-"],
        "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: bad}
spec:
  maxUnavailable: 150%
",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must not be greater than 100%"), "{err}");
    // An evictions of a pod no budget covers is a plain delete.
    c.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: lone}
spec:
  containers: [{name: c, image: busybox}]
",
    );
    let out = c.kubectl_in(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/lone/eviction",
            "-f",
            "-",
        ],
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"lone"}}"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = c.kubectl(&["get", "pod", "lone"]);
    assert!(!left.status.success(), "the pod is gone");
}

/// Every local group version has its APIService (Local, Available), as the
/// aggregator registers them; they are read-only.
#[test]
fn apiservices_list_the_local_groups() {
    let c = Cluster::start();
    let table = eventually(Duration::from_secs(20), || {
        let t = c.k(&["get", "apiservices"]);
        t.contains("v1.policy").then_some(t)
    });
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "SERVICE", "AVAILABLE", "AGE"], "{table}");
    for name in [
        "v1.",
        "v1.apps",
        "v1.policy",
        "v1.certificates.k8s.io",
        "v1.authentication.k8s.io",
    ] {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{table}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[1..3], ["Local", "True"], "{table}");
    }
    let apps = json_of(&c, &["get", "apiservice", "v1.apps"]);
    assert_eq!(apps["spec"]["group"], "apps");
    assert_eq!(apps["spec"]["version"], "v1");
    assert_eq!(apps["status"]["conditions"][0]["reason"], "Local");
    let err = c.k_err(&["delete", "apiservice", "v1.apps"]);
    assert!(err.contains("MethodNotAllowed"), "{err}");
}

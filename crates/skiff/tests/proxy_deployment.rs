//! The service proxy with the whole stack: one `skiff server` with nothing
//! disabled (API, controllers, scheduler, agent, proxy, DNS) in a test-made
//! network namespace. A real Deployment of httpenv scaled to five, exposed with
//! `kubectl expose`, and a client pod that curls the ClusterIP and the DNS
//! names from inside the pod network: the request spreads over the replicas.
//! The cluster's drop kills every pod process, also on failure.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use support::{eventually, Cluster};

const NODE: &str = "proxy-node";
const REPLICAS: usize = 5;
const REQUESTS: usize = 50;

fn pods_of(c: &Cluster, selector: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(&c.k(&["get", "pods", "-l", selector, "-o", "json"]))
        .expect("pod list");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// `REQUESTS` GETs of `url` from the client pod, in one `kubectl exec` (one
/// exec per request would take most of the test's time); returns the
/// `HOSTNAME` each answer names, an empty string for a failed request.
fn hostnames(c: &Cluster, url: &str) -> Vec<String> {
    // Each answer on one line, so a failure cannot merge two answers.
    let script =
        format!("for i in $(seq {REQUESTS}); do curl -s -m 3 {url} | tr -d '\\n'; echo; done");
    let out = c.kubectl(&["exec", "client", "--", "sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["HOSTNAME"].as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect()
}

/// Every request answered, by at least four of the five replicas, and only by
/// replicas of the deployment.
fn assert_spread(c: &Cluster, url: &str, replicas: &BTreeSet<String>) {
    let got = hostnames(c, url);
    assert_eq!(got.len(), REQUESTS, "{url}: {got:?}");
    let failed = got.iter().filter(|h| h.is_empty()).count();
    assert_eq!(failed, 0, "{url}: {failed} requests failed: {got:?}");
    let seen: BTreeSet<String> = got.iter().cloned().collect();
    let spread: Vec<usize> = seen
        .iter()
        .map(|h| got.iter().filter(|g| *g == h).count())
        .collect();
    eprintln!("{url}: requests per pod {spread:?}");
    assert!(
        seen.is_subset(replicas),
        "{url}: answers from outside the deployment {seen:?} (replicas {replicas:?})"
    );
    assert!(
        seen.len() >= 4,
        "{url}: only {} distinct pods over {REQUESTS} requests: {seen:?}",
        seen.len()
    );
}

#[test]
fn deployment_behind_a_clusterip_and_its_dns_name() {
    let c = Cluster::start_with(&["--node-name", NODE]);
    c.k(&[
        "create",
        "deployment",
        "httpenv",
        "--image=bretfisher/httpenv",
        &format!("--replicas={REPLICAS}"),
    ]);
    c.k(&["expose", "deployment", "httpenv", "--port", "8888"]);
    c.k(&[
        "run",
        "client",
        "--image=nicolaka/netshoot",
        "--restart=Never",
        "--",
        "sleep",
        "3600",
    ]);
    let pods = eventually(Duration::from_secs(90), || {
        let pods = pods_of(&c, "app=httpenv");
        (pods.len() == REPLICAS && pods.iter().all(ready)).then_some(pods)
    });
    let replicas: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    eventually(Duration::from_secs(60), || {
        let pod: Value =
            serde_json::from_str(&c.k(&["get", "pod", "client", "-o", "json"])).expect("pod json");
        ready(&pod).then_some(())
    });
    let cluster_ip = c.k(&["get", "svc", "httpenv", "-o", "jsonpath={.spec.clusterIP}"]);
    // The EndpointSlice controller and the proxy follow the pods becoming
    // ready; wait until the ClusterIP answers from the last of them.
    let url = format!("http://{cluster_ip}:8888/");
    eventually(Duration::from_secs(30), || {
        let slices = c.k(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=httpenv",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[0]}",
        ]);
        (slices.split_whitespace().count() == REPLICAS).then_some(())
    });
    // One probe request first so a still-syncing proxy is waited for, not failed.
    eventually(Duration::from_secs(30), || {
        let out = c.kubectl(&["exec", "client", "--", "curl", "-s", "-m", "3", &url]);
        String::from_utf8_lossy(&out.stdout)
            .contains("HOSTNAME")
            .then_some(())
    });
    assert_spread(&c, &url, &replicas);
    // The same through cluster DNS: the pod's resolv.conf names kube-dns
    // (10.96.0.10, itself DNATed by the proxy) and the namespace search path.
    for name in ["httpenv", "httpenv.default"] {
        assert_spread(&c, &format!("http://{name}:8888/"), &replicas);
    }
}

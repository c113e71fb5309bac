//! The seed walkthroughs (`tests/walkthroughs/*.sh` at the repository root), one
//! test per seed document: each starts the whole stack (API, controllers, agent,
//! proxy, DNS) in a test-made network namespace, adds a second namespace on the
//! node's network as the "outside" machine (NodePort and LoadBalancer clients), and
//! runs the walkthrough script there with the real kubectl, curl, dig, nslookup and
//! host. The script checks what the seed shows as it goes and writes a Markdown
//! transcript; with `SKIFF_GUIDE_DIR` set the transcript is kept there, which is
//! how `scripts/guide` builds docs/guide.md from this very run.
//!
//! Pods run real images: a registry inside the node's namespace serves the
//! stand-ins `tests/images/standins` built under the seeds' names, and the server
//! pulls `docker.io/...` through a `registries.yaml` mirror to it. With
//! `SKIFF_WALKTHROUGH_IMAGES=host` they run the built-in catalog's host programs
//! (`--host-images`) instead.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::multinode::MultiNode;
use support::registry::{
    docker_io_mirror, docker_io_mirror_to, standin_storage, start_registry, start_registry_on,
};
use support::{outside_machine, Cluster, Netns};

const NODE: &str = "skiff-node";
/// The node's address on the network it shares with the outside machine.
const NODE_IP: &str = "192.168.49.2";
const OUTSIDE_IP: &str = "192.168.49.100";
const LB_POOL: &str = "172.18.255.0/24";

/// Walkthroughs start pods by the dozen; one at a time on a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/walkthroughs")
}

fn walkthrough(script: &str) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The outside machine first: its link carries the address the agent binds.
    let node = Netns::new();
    let outside = outside_machine(&node, "eth1", NODE_IP, OUTSIDE_IP, &[LB_POOL]);
    let mut flags = vec![
        "--node-name".to_string(),
        NODE.into(),
        "--node-ip".into(),
        NODE_IP.into(),
        "--lb-pool".into(),
        LB_POOL.into(),
    ];
    let host_images = std::env::var("SKIFF_WALKTHROUGH_IMAGES").as_deref() == Ok("host");
    let mirror_dir = tempfile::tempdir().expect("tempdir");
    let _registry = (!host_images).then(|| {
        let registry = start_registry(&node, standin_storage(), mirror_dir.path());
        let config = docker_io_mirror(mirror_dir.path());
        flags.push("--registry-config".into());
        flags.push(config.to_string_lossy().into_owned());
        registry
    });
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = if host_images {
        Cluster::start_in(node, &flags)
    } else {
        Cluster::start_with_images(node, &flags)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cluster.kubectl(&[
            "get",
            "node",
            NODE,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        if String::from_utf8_lossy(&out.stdout) == "True" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {NODE} not Ready within 60 s\n--- server log (tail) ---\n{}",
            tail(&cluster.log(), 60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let transcript = cluster.dir.path().join(format!("{script}.md"));
    let out = cluster
        .netns
        .command("bash")
        .arg(scripts().join(format!("{script}.sh")))
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("HOME", cluster.dir.path())
        .env("OUTSIDE_NETNS", &outside.name)
        .env("WALKTHROUGH_OUT", &transcript)
        .output()
        .expect("run the walkthrough");
    let text = std::fs::read_to_string(&transcript).unwrap_or_default();
    if let Some(dir) = std::env::var_os("SKIFF_GUIDE_DIR") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("guide dir");
        std::fs::write(dir.join(format!("{script}.md")), &text).expect("keep the transcript");
    }
    if !out.status.success() {
        panic!(
            "walkthrough {script} failed:\n{}\n--- transcript ---\n{text}\n--- pods ---\n{}\n--- server log (tail) ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            pod_report(&cluster),
            tail(&cluster.log(), 60)
        );
    }
}

/// The walkthrough on three nodes (`skiff up --nodes 3`, node 1 the server, the
/// others joined agents): the pods spread over the nodes, so every Service, name
/// and NodePort the seed shows crosses nodes. The test's namespace is the nodes'
/// LAN and the outside machine; the registry listens there on the bridge; the
/// script itself runs on node 1.
fn walkthrough_on_nodes(script: &str) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let ns = Netns::new();
    let mut flags = vec![format!("--server-arg=--lb-pool={LB_POOL}")];
    let host_images = std::env::var("SKIFF_WALKTHROUGH_IMAGES").as_deref() == Ok("host");
    let mirror_dir = tempfile::tempdir().expect("tempdir");
    let _registry = if host_images {
        flags.push("--host-images".into());
        None
    } else {
        let registry = start_registry_on(&ns, "0.0.0.0:5000", standin_storage(), mirror_dir.path());
        // The nodes reach the test's namespace at the bridge's address.
        let config = docker_io_mirror_to(mirror_dir.path(), "10.250.0.1:5000");
        flags.push(format!("--registry-config={}", config.display()));
        Some(registry)
    };
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let c = MultiNode::up_in(ns, 3, &flags);
    let route = c.outside(&format!("ip route add {LB_POOL} dev {}", c.bridge()));
    assert!(route.status.success(), "route to the LB pool");
    let dir = tempfile::tempdir().expect("tempdir");
    let transcript = dir.path().join(format!("{script}.md"));
    // The script runs on node 1, as the single-node one runs on its node: pods
    // on the other nodes are reached across the pod network.
    let out = c
        .on_node(1, "bash")
        .arg(scripts().join(format!("{script}.sh")))
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", dir.path())
        .env("OUTSIDE_NETNS", &c.netns.name)
        .env("WALKTHROUGH_OUT", &transcript)
        .output()
        .expect("run the walkthrough");
    if !out.status.success() {
        let text = std::fs::read_to_string(&transcript).unwrap_or_default();
        let pods = c.kubectl(&["get", "pods", "-A", "-o", "wide"]);
        panic!(
            "walkthrough {script} on three nodes failed:\n{}\n--- transcript ---\n{text}\n--- pods ---\n{}\n--- nodes ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&pods.stdout),
            c.logs()
        );
    }
}

/// Every pod's status, recent events and the last lines of each container's log:
/// what a failed step most often needs explaining.
fn pod_report(cluster: &Cluster) -> String {
    let out = cluster.sh(
        "kubectl get pods -A -o wide; kubectl get events -A --sort-by=.lastTimestamp | tail -20; \
         for p in $(kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}'); do \
         echo \"--- logs $p\"; kubectl logs -n \"${p%%/*}\" \"${p#*/}\" --all-containers --tail=10 2>&1; done",
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn seed_000_headless_services_and_friends() {
    walkthrough("00-headless");
}

/// The same seed's second kind of session affinity, by cookie, which "require[s]
/// Ingress object": through skiff's ingress controller with ingress-nginx's
/// `affinity: cookie` annotations, from the outside machine.
#[test]
fn seed_000_cookie_affinity_through_an_ingress() {
    walkthrough("00-headless-cookie-affinity");
}

#[test]
fn seed_001_services_101() {
    walkthrough("01-services101");
}

#[test]
fn seed_002_headless_in_namespace_moon() {
    walkthrough("02-moon");
}

#[test]
fn seed_003_httpenv_clusterip() {
    walkthrough("03-httpenv");
}

#[test]
fn seed_004_postgresql_statefulset() {
    walkthrough("04-postgresql");
}

#[test]
fn seed_000_headless_services_and_friends_on_three_nodes() {
    walkthrough_on_nodes("00-headless");
}

#[test]
fn seed_001_services_101_on_three_nodes() {
    walkthrough_on_nodes("01-services101");
}

#[test]
fn seed_002_headless_in_namespace_moon_on_three_nodes() {
    walkthrough_on_nodes("02-moon");
}

#[test]
fn seed_003_httpenv_clusterip_on_three_nodes() {
    walkthrough_on_nodes("03-httpenv");
}

#[test]
fn seed_004_postgresql_statefulset_on_three_nodes() {
    walkthrough_on_nodes("04-postgresql");
}

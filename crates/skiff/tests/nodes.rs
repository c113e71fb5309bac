//! Many nodes end to end: `skiff up --nodes 3` inside the test's network
//! namespace (each node a namespace of its own on a bridge, node 1 the server,
//! the others `skiff agent`s that joined with its token), driven with the real
//! kubectl and curl. Pods talk across nodes by pod IP with their source address
//! unchanged, through ClusterIPs and names, NodePorts answer on every node, with
//! both pod network backends; a node that dies has its endpoints dropped and its
//! pods recreated elsewhere.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::eventually;
use support::multinode::{node_ip, MultiNode};

/// These tests start three nodes each: one at a time on a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn pods(c: &MultiNode, selector: &str) -> Vec<Value> {
    let out = c.k(&["get", "pods", "-l", selector, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("pod list");
    v["items"].as_array().cloned().unwrap_or_default()
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
        && p["metadata"]["deletionTimestamp"].is_null()
}

/// Waits for `n` Ready pods of `selector`, returns them.
fn ready_pods(c: &MultiNode, selector: &str, n: usize, timeout: Duration) -> Vec<Value> {
    eventually(timeout, || {
        let ps: Vec<Value> = pods(c, selector).into_iter().filter(ready).collect();
        (ps.len() == n).then_some(ps)
    })
}

/// The node-monitor grace period and the pods' unreachable toleration of the
/// failure tests (seconds): short, so a test sees a node die and its pods move;
/// the node Leases last `LEASE` (renewed every quarter of it), so a live node
/// renews four times per grace period, as kubelet's defaults (40 s, 10 s) do.
const GRACE: u64 = 10;
const TOLERATION: u64 = 10;
const LEASE: u64 = 10;

fn up_with_short_timeouts() -> MultiNode {
    MultiNode::up(
        3,
        &[
            "--host-images",
            &format!("--server-arg=--node-monitor-grace-period={GRACE}s"),
            &format!("--server-arg=--default-unreachable-toleration-seconds={TOLERATION}"),
            &format!("--server-arg=--node-lease-duration-seconds={LEASE}"),
            &format!("--agent-arg=--node-lease-duration-seconds={LEASE}"),
        ],
    )
}

fn node_of(p: &Value) -> String {
    p["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn ip_of(p: &Value) -> String {
    p["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn name_of(p: &Value) -> String {
    p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `curl` run inside pod `pod` (its network namespace; with `--host-images` the
/// node's own curl).
fn curl_in(c: &MultiNode, pod: &str, url: &str) -> Result<String, String> {
    let out = c.kubectl(&["exec", pod, "--", "curl", "-sS", "-m", "5", url]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The spread deployment both tests use: `whoami` (prints the client's address)
/// with three replicas, one per node, behind a NodePort service.
fn whoami(c: &MultiNode) -> Vec<Value> {
    c.k(&[
        "create",
        "deployment",
        "whoami",
        "--image=traefik/whoami",
        "--replicas=3",
        "--port=80",
    ]);
    let ps = ready_pods(c, "app=whoami", 3, Duration::from_secs(90));
    let mut nodes: Vec<String> = ps.iter().map(node_of).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one replica per node: {nodes:?}");
    c.k(&[
        "expose",
        "deployment",
        "whoami",
        "--port=80",
        "--type=NodePort",
    ]);
    ps
}

fn pod_network(backend: &str) {
    let _s = serial();
    let c = MultiNode::up(3, &["--host-images", "--flannel-backend", backend]);
    let cidrs = c.k(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.spec.podCIDR}{\"\\n\"}{end}",
    ]);
    let mut cidrs: Vec<&str> = cidrs.lines().collect();
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(cidrs.len(), 3, "a pod CIDR each: {cidrs:?}");

    let ps = whoami(&c);
    let on = |i: u8| {
        ps.iter()
            .find(|p| node_of(p) == c.node_name(i))
            .cloned()
            .expect("a replica on the node")
    };
    let (a, z) = (on(1), on(3));
    // Pod to pod across nodes by pod IP: the server sees the client's own address.
    let body = curl_in(&c, &name_of(&a), &format!("http://{}/", ip_of(&z))).expect("pod IP");
    assert!(
        body.contains(&format!("Hostname: {}", name_of(&z))),
        "{body}"
    );
    assert!(
        body.contains(&format!("RemoteAddr: {}:", ip_of(&a))),
        "source address unchanged across nodes: {body}"
    );
    // Through the ClusterIP, by address and by name, reaching every replica.
    let cluster_ip = c.k(&["get", "svc", "whoami", "-o", "jsonpath={.spec.clusterIP}"]);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..30 {
        let url = if i % 2 == 0 {
            format!("http://{cluster_ip}/")
        } else {
            "http://whoami.default.svc.cluster.local/".to_string()
        };
        let body = curl_in(&c, &name_of(&a), &url).expect("service");
        if let Some(h) = body.lines().find_map(|l| l.strip_prefix("Hostname: ")) {
            seen.insert(h.trim().to_string());
        }
    }
    assert_eq!(seen.len(), 3, "every replica answered: {seen:?}");
    // A NodePort answers on every node's address, from outside the nodes.
    let port = c.k(&[
        "get",
        "svc",
        "whoami",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    for i in 1..=3 {
        let out = c.outside(&format!("curl -sS -m 5 http://{}:{port}/", node_ip(i)));
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Hostname:"),
            "NodePort on node {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The kernel carries it: routes (and for VXLAN the device) on the node.
    let routes = c
        .on_node(1, "ip")
        .args(["route", "show"])
        .output()
        .expect("ip");
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    let mtu = pod_mtu(&c, &name_of(&a));
    match backend {
        "vxlan" => {
            assert_eq!(
                routes.matches("dev skiff.vxlan").count(),
                2,
                "two peers over VXLAN:\n{routes}"
            );
            assert_eq!(mtu, 1450, "pods leave room for the VXLAN header");
        }
        _ => {
            assert!(
                routes.contains(&format!("via {}", node_ip(3))),
                "a direct route to node 3's pods:\n{routes}"
            );
            assert_eq!(mtu, 1500);
        }
    }
}

/// The MTU of a pod's `eth0` (with `--host-images` the pod sees the node's
/// sysfs, so it is asked over netlink).
fn pod_mtu(c: &MultiNode, pod: &str) -> u32 {
    let out = c.k(&["exec", pod, "--", "ip", "-o", "link", "show", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no mtu in {out:?}"))
}

#[test]
fn pods_talk_across_nodes_host_gw() {
    pod_network("host-gw");
}

/// `kubectl cordon` keeps new pods off a node, `kubectl drain` moves its pods to
/// the others, `kubectl uncordon` lets pods back.
#[test]
fn cordon_drain_uncordon() {
    let _s = serial();
    let c = MultiNode::up(3, &["--host-images"]);
    whoami(&c);
    let two = c.node_name(2);
    c.k(&["cordon", &two]);
    let out = c.k(&["drain", &two, "--ignore-daemonsets", "--timeout=60s"]);
    assert!(out.contains("drained"), "{out}");
    let ps = ready_pods(&c, "app=whoami", 3, Duration::from_secs(60));
    assert!(
        ps.iter().all(|p| node_of(p) != two),
        "no replica left on the drained node"
    );
    let unschedulable = c.k(&["get", "node", &two, "-o", "jsonpath={.spec.unschedulable}"]);
    assert_eq!(unschedulable.trim(), "true");
    c.k(&["uncordon", &two]);
    c.k(&["scale", "deployment/whoami", "--replicas=4"]);
    let ps = ready_pods(&c, "app=whoami", 4, Duration::from_secs(60));
    assert!(
        ps.iter().any(|p| node_of(p) == two),
        "the uncordoned node takes the new replica (spreading)"
    );
}

#[test]
fn pods_talk_across_nodes_vxlan() {
    pod_network("vxlan");
}

/// Node 3 dies (every process SIGKILLed, its link removed): its endpoints leave
/// the EndpointSlices within the grace period, a ClusterIP client then sees no
/// failure, and its replica is recreated on the others after the toleration.
#[test]
fn a_dead_nodes_pods_move() {
    let _s = serial();
    let c = up_with_short_timeouts();
    let ps = whoami(&c);
    let client = ps
        .iter()
        .find(|p| node_of(p) == c.node_name(1))
        .map(name_of)
        .expect("a replica on node 1");
    let victim = ps
        .iter()
        .find(|p| node_of(p) == c.node_name(3))
        .map(ip_of)
        .expect("a replica on node 3");
    let cluster_ip = c.k(&["get", "svc", "whoami", "-o", "jsonpath={.spec.clusterIP}"]);
    // A LoadBalancer service whose one pod prefers node 3: with
    // `externalTrafficPolicy: Local` only that node may announce its address.
    c.apply(&LB_MANIFEST.replace("NODE3", &c.node_name(3)));
    let lb_ip = eventually(Duration::from_secs(30), || {
        let ip = c.k(&[
            "get",
            "svc",
            "edge",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        (!ip.trim().is_empty()).then(|| ip.trim().to_string())
    });
    let edge = ready_pods(&c, "app=edge", 1, Duration::from_secs(60));
    assert_eq!(node_of(&edge[0]), c.node_name(3));
    // The outside host reaches the address on the nodes' LAN, by ARP.
    let bridge = format!("skup-{}", c.name);
    assert!(c
        .outside(&format!("ip route add {lb_ip}/32 dev {bridge}"))
        .status
        .success());
    let lb_answers = || {
        let out = c.outside(&format!("curl -sS -m 2 http://{lb_ip}/"));
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Hostname:")
    };
    eventually(Duration::from_secs(30), || lb_answers().then_some(()));

    let bridge_mac = || {
        let out = c.outside(&format!("cat /sys/class/net/{bridge}/address"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mac_before = bridge_mac();
    let killed = Instant::now();
    for pid in [c.node_pid(3), c.holder_pid(3)] {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let _ = c
        .outside(&format!("ip link del sku3-{}", c.name))
        .status
        .success();
    // A pulled cable leaves the switch's address alone: the live nodes'
    // neighbour entries for the LAN's gateway stay right.
    assert_eq!(
        bridge_mac(),
        mac_before,
        "the nodes' bridge changed its MAC"
    );

    // The dead node's endpoint stops being ready within the grace period (the
    // Lease was renewed up to a quarter of its duration before the kill).
    eventually(Duration::from_secs(GRACE + LEASE / 4 + 5), || {
        let out = c.k(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=whoami",
            "-o",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).ok()?;
        let still =
            v["items"].as_array()?.iter().any(|s| {
                s["endpoints"].as_array().into_iter().flatten().any(|e| {
                    e["addresses"][0] == victim.as_str() && e["conditions"]["ready"] == true
                })
            });
        (!still).then_some(())
    });
    let dropped = killed.elapsed();
    assert!(
        dropped <= Duration::from_secs(GRACE + LEASE / 4 + 2),
        "endpoints dropped {dropped:?} after the kill"
    );
    let status = c.k(&[
        "get",
        "node",
        &c.node_name(3),
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(status.trim(), "Unknown");
    // From now on the service answers every time.
    for _ in 0..20 {
        curl_in(&c, &client, &format!("http://{cluster_ip}/")).expect("no failed request");
    }
    // The replica is recreated on a live node after the toleration.
    let moved = eventually(Duration::from_secs(TOLERATION + 60), || {
        let ps: Vec<Value> = pods(&c, "app=whoami").into_iter().filter(ready).collect();
        let live = ps.iter().filter(|p| node_of(p) != c.node_name(3)).count();
        (live == 3).then_some(ps)
    });
    assert!(moved
        .iter()
        .filter(|p| node_of(p) != c.node_name(3))
        .all(|p| node_of(p) == c.node_name(1) || node_of(p) == c.node_name(2)));
    // The load balancer's pod moved too, and its new node announces the address.
    ready_pods(&c, "app=edge", 1, Duration::from_secs(60));
    eventually(Duration::from_secs(30), || lb_answers().then_some(()));
    let holder = c.k(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        &format!("skiff-lb-{}", lb_ip.replace('.', "-")),
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_ne!(holder.trim(), c.node_name(3));
}

const LB_MANIFEST: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: edge}
spec:
  replicas: 1
  selector: {matchLabels: {app: edge}}
  template:
    metadata: {labels: {app: edge}}
    spec:
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            preference:
              matchExpressions:
              - {key: kubernetes.io/hostname, operator: In, values: [NODE3]}
      containers:
      - {name: whoami, image: traefik/whoami, ports: [{containerPort: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: edge}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: edge}
  ports: [{port: 80, targetPort: 80}]
";

/// `skiff agent` with a wrong or revoked token, or no server to reach: one
/// line on stderr naming the problem, a non-zero exit, nothing joined.
#[test]
fn a_node_that_cannot_join_says_why() {
    let _s = serial();
    let c = MultiNode::up(1, &["--host-images"]);
    let token = std::fs::read_to_string(c.cluster_dir().join("node1/node-token"))
        .expect("join token")
        .trim()
        .to_string();
    let server = format!("https://{}:6443", node_ip(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = |server: &str, token: &str| {
        let out = c
            .netns
            .command(support::skiff_bin())
            .args(["agent", "--server", server, "--token", token])
            .args(["--node-name", "intruder", "--node-ip", &node_ip(0)])
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .expect("run skiff agent");
        assert!(!out.status.success(), "joined with {token:?}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "one error line: {err}");
        errors[0].to_string()
    };
    // Right CA, wrong secret.
    let (prefix, _) = token.rsplit_once('.').expect("id.secret");
    let wrong = agent(&server, &format!("{prefix}.0123456789abcdef"));
    assert!(wrong.to_lowercase().contains("token"), "{wrong}");
    // A CA hash that is not the server's.
    let tampered = format!("K10{}{}", "0".repeat(64), &token[67..]);
    let ca = agent(&server, &tampered);
    assert!(ca.contains("CA"), "{ca}");
    // Nobody listening there.
    let gone = agent(&format!("https://{}:6443", node_ip(9)), &token);
    assert!(gone.contains("reach") || gone.contains("connect"), "{gone}");
    // A revoked token.
    let id = prefix.rsplit("::").next().expect("token id").to_string();
    c.k(&[
        "-n",
        "kube-system",
        "delete",
        "secret",
        &format!("bootstrap-token-{id}"),
    ]);
    let revoked = agent(&server, &token);
    assert!(revoked.to_lowercase().contains("token"), "{revoked}");
    let nodes = c.k(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.lines().count(), 1, "nothing joined: {nodes}");
}

/// Node 3 is cut off (its link down, its processes alive): its replica is
/// evicted and recreated elsewhere. When the link comes back, its agent ends
/// the evicted pod and confirms the deletion; the Service keeps exactly the
/// live replicas.
#[test]
fn a_node_that_comes_back_ends_its_moved_pods() {
    let _s = serial();
    let c = up_with_short_timeouts();
    let ps = whoami(&c);
    let stale = ps
        .iter()
        .find(|p| node_of(p) == c.node_name(3))
        .cloned()
        .expect("a replica on node 3");
    let link = format!("sku3-{}", c.name);
    assert!(c
        .outside(&format!("ip link set {link} down"))
        .status
        .success());
    // Evicted (left Terminating: nobody on node 3 can confirm) and replaced.
    eventually(Duration::from_secs(GRACE + 10 + TOLERATION + 60), || {
        let ps: Vec<Value> = pods(&c, "app=whoami").into_iter().collect();
        let replaced = ps
            .iter()
            .filter(|p| ready(p) && node_of(p) != c.node_name(3))
            .count()
            == 3;
        let evicted = ps.iter().any(|p| {
            name_of(p) == name_of(&stale) && !p["metadata"]["deletionTimestamp"].is_null()
        });
        (replaced && evicted).then_some(())
    });
    assert!(c
        .outside(&format!("ip link set {link} up"))
        .status
        .success());
    // Back: Ready again, the evicted pod ended and gone from the API.
    c.wait_for(
        Duration::from_secs(60),
        &[
            "get",
            "node",
            &c.node_name(3),
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        "True",
    );
    eventually(Duration::from_secs(60), || {
        let gone = !pods(&c, "app=whoami")
            .iter()
            .any(|p| name_of(p) == name_of(&stale));
        gone.then_some(())
    });
    // The Service lists exactly the three live replicas.
    let live: std::collections::BTreeSet<String> =
        ready_pods(&c, "app=whoami", 3, Duration::from_secs(30))
            .iter()
            .map(ip_of)
            .collect();
    eventually(Duration::from_secs(30), || {
        let out = c.k(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=whoami",
            "-o",
            "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{\"\\n\"}{end}",
        ]);
        let listed: std::collections::BTreeSet<String> = out.lines().map(str::to_string).collect();
        (listed == live).then_some(())
    });
}

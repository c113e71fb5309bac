//! Several API servers on one etcd (issue #16): three etcd members and two
//! `skiff server`s (`skiff up --servers 2`, node 3 an agent), concurrent writers
//! through both servers, then the etcd leader and the server leading the
//! controllers SIGKILLed mid-write. Every acknowledged write must be there
//! afterwards, no ClusterIP or NodePort twice, the other server's controllers
//! take over, and the Service keeps answering.
//!
//! Needs root (network namespaces); everything runs inside the test's own.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use support::etcd::EtcdMembers;
use support::multinode::{node_ip, MultiNode};
use support::{eventually, Netns};

/// The writers: for each server, two threads that create a ConfigMap, update
/// it, and now and then create a NodePort Service, until `seconds` pass. Every
/// answer that acknowledged a write is printed as `ack <op> <name> <rv>`; a write
/// sent without an acknowledgement (an error or a timeout) as `try <op> <name>`.
const WRITERS: &str = r#"
import http.client, json, ssl, sys, threading, time
ca, token, seconds = sys.argv[1], open(sys.argv[2]).read().strip(), float(sys.argv[3])
servers = sys.argv[4:]
ctx = ssl.create_default_context(cafile=ca)
lock = threading.Lock()
lines = []
def out(s):
    with lock:
        lines.append(s)
def call(host, method, path, body):
    try:
        c = http.client.HTTPSConnection(host, context=ctx, timeout=5)
        c.request(method, path, json.dumps(body), {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data) if data else {}
    except Exception as e:
        return 0, {"message": str(e)}
def writer(si, t):
    host = servers[si]
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        n += 1
        name = "ha-%d-%d-%d" % (si, t, n)
        out("try create " + name)
        st, b = call(host, "POST", "/api/v1/namespaces/default/configmaps",
                     {"metadata": {"name": name}, "data": {"v": "0"}})
        if st == 201:
            rv = b["metadata"]["resourceVersion"]
            out("ack create %s %s" % (name, rv))
            out("try update " + name)
            b["data"] = {"v": "1"}
            st, b2 = call(host, "PUT", "/api/v1/namespaces/default/configmaps/" + name, b)
            if st == 200:
                out("ack update %s %s" % (name, b2["metadata"]["resourceVersion"]))
        if n % 4 == 0:
            svc = "ha-svc-%d-%d-%d" % (si, t, n)
            out("try service " + svc)
            st, b = call(host, "POST", "/api/v1/namespaces/default/services",
                         {"metadata": {"name": svc}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
            if st == 201:
                out("ack service %s %s" % (svc, b["metadata"]["resourceVersion"]))
        if st >= 500 or st == 0:
            time.sleep(0.2)
threads = [threading.Thread(target=writer, args=(si, t)) for si in range(len(servers)) for t in range(2)]
for th in threads: th.start()
for th in threads: th.join()
print("\n".join(lines))
"#;

/// The last acknowledged revision of each object and whether a write to it was
/// sent after that acknowledgement (it may have landed unacknowledged).
#[derive(Default)]
struct Acks {
    last: HashMap<String, (u64, bool)>,
    services: HashSet<String>,
    acknowledged: usize,
}

fn parse_acks(text: &str) -> Acks {
    let mut a = Acks::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["ack", op, name, rv] => {
                let rv: u64 = rv.parse().expect("resourceVersion is a number on etcd");
                a.acknowledged += 1;
                if *op == "service" {
                    a.services.insert((*name).to_string());
                } else {
                    a.last.insert((*name).to_string(), (rv, false));
                }
            }
            ["try", "update", name] => {
                if let Some(e) = a.last.get_mut(*name) {
                    e.1 = true;
                }
            }
            _ => {}
        }
    }
    a
}

fn holder(c: &MultiNode, server: &str) -> String {
    let out = c.kubectl(&[
        "--server",
        server,
        "-n",
        "kube-system",
        "get",
        "lease",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn pod_names(c: &MultiNode, server: &str) -> HashSet<String> {
    let out = c.k(&[
        "--server",
        server,
        "get",
        "pods",
        "-l",
        "app=whoami",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    out.split_whitespace().map(str::to_string).collect()
}

fn url(node: u8) -> String {
    format!("https://{}:6443", node_ip(node))
}

#[test]
fn two_servers_lose_the_etcd_leader_and_the_leading_server_mid_write() {
    let netns = Netns::new();
    let mut etcd = EtcdMembers::start(&netns);
    let endpoints = etcd.endpoints(&node_ip(0));
    let c = MultiNode::up_in(
        netns,
        3,
        &[
            "--servers",
            "2",
            "--host-images",
            "--server-arg=--store=etcd",
            &format!("--server-arg=--etcd-endpoints={endpoints}"),
            "--server-arg=--leader-elect",
            // Short, so the dead server's node is marked unreachable during
            // the test and the scheduler stops choosing it.
            "--server-arg=--node-monitor-grace-period=10s",
            "--server-arg=--node-lease-duration-seconds=10",
            "--agent-arg=--node-lease-duration-seconds=10",
        ],
    );
    // Both servers answer, with one cluster's objects.
    for i in [1, 2] {
        let nodes = c.k(&["--server", &url(i), "get", "nodes", "-o", "name"]);
        assert_eq!(nodes.lines().count(), 3, "through server {i}: {nodes}");
    }
    // A service-account token issued by one server is good on the other (they
    // share the signing key).
    c.k(&["create", "serviceaccount", "ha"]);
    let token = c.k(&["--server", &url(1), "create", "token", "ha"]);
    let sa_kubeconfig = c.dir.path().join("ha.kubeconfig");
    support::token_kubeconfig(
        &sa_kubeconfig,
        &url(2),
        &c.cluster_dir().join("node1/ca.crt"),
        "ha",
        &token,
        "default",
    );
    let who = c.k(&[
        "--kubeconfig",
        &sa_kubeconfig.to_string_lossy(),
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(who.trim(), "system:serviceaccount:default:ha");
    c.k(&[
        "create",
        "deployment",
        "whoami",
        "--image=traefik/whoami",
        "--replicas=3",
        "--port=80",
    ]);
    c.k(&["expose", "deployment", "whoami", "--port=80"]);
    c.wait_for(
        Duration::from_secs(120),
        &[
            "get",
            "deployment",
            "whoami",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "3",
    );
    let cluster_ip = c.k(&["get", "svc", "whoami", "-o", "jsonpath={.spec.clusterIP}"]);
    // Both servers are in `kubernetes`'s endpoints (each renews its Lease),
    // which is where node 3's agent learns where else to go.
    c.wait_for(
        Duration::from_secs(30),
        &[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}",
        ],
        &format!("{} {}", node_ip(1), node_ip(2)),
    );
    let leader = eventually(Duration::from_secs(30), || {
        let h = holder(&c, &url(2));
        (1..=2u8).find(|i| h.starts_with(&format!("{}_", c.node_name(*i))))
    });
    let survivor = 3 - leader;
    eprintln!("controllers led by server {leader}; it will be killed");

    let dir = c.cluster_dir().join("node1");
    let writers = c
        .netns
        .command("python3")
        .args(["-c", WRITERS])
        .arg(dir.join("ca.crt"))
        .arg(dir.join("admin.token"))
        .arg("30")
        .args([
            format!("{}:6443", node_ip(1)),
            format!("{}:6443", node_ip(2)),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::thread::sleep(Duration::from_secs(8));
    let etcd_leader = etcd.leader().expect("an etcd leader");
    etcd.kill(etcd_leader);
    eprintln!("etcd member {etcd_leader} (the leader) killed");
    std::thread::sleep(Duration::from_secs(4));
    let killed_at = chrono::Utc::now();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &c.node_pid(leader).to_string()])
        .status();
    eprintln!("server {leader} killed");
    let out = writers.wait_with_output().expect("writers");
    let text = String::from_utf8_lossy(&out.stdout);
    let acks = parse_acks(&text);
    assert!(
        acks.acknowledged > 50,
        "too few writes acknowledged:\n{text}\n{}",
        etcd.logs()
    );
    eprintln!("{} writes acknowledged", acks.acknowledged);

    // Every acknowledged write is there, at its revision.
    let there = url(survivor);
    let list: Value =
        serde_json::from_str(&c.k(&["--server", &there, "get", "configmaps", "-o", "json"]))
            .expect("configmaps");
    let stored: HashMap<String, u64> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let name = o["metadata"]["name"].as_str()?.to_string();
            let rv = o["metadata"]["resourceVersion"].as_str()?.parse().ok()?;
            Some((name, rv))
        })
        .collect();
    for (name, (rv, later)) in &acks.last {
        let got = stored
            .get(name)
            .unwrap_or_else(|| panic!("acknowledged {name} is lost"));
        if *later {
            assert!(got >= rv, "{name} went back from {rv} to {got}");
        } else {
            assert_eq!(got, rv, "{name}: acknowledged at {rv}, stored at {got}");
        }
    }
    // No ClusterIP or NodePort twice.
    let svcs: Value =
        serde_json::from_str(&c.k(&["--server", &there, "get", "services", "-A", "-o", "json"]))
            .expect("services");
    let (mut ips, mut ports) = (HashSet::new(), HashSet::new());
    let mut names = HashSet::new();
    for s in svcs["items"].as_array().into_iter().flatten() {
        names.insert(
            s["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        if let Some(ip) = s["spec"]["clusterIP"].as_str().filter(|ip| *ip != "None") {
            assert!(ips.insert(ip.to_string()), "ClusterIP {ip} twice");
        }
        for p in s["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(np) = p["nodePort"].as_u64() {
                assert!(ports.insert(np), "NodePort {np} twice");
            }
        }
    }
    for s in &acks.services {
        assert!(names.contains(s), "acknowledged service {s} is lost");
    }

    // The survivor's controllers take over within the lease duration (15 s;
    // the standby checks every 2 s, jittered), as the Lease's acquireTime says.
    eventually(Duration::from_secs(30), || {
        let h = holder(&c, &there);
        h.starts_with(&format!("{}_", c.node_name(survivor)))
            .then_some(())
    });
    let acquired = c.k(&[
        "--server",
        &there,
        "-n",
        "kube-system",
        "get",
        "lease",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.acquireTime}",
    ]);
    let acquired = chrono::DateTime::parse_from_rfc3339(acquired.trim())
        .expect("acquireTime")
        .with_timezone(&chrono::Utc);
    let took = (acquired - killed_at).to_std().unwrap_or_default();
    eprintln!("controllers taken over {took:?} after the kill");
    assert!(took < Duration::from_secs(20), "takeover took {took:?}");

    // Node 3's agent joined through the dead server and now goes through the
    // survivor: it keeps its Lease, while the dead server's node goes Unknown.
    let ready_of = |node: u8| {
        let out = c.kubectl(&[
            "--server",
            &there,
            "get",
            "node",
            &c.node_name(node),
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    eventually(Duration::from_secs(60), || {
        (ready_of(leader) == "Unknown").then_some(())
    });
    assert_eq!(
        ready_of(3),
        "True",
        "node 3 lost the API with server {leader}"
    );
    assert_eq!(ready_of(survivor), "True");

    // The controllers act: a new replica is made, scheduled on a live node and
    // becomes Ready.
    let before = pod_names(&c, &there);
    c.k(&[
        "--server",
        &there,
        "scale",
        "deployment",
        "whoami",
        "--replicas=4",
    ]);
    eventually(Duration::from_secs(90), || {
        let out = c.kubectl(&[
            "--server",
            &there,
            "get",
            "pods",
            "-l",
            "app=whoami",
            "-o",
            "json",
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["items"]
            .as_array()?
            .iter()
            .any(|p| {
                let name = p["metadata"]["name"].as_str().unwrap_or_default();
                !before.contains(name)
                    && p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .then_some(())
    });
    // The Service answers from the survivor's node.
    for _ in 0..10 {
        let out = c
            .on_node(survivor, "curl")
            .args(["-sS", "-m", "5", &format!("http://{}/", cluster_ip.trim())])
            .output()
            .expect("curl");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Hostname:"),
            "the Service did not answer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

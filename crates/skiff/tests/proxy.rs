//! End to end: the service proxy in a real `skiff server` (no agent, DNS or
//! controllers). The test makes its own "pods": network namespaces joined to the
//! cluster's namespace by veth pairs, each running a tiny server that names
//! itself; Services are selector-less with hand-written EndpointSlices. Every
//! address used lives inside these test-made namespaces.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{eventually, Cluster, Netns};

const NODE_IP: &str = "192.168.77.1";
const OUTSIDE_IP: &str = "192.168.77.2";
const GATEWAY: &str = "10.244.0.1";
/// On the node's own network segment: the outside host has no route for it and
/// finds the node by ARP, as a host on a LAN finds a MetalLB or ServiceLB address.
const LB_POOL: &str = "192.168.77.240/28";

fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sh_ok(c: &mut Command) -> String {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A "pod": its own namespace, a veth into the cluster namespace and servers.
struct Pod {
    name: String,
    ip: String,
    ns: Netns,
    servers: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Pod {
    fn new(cluster: &Cluster, index: u8) -> Self {
        let ns = Netns::new();
        let name = format!("pod{index}");
        let ip = format!("10.244.0.{}", 10 + index);
        let host_if = format!("sk{index}");
        let c = &cluster.netns.name;
        sh_ok(Command::new("ip").args([
            "-n", c, "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns",
            &ns.name,
        ]));
        sh_ok(Command::new("ip").args([
            "-n",
            c,
            "addr",
            "add",
            &format!("{GATEWAY}/32"),
            "dev",
            &host_if,
        ]));
        sh_ok(Command::new("ip").args(["-n", c, "link", "set", &host_if, "up"]));
        sh_ok(Command::new("ip").args([
            "-n",
            c,
            "route",
            "add",
            &format!("{ip}/32"),
            "dev",
            &host_if,
        ]));
        sh_ok(Command::new("ip").args([
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{ip}/32"),
            "dev",
            "eth0",
        ]));
        // A /32 and everything via the gateway: pods reach each other (and the
        // client pod) through the cluster namespace, where the proxy is.
        sh_ok(Command::new("ip").args(["-n", &ns.name, "link", "set", "eth0", "up"]));
        sh_ok(Command::new("ip").args(["-n", &ns.name, "route", "add", GATEWAY, "dev", "eth0"]));
        sh_ok(Command::new("ip").args(["-n", &ns.name, "route", "add", "default", "via", GATEWAY]));
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("id"), &name).expect("id file");
        Pod {
            name,
            ip,
            ns,
            servers: Vec::new(),
            _dir: dir,
        }
    }

    /// HTTP on 8080: `GET /id` answers the pod's name.
    fn http(mut self) -> Self {
        let child = self
            .ns
            .command(python())
            .args(["-m", "http.server", "8080", "--bind", "0.0.0.0"])
            .current_dir(self._dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("http server");
        self.servers.push(child);
        self
    }

    /// UDP on 5353: answers every datagram with the pod's name. One socket and
    /// one process (socat's `fork` lets a lingering child swallow datagrams).
    fn udp(mut self) -> Self {
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 5353))\nwhile True:\n    d, a = s.recvfrom(512)\n    s.sendto(b'{}\\n', a)\n",
            self.name
        );
        let child = self
            .ns
            .command(python())
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("udp server");
        self.servers.push(child);
        self
    }

    /// TCP echo on 9000.
    fn echo(mut self) -> Self {
        let child = self
            .ns
            .command("socat")
            .args(["TCP4-LISTEN:9000,fork,reuseaddr", "EXEC:cat"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("echo server");
        self.servers.push(child);
        self
    }

    fn sh(&self, script: &str) -> std::process::Output {
        self.ns
            .command("sh")
            .args(["-c", script])
            .output()
            .expect("sh")
    }

    /// `curl` from this pod: the answering pod's name, or `None` on failure.
    fn curl(&self, url: &str) -> Option<String> {
        let out = self.sh(&format!("curl -s --max-time 3 {url}"));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `curl`'s exit code for `url` from this pod (7: refused, 28: timed out).
    fn curl_exit(&self, url: &str) -> Option<i32> {
        self.sh(&format!("curl -s --max-time 3 {url}"))
            .status
            .code()
    }

    fn wait_listening(&self, port: u16) {
        eventually(Duration::from_secs(10), || {
            let out = self.sh(&format!("ss -Hltun | grep -q ':{port} '"));
            out.status.success().then_some(())
        });
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The outside host: a namespace on the node's network segment, with no routes
/// but the segment's own.
fn outside(cluster: &Cluster) -> Netns {
    support::outside_machine(&cluster.netns, "skout", NODE_IP, OUTSIDE_IP, &[])
}

fn start_cluster() -> Cluster {
    let cluster = Cluster::start_with(&[
        "--disable",
        "agent,dns,controllers",
        "--node-ip",
        NODE_IP,
        "--lb-pool",
        LB_POOL,
    ]);
    sh_ok(
        cluster
            .netns
            .command("sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"]),
    );
    cluster
}

/// A selector-less Service; `extra` is spliced into its spec.
fn service(cluster: &Cluster, name: &str, extra: &str, ports: &str) -> String {
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{extra}  ports:\n{ports}"
    ));
    cluster
        .k(&["get", "svc", name, "-o", "jsonpath={.spec.clusterIP}"])
        .trim()
        .to_string()
}

/// The EndpointSlice of `svc` with `pods` as ready endpoints.
fn endpoints(cluster: &Cluster, svc: &str, pods: &[&Pod], port: u16, proto: &str) {
    let mut eps = String::new();
    for p in pods {
        eps.push_str(&format!(
            "- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n",
            p.ip
        ));
    }
    // As the EndpointSlice controller stamps it: the proxy measures its
    // network programming latency from here.
    let now = sh_ok(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]));
    let now = now.trim();
    let eps = if pods.is_empty() {
        "[]\n".to_string()
    } else {
        format!("\n{eps}")
    };
    cluster.apply(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-1\n  annotations:\n    endpoints.kubernetes.io/last-change-trigger-time: \"{now}\"\n  labels:\n    kubernetes.io/service-name: {svc}\naddressType: IPv4\nports:\n- name: p\n  port: {port}\n  protocol: {proto}\nendpoints: {eps}"
    ));
}

fn names(client: &Pod, url: &str, n: usize) -> Vec<String> {
    (0..n).filter_map(|_| client.curl(url)).collect()
}

fn wait_for(cluster: &Cluster, client: &Pod, url: &str, want: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if client.curl(url).is_some_and(|s| want(&s)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{url} never answered as expected\n{}",
        diagnostics(cluster, client)
    );
}

fn diagnostics(cluster: &Cluster, client: &Pod) -> String {
    let log: String = cluster
        .log()
        .lines()
        .filter(|l| l.contains("proxy"))
        .collect::<Vec<_>>()
        .join("\n");
    let rules = cluster.sh("nft list ruleset; ip rule; ip route show table all | grep -v local");
    let c = client.sh("ip addr; ip route");
    format!(
        "--- proxy log\n{log}\n--- cluster ns\n{}{}\n--- client\n{}",
        String::from_utf8_lossy(&rules.stdout),
        String::from_utf8_lossy(&rules.stderr),
        String::from_utf8_lossy(&c.stdout)
    )
}

#[test]
fn services_through_the_proxy() {
    let cluster = start_cluster();
    let pods: Vec<Pod> = (1..=5)
        .map(|i| Pod::new(&cluster, i).http().udp())
        .collect();
    let client = Pod::new(&cluster, 50);
    let out = outside(&cluster);
    for p in &pods {
        p.wait_listening(8080);
    }
    let refs: Vec<&Pod> = pods.iter().collect();

    // ClusterIP: 50 requests reach at least 4 of the 5 pods.
    let ip = service(
        &cluster,
        "web",
        "",
        "  - name: p\n    port: 80\n    targetPort: 8080\n",
    );
    endpoints(&cluster, "web", &refs, 8080, "TCP");
    let url = format!("http://{ip}/id");
    wait_for(&cluster, &client, &url, |s| s.starts_with("pod"));
    let seen: std::collections::BTreeSet<String> = names(&client, &url, 50).into_iter().collect();
    assert!(seen.len() >= 4, "50 requests reached only {seen:?}");

    // An unknown port on a live ClusterIP and an unallocated service address
    // fail at once.
    // Refused (curl's exit 7, from the proxy's reject), not dropped (28, a timeout).
    for url in [
        format!("http://{ip}:81/id"),
        "http://10.96.99.99/id".to_string(),
    ] {
        assert_eq!(client.curl_exit(&url), Some(7), "{url}: not refused");
    }

    // NodePort on the node's address, from the outside host.
    let np_ip = service(
        &cluster,
        "np",
        "  type: NodePort\n",
        "  - name: p\n    port: 80\n    targetPort: 8080\n    nodePort: 30080\n",
    );
    assert!(!np_ip.is_empty());
    endpoints(&cluster, "np", &refs, 8080, "TCP");
    eventually(Duration::from_secs(15), || {
        let o = out
            .command("curl")
            .args([
                "-s",
                "--max-time",
                "3",
                &format!("http://{NODE_IP}:30080/id"),
            ])
            .output()
            .expect("curl");
        (o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("pod")).then_some(())
    });

    // LoadBalancer: the ingress address answers from the outside host.
    service(
        &cluster,
        "lb",
        "  type: LoadBalancer\n",
        "  - name: p\n    port: 80\n    targetPort: 8080\n",
    );
    endpoints(&cluster, "lb", &refs, 8080, "TCP");
    let lb_ip = eventually(Duration::from_secs(15), || {
        let s = cluster.k(&[
            "get",
            "svc",
            "lb",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        (!s.trim().is_empty()).then(|| s.trim().to_string())
    });
    eventually(Duration::from_secs(15), || {
        let o = out
            .command("curl")
            .args(["-s", "--max-time", "3", &format!("http://{lb_ip}/id")])
            .output()
            .expect("curl");
        (o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("pod")).then_some(())
    });
    // The node answered ARP for the address (the outside host has no route).
    let neigh = sh_ok(out.command("ip").args(["neigh", "show", &lb_ip]));
    assert!(
        neigh.contains("lladdr"),
        "no ARP answer for {lb_ip}: {neigh}"
    );
    // A port the service does not serve is refused, not handed to a node socket
    // (one listening on every address answers on the node's own address).
    let mut node_server = cluster
        .netns
        .command(python())
        .args(["-m", "http.server", "18080", "--bind", "0.0.0.0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node server");
    let curl_from_outside = |url: &str| {
        out.command("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "3", url])
            .output()
            .expect("curl")
            .status
            .code()
    };
    eventually(Duration::from_secs(10), || {
        (curl_from_outside(&format!("http://{NODE_IP}:18080/")) == Some(0)).then_some(())
    });
    let refused = curl_from_outside(&format!("http://{lb_ip}:18080/"));
    let _ = node_server.kill();
    let _ = node_server.wait();
    assert_eq!(
        refused,
        Some(7),
        "an unserved port of {lb_ip} was not refused"
    );
    // Deleting the service releases the address.
    cluster.k(&["delete", "svc", "lb"]);
    eventually(Duration::from_secs(15), || {
        let a = sh_ok(
            cluster
                .netns
                .command("ip")
                .args(["-o", "addr", "show", "dev", "lo"]),
        );
        (!a.contains(&format!("{lb_ip}/32"))).then_some(())
    });

    // ClientIP affinity: 20 requests, one pod; after the timeout a new choice.
    let aff_ip = service(
        &cluster,
        "sticky",
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 2\n",
        "  - name: p\n    port: 80\n    targetPort: 8080\n",
    );
    endpoints(&cluster, "sticky", &refs, 8080, "TCP");
    let aff_url = format!("http://{aff_ip}/id");
    wait_for(&cluster, &client, &aff_url, |s| s.starts_with("pod"));
    let got = names(&client, &aff_url, 20);
    let distinct: std::collections::BTreeSet<_> = got.iter().collect();
    assert_eq!(got.len(), 20);
    assert_eq!(distinct.len(), 1, "affinity broken: {got:?}");
    let first = got[0].clone();
    let mut moved = false;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(2500));
        if client.curl(&aff_url).as_deref() != Some(first.as_str()) {
            moved = true;
            break;
        }
    }
    assert!(moved, "after the timeout, no other pod was ever chosen");

    // Scale down to two pods: no request reaches a removed one.
    endpoints(&cluster, "web", &refs[..2], 8080, "TCP");
    std::thread::sleep(Duration::from_millis(500));
    let after = names(&client, &url, 30);
    assert_eq!(after.len(), 30);
    assert!(
        after.iter().all(|n| n == "pod1" || n == "pod2"),
        "removed pods reached: {after:?}"
    );

    // Scale to zero: the next connection fails at once.
    endpoints(&cluster, "web", &[], 8080, "TCP");
    eventually(Duration::from_secs(10), || {
        client.curl(&url).is_none().then_some(())
    });
    let t = Instant::now();
    let o = client.sh(&format!("curl -s --max-time 5 {url}"));
    assert!(!o.status.success());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );

    // UDP across endpoint replacement, from one fixed source port (one conntrack
    // flow): after pod1 is replaced by pod2 the flow must follow.
    let udp_ip = service(
        &cluster,
        "dns",
        "",
        "  - name: p\n    port: 53\n    targetPort: 5353\n    protocol: UDP\n",
    );
    endpoints(&cluster, "dns", &refs[..1], 5353, "UDP");
    let ask = || {
        let o = client.sh(&format!(
            "echo q | timeout 10 socat -t3 -T3 - UDP4:{udp_ip}:53,sourceport=40053,reuseaddr"
        ));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    eventually(Duration::from_secs(15), || (ask() == "pod1").then_some(()));
    endpoints(&cluster, "dns", &refs[1..2], 5353, "UDP");
    let mut answers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let a = ask();
        let done = a == "pod2";
        answers.push(a);
        if done {
            break;
        }
    }
    assert_eq!(
        answers.last().map(String::as_str),
        Some("pod2"),
        "the flow stayed on the removed endpoint: {answers:?}\n{}",
        diagnostics(&cluster, &client)
    );
    // socat waits up to 3 s for the answer after sending; an answer from pod1
    // would be the stale flow.
    for _ in 0..5 {
        assert_eq!(ask(), "pod2");
    }

    // Metrics, on kube-proxy's port.
    let m = cluster.sh("curl -s http://127.0.0.1:10249/metrics");
    let m = String::from_utf8_lossy(&m.stdout);
    for name in [
        "skiff_proxy_sync_duration_seconds_count",
        "skiff_proxy_network_programming_duration_seconds_count",
        "skiff_proxy_elements",
        "skiff_proxy_chains",
    ] {
        let line = m
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{m}"));
        assert!(!line.ends_with(" 0"), "{line}");
    }
    drop(cluster);
}

#[test]
fn restart_keeps_connections_and_shutdown_removes_the_table() {
    let mut cluster = start_cluster();
    let pod = Pod::new(&cluster, 1).echo();
    let client = Pod::new(&cluster, 50);
    pod.wait_listening(9000);
    let ip = service(&cluster, "echo", "", "  - name: p\n    port: 9000\n");
    endpoints(&cluster, "echo", &[&pod], 9000, "TCP");
    eventually(Duration::from_secs(15), || {
        // `timeout`: socat 1.7.4 was once seen blocked for good in a read() on an
        // established, idle connection, despite -T2; a stuck try must not hang
        // the test.
        let o = client.sh(&format!("echo hi | timeout 10 socat -T2 - TCP4:{ip}:9000"));
        (String::from_utf8_lossy(&o.stdout).trim() == "hi").then_some(())
    });

    // Conntrack (and so the NAT of established flows) only runs in a namespace
    // while some rule uses it: when the proxy removes its table, the agent's
    // masquerade rule (`ip skiff-agent`) keeps it on. The agent is disabled
    // here, so a stand-in of the same shape.
    let standin = "add table ip test-agent\nadd chain ip test-agent post { type nat hook postrouting priority 110 ; }\nadd rule ip test-agent post ip saddr 192.0.2.1 masquerade\n";
    let mut nft = cluster
        .netns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    nft.stdin
        .take()
        .expect("stdin")
        .write_all(standin.as_bytes())
        .expect("write");
    assert!(nft.wait().expect("nft").success());

    // One long-lived connection through the ClusterIP.
    let mut conn = client
        .ns
        .command("socat")
        .args(["-", &format!("TCP4:{ip}:9000")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat");
    let mut stdin = conn.stdin.take().expect("stdin");
    let stdout = conn.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    writeln!(stdin, "before").expect("write");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).ok().as_deref(),
        Some("before")
    );

    writeln!(stdin, "still").expect("write");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).ok().as_deref(),
        Some("still")
    );
    // SIGTERM: the proxy removes its table.
    cluster.stop(false);
    let tables = sh_ok(cluster.netns.command("nft").args(["list", "tables"]));
    assert!(
        !tables.contains("skiff"),
        "table left after shutdown: {tables}"
    );
    writeln!(stdin, "between").expect("write");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).ok().as_deref(),
        Some("between")
    );

    // Restart: the table comes back and the connection is still fine.
    cluster.spawn(&[
        "--disable",
        "agent,dns,controllers",
        "--node-ip",
        NODE_IP,
        "--lb-pool",
        LB_POOL,
    ]);
    eventually(Duration::from_secs(15), || {
        let t = sh_ok(cluster.netns.command("nft").args(["list", "tables"]));
        t.contains("ip skiff").then_some(())
    });
    writeln!(stdin, "after").expect("write");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).ok().as_deref(),
        Some("after")
    );
    drop(stdin);
    let _ = conn.kill();
    let _ = conn.wait();
    drop(cluster);

    // Nothing of ours in the host namespace.
    let host = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    assert!(!String::from_utf8_lossy(&host.stdout).contains("ip skiff"));
    let links = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains(" sk1") && !links.contains("skout"),
        "{links}"
    );
}

//! Cluster DNS end to end: a real `skiff server` in a test-made network
//! namespace, Services and hand-written EndpointSlices made with kubectl, and
//! real `dig` against the DNS server inside that namespace.

mod support;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{eventually, Cluster};

/// Components that need a node (agent, proxy) or would manage slices
/// (controllers) stay off: selector-less services with hand-written slices
/// are all DNS needs.
const FLAGS: &[&str] = &["--disable", "agent,proxy,controllers"];

const MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: pg, namespace: default}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: pg-1
  namespace: default
  labels: {kubernetes.io/service-name: pg}
addressType: IPv4
endpoints:
- addresses: [10.244.0.5]
  hostname: pg-0
  conditions: {ready: true}
- addresses: [10.244.0.6]
  hostname: pg-1
  conditions: {ready: true}
- addresses: [10.244.0.7]
  hostname: pg-2
  conditions: {ready: false}
ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  type: ExternalName
  externalName: example.com
"#;

/// `dig` inside the cluster's namespace against the DNS server on loopback.
fn dig(c: &Cluster, args: &str) -> String {
    let out = c.sh(&format!("dig @127.0.0.1 +time=2 +tries=1 {args}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn short(c: &Cluster, args: &str) -> Vec<String> {
    let mut v: Vec<String> = dig(c, &format!("+short {args}"))
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

fn status(c: &Cluster, args: &str) -> String {
    let out = dig(c, args);
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string()
}

fn wait_for_dns(c: &Cluster) {
    eventually(Duration::from_secs(30), || {
        (status(c, "kubernetes.default.svc.cluster.local") == "NOERROR").then_some(())
    });
}

#[test]
fn dns_answers_the_specification_over_udp_and_tcp() {
    let c = Cluster::start_with(FLAGS);
    c.apply(MANIFEST);
    wait_for_dns(&c);
    let web_ip = c.k(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let k8s_ip = c.k(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);

    assert_eq!(
        short(&c, "kubernetes.default.svc.cluster.local"),
        vec![k8s_ip]
    );
    let web = eventually(Duration::from_secs(10), || {
        let a = short(&c, "web.default.svc.cluster.local");
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(web, vec![web_ip.clone()]);
    let ns = c.sh("nslookup web.default.svc.cluster.local 127.0.0.1");
    let ns = String::from_utf8_lossy(&ns.stdout);
    assert!(ns.contains(&format!("Address: {web_ip}")), "{ns}");
    // Case-insensitive, and over TCP.
    assert_eq!(
        short(&c, "WEB.Default.Svc.Cluster.Local"),
        vec![web_ip.clone()]
    );
    assert_eq!(
        short(&c, "+tcp web.default.svc.cluster.local"),
        vec![web_ip.clone()]
    );
    // Headless: ready endpoints only.
    assert_eq!(
        short(&c, "pg.default.svc.cluster.local"),
        vec!["10.244.0.5", "10.244.0.6"]
    );
    // A StatefulSet-style member.
    assert_eq!(
        short(&c, "pg-1.pg.default.svc.cluster.local"),
        vec!["10.244.0.6"]
    );
    assert_eq!(status(&c, "pg-2.pg.default.svc.cluster.local"), "NXDOMAIN");
    // SRV, per endpoint for a headless service, and for the ClusterIP one.
    assert_eq!(
        short(&c, "SRV _pg._tcp.pg.default.svc.cluster.local"),
        vec![
            "0 50 5432 pg-0.pg.default.svc.cluster.local.",
            "0 50 5432 pg-1.pg.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        short(&c, "SRV _http._tcp.web.default.svc.cluster.local"),
        vec!["0 100 80 web.default.svc.cluster.local."]
    );
    // PTR for the ClusterIP and a headless endpoint.
    assert_eq!(
        short(&c, &format!("-x {web_ip}")),
        vec!["web.default.svc.cluster.local."]
    );
    assert_eq!(
        short(&c, "-x 10.244.0.5"),
        vec!["pg-0.pg.default.svc.cluster.local."]
    );
    // ExternalName.
    assert_eq!(
        short(&c, "CNAME ext.default.svc.cluster.local"),
        vec!["example.com."]
    );
    // Zone records.
    assert_eq!(
        short(&c, "TXT dns-version.cluster.local"),
        vec!["\"1.1.0\""]
    );
    assert_eq!(short(&c, "NS cluster.local"), vec!["ns.dns.cluster.local."]);
    assert_eq!(
        short(&c, "10-244-1-9.default.pod.cluster.local"),
        vec!["10.244.1.9"]
    );
    // NXDOMAIN vs NODATA, both with the SOA in authority.
    let nx = dig(&c, "nope.default.svc.cluster.local");
    assert!(
        nx.contains("status: NXDOMAIN") && nx.contains("IN\tSOA\tns.dns.cluster.local."),
        "{nx}"
    );
    let nodata = dig(&c, "AAAA web.default.svc.cluster.local");
    assert!(
        nodata.contains("status: NOERROR")
            && nodata.contains("ANSWER: 0")
            && nodata.contains("SOA"),
        "{nodata}"
    );
    // TTL 5.
    let full = dig(&c, "+noall +answer web.default.svc.cluster.local");
    let ttl = full.split_whitespace().nth(1);
    assert_eq!(ttl, Some("5"), "{full}");

    // An endpoint becomes ready: the answer changes as soon as the slice does.
    let start = Instant::now();
    c.k(&[
        "patch",
        "endpointslice",
        "pg-1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/endpoints/2/conditions/ready","value":true}]"#,
    ]);
    eventually(Duration::from_secs(10), || {
        (short(&c, "pg.default.svc.cluster.local").len() == 3).then_some(())
    });
    eprintln!(
        "endpoint change visible in DNS after {:?} (kubectl included)",
        start.elapsed()
    );
    // Scale to zero ready: NXDOMAIN.
    c.k(&["delete", "endpointslice", "pg-1"]);
    eventually(Duration::from_secs(10), || {
        (status(&c, "pg.default.svc.cluster.local") == "NXDOMAIN").then_some(())
    });

    // The kube-dns service leads to this node: an EndpointSlice at the pod gateway.
    let slice =
        eventually(Duration::from_secs(10), || {
            let out = c.kubectl(&[
            "get", "endpointslices", "-n", "kube-system", "-l",
            "kubernetes.io/service-name=kube-dns,endpointslice.kubernetes.io/managed-by=skiff-dns",
            "-o", "jsonpath={.items[*].endpoints[*].addresses[*]} {.items[*].ports[*].name}",
        ]);
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            (!s.trim().is_empty()).then_some(s)
        });
    assert!(slice.starts_with("10.244.0.1 "), "{slice}");
    for port in ["dns", "dns-tcp", "metrics"] {
        assert!(slice.contains(port), "{slice}");
    }

    // Metrics and health.
    let metrics = c.sh("curl -s http://127.0.0.1:9153/metrics");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("skiff_dns_requests_total{proto=\"udp\",type=\"A\",rcode=\"NOERROR\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("skiff_dns_request_duration_seconds_bucket"),
        "{metrics}"
    );
    // Our share of programming latency is measured (reported, not timed here).
    let programmed: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("skiff_dns_programming_duration_seconds_"))
        .collect();
    assert!(programmed.iter().any(|l| l.contains("_count")), "{metrics}");
    eprintln!("{}", programmed.join("\n"));
    let ready = c.sh("curl -s http://127.0.0.1:9153/ready");
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "OK");
    let health = c.sh("curl -s http://127.0.0.1:9153/health");
    assert_eq!(String::from_utf8_lossy(&health.stdout), "OK");
}

/// A tiny upstream resolver inside the namespace, on @ADDR@:@PORT@ (bound
/// with SO_REUSEPORT so it coexists with skiff's 0.0.0.0:53): every question
/// gets `A 192.0.2.@ANSWER@`. See [`upstream`].
const UPSTREAM: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("@ADDR@", @PORT@))
while True:
    q, peer = s.recvfrom(4096)
    end = 12
    while q[end] != 0:
        end += q[end] + 1
    question = q[12:end + 5]
    header = q[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([192, 0, 2, @ANSWER@])
    s.sendto(header + question + answer, peer)
"#;

struct Upstream {
    child: Child,
    etc: std::path::PathBuf,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// Starts the upstream of [`UPSTREAM`] in the cluster's namespace, and makes
/// `nameserver 127.0.0.2` the namespace's resolv.conf.
fn upstream(c: &Cluster, addr: &str, port: u16, answer: u8) -> Upstream {
    // `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf over
    // /etc/resolv.conf: that is the node's resolver skiff forwards to.
    let etc = std::path::PathBuf::from("/etc/netns").join(&c.netns.name);
    std::fs::create_dir_all(&etc).expect("creating /etc/netns/<ns>");
    std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.2\n")
        .expect("writing the namespace's resolv.conf");
    let script = UPSTREAM
        .replace("@ADDR@", addr)
        .replace("@PORT@", &port.to_string())
        .replace("@ANSWER@", &answer.to_string());
    let child = c
        .netns
        .command("/usr/bin/python3")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the test upstream");
    Upstream { child, etc }
}

#[test]
fn dns_forwards_names_outside_the_cluster() {
    let mut c = Cluster::start_with(FLAGS);
    let _upstream = upstream(&c, "127.0.0.2", 53, 1);
    c.stop(false);
    c.spawn(FLAGS);
    wait_for_dns(&c);
    assert_eq!(short(&c, "example.com"), vec!["192.0.2.1"]);
    assert_eq!(
        short(&c, "+tcp example.com"),
        Vec::<String>::new(),
        "the fake upstream has no TCP: SERVFAIL"
    );
    assert_eq!(status(&c, "+tcp example.com"), "SERVFAIL");
    // Cluster names are still ours.
    assert_eq!(status(&c, "nope.default.svc.cluster.local"), "NXDOMAIN");
    assert!(c.log().contains("dns serving"), "{}", c.log());
}

#[test]
fn dns_forwards_to_the_upstreams_given_with_the_upstream_flag() {
    let mut c = Cluster::start_with(FLAGS);
    // resolv.conf names 127.0.0.2 (answering 192.0.2.1); `--upstream` wins.
    let _resolv_conf = upstream(&c, "127.0.0.2", 53, 1);
    let _flag = upstream(&c, "127.0.0.3", 5353, 7);
    c.stop(false);
    // Comma-separated and repeated; nothing listens on the first, so the
    // next one is asked.
    let upstreams = [
        "--upstream",
        "127.0.0.4:5354,127.0.0.3:5353",
        "--upstream",
        "127.0.0.6:5355",
    ];
    let flags: Vec<&str> = FLAGS.iter().chain(&upstreams).copied().collect();
    c.spawn(&flags);
    wait_for_dns(&c);
    assert_eq!(short(&c, "example.com"), vec!["192.0.2.7"]);
    assert!(
        c.log()
            .contains("127.0.0.4:5354, 127.0.0.3:5353, 127.0.0.6:5355"),
        "{}",
        c.log()
    );
    assert_eq!(status(&c, "nope.default.svc.cluster.local"), "NXDOMAIN");
    // A malformed address is refused before anything starts.
    let out = c
        .netns
        .command(support::skiff_bin())
        .args(["server", "--upstream", "dns.example"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid upstream"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- From inside pods: every component on, resolv.conf as kubelet writes it.

const NODE: &str = "dns-node";

/// A whole cluster whose pods (processes that outlive the server by design)
/// are killed on drop: every process in a pod network namespace the agent
/// recorded under the data directory.
struct PodCluster(Cluster);

impl Drop for PodCluster {
    fn drop(&mut self) {
        self.0.stop(true);
        let dir = self.0.data_dir().join("agent/pods");
        let netns = |pid: u64| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let mut inodes = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let state: Option<serde_json::Value> = std::fs::read(e.path().join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(ino) = state
                .and_then(|s| s["sandbox"]["pid"].as_u64())
                .and_then(netns)
            {
                inodes.push(ino);
            }
        }
        let host = netns(u64::from(std::process::id()));
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            if let Some(ino) = netns(pid) {
                if Some(&ino) != host.as_ref() && inodes.contains(&ino) {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
}

fn exec(c: &Cluster, pod: &str, cmd: &str) -> String {
    let out = c.kubectl(&["exec", pod, "--", "sh", "-c", cmd]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

const POD_MANIFEST: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  nodeName: dns-node
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: busybox, args: [sleep, "3600"]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: peers, namespace: default}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: default, labels: {app: web}}
spec:
  nodeName: dns-node
  hostname: web-0
  subdomain: peers
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: busybox, args: [sleep, "3600"]}]
"#;

const STATEFULSET: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: busybox, args: [sleep, "3600"]}]
"#;

#[test]
fn pods_resolve_through_the_search_path_and_the_kube_dns_clusterip() {
    let c = PodCluster(Cluster::start_with(&["--node-name", NODE]));
    let c = &c.0;
    c.apply(POD_MANIFEST);
    let ready = |pod: &str| {
        let out = c.kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"]);
        let ip = String::from_utf8_lossy(&out.stdout).into_owned();
        (!ip.is_empty()).then_some(ip)
    };
    eventually(Duration::from_secs(60), || ready("client"));
    let web0 = eventually(Duration::from_secs(60), || ready("web-0"));
    let web_ip = c.k(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    // Through 10.96.0.10 (the proxy's DNAT to this node's DNS), with the
    // pod's own resolv.conf: short name, svc.ns, FQDN.
    for name in [
        "web",
        "web.default",
        "web.default.svc",
        "web.default.svc.cluster.local",
    ] {
        let got = eventually(Duration::from_secs(30), || {
            let a = exec(
                c,
                "client",
                &format!("nslookup {name} | sed -n 's/^Address: //p'"),
            );
            let a = sorted_lines(&a);
            (a == vec![web_ip.clone()]).then_some(a)
        });
        assert_eq!(got, vec![web_ip.clone()], "{name}");
    }
    let dig = exec(c, "client", "dig +short +search web");
    assert_eq!(sorted_lines(&dig), vec![web_ip.clone()], "dig +search");
    // Headless: the ready pods; a pod with hostname+subdomain gets its own name.
    eventually(Duration::from_secs(30), || {
        let a = sorted_lines(&exec(
            c,
            "client",
            "dig +short peers.default.svc.cluster.local",
        ));
        (a == vec![web0.clone()]).then_some(())
    });
    eventually(Duration::from_secs(30), || {
        let a = sorted_lines(&exec(
            c,
            "client",
            "dig +short web-0.peers.default.svc.cluster.local",
        ));
        (a == vec![web0.clone()]).then_some(())
    });
    // Another pod joins: the headless answer follows.
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: default, labels: {app: web}}\n\
         spec:\n  nodeName: dns-node\n  terminationGracePeriodSeconds: 1\n  \
         containers: [{name: c, image: busybox, args: [sleep, \"3600\"]}]\n",
    );
    let web1 = eventually(Duration::from_secs(60), || ready("web-1"));
    let mut both = vec![web0.clone(), web1];
    both.sort();
    eventually(Duration::from_secs(30), || {
        let a = sorted_lines(&exec(
            c,
            "client",
            "dig +short peers.default.svc.cluster.local",
        ));
        (a == both).then_some(())
    });
    // A StatefulSet member's FQDN resolves to that pod.
    c.apply(STATEFULSET);
    let db1 = eventually(Duration::from_secs(90), || ready("db-1"));
    eventually(Duration::from_secs(30), || {
        let a = sorted_lines(&exec(
            c,
            "client",
            "dig +short db-1.db.default.svc.cluster.local",
        ));
        (a == vec![db1.clone()]).then_some(())
    });
    // SRV and PTR from a pod.
    let srv = exec(
        c,
        "client",
        "dig +short SRV _http._tcp.web.default.svc.cluster.local",
    );
    assert_eq!(srv.trim(), "0 100 80 web.default.svc.cluster.local.");
    let ptr = exec(c, "client", &format!("dig +short -x {web_ip}"));
    assert_eq!(ptr.trim(), "web.default.svc.cluster.local.");
}

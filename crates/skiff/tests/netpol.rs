//! NetworkPolicy end to end: the whole `skiff server` (agent, proxy, DNS,
//! controllers, netpol) in a test-made network namespace, policies applied with
//! the real kubectl, and real TCP connections between pods (socat), through pod
//! addresses, ClusterIPs and DNS names. A denied connection must time out (the
//! SYN is dropped), and removing a policy must restore access at once.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{eventually, Cluster};

const NODE: &str = "netpol-node";

/// A cluster whose pods are killed when it is dropped, even on failure.
struct PodCluster(Cluster);

impl Drop for PodCluster {
    fn drop(&mut self) {
        self.0.stop(true);
        self.0.kill_pods();
    }
}

fn start() -> PodCluster {
    let c = PodCluster(Cluster::start_with(&["--node-name", NODE]));
    eventually(Duration::from_secs(30), || {
        c.0.kubectl(&["get", "node", NODE])
            .status
            .success()
            .then_some(())
    });
    c
}

/// A pod running a TCP server on `port` that answers `reply` to each
/// connection, with its port named `port_name`.
fn server(ns: &str, name: &str, labels: &str, port: u16, port_name: &str, reply: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\n\
         spec:\n  nodeName: {NODE}\n  terminationGracePeriodSeconds: 1\n  containers:\n  \
         - name: c\n    image: busybox\n    command: [socat, \"TCP-LISTEN:{port},fork,reuseaddr\", \"SYSTEM:echo {reply}\"]\n    \
         ports: [{{name: {port_name}, containerPort: {port}}}]\n---\n"
    )
}

/// A pod that only runs a shell, to connect from.
fn client(ns: &str, name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\n\
         spec:\n  nodeName: {NODE}\n  terminationGracePeriodSeconds: 1\n  \
         containers: [{{name: c, image: busybox, args: [sleep, \"3600\"]}}]\n---\n"
    )
}

fn service(ns: &str, name: &str, selector: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  selector: {{{selector}}}\n  ports: [{{port: {port}}}]\n---\n"
    )
}

fn namespace(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n---\n"
    )
}

fn pod_ip(c: &Cluster, ns: &str, pod: &str) -> String {
    eventually(Duration::from_secs(60), || {
        let out = c.kubectl(&[
            "get",
            "pod",
            "-n",
            ns,
            pod,
            "-o",
            "jsonpath={.status.podIP}",
        ]);
        let ip = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!ip.is_empty()).then_some(ip)
    })
}

fn cluster_ip(c: &Cluster, ns: &str, svc: &str) -> String {
    c.k(&[
        "get",
        "svc",
        "-n",
        ns,
        svc,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])
}

/// Connects from `ns/pod` to `host:port` with a 1 s connect timeout: the
/// server's reply, or the error.
fn connect(c: &Cluster, ns: &str, pod: &str, host: &str, port: u16) -> Result<String, String> {
    let target = format!("TCP:{host}:{port},connect-timeout=1");
    let mut cmd = c.netns.command("kubectl");
    cmd.args(["exec", "-n", ns, pod, "--", "socat", "-T1", "-", &target])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdin(Stdio::null());
    let out = cmd.output().expect("kubectl exec");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !stdout.is_empty() {
        Ok(stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `ns/pod` reaches `host:port` and gets `reply` (retried while pods and
/// rules settle).
fn reaches(c: &Cluster, ns: &str, pod: &str, host: &str, port: u16, reply: &str) {
    let mut last = Err(String::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        last = connect(c, ns, pod, host, port);
        if last.as_deref() == Ok(reply) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{ns}/{pod} -> {host}:{port}: {last:?}\n{}", c.log());
}

/// `ns/pod` cannot reach `host:port`: the connection times out (dropped, not
/// refused). Retried briefly, as a just-applied policy takes one sync.
fn times_out(c: &Cluster, ns: &str, pod: &str, host: &str, port: u16) {
    let mut last = Ok(String::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        last = connect(c, ns, pod, host, port);
        if let Err(e) = &last {
            assert!(
                e.contains("timed out"),
                "{ns}/{pod} -> {host}:{port} failed but did not time out: {e}"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{ns}/{pod} -> {host}:{port} still connects: {last:?}");
}

/// How long until `ns/pod` reaches `host:port` again.
fn time_to_reach(c: &Cluster, ns: &str, pod: &str, host: &str, port: u16) -> Duration {
    let start = Instant::now();
    loop {
        if connect(c, ns, pod, host, port).is_ok() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{ns}/{pod} -> {host}:{port} not restored"
        );
    }
}

fn metric(c: &Cluster, line_prefix: &str) -> Option<u64> {
    let out = c.sh("curl -s 127.0.0.1:9091/metrics");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
}

const BROKER_POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broker-access, namespace: default}
spec:
  podSelector:
    matchLabels: {role: message-broker}
  ingress:
  - from:
    - podSelector:
        matchLabels: {broker-access: "true"}
    ports:
    - {protocol: TCP, port: 6379}
"#;

#[test]
fn only_labelled_pods_reach_the_broker() {
    let c = start();
    let c = &c.0;
    let mut m = server(
        "default",
        "broker",
        "role: message-broker",
        6379,
        "redis",
        "PONG",
    );
    m += &service("default", "broker", "role: message-broker", 6379);
    m += &client("default", "app", "broker-access: \"true\"");
    m += &client("default", "intruder", "app: intruder");
    c.apply(&m);
    let broker = pod_ip(c, "default", "broker");
    let vip = cluster_ip(c, "default", "broker");
    // No policy: everyone gets through.
    for pod in ["app", "intruder"] {
        reaches(c, "default", pod, &broker, 6379, "PONG");
        reaches(c, "default", pod, &vip, 6379, "PONG");
    }
    c.apply(BROKER_POLICY);
    // Only the labelled pod, through the pod address and the service.
    times_out(c, "default", "intruder", &broker, 6379);
    times_out(c, "default", "intruder", &vip, 6379);
    reaches(c, "default", "app", &broker, 6379, "PONG");
    reaches(c, "default", "app", &vip, 6379, "PONG");
    // The drops are counted on the policy's counter.
    let denied = "skiff_netpol_denied_packets_total{namespace=\"default\",policy=\"broker-access\",direction=\"ingress\"} ";
    let n = metric(c, denied).unwrap_or(0);
    assert!(n >= 2, "denied packets: {n}");
    // A label change applies at once, both ways.
    c.k(&["label", "pod", "intruder", "broker-access=true"]);
    reaches(c, "default", "intruder", &vip, 6379, "PONG");
    c.k(&["label", "pod", "intruder", "broker-access-"]);
    times_out(c, "default", "intruder", &vip, 6379);
    // Deleting the policy restores access at once.
    c.k(&["delete", "networkpolicy", "broker-access"]);
    let t = time_to_reach(c, "default", "intruder", &broker, 6379);
    assert!(t < Duration::from_secs(3), "access restored after {t:?}");
    reaches(c, "default", "intruder", &vip, 6379, "PONG");
}

const PROD_POLICIES: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: prod}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-frontend, namespace: prod}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {team: frontend}
    ports:
    - port: http
    - port: pg
"#;

const IPBLOCK_POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: pod-network-but-one, namespace: blocks}
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        cidr: 10.244.0.0/16
        except: [EXCEPT/32]
"#;

const EGRESS_POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns-and-api-only, namespace: frontend}
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Egress]
  egress:
  - ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
  - to:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: prod}
      podSelector:
        matchLabels: {app: api}
    ports:
    - {protocol: TCP, port: 8080}
"#;

#[test]
fn namespaces_egress_and_ip_blocks() {
    let c = start();
    let c = &c.0;
    let mut m = namespace("prod", "env: prod");
    m += &namespace("frontend", "team: frontend");
    m += &namespace("other", "team: other");
    m += &namespace("blocks", "purpose: ipblock");
    m += &server("prod", "api", "app: api", 8080, "http", "API");
    m += &service("prod", "api", "app: api", 8080);
    m += &server("prod", "db", "app: db", 5432, "pg", "DB");
    m += &service("prod", "db", "app: db", 5432);
    m += &server("blocks", "target", "app: target", 9000, "t", "TARGET");
    m += &client("frontend", "web", "app: web");
    m += &client("other", "web", "app: web");
    c.apply(&m);
    let api = pod_ip(c, "prod", "api");
    let db = pod_ip(c, "prod", "db");
    let target = pod_ip(c, "blocks", "target");
    let other_web = pod_ip(c, "other", "web");
    for ns in ["frontend", "other"] {
        reaches(c, ns, "web", &api, 8080, "API");
        reaches(c, ns, "web", &db, 5432, "DB");
        reaches(c, ns, "web", &target, 9000, "TARGET");
    }

    // Default-deny ingress in prod, plus an allow from the frontend namespace
    // by its label (to named ports).
    c.apply(PROD_POLICIES);
    times_out(c, "other", "web", &api, 8080);
    times_out(c, "other", "web", &db, 5432);
    reaches(c, "frontend", "web", &api, 8080, "API");
    reaches(c, "frontend", "web", "api.prod", 8080, "API");
    reaches(c, "frontend", "web", &db, 5432, "DB");

    // ipBlock with except: the whole pod network but one pod.
    c.apply(&IPBLOCK_POLICY.replace("EXCEPT", &other_web));
    times_out(c, "other", "web", &target, 9000);
    reaches(c, "frontend", "web", &target, 9000, "TARGET");

    // Egress: DNS and the api service only.
    c.apply(EGRESS_POLICY);
    times_out(c, "frontend", "web", &db, 5432);
    times_out(c, "frontend", "web", "db.prod", 5432);
    times_out(c, "frontend", "web", &target, 9000);
    reaches(
        c,
        "frontend",
        "web",
        "api.prod.svc.cluster.local",
        8080,
        "API",
    );
    let lookup = c.kubectl(&["exec", "-n", "frontend", "web", "--", "nslookup", "db.prod"]);
    assert!(
        lookup.status.success(),
        "DNS stays allowed: {}",
        String::from_utf8_lossy(&lookup.stderr)
    );

    // Removing the policies restores access at once.
    c.k(&["delete", "networkpolicy", "--all", "-n", "prod"]);
    let t = time_to_reach(c, "other", "web", &api, 8080);
    assert!(t < Duration::from_secs(3), "access restored after {t:?}");
    c.k(&["delete", "networkpolicy", "--all", "-n", "frontend"]);
    reaches(c, "frontend", "web", &db, 5432, "DB");
    c.k(&["delete", "networkpolicy", "--all", "-n", "blocks"]);
    reaches(c, "other", "web", &target, 9000, "TARGET");
}

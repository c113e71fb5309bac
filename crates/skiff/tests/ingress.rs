//! The ingress component end to end (issue #19): one `skiff server` with the
//! whole stack in a test-made namespace, its node on a veth to an "outside"
//! machine (another test-made namespace) from which real curl, Python and
//! openssl clients reach the `kube-system/skiff-ingress` LoadBalancer address.
//! Backends are Deployments of `traefik/whoami` (the built-in catalog's
//! stand-in names the answering pod and echoes WebSockets on `/echo`).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::multinode::{node_ip, MultiNode};
use support::{eventually, outside_machine, Cluster, Netns};

const NODE: &str = "ingress-node";
const NODE_IP: &str = "192.168.78.1";
const OUTSIDE_IP: &str = "192.168.78.2";
/// On the node's segment, as in the proxy's tests: the outside machine finds
/// the address by ARP.
const LB_POOL: &str = "192.168.78.240/28";

fn app(name: &str, replicas: usize) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: whoami
        image: traefik/whoami
        readinessProbe:
          httpGet: {{path: /, port: 80}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: 80, targetPort: 80}}
"
    )
}

const WEB: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  ingressClassName: skiff
  rules:
  - host: app1.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app1, port: {number: 80}}}}
  - host: app2.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app2, port: {name: http}}}}
  - host: paths.example
    http:
      paths:
      - {path: /one, pathType: Prefix, backend: {service: {name: app1, port: {number: 80}}}}
      - {path: /two, pathType: Prefix, backend: {service: {name: app2, port: {number: 80}}}}
      - {path: /gone, pathType: Prefix, backend: {service: {name: nope, port: {number: 80}}}}
";

/// ingress-nginx's rewrite example, with the legacy class annotation.
const REWRITE: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: rewrite
  annotations:
    kubernetes.io/ingress.class: skiff
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  rules:
  - host: rewrite.example
    http:
      paths:
      - {path: /something(/|$)(.*), pathType: ImplementationSpecific, backend: {service: {name: app2, port: {number: 80}}}}
";

/// No class named: served because `skiff` is the default class.
const STICKY: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: sticky
  annotations:
    nginx.ingress.kubernetes.io/affinity: cookie
    nginx.ingress.kubernetes.io/session-cookie-name: route
    nginx.ingress.kubernetes.io/session-cookie-max-age: \"3600\"
    nginx.ingress.kubernetes.io/proxy-body-size: 8m
spec:
  rules:
  - host: sticky.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app1, port: {number: 80}}}}
";

const SECURE: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: secure
spec:
  ingressClassName: skiff
  tls:
  - {hosts: [a.tls.example], secretName: a-tls}
  - {hosts: [b.tls.example], secretName: b-tls}
  - {hosts: [c.tls.example], secretName: missing-tls}
  rules:
  - host: a.tls.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app1, port: {number: 80}}}}
  - host: b.tls.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app2, port: {number: 80}}}}
  - host: c.tls.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app1, port: {number: 80}}}}
";

/// A WebSocket client: handshake, then each argument sent and its echo printed.
const WS_CLIENT: &str = include_str!("ingress/ws_client.py");

/// Load until the file argv[3] exists: one thread on one keep-alive
/// connection, one opening a new connection per request; prints the counts
/// and the first failures.
const LOAD: &str = include_str!("ingress/load.py");

struct Outside(Netns);

impl Outside {
    /// curl from the outside machine: `(status, body)`; status 0 when no answer.
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = self
            .0
            .command("curl")
            .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn get(&self, lb: &str, host: &str, path: &str) -> (u16, String) {
        self.curl(&[
            "-H",
            &format!("Host: {host}"),
            &format!("http://{lb}{path}"),
        ])
    }
}

/// The `Hostname:` line of a whoami answer.
fn hostname(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix("Hostname: "))
        .map(str::to_string)
}

/// A request header as whoami echoes it (names are case-insensitive).
fn header<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines().find_map(|l| {
        let (k, v) = l.split_once(": ")?;
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

fn ready_replicas(c: &Cluster, name: &str) -> usize {
    c.k(&[
        "get",
        "deployment",
        name,
        "-o",
        "jsonpath={.status.readyReplicas}",
    ])
    .trim()
    .parse()
    .unwrap_or(0)
}

fn wait_ready(c: &Cluster, name: &str, n: usize) {
    eventually(Duration::from_secs(120), || {
        let out = c.kubectl(&[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "--timeout=1s",
        ]);
        (out.status.success() && ready_replicas(c, name) == n).then_some(())
    });
}

/// A CA, and a certificate it signs for `host` (PEM files in `dir`).
fn certificates(dir: &Path, hosts: &[&str]) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "ingress test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    for h in hosts {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(vec![h.to_string()]).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, *h);
        let cert = p.signed_by(&key, &issuer).expect("sign");
        std::fs::write(dir.join(format!("{h}.crt")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{h}.key")), key.serialize_pem()).expect("write");
    }
}

fn start() -> (Cluster, Outside) {
    let node = Netns::new();
    let outside = outside_machine(&node, "eth1", NODE_IP, OUTSIDE_IP, &[LB_POOL]);
    let c = Cluster::start_in(
        node,
        &[
            "--node-name",
            NODE,
            "--node-ip",
            NODE_IP,
            "--lb-pool",
            LB_POOL,
        ],
    );
    (c, Outside(outside))
}

/// On failure, the ingress's lines of the server log (the log itself goes
/// with the cluster's directory).
struct ShowLog<'a>(&'a Cluster);

impl Drop for ShowLog<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.0.log();
            let lines: Vec<&str> = log.lines().filter(|l| l.contains("ingress")).collect();
            eprintln!(
                "--- ingress log ---\n{}",
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
        }
    }
}

#[test]
fn ingress_end_to_end() {
    let (c, out) = start();
    let _log = ShowLog(&c);
    // The class is there, marked default, before any Ingress.
    let class = eventually(Duration::from_secs(30), || {
        let o = c.kubectl(&["get", "ingressclass", "skiff", "-o", "json"]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    });
    assert!(
        class.contains("\"controller\": \"skiff.dev/ingress\""),
        "{class}"
    );
    assert!(
        class.contains("\"ingressclass.kubernetes.io/is-default-class\": \"true\""),
        "{class}"
    );
    c.apply(&format!("{}---\n{}", app("app1", 3), app("app2", 2)));
    c.apply(WEB);
    wait_ready(&c, "app1", 3);
    wait_ready(&c, "app2", 2);

    // The Service got an address from the pool; each Ingress reports it.
    let lb = eventually(Duration::from_secs(30), || {
        let ip = c.kubectl(&[
            "get",
            "svc",
            "-n",
            "kube-system",
            "skiff-ingress",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        let ip = String::from_utf8_lossy(&ip.stdout).trim().to_string();
        (!ip.is_empty()).then_some(ip)
    });
    assert!(
        lb.starts_with("192.168.78.24") || lb.starts_with("192.168.78.25"),
        "{lb}"
    );
    eventually(Duration::from_secs(30), || {
        let ip = c.k(&[
            "get",
            "ingress",
            "web",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        (ip.trim() == lb).then_some(())
    });

    hosts_and_paths(&c, &out, &lb);
    tls_by_sni(&c, &out, &lb);
    cookie_affinity(&c, &out, &lb);
    websocket(&out, &lb);
    replaced_under_load(&c, &out, &lb);

    least_privilege(&c);
    service_comes_back(&c);
    let metrics = sh(&c, &format!("curl -s http://{NODE_IP}:10254/metrics"));
    assert!(
        metrics.contains(
            "skiff_ingress_requests_total{namespace=\"default\",ingress=\"web\",service=\"app1\",status=\"200\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("service=\"nope\",status=\"503\"}"),
        "{metrics}"
    );
}

fn sh(c: &Cluster, script: &str) -> String {
    let o = c.sh(script);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Two apps behind one address, by host and by path; a missing backend is a
/// 503 for its route only, and an event.
fn hosts_and_paths(c: &Cluster, out: &Outside, lb: &str) {
    // The table follows the endpoints; wait for the first answer.
    eventually(Duration::from_secs(30), || {
        let (code, body) = out.get(lb, "app1.example", "/");
        (code == 200 && hostname(&body).is_some()).then_some(())
    });
    let cases = [
        ("app1.example", "/", "app1-"),
        ("app2.example", "/x", "app2-"),
        ("paths.example", "/one", "app1-"),
        ("paths.example", "/two/deeper", "app2-"),
    ];
    for (host, path, want) in cases {
        let (code, body) = out.get(lb, host, path);
        assert_eq!(code, 200, "{host}{path}: {body}");
        let h = hostname(&body).unwrap_or_default();
        assert!(h.starts_with(want), "{host}{path} answered by {h:?}");
    }
    let (_, body) = out.get(lb, "app1.example", "/headers");
    assert_eq!(header(&body, "X-Forwarded-Proto"), Some("http"), "{body}");
    assert_eq!(
        header(&body, "X-Forwarded-Host"),
        Some("app1.example"),
        "{body}"
    );
    // The outside machine's own address: the LB path keeps the client's IP.
    assert_eq!(header(&body, "X-Forwarded-For"), Some(OUTSIDE_IP), "{body}");
    assert_eq!(out.get(lb, "paths.example", "/gone").0, 503);
    assert_eq!(out.get(lb, "paths.example", "/twoish").0, 404);
    assert_eq!(out.get(lb, "unknown.example", "/").0, 404);
    // The other routes of the same host still answer.
    assert_eq!(out.get(lb, "paths.example", "/one").0, 200);
    // The access log (written in batches) has the requests, nginx's format.
    eventually(Duration::from_secs(10), || {
        let log = c.log();
        let line = log.lines().find(|l| {
            l.contains("skiff_ingress::access: ") && l.contains("\"GET /two/deeper HTTP/1.1\" 200 ")
        })?;
        line.contains(&format!("{OUTSIDE_IP} - - [")).then_some(())
    });
    // rewrite-target with capture groups.
    c.apply(REWRITE);
    let (_, body) = eventually(Duration::from_secs(30), || {
        let r = out.get(lb, "rewrite.example", "/something/new?q=1");
        (r.0 == 200).then_some(r)
    });
    assert!(body.contains("GET /new?q=1 HTTP/1.1"), "{body}");
    let (_, body) = out.get(lb, "rewrite.example", "/something");
    assert!(body.contains("GET / HTTP/1.1"), "{body}");
    eventually(Duration::from_secs(15), || {
        c.k(&["describe", "ingress", "web"])
            .contains("service \"default/nope\" not found")
            .then_some(())
    });
}

fn tls_by_sni(c: &Cluster, out: &Outside, lb: &str) {
    let dir = c.dir.path();
    certificates(dir, &["a.tls.example", "b.tls.example"]);
    for (secret, host) in [("a-tls", "a.tls.example"), ("b-tls", "b.tls.example")] {
        c.k(&[
            "create",
            "secret",
            "tls",
            secret,
            &format!("--cert={}", dir.join(format!("{host}.crt")).display()),
            &format!("--key={}", dir.join(format!("{host}.key")).display()),
        ]);
    }
    c.apply(SECURE);
    let ca = dir.join("ca.pem").display().to_string();
    let https = |host: &str, extra: &[&str]| {
        let resolve = format!("{host}:443:{lb}");
        let url = format!("https://{host}/");
        let mut args = vec!["--resolve", resolve.as_str(), "--cacert", ca.as_str()];
        args.extend_from_slice(extra);
        args.push(url.as_str());
        out.curl(&args)
    };
    // Each host's own certificate (verified against the CA for that name).
    let (code, body) = eventually(Duration::from_secs(30), || {
        let r = https("a.tls.example", &[]);
        (r.0 == 200).then_some(r)
    });
    assert!(
        hostname(&body).unwrap_or_default().starts_with("app1-"),
        "{code} {body}"
    );
    let (code, body) = https("b.tls.example", &[]);
    assert_eq!(code, 200, "{body}");
    assert!(
        hostname(&body).unwrap_or_default().starts_with("app2-"),
        "{body}"
    );
    assert_eq!(header(&body, "X-Forwarded-Proto"), Some("https"), "{body}");
    // HTTP/2 by ALPN.
    let (code, version) = https(
        "b.tls.example",
        &[
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}\n%{http_code}",
        ],
    );
    assert_eq!((code, version.as_str()), (200, "2"));
    // A host whose Secret is missing gets the default certificate (curl would
    // refuse it against the CA), the others are unaffected.
    assert_eq!(https("c.tls.example", &[]).0, 0);
    let verbose = out
        .0
        .command("curl")
        .args([
            "-skv",
            "-m",
            "5",
            "--resolve",
            &format!("c.tls.example:443:{lb}"),
            "https://c.tls.example/",
        ])
        .output()
        .expect("curl");
    let stderr = String::from_utf8_lossy(&verbose.stderr);
    assert!(
        stderr.contains("Kubernetes Ingress Controller Fake Certificate"),
        "{stderr}"
    );
    // Plain HTTP to a TLS host is redirected.
    let (code, _) = out.get(lb, "a.tls.example", "/p?q=1");
    assert_eq!(code, 308);
    let o = out
        .0
        .command("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{redirect_url}",
            "-H",
            "Host: a.tls.example",
        ])
        .arg(format!("http://{lb}/p?q=1"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "https://a.tls.example/p?q=1"
    );
    eventually(Duration::from_secs(15), || {
        c.k(&["describe", "ingress", "secure"])
            .contains("secret \"default/missing-tls\"")
            .then_some(())
    });
}

fn cookie_affinity(c: &Cluster, out: &Outside, lb: &str) {
    c.apply(STICKY);
    let jar = c.dir.path().join("cookies.txt");
    let jar = jar.display().to_string();
    eventually(Duration::from_secs(30), || {
        (out.get(lb, "sticky.example", "/").0 == 200).then_some(())
    });
    let mut seen = Vec::new();
    for _ in 0..50 {
        let (code, body) = out.curl(&[
            "-b",
            &jar,
            "-c",
            &jar,
            "-H",
            "Host: sticky.example",
            &format!("http://{lb}/"),
        ]);
        assert_eq!(code, 200, "{body}");
        seen.push(hostname(&body).unwrap_or_default());
    }
    let distinct: BTreeSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), 1, "affinity broken: {seen:?}");
    let cookies = std::fs::read_to_string(&jar).unwrap_or_default();
    assert!(cookies.contains("\troute\t"), "{cookies}");
    // Without the annotation, the same client's requests spread.
    let spread: BTreeSet<_> = (0..30)
        .filter_map(|_| hostname(&out.get(lb, "app1.example", "/").1))
        .collect();
    assert!(spread.len() >= 2, "no spread without affinity: {spread:?}");
    // The unsupported annotation was noted.
    eventually(Duration::from_secs(15), || {
        c.k(&["describe", "ingress", "sticky"])
            .contains("proxy-body-size")
            .then_some(())
    });
}

fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn websocket(out: &Outside, lb: &str) {
    let o = out
        .0
        .command(python())
        .args([
            "-c",
            WS_CLIENT,
            lb,
            "80",
            "app1.example",
            "/echo",
            "hello",
            "ingress",
        ])
        .output()
        .expect("ws client");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("HTTP/1.1 101"),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("echo:hello\necho:ingress"), "{text}");
}

/// Requests keep succeeding, on one keep-alive connection and on new ones,
/// while app2 is scaled up, every pod replaced, and scaled down.
fn replaced_under_load(c: &Cluster, out: &Outside, lb: &str) {
    let stop = c.dir.path().join("stop-load");
    let load = out
        .0
        .command(python())
        .args(["-c", LOAD, lb, "app2.example"])
        .arg(&stop)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("load");
    // (Should the test fail before the end, the outside namespace's drop ends it.)
    std::thread::sleep(Duration::from_secs(2));
    c.k(&["scale", "deployment", "app2", "--replicas=4"]);
    wait_ready(c, "app2", 4);
    c.k(&["rollout", "restart", "deployment/app2"]);
    std::thread::sleep(Duration::from_secs(2));
    wait_ready(c, "app2", 4);
    c.k(&["scale", "deployment", "app2", "--replicas=2"]);
    wait_ready(c, "app2", 2);
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&stop, "").expect("stop");
    let o = load.wait_with_output().expect("load output");
    let text = String::from_utf8_lossy(&o.stdout);
    eprintln!("load: {text}");
    let counts: Vec<usize> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|w| w.split_once('=').and_then(|(_, n)| n.parse().ok()))
        .collect();
    assert_eq!(
        counts.len(),
        4,
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(counts[0] > 50 && counts[2] > 50, "too little load: {text}");
    if (counts[1], counts[3]) != (0, 0) {
        // What the ingress saw: its answers other than 200, and its warnings.
        let log = c.log();
        let seen: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("app2.example") || l.contains("skiff_ingress"))
            .filter(|l| !l.contains("\" 200 ") && !l.contains(" DEBUG "))
            .collect();
        panic!("failed requests: {text}\n{}", seen.join("\n"));
    }
}

/// The ingress's identity may do what it does and no more, and was refused nothing.
fn least_privilege(c: &Cluster) {
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", "system:skiff:ingress"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&c.kubectl(&all).stdout).trim() == "yes"
    };
    for allowed in [
        &["list", "secrets", "-A"][..],
        &["watch", "ingresses.networking.k8s.io", "-A"],
        &[
            "patch",
            "ingresses.networking.k8s.io/web",
            "--subresource=status",
        ],
        &["create", "ingressclasses.networking.k8s.io"],
        &["create", "services", "-n", "kube-system"],
        &[
            "patch",
            "endpointslices.discovery.k8s.io",
            "-n",
            "kube-system",
        ],
    ] {
        assert!(can(allowed), "may not {allowed:?}");
    }
    for refused in [
        &["create", "pods"][..],
        &["update", "ingresses.networking.k8s.io/web"],
        &["create", "services"],
        &["delete", "services", "-n", "kube-system"],
        &["patch", "endpointslices.discovery.k8s.io"],
        &["create", "secrets", "-A"],
    ] {
        assert!(!can(refused), "may {refused:?}");
    }
    let refusals: Vec<String> = c
        .log()
        .lines()
        .filter(|l| l.contains("orbidden") && l.contains("system:skiff:ingress"))
        .map(str::to_string)
        .collect();
    assert!(refusals.is_empty(), "{refusals:?}");
}

/// `--disable ingress`: no IngressClass appears (it does without the flag).
#[test]
fn disabled_ingress_makes_nothing() {
    let off = Cluster::start_with(&["--disable", "agent,proxy,dns,netpol,ingress"]);
    let on = Cluster::start_with(&["--disable", "agent,proxy,dns,netpol"]);
    eventually(Duration::from_secs(30), || {
        on.kubectl(&["get", "ingressclass", "skiff"])
            .status
            .success()
            .then_some(())
    });
    let listed = off.k(&["get", "ingressclass", "-o", "name"]);
    assert_eq!(listed.trim(), "", "{listed}");
    assert!(!off.log().contains("skiff_ingress"), "the ingress ran");
}

/// Every node runs the ingress, a joined one (`skiff agent`) with its own
/// certificate from the node-components endpoint: both addresses are in the
/// Service's slices, and each answers for the Ingress.
#[test]
fn every_node_serves_ingresses() {
    let c = MultiNode::up(2, &["--host-images"]);
    c.apply(&app("app1", 2));
    c.apply(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - host: app1.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: app1, port: {number: 80}}}}
",
    );
    let want = format!("{} {}", node_ip(1), node_ip(2));
    let got = eventually(Duration::from_secs(90), || {
        let out = c.kubectl(&[
            "get",
            "endpointslices",
            "-n",
            "kube-system",
            "-l",
            "kubernetes.io/service-name=skiff-ingress",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[0]}",
        ]);
        let mut ips: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        ips.sort();
        let ips = ips.join(" ");
        (ips == want).then_some(ips)
    });
    assert_eq!(got, want);
    for i in 1..=2 {
        let url = format!("http://{}/", node_ip(i));
        eventually(Duration::from_secs(90), || {
            let out = c.outside(&format!("curl -s -m 5 -H 'Host: app1.example' {url}"));
            String::from_utf8_lossy(&out.stdout)
                .contains("Hostname: app1-")
                .then_some(())
        });
    }
    let logs = c.logs();
    assert!(
        !logs
            .lines()
            .any(|l| l.contains("orbidden") && l.contains("system:skiff:ingress")),
        "{logs}"
    );
}

/// The Service is made again when deleted, and the statuses follow its address.
fn service_comes_back(c: &Cluster) {
    c.k(&["delete", "svc", "-n", "kube-system", "skiff-ingress"]);
    let lb = eventually(Duration::from_secs(30), || {
        let out = c.kubectl(&[
            "get",
            "svc",
            "-n",
            "kube-system",
            "skiff-ingress",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        let ip = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!ip.is_empty()).then_some(ip)
    });
    eventually(Duration::from_secs(30), || {
        let ip = c.k(&[
            "get",
            "ingress",
            "sticky",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        (ip.trim() == lb).then_some(())
    });
}

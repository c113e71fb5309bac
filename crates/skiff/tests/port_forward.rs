//! `kubectl port-forward`, `pods/proxy` and `services/proxy` end to end: one
//! `skiff server` (API, controllers, agent; no service proxy or DNS) in a
//! test-made network namespace, a pod serving HTTP on 80 and 8080 (all
//! addresses) and 9090 (its own 127.0.0.1 only, reachable only from inside its
//! network namespace), and the real kubectl forwarding to it: WebSocket-tunneled
//! SPDY (kubectl's default), plain SPDY (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`
//! and kubectl 1.27), a Service, two ports at once, 100 parallel curls, a port
//! nobody listens on; the Python client's WebSocket channel protocol; and
//! `kubectl get --raw` through both proxies. A second test does both to a pod
//! on a joined node (`skiff up --nodes 2`). Every forwarded address is
//! 127.0.0.1 in the test's namespace; the clusters' drops kill the pods.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::multinode::MultiNode;
use support::{eventually, Background, Cluster};

const NODE: &str = "pf-node";

/// The pod's server: `port N PATH` from every port, in threads, with a listen
/// backlog for 100 connections at once; HTTPS on 8443 when given a certificate
/// and key (PEM) in `CERT_PEM` and `KEY_PEM`.
const SERVER: &str = r#"
import http.server, os, ssl, tempfile, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Upgrade") == "echo":
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "echo")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            while True:
                b = self.rfile.read1(4096)
                if not b:
                    return
                self.wfile.write(b)
        body = ("port %d %s\n" % (self.server.server_address[1], self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True
def serve(addr, port, tls=None):
    s = S((addr, port), H)
    if tls:
        s.socket = tls.wrap_socket(s.socket, server_side=True)
    s.serve_forever()
servers = [("0.0.0.0", 80, None), ("0.0.0.0", 8080, None), ("127.0.0.1", 9090, None)]
if os.environ.get("CERT_PEM"):
    d = tempfile.mkdtemp()
    for name in ("CERT_PEM", "KEY_PEM"):
        with open(os.path.join(d, name), "w") as f:
            f.write(os.environ[name])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(os.path.join(d, "CERT_PEM"), os.path.join(d, "KEY_PEM"))
    servers.append(("0.0.0.0", 8443, tls))
for addr, port, tls in servers:
    threading.Thread(target=serve, args=(addr, port, tls), daemon=True).start()
threading.Event().wait()
"#;

/// Asks `pods/web/proxy/up` to upgrade to the pod's `echo` protocol (with
/// the admin token in the file named by its argument), sends a line through
/// and prints the status line and what came back.
const UPGRADE_CLIENT: &str = r#"
import socket, ssl, sys
token = open(sys.argv[1]).read().strip()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", 6443)))
s.sendall(("GET /api/v1/namespaces/default/pods/web/proxy/up HTTP/1.1\r\nHost: api\r\n"
           "Authorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n" % token).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
s.sendall(b"ping pong\n")
data = b""
while not data.endswith(b"\n"):
    data += s.recv(64)
print(head.split(b"\r\n")[0].decode() + "|" + data.decode(), end="")
"#;

/// A self-signed certificate and its key (PEM) for the pod's HTTPS port.
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["web".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

fn ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The pod `web` and the Service `web` (80 -> the named port `http`, 8081 ->
/// 8080 named `alt`), once the pod is ready and the Service has its endpoints.
fn start() -> Cluster {
    let c = Cluster::start_with(&["--disable", "proxy,dns", "--node-name", NODE]);
    eventually(Duration::from_secs(30), || {
        c.kubectl(&["get", "node", NODE])
            .status
            .success()
            .then_some(())
    });
    let (cert, key) = self_signed();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "web", "image": "python",
            "command": ["python3", "-u", "-c", SERVER],
            "env": [{"name": "CERT_PEM", "value": cert}, {"name": "KEY_PEM", "value": key}],
            "ports": [{"name": "http", "containerPort": 80}, {"name": "alt", "containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        }]},
    });
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "alt", "port": 8081, "targetPort": 8080},
            {"name": "tls", "port": 8443, "targetPort": 8443},
        ]},
    });
    c.apply(&pod.to_string());
    c.apply(&svc.to_string());
    eventually(Duration::from_secs(60), || {
        let p: Value = serde_json::from_str(&c.k(&["get", "pod", "web", "-o", "json"])).ok()?;
        ready(&p).then_some(())
    });
    eventually(Duration::from_secs(30), || {
        let ips = c.k(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ]);
        (!ips.trim().is_empty()).then_some(())
    });
    c
}

/// A running `kubectl port-forward`, its output in files, killed on drop.
struct Forward {
    _child: Background,
    out: PathBuf,
    err: PathBuf,
}

impl Forward {
    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
}

/// Starts `kubectl port-forward ARGS` (`bin` the kubectl to run, `env` extra
/// variables) and waits for it to say it forwards `ports` local ports.
fn port_forward(
    c: &Cluster,
    bin: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    ports: usize,
) -> Forward {
    let mut cmd = c.netns.command(bin);
    cmd.env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", c.dir.path());
    start_forward(cmd, c.dir.path(), env, args, ports)
}

/// [`port_forward`] with `cmd` the kubectl to run (in its namespace, with its
/// kubeconfig), its output kept in `dir`.
fn start_forward(
    mut cmd: Command,
    dir: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    ports: usize,
) -> Forward {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let out = dir.join(format!("pf-{n}.out"));
    let err = dir.join(format!("pf-{n}.err"));
    cmd.arg("port-forward")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out file"))
        .stderr(std::fs::File::create(&err).expect("err file"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let f = Forward {
        _child: Background(cmd.spawn().expect("start kubectl port-forward")),
        out,
        err,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.stdout().matches("Forwarding from 127.0.0.1").count() < ports {
        assert!(
            Instant::now() < deadline,
            "port-forward {args:?} did not start:\n{}\n{}",
            f.stdout(),
            f.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    f
}

/// `curl` of a local port inside the test's namespace: (exit code, body).
fn curl(c: &Cluster, port: u16, path: &str) -> (i32, String) {
    let out = c.sh(&format!("curl -s -m 10 http://127.0.0.1:{port}{path}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn kubectl_dir() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "dirname $(readlink -f $(command -v kubectl))"])
        .output()
        .expect("find kubectl");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn port_forward_and_proxies_through_kubectl_and_python() {
    let c = start();
    let kubectl = Path::new("kubectl");

    // kubectl's default (SPDY tunneled in WebSocket): two ports of a pod at once,
    // and a port bound to the pod's own 127.0.0.1.
    let f = port_forward(
        &c,
        kubectl,
        &[],
        &["-v=4", "pod/web", "18080:80", "18081:8080", "19090:9090"],
        3,
    );
    // The tunnel was negotiated, not the fallback to plain SPDY.
    assert!(
        f.stderr()
            .contains("negotiated protocol: portforward.k8s.io"),
        "{}",
        f.stderr()
    );
    assert_eq!(curl(&c, 18080, "/a"), (0, "port 80 /a\n".into()));
    assert_eq!(curl(&c, 18081, "/b"), (0, "port 8080 /b\n".into()));
    assert_eq!(curl(&c, 19090, "/c"), (0, "port 9090 /c\n".into()));

    // 100 connections at once through the one session.
    let out = c.sh("seq 100 | xargs -P 100 -I{} curl -s -m 30 http://127.0.0.1:18080/r{}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut answered: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("port 80 /r"))
        .collect();
    answered.sort_unstable();
    answered.dedup();
    assert_eq!(
        answered.len(),
        100,
        "answers: {text}\nkubectl: {}",
        f.stderr()
    );
    // And the session still serves after them.
    assert_eq!(curl(&c, 18081, "/after"), (0, "port 8080 /after\n".into()));
    assert!(f.stdout().contains("Handling connection for 18080"));
    // Clean close: a forwarded connection left open holds one connection to
    // the agent; with kubectl gone, none stays.
    let agent_conns = || {
        let out = c.sh("ss -Htn state established '( dport = :10250 )' | wc -l");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()
            .unwrap_or(0)
    };
    let idle = Background(
        c.netns
            .command("python3")
            .args([
                "-c",
                "import socket, time; s = socket.create_connection(('127.0.0.1', 18080)); time.sleep(60)",
            ])
            .spawn()
            .expect("an idle client"),
    );
    eventually(Duration::from_secs(10), || {
        (agent_conns() >= 1).then_some(())
    });
    drop(f);
    eventually(Duration::from_secs(10), || {
        (agent_conns() == 0).then_some(())
    });
    drop(idle);

    // A Service: kubectl picks its pod and maps the service port to the pod's.
    let f = port_forward(&c, kubectl, &[], &["svc/web", "18090:80", "18091:8081"], 2);
    assert_eq!(curl(&c, 18090, "/svc"), (0, "port 80 /svc\n".into()));
    assert_eq!(curl(&c, 18091, "/svc"), (0, "port 8080 /svc\n".into()));
    drop(f);

    // Plain SPDY over an HTTP/1.1 upgrade.
    let f = port_forward(
        &c,
        kubectl,
        &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
        &["-v=4", "pod/web", "18100:80"],
        1,
    );
    assert!(
        !f.stderr()
            .contains("negotiated protocol: portforward.k8s.io"),
        "{}",
        f.stderr()
    );
    assert_eq!(curl(&c, 18100, "/spdy"), (0, "port 80 /spdy\n".into()));
    drop(f);

    // A port nobody listens on: upstream's error on the error stream, which
    // kubectl prints, and then (kubectl's own choice since well before 1.27)
    // it ends the session: "lost connection to pod". The session staying usable
    // after a refused connection is shown by the Python client below (channels)
    // and by portforward::session's tests (SPDY).
    let uid = c.k(&["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]);
    let f = port_forward(&c, kubectl, &[], &["pod/web", "18110:81"], 1);
    let (_, body) = curl(&c, 18110, "/");
    assert_eq!(body, "");
    // klog quotes the message: its quotes arrive escaped.
    let err = eventually(Duration::from_secs(10), || {
        let e = f.stderr();
        e.contains("lost connection to pod")
            .then(|| e.replace("\\\"", "\""))
    });
    let expected = format!(
        "an error occurred forwarding 18110 -> 81: error forwarding port 81 to pod {uid}, uid : failed to execute portforward in network namespace \"/proc/"
    );
    assert!(err.contains(&expected), "kubectl said: {err}");
    assert!(
        err.contains(&format!(
            "failed to connect to localhost:81 inside namespace \"{uid}\", IPv4: dial tcp4 127.0.0.1:81: connect: connection refused IPv6 dial tcp6 [::1]:81: connect: "
        )),
        "kubectl said: {err}"
    );
    drop(f);

    // kubectl 1.27 (plain SPDY, as it predates the WebSocket tunnel).
    let old = kubectl_dir().join("kubectl.1.27");
    let f = port_forward(&c, &old, &[], &["pod/web", "18121:80", "18122:9090"], 2);
    assert_eq!(curl(&c, 18121, "/old"), (0, "port 80 /old\n".into()));
    assert_eq!(curl(&c, 18122, "/old"), (0, "port 9090 /old\n".into()));
    drop(f);

    // RBAC: a WebSocket port-forward (a GET) also needs `create` on
    // pods/portforward, as upstream asks since 1.31.
    c.k(&["create", "serviceaccount", "forwarder"]);
    c.k(&[
        "create",
        "role",
        "pf-get",
        "--verb=get",
        "--resource=pods,pods/portforward",
    ]);
    c.k(&[
        "create",
        "rolebinding",
        "pf-get",
        "--role=pf-get",
        "--serviceaccount=default:forwarder",
    ]);
    let token = c.k(&["create", "token", "forwarder"]);
    let kubeconfig = c.token_kubeconfig("forwarder", token.trim(), "default");
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let args = [
        "--kubeconfig",
        kubeconfig.as_str(),
        "port-forward",
        "pod/web",
        "18130:80",
    ];
    let out = c.kubectl(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("User \"system:serviceaccount:default:forwarder\" cannot create resource \"pods/portforward\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    c.k(&[
        "create",
        "role",
        "pf-create",
        "--verb=create",
        "--resource=pods/portforward",
    ]);
    c.k(&[
        "create",
        "rolebinding",
        "pf-create",
        "--role=pf-create",
        "--serviceaccount=default:forwarder",
    ]);
    eventually(Duration::from_secs(10), || {
        let out = c.kubectl(&[
            "--kubeconfig",
            kubeconfig.as_str(),
            "auth",
            "can-i",
            "create",
            "pods",
            "--subresource=portforward",
        ]);
        (String::from_utf8_lossy(&out.stdout).trim() == "yes").then_some(())
    });
    let pf_args: Vec<&str> = args[..2].iter().chain(&args[3..]).copied().collect();
    let f = port_forward(&c, kubectl, &[], &pf_args, 1);
    assert_eq!(curl(&c, 18130, "/rbac"), (0, "port 80 /rbac\n".into()));
    drop(f);

    // pods/proxy and services/proxy.
    let raw = |path: &str| c.k(&["get", "--raw", path]);
    assert_eq!(
        raw("/api/v1/namespaces/default/pods/web/proxy/p1?x=1"),
        "port 80 /p1?x=1\n"
    );
    assert_eq!(
        raw("/api/v1/namespaces/default/pods/web:8080/proxy/p2"),
        "port 8080 /p2\n"
    );
    assert_eq!(
        raw("/api/v1/namespaces/default/pods/http:web:alt/proxy/"),
        "port 8080 /\n"
    );
    assert_eq!(
        raw("/api/v1/namespaces/default/services/web:80/proxy/s1"),
        "port 80 /s1\n"
    );
    assert_eq!(
        raw("/api/v1/namespaces/default/services/http:web:alt/proxy/s2"),
        "port 8080 /s2\n"
    );
    assert_eq!(
        raw("/api/v1/namespaces/default/services/web:http/proxy"),
        "port 80 /\n"
    );
    // An upgrade through the proxy: the pod's 101, then bytes both ways.
    let token = c.data_dir().join("admin.token");
    let out = c.sh(&format!(
        "python3 -c '{UPGRADE_CLIENT}' {}",
        token.display()
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HTTP/1.1 101 Switching Protocols|ping pong\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // https: TLS to the pod, its certificate not verified (as upstream).
    assert_eq!(
        raw("/api/v1/namespaces/default/pods/https:web:8443/proxy/t1"),
        "port 8443 /t1\n"
    );
    assert_eq!(
        raw("/api/v1/namespaces/default/services/https:web:8443/proxy/t2"),
        "port 8443 /t2\n"
    );
    let err = c.k_err(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:9/proxy/",
    ]);
    assert!(
        err.contains("no service port 9 found for service \"web\""),
        "{err}"
    );
    let err = c.k_err(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/web:81/proxy/",
    ]);
    assert!(
        err.contains("error trying to reach service: dial tcp"),
        "{err}"
    );
    assert!(err.contains(":81: connect: connection refused"), "{err}");

    // The Python client: WebSocket channels, a good port and a refused one.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/port_forward.py");
    let out = c.sh(&format!("python3 {script} \"$KUBECONFIG\""));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("DATA port 80 /py\n"), "{text}");
    assert!(
        text.contains(&format!(
            "ERROR81 error forwarding port 81 to pod {uid}, uid : "
        )),
        "{text}"
    );
    assert!(
        text.contains("dial tcp4 127.0.0.1:81: connect: connection refused"),
        "{text}"
    );
}

/// A pod on a node other than the API server's: port-forward goes through
/// that node's agent (over the node network, TLS verified both ways), the
/// proxy dials the pod across nodes.
#[test]
fn port_forward_and_proxy_to_a_pod_on_another_node() {
    let c = MultiNode::up(2, &["--host-images"]);
    // Node 1 runs the API server; node 2 is an agent that joined it.
    let node = c.node_name(2);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "far", "labels": {"app": "far"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "far", "image": "python",
            "command": ["python3", "-u", "-c", SERVER],
            "ports": [{"containerPort": 80}],
            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1},
        }]},
    });
    c.apply(&pod.to_string());
    eventually(Duration::from_secs(90), || {
        let out = c.kubectl(&["get", "pod", "far", "-o", "json"]);
        let p: Value = serde_json::from_slice(&out.stdout).ok()?;
        ready(&p).then_some(())
    });
    let mut cmd = c.netns.command("kubectl");
    cmd.env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir.path());
    let f = start_forward(
        cmd,
        c.dir.path(),
        &[],
        &["pod/far", "18200:80", "18201:9090"],
        2,
    );
    let get = |port: u16, path: &str| {
        let out = c.outside(&format!("curl -s -m 10 http://127.0.0.1:{port}{path}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get(18200, "/far"), "port 80 /far\n", "{}", f.stderr());
    assert_eq!(get(18201, "/far"), "port 9090 /far\n", "{}", f.stderr());
    drop(f);
    assert_eq!(
        c.k(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/far/proxy/raw"
        ]),
        "port 80 /raw\n"
    );
}

//! Security end to end (issue 17): what a pod's credentials let it do, seen from
//! inside real image pods.
//!
//! - In-cluster clients: a kube-rs program (examples/in_cluster.rs, built by
//!   cargo) and the Python `kubernetes` client (this machine's, with its
//!   dependencies) run in a pod whose ServiceAccount is bound to `view`, find the
//!   API through the `kubernetes` Service and the mounted token, say who they are
//!   and list the namespace's Services.
//! - Isolation: a pod sees nothing of the node's data directory (its keys and
//!   tokens by name or by content, other pods' directories), only its own
//!   token (two pods with different accounts; none with automounting off), only
//!   its own processes; its token gets upstream's 403 for what its account is not
//!   granted and 401 once its pod is deleted.
//! - Component credentials (security/components.rs): the proxy, DNS, netpol,
//!   controller manager, scheduler and each controller's account (by
//!   impersonation) and a joined node (its own token) get upstream's 403 for
//!   what they must not do.
//!
//! The image: the `shpod` stand-in (kubectl, bash, Python's standard library,
//! curl) with a layer made here (support/layered_image.rs), in a registry serving
//! a copy of the stand-ins' storage.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::layered_image::Layer;
use support::registry::{image_node, standin_storage, start_registry, Registry};
use support::{eventually, Cluster, Netns};

const NODE: &str = "sec-node";
const NS: &str = "sec";
const IMAGE: &str = "skiff-test/security:latest";
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Where the Python client and its dependencies go in the image (PYTHONPATH).
const PY_LIB: &str = "/opt/kubernetes-client";

struct ImageCluster {
    c: Cluster,
    _registry: Registry,
    _dir: tempfile::TempDir,
}

/// The example program, built by cargo into this profile's examples directory.
fn in_cluster_example() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/<profile>/deps/security-<hash> -> target/<profile>/examples/in_cluster
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let example = profile_dir.join("examples/in_cluster");
    // `cargo test` builds examples; `cargo test --test security` does not, so
    // build it when it is missing or older than its source. (Asking cargo every
    // time would rebuild every crate the package depends on whenever one
    // changed, though the example uses only kube.)
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/in_cluster.rs");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&example).is_some_and(|built| Some(built) >= modified(&source)) {
        return example;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "skiff", "--example", "in_cluster"]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let out = build.output().expect("run cargo build --example");
    assert!(
        out.status.success(),
        "cargo build --example in_cluster: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(example.exists(), "{} missing", example.display());
    example
}

/// Names the interpreter that has the Python `kubernetes` client
/// (`python3.<minor>`), then lists the top-level packages and modules (under
/// site-packages) the client imports.
const PY_FIND_DEPS: &str = r#"
import os, sys, sysconfig
from kubernetes import client, config
import kubernetes.config.incluster_config
print("python%d.%d" % sys.version_info[:2])
site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
seen = set()
for name, m in sorted(sys.modules.items()):
    f = getattr(m, "__file__", None)
    for s in site:
        if f and f.startswith(s + os.sep):
            path = os.path.join(s, os.path.relpath(f, s).split(os.sep)[0])
            if path not in seen:
                seen.add(path)
                print(path)
"#;

/// The Python client in the pod: in-cluster configuration, who am I, the
/// namespace's Services, and what its account may not do.
const PY_CLIENT: &str = r#"
from kubernetes import client, config
config.load_incluster_config()
ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read().strip()
review = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview())
print("USERNAME", review.status.user_info.username, flush=True)
for s in client.CoreV1Api().list_namespaced_service(ns).items:
    print("SERVICE", s.metadata.name, s.spec.cluster_ip, flush=True)
try:
    client.CoreV1Api().list_namespaced_secret(ns)
    print("SECRETS listed")
except client.exceptions.ApiException as e:
    print("SECRETS", e.status, e.reason)
"#;

/// The image's layer: the kube-rs example with its libraries, the Python
/// client with its dependencies, the Python program.
fn security_layer(root: &Path) -> Layer {
    let layer = Layer::new(root);
    layer.copy_file(&in_cluster_example(), "/usr/local/bin/in_cluster");
    let out = Command::new("python3")
        .args(["-c", PY_FIND_DEPS])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the Python kubernetes client (scripts/deps installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = listed.lines();
    // The stand-in carries this machine's /usr/bin/python3 (its stdlib): the
    // client's compiled modules (pydantic_core) are built for one minor version.
    let client_python = lines.next().unwrap_or_default();
    let image_python = std::fs::canonicalize("/usr/bin/python3").expect("/usr/bin/python3");
    assert_eq!(
        image_python.file_name().and_then(|n| n.to_str()),
        Some(client_python),
        "the kubernetes client is installed for another Python than the image's"
    );
    for p in lines.map(Path::new) {
        let name = p.file_name().expect("module name").to_string_lossy();
        // The asyncio client (kubernetes.aio, half the package) is not imported.
        let skip: &[&str] = if name == "kubernetes" { &["aio"] } else { &[] };
        layer.copy_tree(p, &format!("{PY_LIB}/{name}"), &["__pycache__"], skip);
    }
    layer.write("/usr/local/lib/security/client.py", PY_CLIENT);
    layer.add_libraries();
    layer
}

/// A full node with a registry serving a copy of the stand-ins (the test adds
/// its image to the copy), `docker.io` mirrored to it.
fn start() -> ImageCluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("registry");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(standin_storage())
        .arg(&storage)
        .status()
        .expect("cp");
    assert!(copied.success(), "copy the stand-in registry storage");
    let ns = Netns::new();
    let registry = start_registry(&ns, &storage, dir.path());
    security_layer(&dir.path().join("layer")).push_over(
        &ns,
        "bretfisher/shpod:latest",
        IMAGE,
        &dir.path().join("image"),
    );
    let c = image_node(ns, dir.path(), NODE, "netpol", &[]);
    ImageCluster {
        c,
        _registry: registry,
        _dir: dir,
    }
}

fn pod(name: &str, account: &str, pod_extra: &str, command: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {NS}
spec:
  nodeName: {NODE}
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  serviceAccountName: {account}
{pod_extra}
  containers:
  - name: c
    image: {IMAGE}
    command: {command}
    env:
    - name: PYTHONPATH
      value: {PY_LIB}
"#
    )
}

fn pod_json(c: &Cluster, name: &str) -> Value {
    let out = c.kubectl(&["get", "pod", "-n", NS, name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Waits until the pod's phase is one of `want`; returns it.
fn phase(c: &Cluster, name: &str, want: &[&str]) -> String {
    eventually(Duration::from_secs(120), || {
        let p = pod_json(c, name);
        let phase = p["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        want.contains(&phase.as_str()).then_some(phase)
    })
}

/// Runs `script` with `sh -c` in the pod; (exit ok, stdout, stderr).
fn exec(c: &Cluster, pod: &str, script: &str) -> (bool, String, String) {
    let out = c.kubectl(&["exec", "-n", NS, pod, "--", "sh", "-c", script]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The namespace, two accounts (`reader` bound to `view`, `other` to nothing)
/// and a Service to list.
fn setup(c: &Cluster) {
    c.k(&["create", "namespace", NS]);
    c.k(&["create", "serviceaccount", "-n", NS, "reader"]);
    c.k(&["create", "serviceaccount", "-n", NS, "other"]);
    c.k(&[
        "create",
        "rolebinding",
        "-n",
        NS,
        "reader-view",
        "--clusterrole=view",
        &format!("--serviceaccount={NS}:reader"),
    ]);
    c.k(&[
        "create",
        "service",
        "clusterip",
        "-n",
        NS,
        "web",
        "--tcp=80:80",
    ]);
}

#[test]
fn in_cluster_clients_and_pod_isolation() {
    let ic = start();
    let c = &ic.c;
    setup(c);
    let web_ip = c.k(&[
        "get",
        "svc",
        "-n",
        NS,
        "web",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);

    c.apply(&pod(
        "kube-rs",
        "reader",
        "",
        r#"["/usr/local/bin/in_cluster"]"#,
    ));
    c.apply(&pod(
        "python",
        "reader",
        "",
        r#"["python3", "/usr/local/lib/security/client.py"]"#,
    ));
    c.apply(&pod("a", "reader", "", r#"["sleep", "7001"]"#));
    c.apply(&pod("b", "other", "", r#"["sleep", "7002"]"#));
    c.apply(&pod(
        "c",
        "reader",
        "  automountServiceAccountToken: false",
        r#"["sleep", "7003"]"#,
    ));

    in_cluster_clients(c, &web_ip);
    isolation(c);
}

fn in_cluster_clients(c: &Cluster, web_ip: &str) {
    let user = format!("system:serviceaccount:{NS}:reader");
    for name in ["kube-rs", "python"] {
        let got = phase(c, name, &["Succeeded", "Failed"]);
        let log = c.kubectl(&["logs", "-n", NS, name]);
        let log = String::from_utf8_lossy(&log.stdout).into_owned();
        assert_eq!(got, "Succeeded", "{name}: {log}");
        assert!(log.contains(&format!("USERNAME {user}\n")), "{name}: {log}");
        assert!(
            log.contains(&format!("SERVICE web {web_ip}\n")),
            "{name}: {log}"
        );
    }
    let log = c.k(&["logs", "-n", NS, "kube-rs"]);
    for line in [
        "GROUP system:serviceaccounts",
        &format!("GROUP system:serviceaccounts:{NS}"),
        "GROUP system:authenticated",
        &format!("NAMESPACE {NS}"),
    ] {
        assert!(log.lines().any(|l| l == line), "{line}: {log}");
    }
    let log = c.k(&["logs", "-n", NS, "python"]);
    assert!(log.contains("SECRETS 403 Forbidden"), "{log}");
}

/// Names of the node's secrets in its data directory (keys, tokens,
/// kubeconfigs), wherever they are under it but pods' own directories.
fn node_secret_files(data: &Path) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<(String, PathBuf)>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() && !matches!(name.as_str(), "pods" | "images" | "etcd") {
                walk(&path, out);
            } else if t.is_file()
                && (name.ends_with(".key")
                    || name.ends_with(".token")
                    || name.ends_with("-token")
                    || name.ends_with("kubeconfig"))
            {
                out.push((name, path));
            }
        }
    }
    let mut out = Vec::new();
    walk(data, &mut out);
    out
}

fn isolation(c: &Cluster) {
    for p in ["a", "b", "c"] {
        assert_eq!(phase(c, p, &["Running", "Failed"]), "Running", "{p}");
    }
    let uid = |p: &str| {
        pod_json(c, p)["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (uid_b, uid_c) = (uid("b"), uid("c"));
    let token = |p: &str| {
        let (ok, out, err) = exec(c, p, &format!("cat {SA_DIR}/token"));
        assert!(ok, "{p}: {err}");
        out.trim().to_string()
    };
    let (token_a, token_b) = (token("a"), token("b"));
    assert_ne!(token_a, token_b);

    // Each pod's token is its own account's (kubectl's in-cluster config).
    for (p, account) in [("a", "reader"), ("b", "other")] {
        let (ok, out, err) = exec(
            c,
            p,
            "kubectl auth whoami -o jsonpath='{.status.userInfo.username}'",
        );
        assert!(ok, "{p}: {err}");
        assert_eq!(out, format!("system:serviceaccount:{NS}:{account}"));
    }
    // Automounting off: no token directory at all.
    let (ok, out, _) = exec(c, "c", "ls /var/run/secrets/kubernetes.io");
    assert!(!ok, "pod c has {out}");

    // Nothing of the node's data directory, by path, by name or by content.
    let data = c.data_dir();
    let secrets = node_secret_files(&data);
    let names: Vec<&str> = secrets.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["admin.token", "ca.key", "sa.key", "node-token"] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    let mut find_names = format!("-name {uid_b} -o -name {uid_c}");
    for n in &names {
        find_names.push_str(&format!(" -o -name '{n}'"));
    }
    // Their contents: a token whole, a key by a line from the middle of its
    // PEM (kubeconfigs hold the CA certificate a pod has too: not searched).
    let contents: Vec<String> = secrets
        .iter()
        .filter_map(|(n, p)| {
            let text = std::fs::read_to_string(p).expect("read a node secret");
            if n.ends_with("token") {
                Some(text.trim().to_string())
            } else if n.ends_with(".key") {
                text.lines().nth(1).map(str::to_string)
            } else {
                None
            }
        })
        .collect();
    let files = "find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -type f -print0";
    for (p, others) in [("a", &token_b), ("b", &token_a), ("c", &token_a)] {
        let script = format!(
            "for d in /var/lib/skiff {data}; do test -e $d && echo EXISTS $d; done; \
             find / \\( -path /proc -o -path /sys \\) -prune -o \\( {find_names} \\) -print; \
             {files} | xargs -0 grep -lF -e '{others}' {greps}; echo done",
            data = data.display(),
            greps = contents
                .iter()
                .map(|s| format!("-e '{s}'"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        let (_, out, err) = exec(c, p, &script);
        assert_eq!(
            out.trim(),
            "done",
            "pod {p} reaches the node's files: {out}\n{err}"
        );
    }
    // The search does find a token where there is one: pod a's own, in its
    // mounted volume.
    let (_, out, _) = exec(
        c,
        "a",
        &format!("{files} | xargs -0 grep -lF -e '{token_a}'"),
    );
    assert!(out.contains("kubernetes.io/serviceaccount/"), "{out}");
    // Pod b's token is not pod c's either (c has none at all).
    let (_, out, _) = exec(
        c,
        "c",
        &format!("{files} | xargs -0 grep -lF -e '{token_b}'; echo done"),
    );
    assert_eq!(out.trim(), "done", "{out}");

    // Only the pod's own processes: its command is PID 1, nothing of the
    // node's (skiff, the other pods).
    let (ok, out, err) = exec(
        c,
        "a",
        "for d in /proc/[0-9]*; do printf '%s: ' ${d#/proc/}; tr '\\0' ' ' < $d/cmdline; echo; done",
    );
    assert!(ok, "{err}");
    assert!(
        out.lines().any(|l| l.trim_end() == "1: sleep 7001"),
        "{out}"
    );
    for other in ["skiff", "7002", "7003", "runc"] {
        assert!(!out.contains(other), "pod a sees {other}: {out}");
    }

    // What the account is not granted: upstream's 403, through kubectl's
    // in-cluster configuration.
    let forbidden = |p: &str, cmd: &str, want: &str| {
        let (ok, out, err) = exec(c, p, cmd);
        assert!(!ok, "{p}: {cmd} succeeded: {out}");
        // The outer kubectl adds "command terminated with exit code 1".
        let first = err.lines().next().unwrap_or_default();
        // kubectl words a refused create itself ("error: failed to create ...").
        let want = if want.starts_with("error: ") {
            want.to_string()
        } else {
            format!("Error from server (Forbidden): {want}")
        };
        assert_eq!(first, want, "{p}: {cmd}");
    };
    let reader = format!("User \"system:serviceaccount:{NS}:reader\"");
    let other = format!("User \"system:serviceaccount:{NS}:other\"");
    forbidden(
        "a",
        "kubectl get secrets",
        &format!("secrets is forbidden: {reader} cannot list resource \"secrets\" in API group \"\" in the namespace \"{NS}\""),
    );
    forbidden(
        "a",
        "kubectl delete service web",
        &format!("services \"web\" is forbidden: {reader} cannot delete resource \"services\" in API group \"\" in the namespace \"{NS}\""),
    );
    forbidden(
        "a",
        "kubectl get nodes",
        &format!("nodes is forbidden: {reader} cannot list resource \"nodes\" in API group \"\" at the cluster scope"),
    );
    // No way up: acting as someone else, or binding itself to more.
    // (kubectl drops its in-cluster configuration when given --as: curl.)
    let (_, body, err) = exec(
        c,
        "a",
        &format!(
            "curl -sS --max-time 10 --cacert {SA_DIR}/ca.crt -H \"Authorization: Bearer $(cat {SA_DIR}/token)\" \
             -H 'Impersonate-User: system:admin' -H 'Impersonate-Group: system:masters' \
             https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/{NS}/secrets"
        ),
    );
    let status: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}{err}"));
    assert_eq!(status["code"], 403, "{body}");
    assert_eq!(
        status["message"],
        format!("users \"system:admin\" is forbidden: {reader} cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
        "{body}"
    );
    forbidden(
        "a",
        &format!("kubectl create rolebinding up --clusterrole=admin --serviceaccount={NS}:reader"),
        &format!("error: failed to create rolebinding: rolebindings.rbac.authorization.k8s.io is forbidden: {reader} cannot create resource \"rolebindings\" in API group \"rbac.authorization.k8s.io\" in the namespace \"{NS}\""),
    );
    forbidden(
        "b",
        "kubectl get services",
        &format!("services is forbidden: {other} cannot list resource \"services\" in API group \"\" in the namespace \"{NS}\""),
    );
    forbidden(
        "b",
        "kubectl create token reader",
        &format!("error: failed to create token: serviceaccounts \"reader\" is forbidden: {other} cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"{NS}\""),
    );

    // Without a token (pod c): the API answers 401, and so does the node
    // agent's streaming port (exec, logs of any pod on the node).
    let (_, body, err) = exec(
        c,
        "c",
        &format!(
            "curl -sSk --max-time 10 \
             https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/{NS}/secrets"
        ),
    );
    let status: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}{err}"));
    assert_eq!(status["code"], 401, "{body}");
    let agent = c.k(&[
        "get",
        "node",
        NODE,
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}:{.status.daemonEndpoints.kubeletEndpoint.Port}",
    ]);
    let (_, code, err) = exec(
        c,
        "c",
        &format!(
            "curl -sk --max-time 5 -o /dev/null -w '%{{http_code}}' \
             https://{agent}/containerLogs/{NS}/b/c"
        ),
    );
    // It serves only the API server's client certificate.
    assert_eq!(code, "401", "agent at {agent}: {err}");

    // Pod a's token, used from pod b: good while a lives, 401 once it is gone.
    let call = format!(
        "curl -sS --max-time 10 --cacert {SA_DIR}/ca.crt -H 'Authorization: Bearer {token_a}' \
         -o /dev/null -w '%{{http_code}}' \
         https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/{NS}/services"
    );
    let (_, code, err) = exec(c, "b", &call);
    assert_eq!(code, "200", "{err}");
    c.k(&["delete", "pod", "-n", NS, "a", "--wait=true"]);
    let body_call = call.replace("-o /dev/null -w '%{http_code}'", "");
    let body = eventually(Duration::from_secs(30), || {
        let (_, body, _) = exec(c, "b", &body_call);
        body.contains("401").then_some(body)
    });
    let status: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(status["reason"], "Unauthorized", "{body}");
    assert_eq!(status["message"], "Unauthorized", "{body}");
    assert_eq!(status["code"], 401, "{body}");
}

#[path = "security/components.rs"]
mod components;

#[test]
fn component_identities_are_refused_what_they_must_not_do() {
    let c = components::start();
    components::components_refused(&c);
    components::node_refused(&c);
}

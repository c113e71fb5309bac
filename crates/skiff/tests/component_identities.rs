//! Every component of `skiff server` runs as its own identity with the least
//! privilege it needs (issue #17), with the real binary in a test-made network
//! namespace:
//!
//! - `kubectl auth can-i --as <component>` for what each component calls
//!   (yes) and for writes and reads it must not make (no);
//! - the whole stack still works with those identities: a Deployment gets its
//!   pods, its Service an EndpointSlice, and a pod reaches it through the
//!   proxy's ClusterIP and the cluster DNS name;
//! - the controllers really write as their own ServiceAccounts: with the
//!   deployment controller's binding deleted, a new Deployment gets no
//!   ReplicaSet (while the ReplicaSet controller still makes pods for one made
//!   by hand), and it gets one once the binding is back;
//! - the audit log names who made which request: the ReplicaSet was created
//!   by the deployment controller's account, its pods by the ReplicaSet
//!   controller's, the slices by the EndpointSlice controller's, the binding by
//!   the scheduler, the watches of the proxy, DNS and NetworkPolicy by theirs;
//! - no component was refused anything on the way (no 403 in the log).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{eventually, Cluster};

const NODE: &str = "identity-node";
const SA: &str = "system:serviceaccount:kube-system:";

/// `kubectl auth can-i <verb> <resource>[/<name>] [--subresource <sub>] --as
/// <user> [-n ns | -A]`: yes or no. `resource` is `kind[/name][:subresource]`.
fn can_i(c: &Cluster, user: &str, verb: &str, resource: &str, ns: Option<&str>) -> bool {
    let (resource, sub) = resource.split_once(':').unwrap_or((resource, ""));
    let mut args = vec!["auth", "can-i", verb, resource, "--as", user];
    if !sub.is_empty() {
        args.extend(["--subresource", sub]);
    }
    match ns {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("-A"),
    }
    let out = c.kubectl(&args);
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match (out.status.code(), said.as_str()) {
        (Some(0), "yes") => true,
        (Some(1), "no") => false,
        _ => panic!(
            "kubectl {args:?}: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// (user, verb, resource, namespace; `None` for all namespaces)
type Ask = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

fn user(u: &str) -> String {
    if u.starts_with("system:") {
        u.to_string()
    } else {
        format!("{SA}{u}")
    }
}

const ALLOWED: &[Ask] = &[
    ("system:kube-proxy", "list", "services", None),
    (
        "system:kube-proxy",
        "watch",
        "endpointslices.discovery.k8s.io",
        None,
    ),
    (
        "system:kube-proxy",
        "update",
        "leases.coordination.k8s.io/skiff-lb-10-0-0-1",
        Some("kube-system"),
    ),
    (
        "system:kube-proxy",
        "list",
        "leases.coordination.k8s.io",
        Some("kube-system"),
    ),
    ("system:skiff:dns", "watch", "services", None),
    (
        "system:skiff:dns",
        "list",
        "endpointslices.discovery.k8s.io",
        None,
    ),
    ("system:skiff:dns", "get", "nodes/identity-node", None),
    (
        "system:skiff:dns",
        "patch",
        "endpointslices.discovery.k8s.io/kube-dns-identity-node",
        Some("kube-system"),
    ),
    (
        "system:skiff:netpol",
        "watch",
        "networkpolicies.networking.k8s.io",
        None,
    ),
    ("system:skiff:netpol", "list", "pods", None),
    ("system:skiff:netpol", "list", "namespaces", None),
    ("system:kube-controller-manager", "list", "pods", None),
    (
        "system:kube-controller-manager",
        "watch",
        "deployments.apps",
        None,
    ),
    (
        "system:kube-controller-manager",
        "update",
        "leases.coordination.k8s.io/kube-controller-manager",
        Some("kube-system"),
    ),
    ("system:kube-scheduler", "patch", "pods", Some("default")),
    (
        "system:kube-scheduler",
        "create",
        "pods:binding",
        Some("default"),
    ),
    (
        "deployment-controller",
        "create",
        "replicasets.apps",
        Some("default"),
    ),
    (
        "deployment-controller",
        "update",
        "deployments.apps:status",
        Some("default"),
    ),
    ("replicaset-controller", "create", "pods", Some("default")),
    (
        "replicaset-controller",
        "update",
        "replicasets.apps:status",
        Some("default"),
    ),
    ("statefulset-controller", "create", "pods", Some("default")),
    (
        "endpointslice-controller",
        "create",
        "endpointslices.discovery.k8s.io",
        Some("default"),
    ),
    (
        "endpoint-controller",
        "update",
        "endpoints",
        Some("default"),
    ),
    ("node-controller", "patch", "nodes:status", None),
    (
        "taint-eviction-controller",
        "delete",
        "pods",
        Some("default"),
    ),
    ("pod-garbage-collector", "delete", "pods", Some("default")),
    (
        "generic-garbage-collector",
        "delete",
        "replicasets.apps",
        Some("default"),
    ),
    (
        "service-account-controller",
        "create",
        "serviceaccounts",
        Some("default"),
    ),
    (
        "root-ca-cert-publisher",
        "update",
        "configmaps",
        Some("default"),
    ),
];

const REFUSED: &[Ask] = &[
    ("system:kube-proxy", "delete", "pods", Some("default")),
    ("system:kube-proxy", "get", "secrets", Some("default")),
    ("system:kube-proxy", "create", "services", Some("default")),
    (
        "system:kube-proxy",
        "create",
        "leases.coordination.k8s.io",
        Some("kube-node-lease"),
    ),
    ("system:skiff:dns", "create", "services", Some("default")),
    ("system:skiff:dns", "update", "services", Some("default")),
    ("system:skiff:dns", "delete", "services", Some("default")),
    (
        "system:skiff:dns",
        "patch",
        "endpointslices.discovery.k8s.io",
        Some("default"),
    ),
    ("system:skiff:dns", "list", "secrets", None),
    (
        "system:skiff:netpol",
        "create",
        "networkpolicies.networking.k8s.io",
        Some("default"),
    ),
    ("system:skiff:netpol", "delete", "pods", Some("default")),
    ("system:skiff:netpol", "get", "secrets", Some("default")),
    (
        "system:kube-controller-manager",
        "get",
        "secrets",
        Some("default"),
    ),
    (
        "system:kube-controller-manager",
        "create",
        "pods",
        Some("default"),
    ),
    (
        "system:kube-controller-manager",
        "update",
        "leases.coordination.k8s.io/other",
        Some("kube-system"),
    ),
    ("system:kube-scheduler", "get", "secrets", Some("default")),
    ("system:kube-scheduler", "create", "pods", Some("default")),
    ("deployment-controller", "get", "secrets", Some("default")),
    ("deployment-controller", "create", "pods", Some("default")),
    ("replicaset-controller", "get", "secrets", Some("default")),
    (
        "replicaset-controller",
        "delete",
        "deployments.apps",
        Some("default"),
    ),
    (
        "endpointslice-controller",
        "get",
        "secrets",
        Some("default"),
    ),
    (
        "endpointslice-controller",
        "create",
        "endpoints",
        Some("default"),
    ),
    ("node-controller", "create", "pods", Some("default")),
    (
        "service-account-controller",
        "delete",
        "serviceaccounts",
        Some("default"),
    ),
    (
        "service-account-controller",
        "create",
        "serviceaccounts:token",
        Some("default"),
    ),
    ("root-ca-cert-publisher", "get", "secrets", Some("default")),
    (
        "generic-garbage-collector",
        "create",
        "pods",
        Some("default"),
    ),
    (
        "replicaset-controller",
        "update",
        "deployments.apps:status",
        Some("default"),
    ),
    (
        "deployment-controller",
        "patch",
        "pods:status",
        Some("default"),
    ),
    ("system:kube-proxy", "create", "pods:exec", Some("default")),
    ("system:skiff:dns", "patch", "nodes:status", None),
    // Another namespace's account of the same name is nobody.
    (
        "system:serviceaccount:default:deployment-controller",
        "create",
        "replicasets.apps",
        Some("default"),
    ),
];

fn items(c: &Cluster, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["get"];
    all.extend(args);
    all.extend(["-o", "json"]);
    let list: Value = serde_json::from_str(&c.k(&all)).expect("list json");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The users whose refusals this test looks for: every component but the
/// agent, whose node identity the Node authorizer decides (its own tests).
const COMPONENT_USERS: &[&str] = &[
    "system:kube-proxy",
    "system:skiff:dns",
    "system:skiff:netpol",
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:serviceaccount:kube-system:",
];

/// The lines of the server's log where the API refused one of the components.
fn refusals(c: &Cluster) -> Vec<String> {
    c.log()
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
        .filter(|l| {
            COMPONENT_USERS
                .iter()
                .any(|u| l.contains(&format!("User \\\"{u}")) || l.contains(&format!("User \"{u}")))
        })
        .map(str::to_string)
        .collect()
}

/// The audit events of the server's log at `path`.
fn audit_events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Who made `verb` requests on `resource` (and `name`, if given), per audit log.
fn requesters(events: &[Value], verb: &str, resource: &str, name: Option<&str>) -> Vec<String> {
    let mut users: Vec<String> = events
        .iter()
        .filter(|e| e["verb"] == verb && e["objectRef"]["resource"] == resource)
        .filter(|e| name.is_none_or(|n| e["objectRef"]["name"] == n))
        .filter_map(|e| e["user"]["username"].as_str().map(str::to_string))
        .collect();
    users.sort();
    users.dedup();
    users
}

#[test]
fn components_run_as_their_own_identities_with_least_privilege() {
    let audit_dir = tempfile::tempdir().expect("tempdir");
    let audit = audit_dir.path().join("audit.log");
    let audit_flag = audit.to_str().expect("path");
    let c = Cluster::start_with(&["--node-name", NODE, "--audit-log-path", audit_flag]);

    // 1. What each identity may and may not do.
    let mut wrong = Vec::new();
    for (want, asks) in [(true, ALLOWED), (false, REFUSED)] {
        for (who, verb, resource, ns) in asks {
            if can_i(&c, &user(who), verb, resource, *ns) != want {
                wrong.push(format!("{who} {verb} {resource} {ns:?}: expected {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));

    // 2. The stack works as those identities.
    c.k(&[
        "create",
        "deployment",
        "httpenv",
        "--image=bretfisher/httpenv",
        "--replicas=2",
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
    eventually(Duration::from_secs(90), || {
        let pods = items(&c, &["pods", "-l", "app=httpenv"]);
        (pods.len() == 2 && pods.iter().all(ready)).then_some(())
    });
    eventually(Duration::from_secs(60), || {
        let pods = items(&c, &["pods", "--field-selector", "metadata.name=client"]);
        pods.iter()
            .all(ready)
            .then_some(())
            .filter(|_| !pods.is_empty())
    });
    eventually(Duration::from_secs(30), || {
        let slices = c.k(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=httpenv",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[0]}",
        ]);
        (slices.split_whitespace().count() == 2).then_some(())
    });
    let cluster_ip = c.k(&["get", "svc", "httpenv", "-o", "jsonpath={.spec.clusterIP}"]);
    for url in [
        format!("http://{cluster_ip}:8888/"),
        "http://httpenv.default:8888/".to_string(),
    ] {
        eventually(Duration::from_secs(30), || {
            let out = c.kubectl(&["exec", "client", "--", "curl", "-s", "-m", "3", &url]);
            String::from_utf8_lossy(&out.stdout)
                .contains("HOSTNAME")
                .then_some(())
        });
    }
    // Events come from the controllers' own clients.
    eventually(Duration::from_secs(10), || {
        let events = c.k(&[
            "get",
            "events",
            "--field-selector",
            "reason=ScalingReplicaSet",
            "-o",
            "jsonpath={.items[*].source.component}",
        ]);
        events.contains("deployment-controller").then_some(())
    });
    let refused = refusals(&c);
    assert!(
        refused.is_empty(),
        "components were refused:\n{}",
        refused.join("\n")
    );

    // Who did what, as the API server recorded it.
    let events = audit_events(&audit);
    let sa = |a: &str| vec![format!("{SA}{a}")];
    assert_eq!(
        requesters(&events, "create", "replicasets", None),
        sa("deployment-controller")
    );
    assert_eq!(
        requesters(&events, "create", "endpointslices", None)
            .iter()
            .filter(|u| u.starts_with(SA))
            .cloned()
            .collect::<Vec<_>>(),
        sa("endpointslice-controller")
    );
    let pod_creators = requesters(&events, "create", "pods", None);
    assert!(
        pod_creators.contains(&format!("{SA}replicaset-controller")),
        "{pod_creators:?}"
    );
    assert!(
        pod_creators
            .iter()
            .all(|u| u == "system:admin" || *u == format!("{SA}replicaset-controller")),
        "{pod_creators:?}"
    );
    let binders: Vec<String> = events
        .iter()
        .filter(|e| {
            e["verb"] == "patch"
                && e["objectRef"]["resource"] == "pods"
                && e["objectRef"]["subresource"].is_null()
        })
        .filter_map(|e| e["user"]["username"].as_str().map(str::to_string))
        .collect();
    assert!(
        !binders.is_empty() && binders.iter().all(|u| u == "system:kube-scheduler"),
        "{binders:?}"
    );
    for (resource, who) in [
        ("services", "system:kube-proxy"),
        ("services", "system:skiff:dns"),
        ("endpointslices", "system:kube-proxy"),
        ("networkpolicies", "system:skiff:netpol"),
        ("pods", "system:kube-controller-manager"),
    ] {
        let watchers = requesters(&events, "watch", resource, None);
        assert!(
            watchers.iter().any(|u| u == who),
            "{resource} watched by {watchers:?}, not {who}"
        );
    }
    // Only kubectl (the test) is system:masters.
    let masters: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["user"]["groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g == "system:masters"))
        })
        .filter(|e| {
            !e["userAgent"]
                .as_str()
                .is_some_and(|a| a.starts_with("kubectl"))
        })
        .collect();
    assert!(
        masters.is_empty(),
        "requests as system:masters not from kubectl: {masters:?}"
    );

    // 3. The deployment controller writes as its own account: without its
    // binding it cannot make a ReplicaSet; the ReplicaSet controller (another
    // account) still makes pods.
    let binding = c.k(&[
        "get",
        "clusterrolebinding",
        "system:controller:deployment-controller",
        "-o",
        "json",
    ]);
    c.k(&[
        "delete",
        "clusterrolebinding",
        "system:controller:deployment-controller",
    ]);
    c.k(&[
        "create",
        "deployment",
        "blocked",
        "--image=bretfisher/httpenv",
    ]);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        items(&c, &["replicasets", "-l", "app=blocked"]).is_empty(),
        "a ReplicaSet was made without the deployment controller's binding"
    );
    c.apply(
        r#"{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "by-hand", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "by-hand"}},
              "template": {"metadata": {"labels": {"app": "by-hand"}},
                "spec": {"containers": [{"name": "c", "image": "bretfisher/httpenv"}]}}}}"#,
    );
    eventually(Duration::from_secs(30), || {
        (!items(&c, &["pods", "-l", "app=by-hand"]).is_empty()).then_some(())
    });
    // Back: the controller retries and makes it.
    let mut restored: Value = serde_json::from_str(&binding).expect("binding json");
    for f in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
    ] {
        if let Some(m) = restored["metadata"].as_object_mut() {
            m.remove(f);
        }
    }
    c.apply(&restored.to_string());
    eventually(Duration::from_secs(60), || {
        (!items(&c, &["replicasets", "-l", "app=blocked"]).is_empty()).then_some(())
    });
}

/// `sh -c` in the cluster's namespace that must succeed; its stdout.
fn sh_ok(c: &Cluster, script: &str) -> String {
    let out = c.sh(script);
    if !out.status.success() {
        // The server's last words say whether it was down or busy.
        let log = c.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{script}: {}{}\nserver log, last lines:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// POSTs `body` to the node-components endpoint with `token`: (status, body).
fn ask_certificates(c: &Cluster, token: Option<&str>, body: &Value) -> (u16, Value) {
    let file = c.dir.path().join("ask.json");
    std::fs::write(&file, body.to_string()).expect("request file");
    let auth = token
        .map(|t| format!("-H 'Authorization: Bearer {t}'"))
        .unwrap_or_default();
    let out = sh_ok(
        c,
        &format!(
            "curl -sSk --retry 5 --retry-connrefused --retry-delay 1 -w '\\n%{{http_code}}' -X POST -H 'Content-Type: application/json' {auth} --data @{} https://127.0.0.1:6443/skiff/v1/node-components",
            file.display()
        ),
    );
    let (body, code) = out.rsplit_once('\n').unwrap_or((&out, ""));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn a_joined_node_gets_certificates_for_its_components_and_only_its_own() {
    let c = Cluster::start_with(&["--disable", "agent,proxy,dns,netpol,controllers"]);
    let join_token = std::fs::read_to_string(c.data_dir().join("node-token")).expect("node-token");
    let node_dir = c.dir.path().join("n1");
    let out = c
        .netns
        .command(support::skiff_bin())
        .args(["token", "join", "--server", "https://127.0.0.1:6443"])
        .args(["--node-name", "n1", "--address", "10.1.2.3", "--data-dir"])
        .arg(&node_dir)
        .args(["--token", join_token.trim()])
        .output()
        .expect("skiff token join");
    assert!(
        out.status.success(),
        "join: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kubeconfig = std::fs::read_to_string(node_dir.join("node.kubeconfig")).expect("kubeconfig");
    let node_token = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .map(|t| t.trim().to_string())
        .expect("node token");

    // A CSR that asks to be an admin: only its key is taken.
    let dir = c.dir.path();
    sh_ok(
        &c,
        &format!(
            "cd {} && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout proxy.key -subj '/O=system:masters/CN=system:admin' -out proxy.csr 2>/dev/null",
            dir.display()
        ),
    );
    let csr = std::fs::read_to_string(dir.join("proxy.csr")).expect("csr");
    let ask = |node: &str| serde_json::json!({"nodeName": node, "csrs": {"proxy": csr}});

    // Nobody, the admin, another node's name: refused.
    assert_eq!(ask_certificates(&c, None, &ask("n1")).0, 401);
    let admin = c.token();
    let (code, status) = ask_certificates(&c, Some(&admin), &ask("n1"));
    assert_eq!(code, 403, "{status}");
    let (code, status) = ask_certificates(&c, Some(&node_token), &ask("n2"));
    assert_eq!(code, 403, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("its own components"),
        "{status}"
    );
    let (code, status) = ask_certificates(
        &c,
        Some(&node_token),
        &serde_json::json!({"nodeName": "n1", "csrs": {"agent": csr}}),
    );
    assert_eq!(code, 400, "{status}");

    // Its own: the server's subject, the node's key.
    let (code, signed) = ask_certificates(&c, Some(&node_token), &ask("n1"));
    assert_eq!(code, 200, "{signed}");
    let cert = signed["certificates"]["proxy"]
        .as_str()
        .expect("certificate");
    std::fs::write(dir.join("proxy.crt"), cert).expect("cert file");
    let subject = sh_ok(
        &c,
        &format!(
            "openssl x509 -noout -subject -in {}/proxy.crt",
            dir.display()
        ),
    );
    assert!(subject.contains("CN = system:kube-proxy"), "{subject}");
    assert!(!subject.contains("system:masters"), "{subject}");

    // The certificate works, as the proxy and nothing more.
    let kubectl = format!(
        "kubectl --kubeconfig /dev/null --server https://127.0.0.1:6443 \
         --certificate-authority {ca} --client-certificate {d}/proxy.crt --client-key {d}/proxy.key",
        ca = c.data_dir().join("ca.crt").display(),
        d = dir.display()
    );
    assert_eq!(
        sh_ok(
            &c,
            &format!("{kubectl} auth whoami -o jsonpath='{{.status.userInfo.username}}'")
        ),
        "system:kube-proxy"
    );
    sh_ok(&c, &format!("{kubectl} get services -A"));
    let refused = c.sh(&format!("{kubectl} get secrets -n default"));
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(r#"User "system:kube-proxy" cannot list resource "secrets""#),
        "{err}"
    );
}

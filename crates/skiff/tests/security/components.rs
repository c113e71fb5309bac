//! Each of skiff's components has its own identity (issue 17), bound to only
//! what its code calls: tried against what it must not do, each gets upstream's
//! 403, on a two-node `skiff up`. The proxy, DNS and NetworkPolicy enforcer
//! by the real client certificates joined node 2 keeps in its data directory
//! (`<component>-client.crt`/`.key`), the node by its real token there
//! (`node.kubeconfig`), the controller manager, scheduler and controllers by
//! impersonation from the admin (`kubectl --as USER --as-group G`): skiff's
//! server holds their certificates in memory only.
//!
//! Each identity first does one thing it is granted (so a refusal below is the
//! authorizer's judgement, not an identity it does not know).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::multinode::MultiNode;

/// Who asks: a user and its groups, by its own credentials (a kubeconfig) or
/// else by impersonation.
struct Identity {
    user: String,
    groups: Vec<String>,
    kubeconfig: Option<PathBuf>,
}

impl Identity {
    /// A component of joined node 2, by the client certificate it was given.
    fn node2_component(c: &MultiNode, component: &str, user: &str) -> Self {
        let dir = c.cluster_dir().join("node2");
        let node = dir.join("node.kubeconfig");
        let server = kubectl_with(
            c,
            &node,
            &[
                "config",
                "view",
                "-o",
                "jsonpath={.clusters[0].cluster.server}",
            ],
        );
        let server = text(&server).0;
        let (cert, key) = (
            dir.join(format!("{component}-client.crt")),
            dir.join(format!("{component}-client.key")),
        );
        assert!(
            cert.exists() && key.exists(),
            "no {} in {}",
            cert.display(),
            dir.display()
        );
        let kubeconfig = c.dir.path().join(format!("{component}.kubeconfig"));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
                dir.join("ca.crt").display(),
                cert.display(),
                key.display()
            ),
        )
        .expect("write a component kubeconfig");
        Self {
            kubeconfig: Some(kubeconfig),
            ..Self::user(user)
        }
    }

    /// A component's user (`system:authenticated` is every user's group).
    fn user(name: &str) -> Self {
        Self {
            user: name.to_string(),
            groups: vec!["system:authenticated".into()],
            kubeconfig: None,
        }
    }

    /// A controller's ServiceAccount in kube-system, with the groups its token
    /// carries.
    fn controller(account: &str) -> Self {
        Self {
            user: format!("system:serviceaccount:kube-system:{account}"),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:kube-system".into(),
                "system:authenticated".into(),
            ],
            kubeconfig: None,
        }
    }

    fn impersonation(&self) -> Vec<String> {
        let mut args = vec!["--as".to_string(), self.user.clone()];
        for g in &self.groups {
            args.push("--as-group".into());
            args.push(g.clone());
        }
        args
    }
}

/// What is refused: how kubectl words it, the object (`pods "p1"`, `secrets`), the verb, the
/// resource, its API group, and the namespace (None: the cluster scope).
struct Refusal<'a> {
    /// How kubectl words it before the server's message.
    says: &'a str,
    object: &'a str,
    verb: &'a str,
    resource: &'a str,
    group: &'a str,
    namespace: Option<&'a str>,
}

impl Refusal<'_> {
    /// Upstream's words, as kubectl prints them.
    fn message(&self, user: &str) -> String {
        let scope = match self.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".into(),
        };
        format!(
            "{}: {} is forbidden: User \"{user}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
            self.says,
            self.object, self.verb, self.resource, self.group
        )
    }
}

const D: Option<&str> = Some("default");
/// kubectl's words for a refused get, delete, list.
const SERVER: &str = "Error from server (Forbidden)";

fn get_secret_s1() -> (Vec<&'static str>, Refusal<'static>) {
    (
        vec!["get", "secret", "s1", "-n", "default"],
        Refusal {
            says: SERVER,
            object: "secrets \"s1\"",
            verb: "get",
            resource: "secrets",
            group: "",
            namespace: D,
        },
    )
}

fn delete_pod_p1() -> (Vec<&'static str>, Refusal<'static>) {
    (
        vec!["delete", "pod", "p1", "-n", "default", "--wait=false"],
        Refusal {
            says: SERVER,
            object: "pods \"p1\"",
            verb: "delete",
            resource: "pods",
            group: "",
            namespace: D,
        },
    )
}

fn delete_service_svc1() -> (Vec<&'static str>, Refusal<'static>) {
    (
        vec!["delete", "service", "svc1", "-n", "default", "--wait=false"],
        Refusal {
            says: SERVER,
            object: "services \"svc1\"",
            verb: "delete",
            resource: "services",
            group: "",
            namespace: D,
        },
    )
}

fn create_pod() -> (Vec<&'static str>, Refusal<'static>) {
    (
        vec!["run", "made", "-n", "default", "--image=busybox"],
        Refusal {
            says: SERVER,
            object: "pods",
            verb: "create",
            resource: "pods",
            group: "",
            namespace: D,
        },
    )
}

fn create_configmap() -> (Vec<&'static str>, Refusal<'static>) {
    (
        vec!["create", "configmap", "made", "-n", "default"],
        Refusal {
            says: "error: failed to create configmap",
            object: "configmaps",
            verb: "create",
            resource: "configmaps",
            group: "",
            namespace: D,
        },
    )
}

fn list_secrets() -> (Vec<&'static str>, Refusal<'static>) {
    (
        vec!["get", "secrets", "-A"],
        Refusal {
            says: SERVER,
            object: "secrets",
            verb: "list",
            resource: "secrets",
            group: "",
            namespace: None,
        },
    )
}

/// Binding itself to cluster-admin: the way up from any identity.
fn bind_cluster_admin(user: &str) -> (Vec<String>, Refusal<'static>) {
    (
        vec![
            "create".into(),
            "clusterrolebinding".into(),
            "escalate".into(),
            "--clusterrole=cluster-admin".into(),
            format!("--user={user}"),
        ],
        Refusal {
            says: "error: failed to create clusterrolebinding",
            object: "clusterrolebindings.rbac.authorization.k8s.io",
            verb: "create",
            resource: "clusterrolebindings",
            group: "rbac.authorization.k8s.io",
            namespace: None,
        },
    )
}

fn owned(args: Vec<&str>) -> Vec<String> {
    args.into_iter().map(str::to_string).collect()
}

/// kubectl's arguments and the refusal they must get.
type Refused = (Vec<String>, Refusal<'static>);

/// Every component identity: something it may do, then what it must not.
fn table(c: &MultiNode) -> Vec<(Identity, Vec<&'static str>, Vec<Refused>)> {
    let rows = |list: Vec<(Vec<&'static str>, Refusal<'static>)>| {
        list.into_iter()
            .map(|(a, r)| (owned(a), r))
            .collect::<Vec<_>>()
    };
    let mut t = vec![
        (
            Identity::node2_component(c, "proxy", "system:kube-proxy"),
            vec!["get", "endpointslices", "-A"],
            rows(vec![
                delete_pod_p1(),
                get_secret_s1(),
                list_secrets(),
                delete_service_svc1(),
            ]),
        ),
        (
            Identity::node2_component(c, "dns", "system:skiff:dns"),
            vec!["get", "services", "-A"],
            rows(vec![
                (
                    vec![
                        "create",
                        "service",
                        "clusterip",
                        "made",
                        "-n",
                        "default",
                        "--tcp=53:53",
                    ],
                    Refusal {
                        says: "error: failed to create ClusterIP service",
                        object: "services",
                        verb: "create",
                        resource: "services",
                        group: "",
                        namespace: D,
                    },
                ),
                (
                    // Its own slice is in kube-system; the API's is not its to touch.
                    vec![
                        "delete",
                        "endpointslice",
                        "kubernetes",
                        "-n",
                        "default",
                        "--wait=false",
                    ],
                    Refusal {
                        says: SERVER,
                        object: "endpointslices.discovery.k8s.io \"kubernetes\"",
                        verb: "delete",
                        resource: "endpointslices",
                        group: "discovery.k8s.io",
                        namespace: D,
                    },
                ),
                get_secret_s1(),
            ]),
        ),
        (
            Identity::node2_component(c, "netpol", "system:skiff:netpol"),
            vec!["get", "networkpolicies", "-A"],
            rows(vec![
                get_secret_s1(),
                delete_pod_p1(),
                (
                    vec!["get", "services", "-A"],
                    Refusal {
                        says: SERVER,
                        object: "services",
                        verb: "list",
                        resource: "services",
                        group: "",
                        namespace: None,
                    },
                ),
            ]),
        ),
        (
            // Its informers list and watch everything (upstream's role too),
            // but it gets and writes nothing itself.
            Identity::user("system:kube-controller-manager"),
            vec!["get", "pods", "-A"],
            rows(vec![get_secret_s1(), delete_pod_p1(), create_configmap()]),
        ),
        (
            Identity::user("system:kube-scheduler"),
            vec!["get", "nodes"],
            rows(vec![list_secrets(), delete_service_svc1(), create_pod()]),
        ),
        (
            // It makes ReplicaSets, never pods.
            Identity::controller("deployment-controller"),
            vec!["get", "deployments", "-A"],
            rows(vec![get_secret_s1(), create_pod(), delete_service_svc1()]),
        ),
        (
            Identity::controller("replicaset-controller"),
            vec!["get", "replicasets", "-A"],
            rows(vec![
                get_secret_s1(),
                (
                    vec![
                        "delete",
                        "deployment",
                        "d1",
                        "-n",
                        "default",
                        "--wait=false",
                    ],
                    Refusal {
                        says: SERVER,
                        object: "deployments.apps \"d1\"",
                        verb: "delete",
                        resource: "deployments",
                        group: "apps",
                        namespace: D,
                    },
                ),
            ]),
        ),
        (
            Identity::controller("endpointslice-controller"),
            vec!["get", "endpointslices", "-A"],
            rows(vec![
                get_secret_s1(),
                delete_service_svc1(),
                delete_pod_p1(),
            ]),
        ),
        (
            Identity::controller("node-controller"),
            vec!["get", "nodes"],
            rows(vec![get_secret_s1(), create_pod()]),
        ),
        (
            Identity::controller("pod-garbage-collector"),
            vec!["get", "nodes"],
            rows(vec![get_secret_s1(), create_pod()]),
        ),
        (
            Identity::controller("service-account-controller"),
            vec![
                "auth",
                "can-i",
                "create",
                "serviceaccounts",
                "-n",
                "default",
            ],
            rows(vec![
                get_secret_s1(),
                (
                    vec![
                        "delete",
                        "serviceaccount",
                        "default",
                        "-n",
                        "default",
                        "--wait=false",
                    ],
                    Refusal {
                        says: SERVER,
                        object: "serviceaccounts \"default\"",
                        verb: "delete",
                        resource: "serviceaccounts",
                        group: "",
                        namespace: D,
                    },
                ),
            ]),
        ),
        (
            Identity::controller("root-ca-cert-publisher"),
            vec!["auth", "can-i", "update", "configmaps", "-n", "default"],
            rows(vec![
                get_secret_s1(),
                (
                    vec![
                        "delete",
                        "configmap",
                        "kube-root-ca.crt",
                        "-n",
                        "default",
                        "--wait=false",
                    ],
                    Refusal {
                        says: SERVER,
                        object: "configmaps \"kube-root-ca.crt\"",
                        verb: "delete",
                        resource: "configmaps",
                        group: "",
                        namespace: D,
                    },
                ),
            ]),
        ),
        (
            // It reads and deletes anything (upstream's role): it creates nothing.
            Identity::controller("generic-garbage-collector"),
            vec!["get", "secrets", "-A"],
            rows(vec![create_configmap()]),
        ),
    ];
    for (who, _, refusals) in &mut t {
        refusals.push(bind_cluster_admin(&who.user));
    }
    t
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn kubectl_as(c: &MultiNode, who: &Identity, args: &[String]) -> Output {
    if let Some(kubeconfig) = &who.kubeconfig {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        return kubectl_with(c, kubeconfig, &args);
    }
    let mut all = who.impersonation();
    all.extend(args.iter().cloned());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    c.kubectl(&all)
}

/// kubectl with only the credentials in `kubeconfig` (a node's own).
fn kubectl_with(c: &MultiNode, kubeconfig: &Path, args: &[&str]) -> Output {
    c.netns
        .command("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", c.dir.path())
        .output()
        .expect("run kubectl")
}

/// The admin's objects the identities are tried against.
fn objects(c: &MultiNode, node2: &str) {
    c.k(&["create", "secret", "generic", "s1", "--from-literal=k=v"]);
    c.k(&["create", "secret", "generic", "s2", "--from-literal=k=v"]);
    c.k(&["create", "configmap", "cm1"]);
    c.k(&["create", "serviceaccount", "lonely"]);
    c.k(&["create", "service", "clusterip", "svc1", "--tcp=80:80"]);
    c.k(&[
        "create",
        "deployment",
        "d1",
        "--image=busybox",
        "--replicas=0",
    ]);
    // p1 waits for a node that never comes; p2 runs on node 2 and mounts s2.
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: p1}
spec:
  nodeName: nowhere
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
"#,
    );
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: p2}}
spec:
  nodeName: {node2}
  terminationGracePeriodSeconds: 0
  containers: [{{name: c, image: busybox, command: [sleep, "3600"], volumeMounts: [{{name: s, mountPath: /s}}]}}]
  volumes: [{{name: s, secret: {{secretName: s2}}}}]
"#
    ));
}

pub fn components_refused(c: &MultiNode) {
    let mut failures = Vec::new();
    for (who, allowed, refusals) in table(c) {
        if who.kubeconfig.is_some() {
            let out = kubectl_as(
                c,
                &who,
                &owned(vec![
                    "auth",
                    "whoami",
                    "-o",
                    "jsonpath={.status.userInfo.username}",
                ]),
            );
            let (stdout, stderr) = text(&out);
            if stdout != who.user {
                failures.push(format!(
                    "{}'s own credentials are {stdout:?}: {stderr}",
                    who.user
                ));
            }
        }
        let out = kubectl_as(c, &who, &owned(allowed.clone()));
        let (stdout, stderr) = text(&out);
        if !out.status.success() || stdout.trim() == "no" {
            failures.push(format!(
                "{} may not {allowed:?}: {stdout}{stderr}",
                who.user
            ));
        }
        for (args, refusal) in refusals {
            let out = kubectl_as(c, &who, &args);
            let (stdout, stderr) = text(&out);
            let want = refusal.message(&who.user);
            if out.status.success() || stderr.trim() != want {
                failures.push(format!(
                    "{} {args:?}:\n  got  {stderr}{stdout}\n  want {want}",
                    who.user
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The joined node 2 with its own token: its own Node and the Secret its pod
/// mounts, not another Secret, not another node.
pub fn node_refused(c: &MultiNode) {
    let (n1, n2) = (c.node_name(1), c.node_name(2));
    let kubeconfig = c.cluster_dir().join("node2/node.kubeconfig");
    let user = format!("system:node:{n2}");
    let whoami = kubectl_with(
        c,
        &kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(text(&whoami).0, user, "{}", text(&whoami).1);
    for allowed in [
        vec!["get", "node", n2.as_str()],
        vec!["get", "secret", "s2", "-n", "default"],
    ] {
        let out = kubectl_with(c, &kubeconfig, &allowed);
        assert!(out.status.success(), "{user} {allowed:?}: {}", text(&out).1);
    }
    let forbidden = |args: &[&str], want: String| {
        let out = kubectl_with(c, &kubeconfig, args);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{user} {args:?} succeeded: {stdout}");
        assert_eq!(stderr.trim(), want, "{user} {args:?}");
    };
    let secret = Refusal {
        says: SERVER,
        object: "secrets \"s1\"",
        verb: "get",
        resource: "secrets",
        group: "",
        namespace: D,
    };
    forbidden(
        &["get", "secret", "s1", "-n", "default"],
        format!(
            "{}: no relationship found between node '{n2}' and this object",
            secret.message(&user)
        ),
    );
    let all_secrets = Refusal {
        says: SERVER,
        object: "secrets",
        verb: "list",
        resource: "secrets",
        group: "",
        namespace: None,
    };
    forbidden(
        &["get", "secrets", "-A"],
        format!(
            "{}: can only read namespaced object of this type",
            all_secrets.message(&user)
        ),
    );
    // A token for an account no pod of the node runs as: the authorizer's
    // refusal; for one its pod runs as but not bound to that pod:
    // NodeRestriction's.
    let token = Refusal {
        says: "error: failed to create token",
        object: "serviceaccounts \"lonely\"",
        verb: "create",
        resource: "serviceaccounts/token",
        group: "",
        namespace: D,
    };
    forbidden(
        &["create", "token", "lonely", "-n", "default"],
        format!(
            "{}: no relationship found between node '{n2}' and this object",
            token.message(&user)
        ),
    );
    forbidden(
        &["create", "token", "default", "-n", "default"],
        "error: failed to create token: serviceaccounts \"default\" is forbidden: node requested token not bound to a pod".into(),
    );
    // A pod of another node (p1 is bound to none of them).
    forbidden(
        &["delete", "pod", "p1", "-n", "default", "--wait=false"],
        format!("{SERVER}: pods \"p1\" is forbidden: node \"{n2}\" can only delete pods with spec.nodeName set to itself"),
    );
    // Another node's object, written as it is (a PUT: kubectl patch would
    // read it first, which the node may not): NodeRestriction's words.
    let mut node1: serde_json::Value =
        serde_json::from_str(&c.k(&["get", "node", &n1, "-o", "json"])).expect("node json");
    node1["metadata"]["labels"]["pwned"] = "1".into();
    let body = c.dir.path().join("node1.json");
    std::fs::write(&body, node1.to_string()).expect("write node1.json");
    let path = format!("/api/v1/nodes/{n1}");
    forbidden(
        &["replace", "--raw", &path, "-f", &body.to_string_lossy()],
        format!("Error from server (Forbidden): nodes \"{n1}\" is forbidden: node \"{n2}\" is not allowed to modify node \"{n1}\""),
    );
    let lease = format!("leases.coordination.k8s.io \"{n1}\"");
    let lease = Refusal {
        says: SERVER,
        object: &lease,
        verb: "get",
        resource: "leases",
        group: "coordination.k8s.io",
        namespace: Some("kube-node-lease"),
    }
    .message(&user);
    forbidden(
        &["get", "lease", "-n", "kube-node-lease", &n1],
        format!("{lease}: can only access node lease with the same name as the requesting node"),
    );
}

pub fn start() -> MultiNode {
    let c = MultiNode::up(2, &["--host-images"]);
    objects(&c, &c.node_name(2));
    c
}

//! RBAC end to end (issue 17, "Done when" 2): identities x verbs x resources
//! through the real `skiff server` and the real kubectl.
//!
//! Every row of [`MATRIX`] is asked with `kubectl auth can-i` (a
//! SelfSubjectAccessReview as that identity) and must get the answer upstream's
//! default roles give. For each identity, at least one allowed and one denied
//! request is then made for real (kubectl with the identity's token or
//! `--as`, and curl with `Authorization: Bearer`): it must succeed, or fail with
//! 403 and upstream's words. `kubectl auth can-i --list` shows an account's
//! rules.
//!
//! Identities: the admin kubeconfig (`system:masters`); ServiceAccounts in
//! namespace `rbac` bound by RoleBindings to `view`, `edit` and `admin`; one
//! with no binding; one whose Role grants only `get` of ConfigMap `allowed`
//! (resourceNames); and `jane` in group `devs` (by impersonation), whose group
//! a ClusterRoleBinding binds to `view` in every namespace; and `carol`, a
//! client certificate in group `auditors` (`skiff kubeconfig --user`), bound
//! by group to `view` in `rbac` and by name to a ClusterRole reading nodes.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use support::{eventually, Cluster};

/// What upstream's authorizer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ans {
    Yes,
    No,
}
use Ans::{No, Yes};

const NS: &str = "rbac";

/// `(identity, verb, what, namespace, answer)`. `what` is a resource, a
/// resource with a subresource (`pods/log`: the part after `/` is one of
/// [`SUBRESOURCES`]), a resource with an object's name (`configmaps/allowed`),
/// or a path (`/healthz`). Namespace `""` is the cluster scope (`-A`).
#[rustfmt::skip]
const MATRIX: &[(&str, &str, &str, &str, Ans)] = &[
    // The admin kubeconfig: system:masters may do anything.
    ("admin", "get", "pods", NS, Yes),
    ("admin", "deletecollection", "secrets", NS, Yes),
    ("admin", "create", "pods/exec", NS, Yes),
    ("admin", "update", "services/status", NS, Yes),
    ("admin", "delete", "namespaces", "", Yes),
    ("admin", "list", "nodes", "", Yes),
    ("admin", "create", "rolebindings", NS, Yes),
    ("admin", "get", "/metrics", "", Yes),
    // view: reads of the namespace, no secrets, no writes, no RBAC objects.
    ("view-sa", "get", "pods", NS, Yes),
    ("view-sa", "list", "pods", NS, Yes),
    ("view-sa", "watch", "pods", NS, Yes),
    ("view-sa", "create", "pods", NS, No),
    ("view-sa", "update", "pods", NS, No),
    ("view-sa", "patch", "pods", NS, No),
    ("view-sa", "delete", "pods", NS, No),
    ("view-sa", "deletecollection", "pods", NS, No),
    ("view-sa", "get", "pods/log", NS, Yes),
    ("view-sa", "create", "pods/exec", NS, No),
    ("view-sa", "get", "services", NS, Yes),
    ("view-sa", "get", "services/status", NS, Yes),
    ("view-sa", "update", "services/status", NS, No),
    ("view-sa", "get", "secrets", NS, No),
    ("view-sa", "list", "secrets", NS, No),
    ("view-sa", "list", "configmaps", NS, Yes),
    ("view-sa", "create", "configmaps", NS, No),
    ("view-sa", "list", "deployments", NS, Yes),
    ("view-sa", "get", "deployments/scale", NS, Yes),
    ("view-sa", "update", "deployments/scale", NS, No),
    ("view-sa", "list", "roles", NS, No),
    ("view-sa", "list", "rolebindings", NS, No),
    ("view-sa", "list", "pods", "default", No),
    ("view-sa", "list", "namespaces", "", No),
    ("view-sa", "list", "nodes", "", No),
    ("view-sa", "get", "/healthz", "", Yes),
    ("view-sa", "get", "/api", "", Yes),
    ("view-sa", "get", "/metrics", "", No),
    // edit: view plus writes of workloads and configuration, secrets, no RBAC.
    ("edit-sa", "get", "pods", NS, Yes),
    ("edit-sa", "create", "pods", NS, Yes),
    ("edit-sa", "update", "pods", NS, Yes),
    ("edit-sa", "patch", "pods", NS, Yes),
    ("edit-sa", "delete", "pods", NS, Yes),
    ("edit-sa", "deletecollection", "pods", NS, Yes),
    ("edit-sa", "create", "pods/exec", NS, Yes),
    ("edit-sa", "get", "pods/log", NS, Yes),
    ("edit-sa", "create", "services", NS, Yes),
    ("edit-sa", "update", "services/status", NS, No),
    ("edit-sa", "get", "secrets", NS, Yes),
    ("edit-sa", "list", "secrets", NS, Yes),
    ("edit-sa", "watch", "secrets", NS, Yes),
    ("edit-sa", "create", "secrets", NS, Yes),
    ("edit-sa", "delete", "configmaps", NS, Yes),
    ("edit-sa", "create", "deployments", NS, Yes),
    ("edit-sa", "update", "deployments/scale", NS, Yes),
    ("edit-sa", "patch", "deployments", NS, Yes),
    ("edit-sa", "get", "roles", NS, No),
    ("edit-sa", "create", "rolebindings", NS, No),
    ("edit-sa", "create", "secrets", "default", No),
    ("edit-sa", "delete", "namespaces", "", No),
    ("edit-sa", "get", "nodes", "", No),
    ("edit-sa", "get", "/healthz", "", Yes),
    ("edit-sa", "get", "/metrics", "", No),
    // admin: edit plus the namespace's Roles and RoleBindings; still nothing
    // at the cluster scope.
    ("admin-sa", "list", "secrets", NS, Yes),
    ("admin-sa", "deletecollection", "configmaps", NS, Yes),
    ("admin-sa", "create", "pods/exec", NS, Yes),
    ("admin-sa", "update", "deployments/scale", NS, Yes),
    ("admin-sa", "update", "services/status", NS, No),
    ("admin-sa", "get", "roles", NS, Yes),
    ("admin-sa", "create", "roles", NS, Yes),
    ("admin-sa", "list", "rolebindings", NS, Yes),
    ("admin-sa", "delete", "rolebindings", NS, Yes),
    ("admin-sa", "create", "roles", "default", No),
    ("admin-sa", "list", "namespaces", "", No),
    ("admin-sa", "delete", "namespaces", "", No),
    ("admin-sa", "list", "nodes", "", No),
    ("admin-sa", "get", "/api", "", Yes),
    ("admin-sa", "get", "/metrics", "", No),
    // No binding: discovery and the self reviews everyone has, nothing else.
    ("none-sa", "get", "pods", NS, No),
    ("none-sa", "list", "services", NS, No),
    ("none-sa", "list", "configmaps", NS, No),
    ("none-sa", "get", "pods/log", NS, No),
    ("none-sa", "list", "secrets", NS, No),
    ("none-sa", "list", "deployments", NS, No),
    ("none-sa", "list", "roles", NS, No),
    ("none-sa", "list", "namespaces", "", No),
    ("none-sa", "list", "nodes", "", No),
    ("none-sa", "create", "selfsubjectaccessreviews", "", Yes),
    ("none-sa", "get", "/healthz", "", Yes),
    ("none-sa", "get", "/api", "", Yes),
    ("none-sa", "get", "/metrics", "", No),
    // A Role with `get` on ConfigMap `allowed` only (resourceNames).
    ("cm-sa", "get", "configmaps/allowed", NS, Yes),
    ("cm-sa", "get", "configmaps/other", NS, No),
    ("cm-sa", "get", "configmaps", NS, No),
    ("cm-sa", "list", "configmaps", NS, No),
    ("cm-sa", "watch", "configmaps", NS, No),
    ("cm-sa", "update", "configmaps/allowed", NS, No),
    ("cm-sa", "patch", "configmaps/allowed", NS, No),
    ("cm-sa", "delete", "configmaps/allowed", NS, No),
    ("cm-sa", "get", "configmaps/allowed", "default", No),
    ("cm-sa", "get", "secrets", NS, No),
    // jane in group devs, bound to `view` by a ClusterRoleBinding: reads in
    // every namespace, namespaces too, but still no secrets, nodes or writes.
    ("jane", "list", "pods", NS, Yes),
    ("jane", "list", "pods", "default", Yes),
    ("jane", "watch", "services", "default", Yes),
    ("jane", "get", "pods/log", "default", Yes),
    ("jane", "list", "deployments", "kube-system", Yes),
    ("jane", "list", "namespaces", "", Yes),
    ("jane", "create", "pods", "default", No),
    ("jane", "delete", "configmaps", NS, No),
    ("jane", "create", "pods/exec", "default", No),
    ("jane", "list", "secrets", "default", No),
    ("jane", "list", "roles", NS, No),
    ("jane", "list", "nodes", "", No),
    ("jane", "delete", "namespaces", "", No),
    ("jane", "get", "/api", "", Yes),
    ("jane", "get", "/metrics", "", No),
    // carol, a client certificate from `skiff kubeconfig --user carol --group
    // auditors`: her group is bound to `view` in the namespace, her name to a
    // ClusterRole that reads nodes.
    ("carol", "list", "pods", NS, Yes),
    ("carol", "get", "pods/log", NS, Yes),
    ("carol", "list", "secrets", NS, No),
    ("carol", "create", "configmaps", NS, No),
    ("carol", "list", "pods", "default", No),
    ("carol", "list", "nodes", "", Yes),
    ("carol", "get", "nodes", "", Yes),
    ("carol", "delete", "nodes", "", No),
    ("carol", "list", "namespaces", "", No),
    ("carol", "get", "/api", "", Yes),
    ("carol", "get", "/metrics", "", No),
];

/// What may follow a resource and `/` as a subresource; anything else there is
/// an object's name.
const SUBRESOURCES: &[&str] = &["log", "exec", "scale", "status"];

/// The certificate user (`skiff kubeconfig --user carol --group auditors`).
const CERT_USER: &str = "carol";

/// The ServiceAccounts the matrix uses, all in [`NS`].
const ACCOUNTS: &[&str] = &["view-sa", "edit-sa", "admin-sa", "none-sa", "cm-sa"];

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The cluster, with a kubeconfig holding only its token for each account.
struct Matrix {
    c: Cluster,
    kubeconfigs: Vec<(String, PathBuf)>,
    tokens: Vec<(String, String)>,
}

impl Matrix {
    fn token(&self, account: &str) -> &str {
        &self
            .tokens
            .iter()
            .find(|(a, _)| a == account)
            .unwrap_or_else(|| panic!("no token for {account}"))
            .1
    }

    /// kubectl flags that make it act as `who`.
    fn identity(&self, who: &str) -> Vec<String> {
        match who {
            "admin" => Vec::new(),
            "jane" => ["--as", "jane", "--as-group", "devs"]
                .map(String::from)
                .to_vec(),
            sa => {
                let path = &self
                    .kubeconfigs
                    .iter()
                    .find(|(a, _)| a == sa)
                    .unwrap_or_else(|| panic!("no identity {sa}"))
                    .1;
                vec!["--kubeconfig".into(), path.display().to_string()]
            }
        }
    }

    fn kubectl_as(&self, who: &str, args: &[&str]) -> Output {
        let mut all = self.identity(who);
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.c.kubectl(&all)
    }

    /// `kubectl auth can-i` for one row: yes (exit 0) or no (exit 1, "no").
    fn can_i(&self, who: &str, verb: &str, what: &str, ns: &str) -> Ans {
        let mut args = vec!["auth".to_string(), "can-i".into(), verb.into()];
        match what.split_once('/') {
            _ if what.starts_with('/') => args.push(what.into()),
            Some((resource, sub)) if SUBRESOURCES.contains(&sub) => {
                args.push(resource.into());
                args.push(format!("--subresource={sub}"));
            }
            _ => args.push(what.into()),
        }
        if ns.is_empty() {
            if !what.starts_with('/') {
                args.push("--all-namespaces".into());
            }
        } else {
            args.push(format!("--namespace={ns}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.kubectl_as(who, &args);
        let (stdout, stderr) = text(&out);
        match (out.status.code(), stdout.lines().next().map(str::trim)) {
            (Some(0), Some("yes")) => Yes,
            (Some(1), Some("no")) => No,
            _ => panic!(
                "kubectl {args:?} as {who}: {:?}\n{stdout}\n{stderr}",
                out.status
            ),
        }
    }

    /// A real request that must be allowed.
    fn allowed(&self, who: &str, args: &[&str]) -> String {
        let out = self.kubectl_as(who, args);
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "kubectl {args:?} as {who} was refused: {stderr}"
        );
        stdout
    }

    /// A real request that must be refused with upstream's 403 message, as
    /// kubectl prints a 403 (`get` and `delete` name the status reason,
    /// `create configmap` says what failed).
    fn forbidden(&self, who: &str, args: &[&str], message: &str) {
        let out = self.kubectl_as(who, args);
        let (stdout, stderr) = text(&out);
        assert!(
            !out.status.success(),
            "kubectl {args:?} as {who} succeeded: {stdout}"
        );
        let want = match args.first() {
            Some(&"create") => format!("error: failed to create {}: {message}", args[1]),
            _ => format!("Error from server (Forbidden): {message}"),
        };
        assert!(
            stderr.contains(&want),
            "kubectl {args:?} as {who}:\n{stderr}\nwanted: {want}"
        );
    }

    /// curl with the account's bearer token: (HTTP status, body).
    fn curl(&self, account: &str, method: &str, path: &str) -> (u16, serde_json::Value) {
        let ca = self.c.data_dir().join("ca.crt");
        let script = format!(
            "curl -s -o /dev/stdout -w '\\n%{{http_code}}' --cacert {} -X {method} \
             -H 'Authorization: Bearer {}' https://127.0.0.1:6443{path}",
            ca.display(),
            self.token(account)
        );
        let out = self.c.sh(&script);
        let (stdout, stderr) = text(&out);
        let (body, code) = stdout
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("curl {path}: {stdout}{stderr}"));
        let code = code.trim().parse().expect("an HTTP status");
        let body = serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.into()));
        (code, body)
    }
}

/// The namespace, the accounts, their bindings, two ConfigMaps, a Service,
/// and a token and a token-only kubeconfig for every account.
fn setup() -> Matrix {
    let c = Cluster::start();
    c.k(&["create", "namespace", NS]);
    for sa in ACCOUNTS {
        c.k(&["create", "serviceaccount", sa, "-n", NS]);
    }
    for role in ["view", "edit", "admin"] {
        let sa = format!("{NS}:{role}-sa");
        c.k(&[
            "create",
            "rolebinding",
            &format!("{role}-sa"),
            &format!("--clusterrole={role}"),
            &format!("--serviceaccount={sa}"),
            "-n",
            NS,
        ]);
    }
    c.k(&[
        "create",
        "role",
        "cm-getter",
        "--verb=get",
        "--resource=configmaps",
        "--resource-name=allowed",
        "-n",
        NS,
    ]);
    c.k(&[
        "create",
        "rolebinding",
        "cm-sa",
        "--role=cm-getter",
        &format!("--serviceaccount={NS}:cm-sa"),
        "-n",
        NS,
    ]);
    c.k(&[
        "create",
        "clusterrolebinding",
        "devs-view",
        "--clusterrole=view",
        "--group=devs",
    ]);
    c.k(&[
        "create",
        "rolebinding",
        "auditors-view",
        "--clusterrole=view",
        "--group=auditors",
        "-n",
        NS,
    ]);
    c.k(&[
        "create",
        "clusterrole",
        "node-reader",
        "--verb=get,list,watch",
        "--resource=nodes",
    ]);
    c.k(&[
        "create",
        "clusterrolebinding",
        "carol-nodes",
        "--clusterrole=node-reader",
        &format!("--user={CERT_USER}"),
    ]);
    for cm in ["allowed", "other"] {
        c.k(&["create", "configmap", cm, "--from-literal=k=v", "-n", NS]);
    }
    c.k(&[
        "create",
        "service",
        "clusterip",
        "web",
        "--tcp=80:8080",
        "-n",
        NS,
    ]);

    // Each account's kubeconfig: the cluster's server and CA, its token only
    // (no client certificate that could authenticate instead).
    let mut kubeconfigs = Vec::new();
    let mut tokens = Vec::new();
    for sa in ACCOUNTS {
        let token = c.k(&["create", "token", sa, "-n", NS]).trim().to_string();
        let path = c.token_kubeconfig(sa, &token, NS);
        kubeconfigs.push((sa.to_string(), path));
        tokens.push((sa.to_string(), token));
    }
    // carol's kubeconfig, as an operator on the server machine makes it.
    let out = std::process::Command::new(support::skiff_bin())
        .args([
            "kubeconfig",
            "--user",
            CERT_USER,
            "--group",
            "auditors",
            "--data-dir",
        ])
        .arg(c.data_dir())
        .output()
        .expect("run skiff kubeconfig");
    assert!(
        out.status.success(),
        "skiff kubeconfig: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = c.dir.path().join(format!("{CERT_USER}.kubeconfig"));
    std::fs::write(&path, &out.stdout).expect("write kubeconfig");
    kubeconfigs.push((CERT_USER.to_string(), path));
    let m = Matrix {
        c,
        kubeconfigs,
        tokens,
    };
    // The RBAC index follows the bindings within moments; wait until it has
    // the last of them.
    for (who, verb, what, ns) in [
        ("view-sa", "list", "pods", NS),
        ("edit-sa", "create", "secrets", NS),
        ("admin-sa", "create", "roles", NS),
        ("cm-sa", "get", "configmaps/allowed", NS),
        ("jane", "list", "pods", "default"),
        (CERT_USER, "list", "nodes", ""),
    ] {
        eventually(Duration::from_secs(20), || {
            (m.can_i(who, verb, what, ns) == Yes).then_some(())
        });
    }
    m
}

#[test]
fn identities_verbs_and_resources_as_upstreams_default_roles_decide() {
    let m = setup();

    // Every cell through kubectl auth can-i; all mismatches reported at once.
    let mut wrong = Vec::new();
    for &(who, verb, what, ns, want) in MATRIX {
        let got = m.can_i(who, verb, what, ns);
        if got != want {
            wrong.push(format!(
                "({who:?}, {verb:?}, {what:?}, {ns:?}): got {got:?}, upstream says {want:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cells differ:\n{}",
        wrong.len(),
        MATRIX.len(),
        wrong.join("\n")
    );

    // Real requests: at least one allowed and one refused per identity.
    let sa = |name: &str| format!("system:serviceaccount:{NS}:{name}");

    m.allowed("admin", &["get", "nodes"]);
    m.allowed("admin", &["get", "secrets", "-n", NS]);

    assert!(m.allowed("view-sa", &["get", "services"]).contains("web"));
    m.forbidden(
        "view-sa",
        &["get", "secrets"],
        &format!(
            "secrets is forbidden: User \"{}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"{NS}\"",
            sa("view-sa")
        ),
    );
    m.forbidden(
        "view-sa",
        &["create", "configmap", "by-view", "--from-literal=a=b"],
        &format!(
            "configmaps is forbidden: User \"{}\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"{NS}\"",
            sa("view-sa")
        ),
    );

    m.allowed(
        "edit-sa",
        &["create", "configmap", "by-edit", "--from-literal=a=b"],
    );
    m.allowed("edit-sa", &["delete", "configmap", "by-edit"]);
    // A namespace is in itself: a RoleBinding there lets its subjects read it.
    assert!(m.allowed("edit-sa", &["get", "namespace", NS]).contains(NS));
    m.forbidden(
        "edit-sa",
        &["get", "roles"],
        &format!(
            "roles.rbac.authorization.k8s.io is forbidden: User \"{}\" cannot list resource \"roles\" in API group \"rbac.authorization.k8s.io\" in the namespace \"{NS}\"",
            sa("edit-sa")
        ),
    );

    m.allowed(
        "admin-sa",
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get",
            "--resource=pods",
        ],
    );
    m.allowed("admin-sa", &["get", "role", "pod-reader"]);
    m.forbidden(
        "admin-sa",
        &["get", "nodes"],
        &format!(
            "nodes is forbidden: User \"{}\" cannot list resource \"nodes\" in API group \"\" at the cluster scope",
            sa("admin-sa")
        ),
    );

    m.allowed("none-sa", &["get", "--raw", "/api"]);
    m.forbidden(
        "none-sa",
        &["get", "pods"],
        &format!(
            "pods is forbidden: User \"{}\" cannot list resource \"pods\" in API group \"\" in the namespace \"{NS}\"",
            sa("none-sa")
        ),
    );

    assert!(m
        .allowed("cm-sa", &["get", "configmap", "allowed"])
        .contains("allowed"));
    m.forbidden(
        "cm-sa",
        &["get", "configmap", "other"],
        &format!(
            "configmaps \"other\" is forbidden: User \"{}\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"{NS}\"",
            sa("cm-sa")
        ),
    );
    m.forbidden(
        "cm-sa",
        &["delete", "configmap", "allowed"],
        &format!(
            "configmaps \"allowed\" is forbidden: User \"{}\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"{NS}\"",
            sa("cm-sa")
        ),
    );

    m.allowed("jane", &["get", "pods", "-n", "default"]);
    assert!(m.allowed("jane", &["get", "namespaces"]).contains(NS));
    m.forbidden(
        "jane",
        &["delete", "configmap", "other", "-n", NS],
        &format!(
            "configmaps \"other\" is forbidden: User \"jane\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"{NS}\""
        ),
    );

    // The certificate user is who its certificate says, and no more.
    let whoami = m.allowed(CERT_USER, &["auth", "whoami", "-o", "json"]);
    let whoami: serde_json::Value = serde_json::from_str(&whoami).expect("whoami JSON");
    assert_eq!(whoami["status"]["userInfo"]["username"], CERT_USER);
    let groups = whoami["status"]["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("auditors") && groups.contains("system:authenticated"),
        "{groups}"
    );
    m.allowed(CERT_USER, &["get", "pods", "-n", NS]);
    m.forbidden(
        CERT_USER,
        &["get", "secrets", "-n", NS],
        &format!(
            "secrets is forbidden: User \"{CERT_USER}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"{NS}\""
        ),
    );

    // The same through curl with the bearer token: the Status upstream sends.
    let (code, body) = m.curl(
        "cm-sa",
        "GET",
        &format!("/api/v1/namespaces/{NS}/configmaps/allowed"),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["metadata"]["name"], "allowed");
    let (code, body) = m.curl(
        "cm-sa",
        "GET",
        &format!("/api/v1/namespaces/{NS}/configmaps/other"),
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(body["details"]["name"], "other");
    assert_eq!(body["details"]["kind"], "configmaps");
    assert_eq!(
        body["message"],
        format!(
            "configmaps \"other\" is forbidden: User \"{}\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"{NS}\"",
            sa("cm-sa")
        )
    );
    let (code, _) = m.curl("view-sa", "GET", "/healthz");
    assert_eq!(code, 200);
    let (code, body) = m.curl("view-sa", "GET", "/metrics");
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        format!(
            "forbidden: User \"{}\" cannot get path \"/metrics\"",
            sa("view-sa")
        )
    );
    let (code, body) = m.curl("edit-sa", "DELETE", &format!("/api/v1/namespaces/{NS}"));
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        format!(
            "namespaces \"{NS}\" is forbidden: User \"{}\" cannot delete resource \"namespaces\" in API group \"\" in the namespace \"{NS}\"",
            sa("edit-sa")
        )
    );
    // Nothing a refused request asked for was done.
    m.c.k(&["get", "configmap", "allowed", "other", "-n", NS]);
    m.c.k(&["get", "namespace", NS]);
}

#[test]
fn can_i_list_shows_an_accounts_rules() {
    let m = setup();
    let out = m.allowed("edit-sa", &["auth", "can-i", "--list"]);
    let row = |resource: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(resource))
            .map(str::to_string)
    };
    // edit's own rules, with their verbs.
    let secrets = row("secrets").unwrap_or_else(|| panic!("no secrets row:\n{out}"));
    for verb in ["create", "delete", "get", "list", "watch"] {
        assert!(secrets.contains(verb), "{secrets}");
    }
    let deployments =
        row("deployments.apps").unwrap_or_else(|| panic!("no deployments.apps row:\n{out}"));
    assert!(deployments.contains("patch"), "{deployments}");
    // What every authenticated user has: the self reviews and discovery.
    assert!(
        row("selfsubjectaccessreviews.authorization.k8s.io").is_some(),
        "{out}"
    );
    assert!(out.contains("[/api/*]"), "{out}");
    // And nothing edit does not grant.
    assert!(row("roles.rbac.authorization.k8s.io").is_none(), "{out}");
    assert!(row("nodes").is_none(), "{out}");

    // The ConfigMap account's one named rule shows its resource name.
    let out = m.allowed("cm-sa", &["auth", "can-i", "--list"]);
    let cm = out
        .lines()
        .find(|l| l.starts_with("configmaps "))
        .unwrap_or_else(|| panic!("no configmaps row:\n{out}"));
    assert!(cm.contains("[allowed]") && cm.contains("[get]"), "{cm}");
    assert!(!out.lines().any(|l| l.starts_with("secrets ")), "{out}");
}

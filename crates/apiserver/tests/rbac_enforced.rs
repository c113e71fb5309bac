//! RBAC enforced (issue 17), on one in-process API server over a memory
//! store: a ServiceAccount without bindings gets upstream's 403 and writes
//! nothing; a RoleBinding to `view` lets it read its namespace only; a
//! ClusterRoleBinding to `cluster-admin` lets it do everything until the
//! binding is deleted (in well under a second); access reviews, impersonation
//! and escalation prevention answer as upstream; real kubectl's
//! `auth can-i` (and `--list`) with the account's token agrees.
//!
//! The server listens on loopback; run this inside a network namespace of its own
//! (`unshare -n`) when other servers share the machine.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{start, Client};

/// Runs the machine's kubectl against the server; `None` when there is none.
async fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str]) -> Option<(bool, String)> {
    let mut cmd = std::process::Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("kubectl task")
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

const SA: &str = "system:serviceaccount:default:robot";

fn binding(kind: &str, name: &str, role: &str, namespace: Option<&str>) -> Value {
    let mut meta = json!({"name": name});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}]})
}

/// Waits (at most `within`) until `token`'s `method path` answers `code`; how long it took.
async fn until(
    c: &Client,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    code: u16,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let (got, v) = c.call_as(token, method, path, body).await;
        if got == code {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{method} {path}: still {got} after {within:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ssar(c: &Client, token: &str, attrs: Value) -> Value {
    let (code, r) = c
        .call_as(
            token,
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some(
                &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                         "spec": {"resourceAttributes": attrs}}),
            ),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(r["kind"], "SelfSubjectAccessReview");
    r["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_decides_what_a_service_account_may_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, c) = start(dir.path()).await;
    let token = support::robot(&c).await;

    // No binding: upstream's 403, word for word.
    let (code, e) = c
        .call_as(&token, "GET", "/api/v1/namespaces/default/services", None)
        .await;
    assert_eq!(code, 403, "{e}");
    assert_eq!(e["reason"], "Forbidden");
    assert_eq!(
        e["message"],
        format!(
            r#"services is forbidden: User "{SA}" cannot list resource "services" in API group "" in the namespace "default""#
        )
    );
    assert_eq!(e["details"], json!({"kind": "services"}));
    // Nothing is written on a refused request.
    let cm = json!({"metadata": {"name": "refused"}, "data": {"a": "b"}});
    let (code, e) = c
        .call_as(
            &token,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(&cm),
        )
        .await;
    assert_eq!(code, 403, "{e}");
    let (code, _) = c
        .call("GET", "/api/v1/namespaces/default/configmaps/refused", None)
        .await;
    assert_eq!(code, 404);
    let (code, _) = c
        .call_as(
            &token,
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            Some(&binding(
                "RoleBinding",
                "self-made",
                "cluster-admin",
                Some("default"),
            )),
        )
        .await;
    assert_eq!(code, 403);
    // Discovery and the OIDC documents are for every account; /metrics is not.
    for path in [
        "/api",
        "/apis",
        "/api/v1",
        "/apis/apps/v1",
        "/openapi/v2",
        "/openid/v1/jwks",
    ] {
        assert_eq!(c.call_as(&token, "GET", path, None).await.0, 200, "{path}");
    }
    let (code, e) = c.call_as(&token, "GET", "/metrics", None).await;
    assert_eq!(code, 403);
    assert_eq!(
        e["message"],
        format!(r#"forbidden: User "{SA}" cannot get path "/metrics""#)
    );
    // An unknown resource is refused before it is found missing, as upstream.
    let (code, e) = c.call_as(&token, "GET", "/api/v1/bogus", None).await;
    assert_eq!(code, 403, "{e}");

    // A RoleBinding to view: reads in default only.
    let (code, b) = c
        .call(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            Some(&binding(
                "RoleBinding",
                "robot-view",
                "view",
                Some("default"),
            )),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    let took = until(
        &c,
        &token,
        "GET",
        "/api/v1/namespaces/default/services",
        None,
        200,
        Duration::from_secs(1),
    )
    .await;
    eprintln!("a new RoleBinding took effect in {took:?}");
    let (code, e) = c
        .call_as(
            &token,
            "GET",
            "/api/v1/namespaces/kube-system/services",
            None,
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        e["message"],
        format!(
            r#"services is forbidden: User "{SA}" cannot list resource "services" in API group "" in the namespace "kube-system""#
        )
    );
    assert_eq!(
        c.call_as(&token, "GET", "/api/v1/services", None).await.0,
        403
    );
    assert_eq!(
        c.call_as(
            &token,
            "GET",
            "/api/v1/namespaces/default/services/kubernetes",
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        c.call_as(&token, "GET", "/api/v1/namespaces/default/secrets", None)
            .await
            .0,
        403
    );
    let (code, e) = c
        .call_as(
            &token,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(&cm),
        )
        .await;
    assert_eq!(code, 403, "{e}");

    // Access reviews agree with what requests get.
    let st = ssar(
        &c,
        &token,
        json!({"verb": "list", "resource": "services", "namespace": "default"}),
    )
    .await;
    assert_eq!(st["allowed"], true, "{st}");
    assert_eq!(
        st["reason"],
        r#"RBAC: allowed by RoleBinding "robot-view/default" of ClusterRole "view" to ServiceAccount "robot/default""#
    );
    let st = ssar(
        &c,
        &token,
        json!({"verb": "create", "resource": "services", "namespace": "default"}),
    )
    .await;
    assert_eq!(st["allowed"], false, "{st}");
    let st = ssar(
        &c,
        &token,
        json!({"verb": "list", "resource": "services", "namespace": "kube-system"}),
    )
    .await;
    assert_eq!(st["allowed"], false, "{st}");
    let (code, rules) = c
        .call_as(
            &token,
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            Some(&json!({"kind": "SelfSubjectRulesReview", "spec": {"namespace": "default"}})),
        )
        .await;
    assert_eq!(code, 201, "{rules}");
    assert!(rules["status"]["resourceRules"]
        .as_array()
        .expect("resourceRules")
        .iter()
        .any(|r| r["resources"]
            .as_array()
            .is_some_and(|x| x.contains(&json!("services")))));
    // SubjectAccessReview is for those allowed to create it: the admin.
    let sar = json!({"kind": "SubjectAccessReview", "spec": {"user": SA,
        "groups": ["system:serviceaccounts", "system:authenticated"],
        "resourceAttributes": {"verb": "get", "resource": "services", "namespace": "default"}}});
    let (code, r) = c
        .call(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(&sar),
        )
        .await;
    assert_eq!((code, &r["status"]["allowed"]), (201, &json!(true)), "{r}");
    assert_eq!(
        c.call_as(
            &token,
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(&sar)
        )
        .await
        .0,
        403
    );

    // Impersonation needs `impersonate`: the admin may, the account may not.
    let as_robot = [("Impersonate-User", SA)];
    let (code, _) = c
        .call_with(
            &c.admin,
            &as_robot,
            "GET",
            "/api/v1/namespaces/default/services",
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (code, e) = c
        .call_with(
            &c.admin,
            &as_robot,
            "GET",
            "/api/v1/namespaces/kube-system/services",
            None,
        )
        .await;
    assert_eq!(code, 403);
    assert!(e["message"].as_str().is_some_and(|m| m.contains(SA)), "{e}");
    let (code, e) = c
        .call_with(
            &token,
            &[
                ("Impersonate-User", "admin"),
                ("Impersonate-Group", "system:masters"),
            ],
            "GET",
            "/api/v1/secrets",
            None,
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        e["message"],
        format!(
            r#"users "admin" is forbidden: User "{SA}" cannot impersonate resource "users" in API group "" at the cluster scope"#
        )
    );

    // cluster-admin: everything, until the binding goes.
    let (code, b) = c
        .call(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(&binding(
                "ClusterRoleBinding",
                "robot-admin",
                "cluster-admin",
                None,
            )),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    until(
        &c,
        &token,
        "GET",
        "/api/v1/namespaces/kube-system/secrets",
        None,
        200,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(c.call_as(&token, "GET", "/metrics", None).await.0, 200);
    let (code, e) = c
        .call_as(
            &token,
            "POST",
            "/api/v1/namespaces/kube-system/configmaps",
            Some(&cm),
        )
        .await;
    assert_eq!(code, 201, "{e}");
    let (code, e) = c
        .call_as(
            &token,
            "DELETE",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/robot-admin",
            None,
        )
        .await;
    assert_eq!(code, 200, "{e}");
    let took = until(
        &c,
        &token,
        "GET",
        "/api/v1/namespaces/kube-system/secrets",
        None,
        403,
        Duration::from_secs(1),
    )
    .await;
    eprintln!("a deleted ClusterRoleBinding stopped working in {took:?}");
    assert_eq!(
        c.call_as(&token, "GET", "/api/v1/namespaces/default/services", None)
            .await
            .0,
        200
    );

    running.stopper().stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_bindings_cannot_grant_more_than_their_writer_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, c) = start(dir.path()).await;
    let token = support::robot(&c).await;
    // The account may read (view) and write roles and bindings in default.
    let rbac_writer = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "rbac-writer"},
        "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
                   "verbs": ["create", "update", "patch", "get", "delete"]}]});
    assert_eq!(
        c.call(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            Some(&rbac_writer)
        )
        .await
        .0,
        201
    );
    for (name, role) in [("robot-view", "view"), ("robot-rbac", "rbac-writer")] {
        let (code, b) = c
            .call(
                "POST",
                "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
                Some(&binding("RoleBinding", name, role, Some("default"))),
            )
            .await;
        assert_eq!(code, 201, "{b}");
    }
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles";
    let held = json!({"metadata": {"name": "svc-reader"},
        "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list"]}]});
    until(
        &c,
        &token,
        "POST",
        roles,
        Some(&held),
        201,
        Duration::from_secs(1),
    )
    .await;
    let more = json!({"metadata": {"name": "secret-eater"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "delete"]}]});
    let (code, e) = c.call_as(&token, "POST", roles, Some(&more)).await;
    assert_eq!(code, 403, "{e}");
    assert_eq!(
        e["message"],
        format!("roles.rbac.authorization.k8s.io \"secret-eater\" is forbidden: user \"{SA}\" \
                 (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:default\" \"system:authenticated\"]) \
                 is attempting to grant RBAC permissions not currently held:\n\
                 {{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}}")
    );
    assert_eq!(
        c.call("GET", &format!("{roles}/secret-eater"), None)
            .await
            .0,
        404
    );
    // Updating a held role into more is refused the same way.
    let (_, current) = c.call("GET", &format!("{roles}/svc-reader"), None).await;
    let mut grown = current.clone();
    grown["rules"] = more["rules"].clone();
    assert_eq!(
        c.call_as(&token, "PUT", &format!("{roles}/svc-reader"), Some(&grown))
            .await
            .0,
        403
    );
    // So is a patch to more, of any kind, and a server-side apply.
    let merge = json!({"rules": more["rules"].clone()});
    let (code, e) = c
        .call_with(
            &token,
            &[("Content-Type", "application/merge-patch+json")],
            "PATCH",
            &format!("{roles}/svc-reader"),
            Some(&merge),
        )
        .await;
    assert_eq!(code, 403, "{e}");
    let json_patch = json!([{"op": "add", "path": "/rules/0/resources/-", "value": "secrets"}]);
    let (code, e) = c
        .call_with(
            &token,
            &[("Content-Type", "application/json-patch+json")],
            "PATCH",
            &format!("{roles}/svc-reader"),
            Some(&json_patch),
        )
        .await;
    assert_eq!(code, 403, "{e}");
    let applied = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "applied", "namespace": "default"}, "rules": more["rules"].clone()});
    let (code, e) = c
        .call_with(
            &token,
            &[("Content-Type", "application/apply-patch+yaml")],
            "PATCH",
            &format!("{roles}/applied?fieldManager=robot"),
            Some(&applied),
        )
        .await;
    assert_eq!(code, 403, "{e}");
    assert_eq!(
        c.call("GET", &format!("{roles}/applied"), None).await.0,
        404
    );
    let (_, still) = c.call("GET", &format!("{roles}/svc-reader"), None).await;
    assert_eq!(still["rules"], held["rules"]);
    // A patch within what it holds is fine.
    let narrower = json!([{"op": "replace", "path": "/rules/0/verbs", "value": ["get"]}]);
    let (code, e) = c
        .call_with(
            &token,
            &[("Content-Type", "application/json-patch+json")],
            "PATCH",
            &format!("{roles}/svc-reader"),
            Some(&narrower),
        )
        .await;
    assert_eq!(code, 200, "{e}");
    // Bindings: to a role it holds all of (view), yes; to cluster-admin, no.
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings";
    let mut to_view = binding("RoleBinding", "friend-view", "view", Some("default"));
    to_view["subjects"] = json!([{"kind": "User", "name": "friend"}]);
    let (code, e) = c.call_as(&token, "POST", bindings, Some(&to_view)).await;
    assert_eq!(code, 201, "{e}");
    let mut to_admin = binding(
        "RoleBinding",
        "friend-admin",
        "cluster-admin",
        Some("default"),
    );
    to_admin["subjects"] = json!([{"kind": "User", "name": "friend"}]);
    let (code, e) = c.call_as(&token, "POST", bindings, Some(&to_admin)).await;
    assert_eq!(code, 403, "{e}");
    assert!(e["message"].as_str().is_some_and(|m| m.starts_with(
        "rolebindings.rbac.authorization.k8s.io \"friend-admin\" is forbidden: user \"system:serviceaccount:default:robot\""
    )), "{e}");
    // The admin may.
    assert_eq!(c.call("POST", bindings, Some(&to_admin)).await.0, 201);
    running.stopper().stop();
}

/// `kubectl auth can-i` with the account's token, and `--as` by the admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_can_i_answers_for_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, c) = start(dir.path()).await;
    let kc = running.kubeconfig.clone();
    let cache = dir.path().join("kube-cache");
    if kubectl(&kc, &cache, &["version", "--client"])
        .await
        .is_none()
    {
        eprintln!("no kubectl on this machine: skipped");
        return;
    }
    let token = support::robot(&c).await;
    let (code, _) = c
        .call(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            Some(&binding(
                "RoleBinding",
                "robot-view",
                "view",
                Some("default"),
            )),
        )
        .await;
    assert_eq!(code, 201);
    until(
        &c,
        &token,
        "GET",
        "/api/v1/namespaces/default/services",
        None,
        200,
        Duration::from_secs(1),
    )
    .await;
    // A kubeconfig with the token alone: with the admin one, kubectl would send
    // its client certificate too, which is tried first (as upstream does).
    let robot_kc = dir.path().join("robot.kubeconfig");
    let ca = std::fs::read_to_string(dir.path().join(skiff_apiserver::pki::CA)).expect("ca");
    let robot = skiff_apiserver::pki::kubeconfig_for(&running.url, &ca, "robot", &token);
    std::fs::write(&robot_kc, robot).expect("kubeconfig");
    let can = |args: Vec<&'static str>| {
        let (kc, cache) = (robot_kc.clone(), cache.clone());
        async move {
            let mut all = vec!["auth", "can-i"];
            all.extend(args);
            kubectl(&kc, &cache, &all).await.expect("kubectl")
        }
    };
    let (ok, out) = can(vec!["list", "services", "-n", "default"]).await;
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out) = can(vec!["create", "services", "-n", "default"]).await;
    assert!(!ok && out.trim() == "no", "{out}");
    let (ok, out) = can(vec!["get", "pods", "-n", "kube-system"]).await;
    assert!(!ok && out.trim() == "no", "{out}");
    let (ok, out) = can(vec!["get", "/api"]).await;
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out) = can(vec!["--list", "-n", "default"]).await;
    assert!(ok, "{out}");
    eprintln!("kubectl auth can-i --list:\n{out}");
    let services = out
        .lines()
        .find(|l| l.starts_with("services ") || l.starts_with("services\t"))
        .unwrap_or_default();
    assert!(services.contains("[get list watch]"), "{out}");
    assert!(
        out.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{out}"
    );
    // The admin asks for the account with --as.
    let sa_flag = format!("--as={SA}");
    let (ok, out) = kubectl(
        &kc,
        &cache,
        &[
            "auth", "can-i", "list", "services", "-n", "default", &sa_flag,
        ],
    )
    .await
    .expect("kubectl");
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out) = kubectl(
        &kc,
        &cache,
        &[
            "auth",
            "can-i",
            "list",
            "services",
            "-n",
            "kube-system",
            &sa_flag,
        ],
    )
    .await
    .expect("kubectl");
    assert!(!ok && out.trim() == "no", "{out}");
    let (ok, out) = kubectl(&kc, &cache, &["auth", "can-i", "create", "nodes"])
        .await
        .expect("kubectl");
    // kubectl warns that nodes have no namespace (the kubeconfig names one).
    assert!(ok && out.starts_with("yes"), "{out}");
    running.stopper().stop();
}

//! Users by client certificate (issue 17), with the real binary and real
//! kubectl: the admin kubeconfig is `system:admin` in `system:masters` (k3s's
//! names) by a client certificate; `skiff kubeconfig --user jane --group devs`
//! prints a kubeconfig that kubectl authenticates with as jane in devs, who
//! gets upstream's 403 until the admin binds her a role.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::{eventually, skiff_bin, Cluster};

fn skiff_kubeconfig(args: &[&str]) -> Output {
    std::process::Command::new(skiff_bin())
        .arg("kubeconfig")
        .args(args)
        .output()
        .expect("run skiff kubeconfig")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `kubectl auth whoami` as the kubeconfig says: the user name and groups.
fn whoami(c: &Cluster, kubeconfig: &Path) -> (String, Vec<String>) {
    let kc = kubeconfig.to_str().expect("path");
    let out = c.k(&["--kubeconfig", kc, "auth", "whoami", "-o", "json"]);
    let review: Value = serde_json::from_str(&out).expect("SelfSubjectReview");
    let info = &review["status"]["userInfo"];
    let groups = info["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g.as_str().map(String::from))
        .collect();
    (info["username"].as_str().expect("username").into(), groups)
}

#[test]
fn users_by_client_certificate_with_kubectl() {
    let c = Cluster::start();
    let data = c.data_dir();
    let data = data.to_str().expect("path");

    // The admin kubeconfig: a client certificate, no token.
    let admin = std::fs::read_to_string(&c.kubeconfig).expect("admin kubeconfig");
    assert!(admin.contains("client-certificate-data:"), "{admin}");
    assert!(!admin.contains(&c.token()), "the admin token is not in it");
    let (name, groups) = whoami(&c, &c.kubeconfig);
    assert_eq!(name, "system:admin");
    assert_eq!(groups, ["system:masters", "system:authenticated"]);
    // admin.token still works as a credential.
    let out = c.sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' --cacert {data}/ca.crt \
         -H 'Authorization: Bearer {}' https://127.0.0.1:6443/api/v1/namespaces",
        c.token()
    ));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");

    // A new user.
    let out = skiff_kubeconfig(&["--user", "jane", "--group", "devs", "--data-dir", data]);
    assert!(out.status.success(), "{}", text(&out));
    let jane = c.dir.path().join("jane.kubeconfig");
    std::fs::write(&jane, &out.stdout).expect("write kubeconfig");
    let (name, groups) = whoami(&c, &jane);
    assert_eq!(name, "jane");
    assert_eq!(groups, ["devs", "system:authenticated"]);
    let jane = jane.to_str().expect("path");
    let out = c.kubectl(&["--kubeconfig", jane, "get", "pods"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        r#"Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    c.k(&[
        "create",
        "rolebinding",
        "jane-view",
        "--clusterrole=view",
        "--user=jane",
    ]);
    eventually(Duration::from_secs(10), || {
        let out = c.kubectl(&["--kubeconfig", jane, "get", "pods"]);
        out.status.success().then_some(())
    });
    // View only: no writes, no other namespace.
    let err = c.k_err(&["--kubeconfig", jane, "create", "configmap", "x"]);
    assert!(
        err.contains(r#"User "jane" cannot create resource "configmaps""#),
        "{err}"
    );
    let err = c.k_err(&["--kubeconfig", jane, "-n", "kube-system", "get", "pods"]);
    assert!(err.contains("Forbidden"), "{err}");

    // Bad input is told by its flag.
    for (args, flag) in [
        (vec!["--user", "", "--data-dir", data], "--user"),
        (
            vec!["--user", "x", "--expiration", "10d", "--data-dir", data],
            "--expiration",
        ),
        (
            vec!["--user", "x", "--data-dir", "/nonexistent"],
            "--data-dir",
        ),
    ] {
        let out = skiff_kubeconfig(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out).contains(flag), "{args:?}: {}", text(&out));
    }
}

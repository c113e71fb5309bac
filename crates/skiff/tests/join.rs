//! Joining nodes end to end (issue #15): the join token `skiff server` prints,
//! `skiff token create|list|delete`, and the join itself (`skiff token join`,
//! the step `skiff agent` takes first), against a real server in a test-made
//! network namespace: a joined node gets credentials of its own, never the
//! admin token; wrong, revoked and expired tokens, a server whose CA is not the
//! token's, a live duplicate name and a skewed clock are refused in one line.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use support::{skiff_bin, Cluster};

const SERVER: &str = "https://127.0.0.1:6443";

fn skiff(c: &Cluster, args: &[&str]) -> Output {
    c.netns
        .command(skiff_bin())
        .args(args)
        .env("HOME", c.dir.path())
        .output()
        .expect("run skiff")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `skiff token <args> --data-dir <server's>` that must succeed; its stdout.
fn token_cmd(c: &Cluster, args: &[&str]) -> String {
    let dir = c.data_dir();
    let mut all: Vec<&str> = vec!["token"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", dir.to_str().expect("path")]);
    let out = skiff(c, &all);
    assert!(
        out.status.success(),
        "skiff {all:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn node_dir(c: &Cluster, node: &str) -> PathBuf {
    c.dir.path().join(node)
}

/// Joins `node` (address 10.1.2.x); the finished process.
fn join(c: &Cluster, node: &str, token: Option<&str>) -> Output {
    let dir = node_dir(c, node);
    let mut args = vec![
        "token",
        "join",
        "--server",
        SERVER,
        "--node-name",
        node,
        "--address",
        "10.1.2.3",
        "--data-dir",
        dir.to_str().expect("path"),
    ];
    if let Some(t) = token {
        args.extend_from_slice(&["--token", t]);
    }
    skiff(c, &args)
}

/// A join that must fail: its one-line error.
fn join_err(c: &Cluster, node: &str, token: Option<&str>) -> String {
    let out = join(c, node, token);
    assert!(
        !out.status.success(),
        "joining {node} unexpectedly succeeded: {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("skiff: error: "), "{err}");
    err
}

fn join_ok(c: &Cluster, node: &str, token: Option<&str>) -> String {
    let out = join(c, node, token);
    assert!(
        out.status.success(),
        "joining {node} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("file").permissions().mode() & 0o777
}

/// The join token with its bootstrap secret replaced.
fn with_secret(join_token: &str, secret: &str) -> String {
    let (head, creds) = join_token.split_once("::").expect("K10 token");
    let (id, _) = creds.split_once('.').expect("id.secret");
    format!("{head}::{id}.{secret}")
}

fn bootstrap_part(join_token: &str) -> String {
    join_token
        .split_once("::")
        .expect("K10 token")
        .1
        .to_string()
}

fn curl_status(c: &Cluster, args: &str) -> (String, String) {
    let out = c.sh(&format!("curl -sk -w '\\n%{{http_code}}' {args}"));
    let all = text(&out.stdout);
    let (body, code) = all.rsplit_once('\n').unwrap_or((&all, ""));
    (body.to_string(), code.to_string())
}

#[test]
fn nodes_join_with_tokens_and_get_credentials_of_their_own() {
    let mut c = Cluster::start_with(&["--disable", "agent,proxy,dns,netpol,controllers"]);

    // The default join token: in <data-dir>/node-token (0600), printed at start,
    // in k3s's secure form, hashing the CA that /cacerts serves.
    let token_file = c.data_dir().join("node-token");
    assert_eq!(mode(&token_file), 0o600);
    let default_token = std::fs::read_to_string(&token_file)
        .expect("node-token")
        .trim()
        .to_string();
    assert!(default_token.starts_with("K10"), "{default_token}");
    assert!(
        c.log().contains(&default_token),
        "not printed:\n{}",
        c.log()
    );
    let (cacerts, code) = curl_status(&c, &format!("{SERVER}/cacerts"));
    assert_eq!(code, "200");
    assert_eq!(
        cacerts,
        std::fs::read_to_string(c.data_dir().join("ca.crt")).expect("ca.crt")
    );
    let list = token_cmd(&c, &["list"]);
    assert!(list.starts_with("TOKEN "), "{list}");
    assert!(list.contains(&default_token), "{list}");
    assert!(
        list.contains("<forever>") && list.contains("the default join token"),
        "{list}"
    );

    // Joining writes the node's own credentials.
    let out = join_ok(&c, "node-a", Some(&default_token));
    assert!(out.contains("node node-a joined"), "{out}");
    let dir = node_dir(&c, "node-a");
    let kubeconfig = dir.join("node.kubeconfig");
    assert_eq!(mode(&kubeconfig), 0o600);
    assert_eq!(mode(&dir.join("agent-serving.key")), 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt"),
        cacerts
    );
    let kc = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");
    assert!(!kc.contains(&c.token()), "the admin token was given out");
    assert!(kc.contains("token: skiff-node.node-a."), "{kc}");
    assert!(kc.contains(&format!("server: {SERVER}")), "{kc}");
    let k = kubeconfig.to_str().expect("path");
    c.k(&["--kubeconfig", k, "get", "nodes"]);
    // The serving certificate names the node and its address, signed by the CA.
    let out = c.sh(&format!(
        "openssl x509 -in {0}/agent-serving.crt -noout -subject -ext subjectAltName,extendedKeyUsage && openssl verify -CAfile {0}/ca.crt {0}/agent-serving.crt",
        dir.display()
    ));
    let cert = text(&out.stdout);
    assert!(out.status.success(), "{cert}{}", text(&out.stderr));
    assert!(cert.contains("CN = system:node:node-a"), "{cert}");
    assert!(cert.contains("DNS:node-a, IP Address:10.1.2.3"), "{cert}");
    assert!(cert.contains("TLS Web Server Authentication"), "{cert}");

    // A bootstrap token may only join, and is told so as upstream tells it.
    let boot = bootstrap_part(&default_token);
    let id = &boot[..6];
    let boot_kubeconfig = c.token_kubeconfig("bootstrap", &boot, "default");
    let err = c.k_err(&[
        "--kubeconfig",
        &boot_kubeconfig.to_string_lossy(),
        "get",
        "pods",
        "-A",
    ]);
    assert!(
        err.contains(&format!(
            r#"pods is forbidden: User "system:bootstrap:{id}" cannot list resource "pods" in API group "" at the cluster scope"#
        )),
        "{err}"
    );

    // A wrong secret, a tampered CA hash, a malformed token: refused in one line.
    let err = join_err(
        &c,
        "node-b",
        Some(&with_secret(&default_token, "0000000000000000")),
    );
    assert!(err.contains("401 Unauthorized"), "{err}");
    let tampered = {
        let flipped = if default_token.as_bytes()[3] == b'0' {
            "1"
        } else {
            "0"
        };
        format!("K10{flipped}{}", &default_token[4..])
    };
    let err = join_err(&c, "node-b", Some(&tampered));
    assert!(
        err.contains("the server's CA does not match the join token"),
        "{err}"
    );
    let err = join_err(&c, "node-b", Some("abcdef.0123456789abcdef"));
    assert!(err.contains("invalid --token"), "{err}");
    assert!(!node_dir(&c, "node-b").join("node.kubeconfig").exists());
    // Bad names are the server's 422, an unreachable server says so.
    let err = join_err(&c, "Node_B", Some(&default_token));
    assert!(err.contains("(422)") && err.contains("nodeName"), "{err}");
    let out = skiff(
        &c,
        &[
            "token",
            "join",
            "--server",
            "https://127.0.0.1:1",
            "--token",
            &default_token,
            "--node-name",
            "node-b",
            "--address",
            "10.1.2.3",
            "--data-dir",
            "/nonexistent/x",
        ],
    );
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot reach the server at https://127.0.0.1:1"),
        "{err}"
    );

    // A clock more than 30 s off the server's: 400 with the skew.
    let body = json!({"nodeName": "node-z", "addresses": ["10.1.2.9"], "csr": "x",
                      "time": "2001-01-01T00:00:00Z"});
    let (resp, code) = curl_status(
        &c,
        &format!(
            "-X POST -H 'Authorization: Bearer {boot}' -H 'Content-Type: application/json' -d '{body}' {SERVER}/skiff/v1/join"
        ),
    );
    assert_eq!(code, "400", "{resp}");
    assert!(
        resp.contains("clock skew too large") && resp.contains("behind the server's"),
        "{resp}"
    );

    // A name a live node holds (Node, Lease renewed just now): 409.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    c.apply(
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-live"}}).to_string(),
    );
    c.apply(
        &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "node-live", "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": "node-live", "leaseDurationSeconds": 40, "renewTime": now}})
        .to_string(),
    );
    let err = join_err(&c, "node-live", Some(&default_token));
    assert!(
        err.contains("409 Conflict") && err.contains("renewed"),
        "{err}"
    );

    // More tokens: create, use, list, delete (revoked: 401).
    let made = token_cmd(&c, &["create", "--description", "for node c"]);
    let made = made.trim().to_string();
    assert!(
        made.starts_with("K10") && made.lines().count() == 1,
        "{made}"
    );
    let list = token_cmd(&c, &["list"]);
    assert!(
        list.contains("for node c") && list.contains("23h"),
        "{list}"
    );
    join_ok(&c, "node-c", Some(&made));
    let made_id = bootstrap_part(&made)[..6].to_string();
    let out = token_cmd(&c, &["delete", &made_id]);
    assert_eq!(out.trim(), format!("bootstrap token \"{made_id}\" deleted"));
    let err = join_err(&c, "node-d", Some(&made));
    assert!(err.contains("401 Unauthorized"), "{err}");
    // ... but node-c keeps its own credentials, and starts again without a join.
    let out = join_ok(&c, "node-c", Some(&made));
    assert!(out.contains("already joined"), "{out}");
    let out = join_ok(&c, "node-c", None);
    assert!(out.contains("already joined"), "{out}");
    // Another node's name over node-c's credentials is not node-c.
    let dir_c = node_dir(&c, "node-c");
    let out = skiff(
        &c,
        &[
            "token",
            "join",
            "--server",
            SERVER,
            "--node-name",
            "node-c2",
            "--address",
            "10.1.2.3",
            "--data-dir",
            dir_c.to_str().expect("path"),
        ],
    );
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--token is required to join again"),
        "{err}"
    );

    // A token with a TTL expires.
    let short = token_cmd(&c, &["create", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let err = join_err(&c, "node-e", Some(short.trim()));
    assert!(err.contains("401 Unauthorized"), "{err}");
    let list = token_cmd(&c, &["list"]);
    assert!(list.contains("<invalid>"), "{list}");

    // Deleting a node's credential Secret revokes the node; it may join again.
    c.k(&[
        "delete",
        "secret",
        "-n",
        "kube-system",
        "skiff-node-credential-node-a",
    ]);
    let err = c.k_err(&["--kubeconfig", k, "get", "nodes"]);
    assert!(err.contains("Unauthorized"), "{err}");
    let err = join_err(&c, "node-a", None);
    assert!(err.contains("--token is required"), "{err}");
    let out = join_ok(&c, "node-a", Some(&default_token));
    assert!(out.contains("node node-a joined"), "{out}");
    c.k(&["--kubeconfig", k, "get", "nodes"]);
    let secret: Value = serde_json::from_str(&c.k(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        "skiff-node-credential-node-a",
        "-o",
        "json",
    ]))
    .expect("secret");
    assert_eq!(secret["type"], "skiff.dev/node-credential");
    assert_eq!(secret["metadata"]["labels"]["skiff.dev/node"], "node-a");

    // A restart keeps the default token; once deleted it is not made again.
    c.stop(false);
    c.spawn(&[]);
    let again = std::fs::read_to_string(&token_file).expect("node-token");
    assert_eq!(again.trim(), default_token);
    token_cmd(&c, &["delete", &default_token]);
    c.stop(false);
    c.spawn(&[]);
    assert!(
        c.log().contains("The default join token was deleted"),
        "{}",
        c.log()
    );
    let err = join_err(&c, "node-f", Some(&default_token));
    assert!(err.contains("401 Unauthorized"), "{err}");
}

//! Users by client certificate (issue 17), on one in-process API server over
//! a memory store, through curl as the TLS client: a certificate signed by the
//! cluster CA authenticates as its CN in its O's (SelfSubjectReview); one in
//! `system:masters` may do anything; a plain user gets upstream's 403 until a
//! RoleBinding grants it; an expired certificate, one of another CA and a
//! server-only one never authenticate; without credentials only upstream's
//! public-info paths answer, everything else is 401.
//!
//! The server listens on loopback; run this inside a network namespace of its
//! own (`unshare -n`) when other servers share the machine.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_apiserver::authn::MASTERS;
use skiff_apiserver::pki::{self, Ca};
use support::start;

/// A client certificate and key written to files, as curl reads them.
struct Identity {
    cert: PathBuf,
    key: PathBuf,
}

impl Identity {
    fn write(dir: &Path, name: &str, (cert, key): (String, String)) -> Self {
        let id = Self {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&id.cert, cert).expect("write cert");
        std::fs::write(&id.key, key).expect("write key");
        id
    }
}

/// What curl got: `None` when no HTTP response came (the handshake failed).
type Answer = Option<(u16, Value)>;

/// curl against the server, verifying it against the cluster CA.
struct Curl {
    url: String,
    ca: PathBuf,
}

impl Curl {
    /// One request presenting `id` and `token` if given.
    async fn call(
        &self,
        id: Option<&Identity>,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        self.call_with(&[], id, token, method, path, body).await
    }

    /// [`Curl::call`] with more of curl's flags.
    async fn call_with(
        &self,
        flags: &[&str],
        id: Option<&Identity>,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(flags);
        // HTTP/2, as curl chooses by ALPN: a 401 to a POST reads the body
        // before answering, so curl gets the answer, not a reset stream.
        cmd.args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(&self.ca)
            .args(["-X", method, "-H", "Accept: application/json"]);
        if let Some(id) = id {
            cmd.arg("--cert").arg(&id.cert).arg("--key").arg(&id.key);
        }
        if let Some(t) = token {
            cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(b.to_string());
        }
        let out = cmd
            .arg(format!("{}{path}", self.url))
            .output()
            .await
            .expect("curl runs");
        if !out.status.success() {
            eprintln!(
                "curl {method} {path}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').expect("status line");
        let code: u16 = code.trim().parse().expect("status");
        Some((code, serde_json::from_str(body).unwrap_or(Value::Null)))
    }

    /// [`Curl::call`] as `id` alone, which must answer.
    async fn as_(
        &self,
        id: &Identity,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.call(Some(id), None, method, path, body)
            .await
            .unwrap_or_else(|| panic!("{method} {path}: no answer"))
    }
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn whoami_body() -> Value {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
}

const WHOAMI: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

fn unauthorized(answer: &Answer, what: &str) {
    let (code, status) = answer.as_ref().expect(what);
    assert_eq!(*code, 401, "{what}: {status}");
    assert_eq!(status["kind"], "Status", "{what}");
    assert_eq!(status["reason"], "Unauthorized", "{what}");
    assert_eq!(status["message"], "Unauthorized", "{what}");
    assert_eq!(status["code"], 401, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_authenticate_as_upstreams_x509_authenticator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, admin) = start(dir.path()).await;
    let curl = Curl {
        url: running.url.clone(),
        ca: dir.path().join(pki::CA),
    };
    let ca = Ca::load(dir.path()).expect("ca");
    let certs = tempfile::tempdir().expect("tempdir");
    let at = certs.path();

    // CN the user, every O a group, plus system:authenticated.
    let jane = Identity::write(
        at,
        "jane",
        ca.issue_client("jane", &["devs", "ops"], YEAR)
            .expect("issue"),
    );
    let (code, review) = curl.as_(&jane, "POST", WHOAMI, Some(&whoami_body())).await;
    assert_eq!(code, 201, "{review}");
    assert_eq!(review["kind"], "SelfSubjectReview");
    assert_eq!(review["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!(["devs", "ops", "system:authenticated"])
    );
    // The certificate is tried before a bearer token, as upstream's union of
    // authenticators does.
    let (code, review) = curl
        .call(
            Some(&jane),
            Some(&admin.admin),
            "POST",
            WHOAMI,
            Some(&whoami_body()),
        )
        .await
        .expect("answer");
    assert_eq!(code, 201, "{review}");
    assert_eq!(review["status"]["userInfo"]["username"], "jane");

    // A plain user: upstream's 403, word for word.
    let pods = "/api/v1/namespaces/default/pods";
    let (code, e) = curl.as_(&jane, "GET", pods, None).await;
    assert_eq!(code, 403, "{e}");
    assert_eq!(e["reason"], "Forbidden");
    assert_eq!(
        e["message"],
        r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
    );

    // A RoleBinding for the user by name grants view in default, and no more.
    let grant = |kind: &str, name: &str, subject: Value| {
        let mut meta = json!({"name": name});
        if kind == "RoleBinding" {
            meta["namespace"] = json!("default");
        }
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [subject]})
    };
    let user_jane =
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"});
    let (code, b) = admin
        .call(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            Some(&grant("RoleBinding", "jane-view", user_jane)),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    until_ok(&curl, &jane, pods).await;
    let system_pods = "/api/v1/namespaces/kube-system/pods";
    assert_eq!(curl.as_(&jane, "GET", system_pods, None).await.0, 403);
    // A binding to one of the certificate's O's is the user's too.
    let group_ops =
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "ops"});
    let (code, b) = admin
        .call(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(&grant("ClusterRoleBinding", "ops-view", group_ops)),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    until_ok(&curl, &jane, system_pods).await;

    // system:masters may do anything, with no binding.
    let root = Identity::write(
        at,
        "root",
        ca.issue_client("root", &[MASTERS], YEAR).expect("issue"),
    );
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "by-cert"}});
    let (code, created) = curl
        .as_(&root, "POST", "/api/v1/namespaces", Some(&ns))
        .await;
    assert_eq!(code, 201, "{created}");
    for path in [
        "/api/v1/nodes",
        "/metrics",
        "/api/v1/namespaces/kube-system/secrets",
    ] {
        assert_eq!(curl.as_(&root, "GET", path, None).await.0, 200, "{path}");
    }

    // Never authenticated: an expired certificate, another CA's, a
    // server-only one (a failed handshake, or 401).
    let short = ca.issue_client("late", &[MASTERS], Duration::from_secs(1));
    let expired = Identity::write(at, "expired", short.expect("issue"));
    let other_dir = tempfile::tempdir().expect("tempdir");
    let (other_ca, _) = pki::ensure_ca(other_dir.path()).expect("other ca");
    let foreign = Identity::write(
        at,
        "foreign",
        other_ca
            .issue_client("intruder", &[MASTERS], YEAR)
            .expect("issue"),
    );
    let server_only = Identity::write(
        at,
        "server-only",
        ca.issue_leaf("system:admin", &[], true, false)
            .expect("issue"),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (what, id) in [
        ("expired", &expired),
        ("another CA's", &foreign),
        ("server-only", &server_only),
    ] {
        let answer = curl
            .call(Some(id), None, "GET", "/api/v1/namespaces", None)
            .await;
        if answer.is_some() {
            unauthorized(&answer, what);
        }
    }

    // No credentials: upstream's system:public-info-viewer paths, else 401.
    for path in ["/version", "/version/", "/healthz", "/livez", "/readyz"] {
        let answer = curl.call(None, None, "GET", path, None).await;
        assert_eq!(answer.map(|a| a.0), Some(200), "anonymous {path}");
    }
    for path in [
        "/api",
        "/apis",
        "/api/v1/namespaces",
        "/openapi/v2",
        "/metrics",
        "/openid/v1/jwks",
        "/healthz/etcd",
    ] {
        let answer = curl.call(None, None, "GET", path, None).await;
        unauthorized(&answer, &format!("anonymous {path}"));
    }
    let answer = curl
        .call(None, None, "POST", WHOAMI, Some(&whoami_body()))
        .await;
    unauthorized(&answer, "anonymous whoami");
    // A body still arriving when the request is refused (8 KB sent at 16 KB/s):
    // the server reads it before answering, so the stream is not reset under it.
    let mut slow = whoami_body();
    slow["metadata"] = json!({"annotations": {"padding": "x".repeat(8 * 1024)}});
    let answer = curl
        .call_with(
            &["--limit-rate", "16K"],
            None,
            None,
            "POST",
            WHOAMI,
            Some(&slow),
        )
        .await;
    unauthorized(&answer, "anonymous whoami, sent slowly");
    running.stopper().stop();
}

/// Waits (at most 10 s) until `id` may list `path`.
async fn until_ok(curl: &Curl, id: &Identity, path: &str) {
    let started = Instant::now();
    loop {
        let (code, list) = curl.as_(id, "GET", path, None).await;
        if code == 200 {
            assert_eq!(list["kind"], "PodList");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path}: still {code}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

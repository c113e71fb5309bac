//! ServiceAccount tokens end to end (issue 17), on one in-process API server
//! over a memory store: a token requested for a ServiceAccount and bound to a
//! Pod authenticates requests (as `system:serviceaccount:<ns>:<name>`, with the
//! pod in `user.extra`), TokenReview and SelfSubjectReview say so, the OIDC
//! documents publish the key that verifies it, and deleting the pod (or the
//! account) makes the same token 401. Bad requests get upstream's answers.
//!
//! The server listens on loopback; run this inside a network namespace of its own
//! (`unshare -n`) when other servers share the machine.

mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use support::{start, Client};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

impl Client {
    async fn token(&self, sa: &str, spec: Value) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/namespaces/default/serviceaccounts/{sa}/token"),
            Some(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})),
        )
        .await
    }

    /// TokenReview's status for `token`, asked by the admin.
    async fn review(&self, token: &str, audiences: &[&str]) -> Value {
        let (code, r) = self
            .call(
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                Some(
                    &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                             "spec": {"token": token, "audiences": audiences}}),
                ),
            )
            .await;
        assert_eq!(code, 201, "{r}");
        assert_eq!(r["kind"], "TokenReview");
        r["status"].clone()
    }
}

fn part(token: &str, i: usize) -> Value {
    let seg = token.split('.').nth(i).expect("jwt part");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(seg)
        .expect("base64url");
    serde_json::from_slice(&raw).expect("json")
}

fn pod(name: &str, sa: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"serviceAccountName": sa,
                    "containers": [{"name": "c", "image": "busybox"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_tokens_authenticate_until_their_pod_is_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, c) = start(dir.path()).await;
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(dir.path().join("sa.key")).expect("sa.key");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    // Discovery lists what `kubectl create token` and reviews need.
    let (_, v1) = c.call("GET", "/api/v1", None).await;
    let sub = v1["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .cloned()
        .expect("serviceaccounts/token in discovery");
    assert_eq!(sub["kind"], "TokenRequest");
    assert_eq!(sub["group"], "authentication.k8s.io");
    assert_eq!(sub["verbs"], json!(["create"]));
    let (_, groups) = c.call("GET", "/apis", None).await;
    assert!(groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .any(|g| g["name"] == "authentication.k8s.io"));
    let (code, authn) = c.call("GET", "/apis/authentication.k8s.io/v1", None).await;
    assert_eq!(code, 200, "{authn}");
    let names: Vec<&str> = authn["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["selfsubjectreviews", "tokenreviews"]);

    // The account and the pod the token is bound to.
    let (code, sa) = c
        .call(
            "POST",
            "/api/v1/namespaces/default/serviceaccounts",
            Some(&json!({"metadata": {"name": "web"}})),
        )
        .await;
    assert_eq!(code, 201, "{sa}");
    let sa_uid = sa["metadata"]["uid"].as_str().expect("sa uid").to_string();
    let (code, p) = c
        .call(
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(&pod("web-0", "web")),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let pod_uid = p["metadata"]["uid"].as_str().expect("pod uid").to_string();

    let (code, tr) = c
        .token(
            "web",
            json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0", "uid": pod_uid}}),
        )
        .await;
    assert_eq!(code, 201, "{tr}");
    assert_eq!(tr["kind"], "TokenRequest");
    assert_eq!(tr["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(tr["spec"]["audiences"], json!([ISSUER]));
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    assert!(tr["status"]["expirationTimestamp"].is_string());
    let token = tr["status"]["token"].as_str().expect("token").to_string();
    let header = part(&token, 0);
    assert_eq!(header["alg"], "ES256");
    let claims = part(&token, 1);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:default:web");
    assert_eq!(claims["aud"], json!([ISSUER]));
    let exp = claims["exp"].as_i64().expect("exp");
    assert_eq!(exp - claims["iat"].as_i64().expect("iat"), 3600);
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": "default",
               "serviceaccount": {"name": "web", "uid": sa_uid},
               "pod": {"name": "web-0", "uid": pod_uid}})
    );

    // The OIDC documents publish the key that verifies it.
    let (code, oidc) = c
        .call("GET", "/.well-known/openid-configuration", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(oidc["issuer"], ISSUER);
    assert_eq!(
        oidc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert!(oidc["jwks_uri"]
        .as_str()
        .expect("jwks_uri")
        .ends_with("/openid/v1/jwks"));
    let (code, jwks) = c.call("GET", "/openid/v1/jwks", None).await;
    assert_eq!(code, 200);
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["crv"], "P-256");

    // The token authenticates requests as the account: without a binding
    // RBAC refuses it (403, not 401), discovery is for everyone.
    let (code, pods) = c
        .call_as(&token, "GET", "/api/v1/namespaces/default/pods", None)
        .await;
    assert_eq!(code, 403, "{pods}");
    assert_eq!(c.call_as(&token, "GET", "/api", None).await.0, 200);
    let (code, me) = c
        .call_as(
            &token,
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
        )
        .await;
    assert_eq!(code, 201, "{me}");
    let info = &me["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:web");
    assert_eq!(info["uid"], sa_uid.as_str());
    assert_eq!(
        info["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["web-0"])
    );
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/pod-uid"],
        json!([pod_uid])
    );
    let jti = claims["jti"].as_str().expect("jti");
    assert_eq!(
        info["extra"]["authentication.kubernetes.io/credential-id"],
        json!([format!("JTI={jti}")])
    );

    // TokenReview agrees, and honours the audiences asked.
    let st = c.review(&token, &[]).await;
    assert_eq!(st["authenticated"], true, "{st}");
    assert_eq!(st["user"]["username"], "system:serviceaccount:default:web");
    assert_eq!(st["audiences"], json!([ISSUER]));
    let st = c.review(&token, &["vault"]).await;
    assert_ne!(st["authenticated"], true, "{st}");
    // A token for another audience is a review's business, not the API's.
    let (code, vault) = c
        .token(
            "web",
            json!({"audiences": ["vault"], "expirationSeconds": 600}),
        )
        .await;
    assert_eq!(code, 201, "{vault}");
    let vault = vault["status"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(c.call_as(&vault, "GET", "/api", None).await.0, 401);
    assert_eq!(c.review(&vault, &["vault"]).await["authenticated"], true);

    // A tampered token is refused.
    let mut forged = part(&token, 1);
    forged["sub"] = json!("system:serviceaccount:kube-system:admin");
    let segs: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        segs[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string()),
        segs[2]
    );
    assert_eq!(c.call_as(&forged, "GET", "/api", None).await.0, 401);

    // Bad requests: upstream's codes.
    let (code, e) = c.token("web", json!({"expirationSeconds": 599})).await;
    assert_eq!((code, e["reason"].as_str()), (422, Some("Invalid")), "{e}");
    let (code, e) = c.token("nobody", json!({})).await;
    assert_eq!(code, 404, "{e}");
    assert_eq!(e["message"], r#"serviceaccounts "nobody" not found"#);
    let (code, e) = c
        .token(
            "web",
            json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "gone"}}),
        )
        .await;
    assert_eq!(code, 404, "{e}");
    let (code, e) = c
        .token("web", json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0", "uid": "another"}}))
        .await;
    assert_eq!(code, 409, "{e}");
    let (code, e) = c
        .token(
            "web",
            json!({"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}}),
        )
        .await;
    assert_eq!(code, 400, "{e}");
    let (code, _) = c
        .call(
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(&pod("other-0", "default")),
        )
        .await;
    assert_eq!(code, 201);
    let (code, e) = c
        .token(
            "web",
            json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "other-0"}}),
        )
        .await;
    assert_eq!(code, 400, "{e}");

    // An unbound token for the account, for after the pod is gone.
    let (code, plain) = c.token("web", json!({})).await;
    assert_eq!(code, 201);
    let plain = plain["status"]["token"]
        .as_str()
        .expect("token")
        .to_string();

    // Deleting the pod ends the token bound to it.
    let (code, e) = c
        .call(
            "DELETE",
            "/api/v1/namespaces/default/pods/web-0?gracePeriodSeconds=0",
            None,
        )
        .await;
    assert!(code == 200 || code == 202, "{code} {e}");
    let mut gone = false;
    for _ in 0..50 {
        if c.call("GET", "/api/v1/namespaces/default/pods/web-0", None)
            .await
            .0
            == 404
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the pod was not deleted");
    let (code, e) = c
        .call_as(&token, "GET", "/api/v1/namespaces/default/pods", None)
        .await;
    assert_eq!(code, 401, "{e}");
    assert_eq!(e["reason"], "Unauthorized");
    assert_ne!(c.review(&token, &[]).await["authenticated"], true);

    // The unbound one lives until the account goes.
    assert_eq!(c.call_as(&plain, "GET", "/api", None).await.0, 200);
    let (code, _) = c
        .call(
            "DELETE",
            "/api/v1/namespaces/default/serviceaccounts/web",
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(c.call_as(&plain, "GET", "/api", None).await.0, 401);
    // A new account of the same name does not revive it (another uid).
    let (code, _) = c
        .call(
            "POST",
            "/api/v1/namespaces/default/serviceaccounts",
            Some(&json!({"metadata": {"name": "web"}})),
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(c.call_as(&plain, "GET", "/api", None).await.0, 401);

    running.stopper().stop();
}

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

/// `kubectl create token` and `kubectl auth whoami` as users run them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_tokens_that_authenticate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, c) = start(dir.path()).await;
    let kc = running.kubeconfig.clone();
    let cache = dir.path().join("kube-cache");
    let Some((ok, out)) = kubectl(&kc, &cache, &["create", "serviceaccount", "robot"]).await else {
        eprintln!("no kubectl on this machine: skipped");
        return;
    };
    assert!(ok, "{out}");
    let (ok, token) = kubectl(&kc, &cache, &["create", "token", "robot", "--duration=20m"])
        .await
        .expect("kubectl");
    assert!(ok, "{token}");
    let token = token.trim().to_string();
    assert_eq!(
        part(&token, 1)["sub"],
        "system:serviceaccount:default:robot"
    );
    let exp = part(&token, 1)["exp"].as_i64().expect("exp");
    assert_eq!(exp - part(&token, 1)["iat"].as_i64().expect("iat"), 1200);
    // A kubeconfig with the token alone: with the admin one, kubectl would send
    // its client certificate too, which is tried first (as upstream does).
    let robot_kc = dir.path().join("robot.kubeconfig");
    let ca = std::fs::read_to_string(dir.path().join(skiff_apiserver::pki::CA)).expect("ca");
    let robot = skiff_apiserver::pki::kubeconfig_for(&running.url, &ca, "robot", &token);
    std::fs::write(&robot_kc, robot).expect("kubeconfig");
    let (ok, me) = kubectl(&robot_kc, &cache, &["auth", "whoami", "-o", "json"])
        .await
        .expect("kubectl");
    assert!(ok, "{me}");
    let me: Value = serde_json::from_str(&me).expect("whoami json");
    assert_eq!(
        me["status"]["userInfo"]["username"],
        "system:serviceaccount:default:robot"
    );
    // Bound to a pod, through kubectl's flags.
    let (code, p) = c
        .call(
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(&pod("robot-0", "robot")),
        )
        .await;
    assert_eq!(code, 201, "{p}");
    let (ok, bound) = kubectl(
        &kc,
        &cache,
        &[
            "create",
            "token",
            "robot",
            "--bound-object-kind=Pod",
            "--bound-object-name=robot-0",
        ],
    )
    .await
    .expect("kubectl");
    assert!(ok, "{bound}");
    assert_eq!(
        part(bound.trim(), 1)["kubernetes.io"]["pod"]["name"],
        "robot-0"
    );
    // Too short: upstream's refusal, as kubectl prints it.
    let (ok, out) = kubectl(&kc, &cache, &["create", "token", "robot", "--duration=5m"])
        .await
        .expect("kubectl");
    assert!(!ok);
    assert!(
        out.contains("may not specify a duration less than 10 minutes"),
        "{out}"
    );
    let (ok, out) = kubectl(&kc, &cache, &["create", "token", "nobody"])
        .await
        .expect("kubectl");
    assert!(!ok);
    assert!(
        out.contains(r#"serviceaccounts "nobody" not found"#),
        "{out}"
    );
    running.stopper().stop();
}

//! The Node authorizer and NodeRestriction (issue 17), on one in-process API
//! server over a memory store, with real node tokens (a node credential
//! Secret made by the admin, as `skiff agent`'s join makes it): node n1 reads
//! the Secret its pod uses and is refused another pod's with upstream's 403;
//! it may not modify node n2, delete or update the status of a pod on n2,
//! create pods, or take another node's Lease; it may update its own pod's
//! status and get a token for its pod's ServiceAccount bound to that pod, not
//! to another node's. Every refusal writes nothing.
//!
//! The server listens on loopback; run this inside a network namespace of its own
//! (`unshare -n`) when other servers share the machine.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_apiserver::authn::NodeToken;
use support::{start, Client};

const MERGE: &[(&str, &str)] = &[("content-type", "application/merge-patch+json")];

/// A node token whose credential Secret the admin stored.
async fn node_token(c: &Client, node: &str) -> String {
    let token = NodeToken::generate(node);
    let (code, s) = c
        .call(
            "POST",
            "/api/v1/namespaces/kube-system/secrets",
            Some(&token.to_secret()),
        )
        .await;
    assert_eq!(code, 201, "{s}");
    token.to_string()
}

async fn create(c: &Client, path: &str, obj: Value) -> Value {
    let (code, out) = c.call("POST", path, Some(&obj)).await;
    assert_eq!(code, 201, "{path}: {out}");
    out
}

/// A pod bound to `node` that runs as `robot` and mounts Secret `secret`.
fn pod(name: &str, node: &str, secret: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {
        "nodeName": node,
        "serviceAccountName": "robot",
        "containers": [{"name": "c", "image": "busybox"}],
        "volumes": [{"name": "s", "secret": {"secretName": secret}}]}})
}

/// Retries `f` until it returns `Some`, for changes the node graph sees
/// through its watch.
async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_forbidden(code: u16, body: &Value, message: &str) {
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden", "{body}");
    assert_eq!(body["message"], message, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_its_own_pods_and_writes_only_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_running, c) = start(dir.path()).await;
    let n1 = node_token(&c, "n1").await;
    let _n2 = node_token(&c, "n2").await;
    let ns = "/api/v1/namespaces/default";
    create(
        &c,
        &format!("{ns}/serviceaccounts"),
        json!({"metadata": {"name": "robot"}}),
    )
    .await;
    for s in ["s1", "s2"] {
        create(
            &c,
            &format!("{ns}/secrets"),
            json!({"metadata": {"name": s}, "stringData": {"k": s}}),
        )
        .await;
    }
    create(
        &c,
        "/api/v1/nodes",
        json!({"metadata": {"name": "n2", "labels": {"kubernetes.io/hostname": "n2"}}}),
    )
    .await;
    let p1 = create(&c, &format!("{ns}/pods"), pod("p1", "n1", "s1")).await;
    let p2 = create(&c, &format!("{ns}/pods"), pod("p2", "n2", "s2")).await;

    // Reads: the Secret of its own pod, not the other pod's.
    let get_s1 = || async {
        let (code, _) = c
            .call_as(&n1, "GET", &format!("{ns}/secrets/s1"), None)
            .await;
        (code == 200).then_some(())
    };
    eventually("n1 to read its pod's secret", get_s1).await;
    let (code, body) = c
        .call_as(&n1, "GET", &format!("{ns}/secrets/s2"), None)
        .await;
    assert_forbidden(
        code,
        &body,
        r#"secrets "s2" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'n1' and this object"#,
    );
    // An access review answers for a node as its request is decided.
    let review = |secret: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "system:node:n1", "groups": ["system:nodes", "system:authenticated"],
                "resourceAttributes": {"verb": "get", "resource": "secrets",
                    "namespace": "default", "name": secret}}})
    };
    let reviews = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let (code, allowed) = c.call("POST", reviews, Some(&review("s1"))).await;
    assert_eq!(code, 201, "{allowed}");
    assert_eq!(allowed["status"]["allowed"], true, "{allowed}");
    let (_, denied) = c.call("POST", reviews, Some(&review("s2"))).await;
    assert_eq!(denied["status"]["allowed"], false, "{denied}");
    let (code, body) = c.call_as(&n1, "GET", &format!("{ns}/secrets"), None).await;
    assert_forbidden(
        code,
        &body,
        r#"secrets is forbidden: User "system:node:n1" cannot list resource "secrets" in API group "" in the namespace "default": No Object name found"#,
    );
    // A list of the one Secret by name is allowed (upstream since 1.31).
    let (code, body) = c
        .call_as(
            &n1,
            "GET",
            &format!("{ns}/secrets?fieldSelector=metadata.name%3Ds1"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"][0]["metadata"]["name"], "s1");

    // Its own Node: created by itself; node n2 is not its to modify.
    let (code, body) = c
        .call_as(
            &n1,
            "POST",
            "/api/v1/nodes",
            Some(&json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = c
        .call_with(
            &n1,
            MERGE,
            "PATCH",
            "/api/v1/nodes/n2",
            Some(&json!({"metadata": {"labels": {"stolen": "yes"}}})),
        )
        .await;
    assert_forbidden(
        code,
        &body,
        r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#,
    );
    let (code, body) = c
        .call_with(
            &n1,
            MERGE,
            "PATCH",
            "/api/v1/nodes/n1",
            Some(&json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}})),
        )
        .await;
    assert_forbidden(
        code,
        &body,
        r#"nodes "n1" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/control-plane"#,
    );
    let (code, body) = c
        .call_with(
            &n1,
            MERGE,
            "PATCH",
            "/api/v1/nodes/n1/status",
            Some(&json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    for node in ["n1", "n2"] {
        let (_, n) = c.call("GET", &format!("/api/v1/nodes/{node}"), None).await;
        let labels = n["metadata"]["labels"].as_object().expect("labels");
        assert_eq!(labels.len(), 1, "{node} was relabelled: {n}");
    }

    // Pods: its own pod's status, not the other node's; no deleting those.
    let status = json!({"status": {"phase": "Running"}});
    let (code, body) = c
        .call_with(
            &n1,
            MERGE,
            "PATCH",
            &format!("{ns}/pods/p1/status"),
            Some(&status),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"]["phase"], "Running");
    let (code, body) = c
        .call_with(
            &n1,
            MERGE,
            "PATCH",
            &format!("{ns}/pods/p2/status"),
            Some(&status),
        )
        .await;
    assert_forbidden(
        code,
        &body,
        r#"pods "p2" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself"#,
    );
    let (code, body) = c
        .call_as(&n1, "DELETE", &format!("{ns}/pods/p2"), None)
        .await;
    assert_forbidden(
        code,
        &body,
        r#"pods "p2" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself"#,
    );
    let (code, body) = c
        .call_as(
            &n1,
            "POST",
            &format!("{ns}/pods"),
            Some(
                &json!({"metadata": {"name": "sneaky"}, "spec": {"nodeName": "n1",
                "containers": [{"name": "c", "image": "busybox"}]}}),
            ),
        )
        .await;
    assert_forbidden(
        code,
        &body,
        r#"pods "sneaky" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods"#,
    );
    let (_, p2_now) = c.call("GET", &format!("{ns}/pods/p2"), None).await;
    assert_eq!(p2_now["metadata"]["uid"], p2["metadata"]["uid"]);
    assert!(
        p2_now["metadata"].get("deletionTimestamp").is_none(),
        "{p2_now}"
    );
    assert_ne!(p2_now["status"]["phase"], "Running", "{p2_now}");
    let (code, _) = c.call("GET", &format!("{ns}/pods/sneaky"), None).await;
    assert_eq!(code, 404);

    // Leases: its own in kube-node-lease only.
    let lease = |name: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": name}, "spec": {"holderIdentity": name}})
    };
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let (code, body) = c.call_as(&n1, "POST", leases, Some(&lease("n1"))).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = c.call_as(&n1, "POST", leases, Some(&lease("n2"))).await;
    assert_forbidden(
        code,
        &body,
        r#"leases.coordination.k8s.io "n2" is forbidden: can only access node lease with the same name as the requesting node"#,
    );
    let (code, _) = c.call("GET", &format!("{leases}/n2"), None).await;
    assert_eq!(code, 404);

    // Tokens: for its pod's ServiceAccount, bound to its pod only.
    let token_request = |pod: &Value| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}}})
    };
    let token_path = format!("{ns}/serviceaccounts/robot/token");
    let (code, body) = c
        .call_as(&n1, "POST", &token_path, Some(&token_request(&p1)))
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["status"]["token"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    let (code, body) = c
        .call_as(&n1, "POST", &token_path, Some(&token_request(&p2)))
        .await;
    assert_forbidden(
        code,
        &body,
        r#"serviceaccounts "robot" is forbidden: node requested token bound to a pod scheduled on a different node"#,
    );
    let (code, body) = c
        .call_as(
            &n1,
            "POST",
            &format!("{ns}/serviceaccounts/default/token"),
            Some(&token_request(&p1)),
        )
        .await;
    assert_forbidden(
        code,
        &body,
        r#"serviceaccounts "default" is forbidden: User "system:node:n1" cannot create resource "serviceaccounts/token" in API group "" in the namespace "default": no relationship found between node 'n1' and this object"#,
    );

    // Once its pod is gone, so is its access to the pod's Secret.
    let (code, _) = c
        .call(
            "DELETE",
            &format!("{ns}/pods/p1?gracePeriodSeconds=0"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let refused = || async {
        let (code, _) = c
            .call_as(&n1, "GET", &format!("{ns}/secrets/s1"), None)
            .await;
        (code == 403).then_some(())
    };
    eventually("n1 to lose its deleted pod's secret", refused).await;
}

//! Objects and errors encoded as upstream encodes them (issue 20), read as raw
//! bytes through the machine's kubectl and curl: fields in upstream's order
//! whatever order the client wrote them in, `Status` errors in upstream's order,
//! timestamps in RFC 3339 with `Z` and no fraction, quantities canonical.

mod support;

use serde_json::Value;
use support::{output_with_stdin, Cluster};

/// A pod written with its fields out of upstream's order and quantities in
/// non-canonical forms.
const POD: &str = r#"{
  "spec": {"containers": [{"name": "c", "image": "busybox",
    "resources": {"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": "0.5", "memory": "1Gi"}}}]},
  "metadata": {"labels": {"app": "q"}, "name": "q"},
  "apiVersion": "v1",
  "kind": "Pod"
}"#;

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn objects_and_errors_in_upstream_encoding() {
    let c = Cluster::start();
    let mut create = c.netns.command("kubectl");
    create.args(["create", "-f", "-"]);
    create.env("KUBECONFIG", &c.kubeconfig);
    let out = output_with_stdin(create, POD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let raw = c.k(&["get", "--raw", "/api/v1/namespaces/default/pods/q"]);
    assert!(
        raw.starts_with(r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"q","namespace":"default","uid":""#),
        "{raw}"
    );
    // serde_json with preserve_order keeps the bytes' order in the parsed maps.
    let pod: Value = serde_json::from_str(&raw).expect("pod json");
    assert_eq!(
        keys(&pod),
        ["kind", "apiVersion", "metadata", "spec", "status"]
    );
    let meta: Vec<&str> = keys(&pod["metadata"])
        .into_iter()
        .filter(|k| *k != "generation")
        .collect();
    assert_eq!(
        meta,
        [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "labels",
            "managedFields"
        ],
        "{raw}"
    );
    // Every metav1.Time at second precision, the scheduler's condition included.
    let when = pod["status"]["conditions"][0]["lastTransitionTime"]
        .as_str()
        .unwrap_or("");
    assert!(
        when.len() == 20 && when.ends_with('Z'),
        "lastTransitionTime {when}"
    );
    let created = pod["metadata"]["creationTimestamp"].as_str().unwrap_or("");
    assert!(
        created.len() == 20 && created.ends_with('Z') && !created.contains('.'),
        "creationTimestamp {created}"
    );
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(
        resources["requests"],
        serde_json::json!({"cpu": "1", "memory": "1Gi"})
    );
    assert_eq!(
        resources["limits"],
        serde_json::json!({"cpu": "500m", "memory": "1Gi"})
    );

    // The same order in lists and after an update.
    c.k(&["label", "pod", "q", "more=yes"]);
    let list: Value =
        serde_json::from_str(&c.k(&["get", "--raw", "/api/v1/namespaces/default/pods"]))
            .expect("list json");
    let item = &list["items"][0];
    let order: Vec<&str> = keys(item)
        .into_iter()
        .filter(|k| ["kind", "apiVersion", "metadata", "spec", "status"].contains(k))
        .collect();
    assert!(
        order == ["metadata", "spec", "status"]
            || order == ["kind", "apiVersion", "metadata", "spec", "status"],
        "list item fields {order:?}"
    );
    assert_eq!(
        &keys(&item["metadata"])[..4],
        ["name", "namespace", "uid", "resourceVersion"]
    );

    // A Status error, byte for byte as upstream's.
    let token = c.token();
    let out = c.sh(&format!(
        "curl -sk -H 'Authorization: Bearer {token}' \
         https://127.0.0.1:6443/apis/apps/v1/namespaces/default/deployments/nope"
    ));
    let body = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        body.trim_end(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"nope\" not found","reason":"NotFound","details":{"name":"nope","group":"apps","kind":"deployments"},"code":404}"#
    );
}

//! Creates in a namespace, as the API server checks them from its namespace
//! cache (upstream's NamespaceLifecycle admission): refused with upstream's 403
//! once the namespace is terminating, refused with 404 in one that does not
//! exist, and admitted at once in a namespace created a moment before (a cache
//! miss falls back to the store).

mod support;

use std::time::Duration;

use support::{eventually, Cluster};

#[test]
fn creates_follow_the_namespace_lifecycle() {
    let c = Cluster::start();
    // Made and used at once, many times: never refused for a namespace the
    // cache has not seen yet.
    for i in 0..5 {
        let ns = format!("fresh{i}");
        c.k(&["create", "namespace", &ns]);
        c.k(&["-n", &ns, "create", "configmap", "c", "--from-literal=a=b"]);
    }
    let err = c.k_err(&["-n", "nowhere", "create", "configmap", "c"]);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");

    // A finalizer holds the namespace in Terminating.
    c.k(&["create", "namespace", "held"]);
    c.k(&[
        "-n",
        "held",
        "create",
        "configmap",
        "keep",
        "--from-literal=a=b",
    ]);
    c.k(&[
        "-n",
        "held",
        "patch",
        "configmap",
        "keep",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["skiff.test/hold"]}}"#,
    ]);
    c.k(&["delete", "namespace", "held", "--wait=false"]);
    let refused = eventually(Duration::from_secs(10), || {
        let out = c.kubectl(&["-n", "held", "create", "configmap", "late"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (!out.status.success() && err.contains("being terminated")).then_some(err)
    });
    assert!(
        refused.contains(
            "configmaps \"late\" is forbidden: unable to create new content in namespace held because it is being terminated"
        ),
        "{refused}"
    );
    // Let it go; the namespace is removed.
    c.k(&[
        "-n",
        "held",
        "patch",
        "configmap",
        "keep",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually(Duration::from_secs(20), || {
        let out = c.kubectl(&["get", "namespace", "held"]);
        (!out.status.success()).then_some(())
    });
    let err = c.k_err(&["-n", "held", "create", "configmap", "after"]);
    assert!(err.contains("namespaces \"held\" not found"), "{err}");
}

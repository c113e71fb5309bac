//! Table tests of server-side apply and update tracking.

use serde_json::{json, Value};

use super::*;

const T0: &str = "2025-01-01T00:00:00Z";
const T1: &str = "2025-01-01T00:01:00Z";
const T2: &str = "2025-01-01T00:02:00Z";

fn svc() -> GroupKind {
    GroupKind::new("", "Service")
}

fn deploy() -> GroupKind {
    GroupKind::new("apps", "Deployment")
}

fn text(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

fn entries(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == manager))
        .unwrap_or_else(|| panic!("no entry for {manager} in {obj}"))
}

fn service_config() -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
           "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "web"}}})
}

fn deployment(replicas: u64, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "nginx", "image": image,
                                                          "ports": [{"containerPort": 80}]}]}}}})
}

#[test]
fn create_by_apply_records_the_applied_fields() {
    let got = apply(None, &service_config(), "kubectl", false, &svc(), T0).unwrap();
    assert_eq!(
        got["spec"]["ports"],
        json!([{"port": 80, "targetPort": 8080}])
    );
    assert_eq!(
        text(&json!(entries(&got))),
        text(&json!([{
            "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}},
                    "f:selector": {}
                }
            }
        }]))
    );
}

#[test]
fn apply_merges_into_live_keeping_server_fields_and_key_defaults() {
    let created = apply(None, &service_config(), "kubectl", false, &svc(), T0).unwrap();
    // The server defaulted protocol and allocated a cluster IP.
    let mut live = created.clone();
    live["spec"]["ports"][0]["protocol"] = json!("TCP");
    live["spec"]["clusterIP"] = json!("10.96.0.9");
    let mut config = service_config();
    config["spec"]["ports"] =
        json!([{"port": 80, "targetPort": 9090}, {"port": 443, "targetPort": 8443}]);
    let got = apply(Some(&live), &config, "kubectl", false, &svc(), T1).unwrap();
    assert_eq!(
        got["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090, "protocol": "TCP"}, {"port": 443, "targetPort": 8443}])
    );
    assert_eq!(got["spec"]["clusterIP"], "10.96.0.9");
    assert_eq!(entry(&got, "kubectl")["time"], T1);
    // Dropping the 443 port from the configuration prunes it.
    let got = apply(Some(&got), &service_config(), "kubectl", false, &svc(), T2).unwrap();
    assert_eq!(
        got["spec"]["ports"],
        json!([{"port": 80, "targetPort": 8080, "protocol": "TCP"}])
    );
}

#[test]
fn identical_reapply_is_a_no_op() {
    let created = apply(None, &service_config(), "kubectl", false, &svc(), T0).unwrap();
    let again = apply(
        Some(&created),
        &service_config(),
        "kubectl",
        false,
        &svc(),
        T1,
    )
    .unwrap();
    assert_eq!(again, created);
}

#[test]
fn prune_removes_only_unowned_fields() {
    let mut config = service_config();
    config["metadata"]["labels"] = json!({"app": "web", "tier": "front", "team": "a"});
    let live = apply(None, &config, "kubectl", false, &svc(), T0).unwrap();
    // Another applier co-owns "team" (same value: no conflict, shared ownership).
    let other = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"team": "a"}}});
    let live = apply(Some(&live), &other, "other", false, &svc(), T1).unwrap();
    let got = apply(Some(&live), &service_config(), "kubectl", false, &svc(), T2).unwrap();
    assert_eq!(
        got["metadata"]["labels"],
        json!({"app": "web", "team": "a"})
    );
    assert_eq!(
        entry(&got, "other")["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:team": {}}}})
    );
}

#[test]
fn conflicts_with_an_updater_and_force_moves_ownership() {
    let created = record_update(
        None,
        &deployment(1, "nginx:1"),
        "kubectl-client-side-apply",
        &deploy(),
        T0,
    );
    assert_eq!(
        entry(&created, "kubectl-client-side-apply")["operation"],
        "Update"
    );
    let err = apply(
        Some(&created),
        &deployment(3, "nginx:1"),
        "ssa",
        false,
        &deploy(),
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );
    let ApplyError::Conflicts(c) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        c[0].cause_message(),
        r#"conflict with "kubectl-client-side-apply" using apps/v1"#
    );
    assert_eq!(c[0].path, ".spec.replicas");

    let got = apply(
        Some(&created),
        &deployment(3, "nginx:1"),
        "ssa",
        true,
        &deploy(),
        T1,
    )
    .unwrap();
    assert_eq!(got["spec"]["replicas"], 3);
    let csa = entry(&got, "kubectl-client-side-apply")["fieldsV1"].to_string();
    assert!(!csa.contains("f:replicas"), "{csa}");
    assert!(csa.contains("f:image"), "shared fields stay shared: {csa}");
    assert!(entry(&got, "ssa")["fieldsV1"]["f:spec"]
        .get("f:replicas")
        .is_some());
    // Apply entries sort before Update entries.
    assert_eq!(entries(&got)[0]["operation"], "Apply");
}

#[test]
fn several_conflicts_are_grouped_by_manager() {
    let created = record_update(None, &deployment(1, "nginx:1"), "m", &deploy(), T0);
    let err = apply(
        Some(&created),
        &deployment(3, "nginx:2"),
        "ssa",
        false,
        &deploy(),
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"m\" using apps/v1:\n\
         - .spec.replicas\n\
         - .spec.template.spec.containers[name=\"nginx\"].image"
    );
    // The message for managers of both kinds, sorted by manager.
    let c = |m: &str, op: &str, p: &str| Conflict {
        manager: m.into(),
        operation: op.into(),
        api_version: "apps/v1".into(),
        subresource: None,
        path: p.into(),
    };
    assert_eq!(
        conflict_message(&[c("z", "Apply", ".a"), c("m", "Update", ".spec.replicas"), c("m", "Update", ".spec.x")]),
        "Apply failed with 3 conflicts: conflicts with \"m\" using apps/v1:\n- .spec.replicas\n- .spec.x\nconflicts with \"z\":\n- .a"
    );
}

#[test]
fn objects_without_managed_fields_belong_to_before_first_apply() {
    let err = apply(
        Some(&deployment(1, "nginx:1")),
        &deployment(2, "nginx:1"),
        "ssa",
        false,
        &deploy(),
        T0,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: .spec.replicas"#
    );
}

#[test]
fn kubectl_takes_over_fields_its_client_side_apply_set() {
    let mut live = deployment(1, "nginx:1");
    live["metadata"]["annotations"] =
        json!({LAST_APPLIED_ANNOTATION: text(&deployment(1, "nginx:1"))});
    let live = record_update(None, &live, "kubectl-client-side-apply", &deploy(), T0);
    let got = apply(
        Some(&live),
        &deployment(2, "nginx:1"),
        "kubectl",
        false,
        &deploy(),
        T1,
    )
    .unwrap();
    assert_eq!(got["spec"]["replicas"], 2);
    // The annotation follows the new configuration, in Go's sorted-key JSON.
    let ann = got["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
        .as_str()
        .unwrap();
    assert!(
        ann.starts_with(r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web""#),
        "{ann}"
    );
    assert!(ann.contains(r#""replicas":2"#));
    // Another manager gets no such pass.
    assert!(apply(
        Some(&live),
        &deployment(2, "nginx:1"),
        "helm",
        false,
        &deploy(),
        T1
    )
    .is_err());
}

#[test]
fn record_update_moves_ownership_of_changed_fields() {
    let created = record_update(
        None,
        &deployment(1, "nginx:1"),
        "kubectl-create",
        &deploy(),
        T0,
    );
    let mf = &entry(&created, "kubectl-create")["fieldsV1"];
    assert_eq!(mf["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        mf["f:spec"]["f:selector"],
        json!({}),
        "LabelSelector is atomic"
    );
    assert_eq!(
        mf["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["f:ports"],
        json!({".": {}, "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
    assert!(
        mf.get("f:metadata").is_none(),
        "name and namespace are not tracked: {mf}"
    );
    assert_eq!(
        mf["f:spec"]["f:template"]["f:metadata"],
        json!({"f:labels": {".": {}, "f:app": {}}})
    );

    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    let got = record_update(
        Some(&created),
        &scaled,
        "kube-controller-manager",
        &deploy(),
        T1,
    );
    assert!(entry(&got, "kubectl-create")["fieldsV1"]["f:spec"]
        .get("f:replicas")
        .is_none());
    assert_eq!(
        entry(&got, "kube-controller-manager")["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    assert_eq!(entry(&got, "kube-controller-manager")["time"], T1);
    assert_eq!(entry(&got, "kubectl-create")["time"], T0);

    // A write that changes nothing adds no entry and stamps no time.
    let same = record_update(Some(&got), &got, "someone", &deploy(), T2);
    assert_eq!(same, got);

    // Removing a field takes it from everybody.
    let mut removed = got.clone();
    removed["spec"].as_object_mut().unwrap().remove("replicas");
    let after = record_update(Some(&got), &removed, "editor", &deploy(), T2);
    assert!(after["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["manager"] != "kube-controller-manager"));
}

#[test]
fn record_update_honours_managed_fields_sent_or_reset() {
    let created = record_update(None, &deployment(1, "a"), "creator", &deploy(), T0);
    let mut reset = created.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    reset["spec"]["replicas"] = json!(2);
    let got = record_update(Some(&created), &reset, "editor", &deploy(), T1);
    assert_eq!(entries(&got).len(), 1);
    assert_eq!(
        entry(&got, "editor")["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    // A client that drops managedFields does not erase them.
    let mut naive = created.clone();
    naive["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let got = record_update(Some(&created), &naive, "naive", &deploy(), T1);
    assert_eq!(entries(&got), entries(&created));
    // Status writes are kept apart by subresource.
    let mut status = created.clone();
    status["status"] = json!({"replicas": 1});
    let got = record_subresource_update(
        Some(&created),
        &status,
        "kcm",
        Some("status"),
        &deploy(),
        T1,
    );
    assert_eq!(entry(&got, "kcm")["subresource"], "status");
}

#[test]
fn sets_and_unknown_kinds() {
    let pod = GroupKind::new("", "Pod");
    let config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": ["a/b"]}});
    let got = apply(None, &config, "m", false, &pod, T0).unwrap();
    assert_eq!(
        entry(&got, "m")["fieldsV1"],
        json!({"f:metadata": {"f:finalizers": {"v:\"a/b\"": {}}}})
    );
    // An update that creates the list owns the list too, as upstream records it.
    let got = record_update(None, &config, "u", &pod, T0);
    assert_eq!(
        entry(&got, "u")["fieldsV1"],
        json!({"f:metadata": {"f:finalizers": {".": {}, "v:\"a/b\"": {}}}})
    );
    // Schemaless kinds: every object is a map, so nested objects are members too.
    let w = GroupKind::new("example.com", "Widget");
    let config = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                        "spec": {"size": 1, "items": [1, 2]}});
    let got = apply(None, &config, "m", false, &w, T0).unwrap();
    assert_eq!(
        entry(&got, "m")["fieldsV1"],
        json!({"f:spec": {".": {}, "f:items": {}, "f:size": {}}})
    );
}

#[test]
fn invalid_configurations() {
    let d = deploy();
    let mut no_key = deployment(1, "a");
    no_key["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
    let err = apply(None, &no_key, "m", false, &d, T0).unwrap_err();
    assert!(matches!(err, ApplyError::Invalid(_)));
    assert!(
        err.to_string().contains(r#"omits key field "name""#),
        "{err}"
    );
    let mut dup = deployment(1, "a");
    dup["spec"]["template"]["spec"]["containers"] = json!([{"name": "x"}, {"name": "x"}]);
    let err = apply(None, &dup, "m", false, &d, T0).unwrap_err();
    assert!(err.to_string().contains("duplicate entries"), "{err}");
    let mut mf = deployment(1, "a");
    mf["metadata"]["managedFields"] = json!([]);
    assert!(apply(None, &mf, "m", false, &d, T0).is_err());
    assert!(apply(None, &json!([]), "m", false, &d, T0).is_err());
}

#[test]
fn null_in_configuration_removes_the_field() {
    let live = apply(None, &deployment(1, "a"), "m", false, &deploy(), T0).unwrap();
    let mut config = deployment(1, "a");
    config["spec"]["replicas"] = Value::Null;
    let got = apply(Some(&live), &config, "m", false, &deploy(), T1).unwrap();
    assert!(got["spec"].get("replicas").is_none());
}

//! Table tests, including the exact patches kubectl 1.33 sends for `kubectl apply`.

use serde_json::{json, Value};

use crate::{strategic_merge_patch, Error, GroupKind};

fn gk(group: &str, kind: &str) -> GroupKind {
    GroupKind::new(group, kind)
}

fn smp(kind: &GroupKind, doc: &Value, patch: &Value) -> Value {
    strategic_merge_patch(doc, patch, kind).unwrap_or_else(|e| panic!("patch {patch}: {e}"))
}

/// Serialized with key order kept, so tests see list and key order.
fn text(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

fn assert_no_directives(v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                assert!(!k.starts_with('$'), "directive {k} left in result");
                assert_no_directives(v);
            }
        }
        Value::Array(a) => a.iter().for_each(assert_no_directives),
        _ => {}
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn live_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "generation": 1,
            "labels": {"app": "web"},
            "annotations": {"deployment.kubernetes.io/revision": "1", LAST_APPLIED: "{\"old\":true}\n"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
                         "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}],
                         "terminationMessagePath": "/dev/termination-log"},
                        {"name": "sidecar", "image": "proxy:1"}
                    ],
                    "restartPolicy": "Always",
                    "tolerations": [{"key": "a", "operator": "Exists"}]
                }
            }
        },
        "status": {"replicas": 2}
    })
}

#[test]
fn kubectl_apply_edited_deployment() {
    // `kubectl apply` after: replicas 2 -> 3, image bumped, port 443 removed, env added.
    // kubectl marshals with sorted keys; this is its patch byte for byte.
    let patch: Value = serde_json::from_str(concat!(
        r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"new\":true}\n"}},"#,
        r#""spec":{"replicas":3,"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"#,
        r#""containers":[{"$setElementOrder/ports":[{"containerPort":80}],"env":[{"name":"MODE","value":"prod"}],"#,
        r#""image":"nginx:1.26","name":"nginx","ports":[{"$patch":"delete","containerPort":443}]}]}}}}"#
    ))
    .unwrap();
    let got = smp(&gk("apps", "Deployment"), &live_deployment(), &patch);
    assert_no_directives(&got);
    assert_eq!(got["spec"]["replicas"], 3);
    assert_eq!(
        got["metadata"]["annotations"][LAST_APPLIED],
        "{\"new\":true}\n"
    );
    assert_eq!(
        got["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let containers = &got["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        text(containers),
        text(&json!([
            {"name": "nginx", "image": "nginx:1.26", "imagePullPolicy": "IfNotPresent",
             "ports": [{"containerPort": 80, "protocol": "TCP"}],
             "terminationMessagePath": "/dev/termination-log",
             "env": [{"name": "MODE", "value": "prod"}]},
            {"name": "sidecar", "image": "proxy:1"}
        ]))
    );
    // Untouched parts stay as they were.
    assert_eq!(
        got["spec"]["strategy"],
        live_deployment()["spec"]["strategy"]
    );
    assert_eq!(got["status"], json!({"replicas": 2}));
}

#[test]
fn kubectl_apply_deployment_strategy_change_uses_retain_keys() {
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}});
    let got = smp(&gk("apps", "Deployment"), &live_deployment(), &patch);
    assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
    // $retainKeys alone also drops what is not listed.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let got = smp(&gk("apps", "Deployment"), &live_deployment(), &patch);
    assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
}

fn live_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "annotations": {LAST_APPLIED: "{}"}},
        "spec": {
            "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "type": "ClusterIP",
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}
            ],
            "selector": {"app": "web"},
            "sessionAffinity": "None"
        }
    })
}

#[test]
fn kubectl_apply_edited_service() {
    // Port 443 removed, 8080 added, selector gains a key.
    let patch: Value = serde_json::from_str(concat!(
        r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"v\":2}\n"}},"#,
        r#""spec":{"$setElementOrder/ports":[{"port":80},{"port":8080}],"#,
        r#""ports":[{"name":"alt","port":8080,"targetPort":8080},{"$patch":"delete","port":443}],"#,
        r#""selector":{"tier":"front"}}}"#
    ))
    .unwrap();
    let got = smp(&gk("", "Service"), &live_service(), &patch);
    assert_no_directives(&got);
    assert_eq!(
        text(&got["spec"]["ports"]),
        text(&json!([
            {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80},
            {"name": "alt", "port": 8080, "targetPort": 8080}
        ]))
    );
    assert_eq!(
        got["spec"]["selector"],
        json!({"app": "web", "tier": "front"})
    );
    assert_eq!(got["spec"]["clusterIP"], "10.96.0.20");
}

#[test]
fn kubectl_apply_removed_field_is_null() {
    let patch = json!({"spec": {"sessionAffinity": null, "selector": {"app": null}}});
    let got = smp(&gk("", "Service"), &live_service(), &patch);
    assert!(got["spec"].get("sessionAffinity").is_none());
    assert_eq!(got["spec"]["selector"], json!({}));
}

#[test]
fn set_element_order_reorders_and_keeps_server_only_items() {
    let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "s"}, {"name": "b"}]}});
    let pod = gk("", "Pod");
    // Order only: no list in the patch.
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}});
    let got = smp(&pod, &live, &patch);
    assert_eq!(
        text(&got["spec"]["containers"]),
        r#"[{"name":"s"},{"name":"b"},{"name":"a"}]"#
    );
    // Order plus a change and an addition.
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
                                "containers": [{"name": "c"}, {"name": "b", "image": "x"}]}});
    let got = smp(&pod, &live, &patch);
    assert_eq!(
        text(&got["spec"]["containers"]),
        r#"[{"name":"c"},{"name":"a"},{"name":"s"},{"name":"b","image":"x"}]"#
    );
}

#[test]
fn merge_lists_by_key_without_order_directive() {
    let pod = gk("", "Pod");
    let live = json!({"spec": {"containers": [
        {"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
         "volumeMounts": [{"mountPath": "/data", "name": "d"}]}
    ], "volumes": [{"name": "d", "emptyDir": {}}]}});
    let patch = json!({"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
         "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}
    ], "volumes": [{"name": "e", "configMap": {"name": "cm"}}]}});
    let got = smp(&pod, &live, &patch);
    let c = &got["spec"]["containers"][0];
    // Patch items first in patch order, the live-only one where it fits.
    assert_eq!(
        text(&c["env"]),
        r#"[{"name":"A","value":"1"},{"name":"B","value":"3"},{"name":"C","value":"4"}]"#
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"mountPath": "/data", "name": "d", "readOnly": true}])
    );
    // Without `$setElementOrder` a new item has no live position to compare, so
    // upstream puts it ahead of the live-only ones (kubectl always sends the order).
    assert_eq!(
        got["spec"]["volumes"],
        json!([{"name": "e", "configMap": {"name": "cm"}}, {"name": "d", "emptyDir": {}}])
    );
}

#[test]
fn volume_source_swap_with_retain_keys() {
    let live = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
    let patch = json!({"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "name": "v"}]}});
    let got = smp(&gk("", "Pod"), &live, &patch);
    assert_eq!(
        got["spec"]["volumes"],
        json!([{"name": "v", "configMap": {"name": "cm"}}])
    );
}

#[test]
fn list_directives() {
    let pod = gk("", "Pod");
    let live =
        json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}});
    // $patch: replace inside the list: the list becomes the other elements.
    let patch =
        json!({"spec": {"containers": [{"name": "x", "image": "9"}, {"$patch": "replace"}]}});
    assert_eq!(
        smp(&pod, &live, &patch)["spec"]["containers"],
        json!([{"name": "x", "image": "9"}])
    );
    // $patch: delete of an element by key.
    let patch = json!({"spec": {"containers": [{"$patch": "delete", "name": "a"}]}});
    assert_eq!(
        smp(&pod, &live, &patch)["spec"]["containers"],
        json!([{"name": "b", "image": "2"}])
    );
    // $patch: merge in a list is refused, as upstream.
    let patch = json!({"spec": {"containers": [{"$patch": "merge", "name": "a"}]}});
    assert!(strategic_merge_patch(&live, &patch, &pod).is_err());
}

#[test]
fn map_directives() {
    let d = gk("apps", "Deployment");
    let live = live_deployment();
    let patch =
        json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"app": "other"}}}});
    assert_eq!(
        smp(&d, &live, &patch)["spec"]["selector"],
        json!({"matchLabels": {"app": "other"}})
    );
    let patch = json!({"metadata": {"labels": {"$patch": "delete"}}});
    assert_eq!(smp(&d, &live, &patch)["metadata"]["labels"], json!({}));
    let patch = json!({"metadata": {"labels": {"$patch": "frobnicate"}}});
    let err = strategic_merge_patch(&live, &patch, &d).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unknown patch type: frobnicate in map"),
        "{err}"
    );
}

#[test]
fn primitive_merge_lists() {
    let pod = gk("", "Pod");
    let live = json!({"metadata": {"finalizers": ["a", "b"]}});
    let got = smp(
        &pod,
        &live,
        &json!({"metadata": {"finalizers": ["c", "a"]}}),
    );
    assert_eq!(got["metadata"]["finalizers"], json!(["c", "a", "b"]));
    let got = smp(
        &pod,
        &live,
        &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    );
    assert_eq!(got["metadata"]["finalizers"], json!(["b"]));
    let got = smp(
        &pod,
        &live,
        &json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}),
    );
    assert_eq!(got["metadata"]["finalizers"], json!(["b", "a"]));
    // A delete list for a list the object does not have does nothing.
    let got = smp(
        &pod,
        &json!({"metadata": {}}),
        &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    );
    assert_eq!(got, json!({"metadata": {}}));
}

#[test]
fn other_keyed_lists() {
    let pod = gk("", "Pod");
    let live = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "rs"}]},
                      "spec": {"imagePullSecrets": [{"name": "a"}], "tolerations": [{"key": "a"}]},
                      "status": {"conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"}]}});
    let patch = json!({
        "metadata": {"ownerReferences": [{"uid": "2", "name": "other"}]},
        "spec": {"imagePullSecrets": [{"name": "b"}], "tolerations": [{"key": "b"}]},
        "status": {"$setElementOrder/conditions": [{"type": "Initialized"}, {"type": "Ready"}],
                   "conditions": [{"type": "Ready", "status": "True"}]}
    });
    let got = smp(&pod, &live, &patch);
    assert_eq!(
        got["metadata"]["ownerReferences"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        got["spec"]["imagePullSecrets"],
        json!([{"name": "b"}, {"name": "a"}])
    );
    // Tolerations have no patch strategy: replaced.
    assert_eq!(got["spec"]["tolerations"], json!([{"key": "b"}]));
    assert_eq!(
        got["status"]["conditions"],
        json!([{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}])
    );
}

#[test]
fn service_ports_and_endpoints_subsets() {
    let live = live_service();
    let patch = json!({"spec": {"ports": [{"port": 443, "nodePort": 30443}]}});
    let got = smp(&gk("", "Service"), &live, &patch);
    assert_eq!(got["spec"]["ports"][1]["nodePort"], 30443);
    assert_eq!(got["spec"]["ports"][1]["name"], "https");
    // Endpoints subsets carry no patch strategy: replaced.
    let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]});
    let patch = json!({"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]});
    assert_eq!(
        smp(&gk("", "Endpoints"), &ep, &patch)["subsets"],
        patch["subsets"]
    );
}

#[test]
fn unknown_kind_is_merge_patch_with_lists_replaced() {
    let w = gk("example.com", "Widget");
    let live = json!({"spec": {"items": [{"name": "a", "v": 1}], "m": {"x": 1, "y": 2}}});
    let patch = json!({"spec": {"items": [{"name": "a", "v": 2}], "m": {"x": null, "z": 3}}});
    assert_eq!(
        smp(&w, &live, &patch),
        json!({"spec": {"items": [{"name": "a", "v": 2}], "m": {"y": 2, "z": 3}}})
    );
}

#[test]
fn new_values_have_directives_resolved_and_nulls_dropped() {
    let d = gk("apps", "Deployment");
    let live = json!({"metadata": {"name": "web"}});
    let patch = json!({"spec": {"replicas": 1, "paused": null, "template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "a", "image": null, "$setElementOrder/ports": [{"containerPort": 80}],
                        "ports": [{"containerPort": 80}, {"$patch": "delete", "containerPort": 81}]}]}}}});
    let got = smp(&d, &live, &patch);
    assert_no_directives(&got);
    assert_eq!(
        got["spec"],
        json!({"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}}})
    );
}

#[test]
fn type_changes_replace() {
    let pod = gk("", "Pod");
    let got = smp(&pod, &json!({"a": {"b": 1}}), &json!({"a": [1]}));
    assert_eq!(got, json!({"a": [1]}));
    let got = smp(&pod, &json!({"a": [1]}), &json!({"a": {"b": 1, "c": null}}));
    assert_eq!(got, json!({"a": {"b": 1}}));
}

#[test]
fn malformed_patches_are_errors() {
    let pod = gk("", "Pod");
    let live = json!({"spec": {"containers": [{"name": "a"}]}, "metadata": {"finalizers": ["x"]}});
    let bad = [
        json!({"spec": {"containers": [{"image": "no-name"}]}}),
        json!({"spec": {"containers": [{"$patch": "delete"}]}}),
        json!({"spec": {"containers": [{"name": "a"}, "scalar"]}}),
        json!({"spec": {"$retainKeys": ["x"], "y": 1}}),
        json!({"spec": {"$retainKeys": "x"}}),
        json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b"}]}}),
        json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "x"}}),
    ];
    for patch in bad {
        let err = strategic_merge_patch(&live, &patch, &pod).expect_err(&patch.to_string());
        assert!(matches!(err, Error::BadPatch(_)));
    }
    assert!(strategic_merge_patch(&json!([]), &json!({}), &pod).is_err());
    let err = strategic_merge_patch(
        &live,
        &json!({"spec": {"containers": [{"image": "x"}]}}),
        &pod,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"map: {"image":"x"} does not contain declared merge key: name"#
    );
}

#[test]
fn identical_reapply_changes_nothing() {
    let live = live_deployment();
    let patch = json!({"metadata": {"annotations": {LAST_APPLIED: "{\"old\":true}\n"}}});
    assert_eq!(
        text(&smp(&gk("apps", "Deployment"), &live, &patch)),
        text(&live)
    );
}

#[test]
fn set_element_order_names_the_key_of_a_list_missing_from_the_table() {
    // An unknown kind: no table entry, yet kubectl-style directives still merge.
    let w = gk("example.com", "Widget");
    let live =
        json!({"spec": {"items": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}], "tags": ["x", "y"]}});
    let patch = json!({"spec": {
        "$setElementOrder/items": [{"id": 2}, {"id": 3}],
        "items": [{"id": 3, "v": "c"}, {"$patch": "delete", "id": 1}],
        "$setElementOrder/tags": ["y", "x", "z"],
        "tags": ["z"]
    }});
    let got = smp(&w, &live, &patch);
    assert_eq!(
        got["spec"]["items"],
        json!([{"id": 2, "v": "b"}, {"id": 3, "v": "c"}])
    );
    assert_eq!(got["spec"]["tags"], json!(["y", "x", "z"]));
}

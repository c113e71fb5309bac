//! What the server does to an object before it is stored, per upstream's
//! per-kind "strategies": system metadata, status resets, generation, defaults.

use serde_json::{json, Map, Value};
use skiff_api::registry::Resource;

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match &mut obj["metadata"] {
        Value::Object(m) => m,
        _ => unreachable!("metadata was made an object above"),
    }
}

/// The status a freshly created object starts with, or `None` to keep the client's.
fn initial_status(resource: &Resource, obj: &Value) -> Option<Value> {
    match (resource.group, resource.kind) {
        ("", "Node") => None,
        ("", "Pod") => Some(json!({"phase": "Pending", "qosClass": qos_class(obj)})),
        ("", "Namespace") => Some(json!({"phase": "Active"})),
        ("", "Service") => Some(json!({"loadBalancer": {}})),
        _ if resource.status => Some(json!({})),
        _ => None,
    }
}

/// Upstream's QoS class: Guaranteed when every container's requests equal its limits
/// for cpu and memory, BestEffort when nothing is requested or limited.
fn qos_class(pod: &Value) -> &'static str {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        any |= req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty());
        for r in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(r));
            let q = req.and_then(|m| m.get(r)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Fills system metadata and resets server-owned state on create.
pub fn prepare_create(resource: &Resource, obj: &mut Value, namespace: Option<&str>) {
    let obj_kind = resource.kind;
    let api_version = resource.api_version();
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), json!(api_version));
        o.insert("kind".into(), json!(obj_kind));
    }
    let has_spec = resource.has_spec;
    let meta = meta_mut(obj);
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(f);
    }
    if has_spec {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    match namespace {
        Some(ns) if resource.namespaced => {
            meta.insert("namespace".into(), json!(ns));
        }
        _ => {
            meta.remove("namespace");
        }
    }
    if let Some(status) = initial_status(resource, obj) {
        obj["status"] = status;
    }
    // A custom resource with a status subresource starts without one, as upstream's.
    if resource.status && skiff_api::crd::definition_of(resource).is_some() {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    if (resource.group, resource.kind) == ("", "Namespace") {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
    }
}

const SYSTEM_META: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "namespace",
    "name",
];

/// Whether an update changes what `metadata.generation` counts: the spec, or
/// for a custom resource anything but its metadata (and status, which only
/// counts when it has no status subresource), as upstream's CR strategy.
fn spec_changed(resource: &Resource, old: &Value, new: &Value) -> bool {
    if skiff_api::crd::definition_of(resource).is_none() {
        return old.get("spec") != new.get("spec");
    }
    let counted = |o: &Value| -> Value {
        let mut o = o.clone();
        if let Some(m) = o.as_object_mut() {
            m.remove("metadata");
            if resource.status {
                m.remove("status");
            }
        }
        o
    };
    counted(old) != counted(new)
}

/// Carries server-owned state from `old` into an update of the main resource or
/// of a subresource, and bumps `generation` when the spec changed.
pub fn prepare_update(
    resource: &Resource,
    old: &Value,
    new: &mut Value,
    subresource: Option<&str>,
) {
    if let Some(o) = new.as_object_mut() {
        o.insert("apiVersion".into(), json!(resource.api_version()));
        o.insert("kind".into(), json!(resource.kind));
    }
    let old_meta = old.get("metadata").and_then(Value::as_object);
    let meta = meta_mut(new);
    for f in SYSTEM_META {
        match old_meta.and_then(|m| m.get(*f)) {
            Some(v) => meta.insert((*f).into(), v.clone()),
            None => meta.remove(*f),
        };
    }
    if subresource == Some("status") && skiff_api::crd::definition_of(resource).is_some() {
        // A custom resource's status write changes its status alone (and the
        // managed fields that record it), whatever else the body carries.
        let status = new.get("status").cloned();
        let managed = new.pointer("/metadata/managedFields").cloned();
        *new = old.clone();
        if let Some(o) = new.as_object_mut() {
            match status {
                Some(st) => o.insert("status".into(), st),
                None => o.remove("status"),
            };
        }
        if let Some(m) = managed {
            meta_mut(new).insert("managedFields".into(), m);
        }
        return;
    }
    if subresource == Some("ephemeralcontainers") {
        // upstream's podEphemeralContainersStrategy: this write changes the
        // pod's ephemeral containers and nothing else.
        let ephemeral = new.pointer("/spec/ephemeralContainers").cloned();
        *new = old.clone();
        if !new["spec"].is_object() {
            new["spec"] = json!({});
        }
        match (ephemeral, new["spec"].as_object_mut()) {
            (Some(e), Some(spec)) => _ = spec.insert("ephemeralContainers".into(), e),
            (None, Some(spec)) => _ = spec.remove("ephemeralContainers"),
            _ => {}
        }
        return;
    }
    if subresource == Some("status") {
        // As upstream's status strategies: a status write cannot change the spec,
        // and workloads keep their labels; other metadata changes are kept.
        match old.get("spec") {
            Some(spec) => new["spec"] = spec.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("spec");
                }
            }
        }
        if resource.group == "apps" {
            match old.pointer("/metadata/labels") {
                Some(l) => meta_mut(new).insert("labels".into(), l.clone()),
                None => meta_mut(new).remove("labels"),
            };
        }
        return;
    }
    if resource.status && subresource.is_none() {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if (resource.group, resource.kind) == ("", "Namespace") && subresource != Some("finalize") {
        new["spec"] = old.get("spec").cloned().unwrap_or(json!({}));
    }
    if resource.has_spec && spec_changed(resource, old, new) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(new).insert("generation".into(), json!(g + 1));
    }
}

/// The label upstream puts on every namespace, its value the name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Normalizes an object once its name is final (after generateName), on
/// create and on every update, as upstream's Canonicalize and conversion do:
/// a namespace always carries `kubernetes.io/metadata.name=<name>`, and a
/// write that changes or removes it has it silently put back (selectors rely
/// on it, e.g. NetworkPolicy namespaceSelectors); a Secret's write-only
/// `stringData` is folded into `data`. Then upstream's canonical encoding
/// (skiff_api::canonical): quantities canonical, built-in kinds' times at second
/// precision, fields in upstream's order.
pub fn canonicalize(resource: &Resource, obj: &mut Value) {
    match (resource.group, resource.kind) {
        ("", "Namespace") => namespace_name_label(obj),
        ("", "Secret") => fold_string_data(obj),
        _ => {}
    }
    skiff_api::canonical::canonical_quantities(resource.group, resource.kind, obj);
    if skiff_api::crd::definition_of(resource).is_none() {
        skiff_api::canonical::canonical_times(obj);
    }
    skiff_api::canonical::order_fields(obj);
}

/// Upstream's Secret conversion: each `stringData` key overwrites `data`'s,
/// base64-encoded, and `stringData` itself is never stored or returned. A value
/// that is not a string is left in place for validation to refuse.
fn fold_string_data(obj: &mut Value) {
    use base64::Engine as _;
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    let all_strings = match o.get("stringData") {
        None => return,
        Some(Value::Null) => true,
        Some(Value::Object(m)) => m.values().all(Value::is_string),
        Some(_) => false,
    };
    if !all_strings {
        return;
    }
    let Some(Value::Object(strings)) = o.remove("stringData") else {
        return;
    };
    if strings.is_empty() {
        return;
    }
    if !o.get("data").is_some_and(Value::is_object) {
        o.insert("data".into(), json!({}));
    }
    if let Some(Value::Object(data)) = o.get_mut("data") {
        for (k, v) in strings {
            let text = v.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(k, Value::String(encoded));
        }
    }
}

fn namespace_name_label(obj: &mut Value) {
    let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) else {
        return;
    };
    let name = json!(name);
    let meta = meta_mut(obj);
    match meta.get_mut("labels").and_then(Value::as_object_mut) {
        Some(labels) => {
            labels.insert(NAMESPACE_NAME_LABEL.into(), name);
        }
        None => {
            meta.insert("labels".into(), json!({ NAMESPACE_NAME_LABEL: name }));
        }
    }
}

/// Objects compare equal for "did anything change" once the revision is ignored.
pub fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::registry::lookup;

    #[test]
    fn secret_string_data_is_folded_into_data() {
        let secrets = lookup("", "v1", "secrets").expect("secrets");
        let mut s = json!({
            "metadata": {"name": "s"},
            "data": {"a": "b2xk", "keep": "eA=="},
            "stringData": {"a": "new", "b": "two"},
        });
        canonicalize(secrets, &mut s);
        assert_eq!(s["data"], json!({"a": "bmV3", "keep": "eA==", "b": "dHdv"}));
        assert!(s.get("stringData").is_none());

        let mut only = json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}});
        canonicalize(secrets, &mut only);
        assert_eq!(
            only,
            json!({"metadata": {"name": "s"}, "data": {"k": "dg=="}})
        );

        // Not strings: left for validation to refuse, nothing folded.
        let mut bad = json!({"metadata": {"name": "s"}, "stringData": {"k": 1}});
        canonicalize(secrets, &mut bad);
        assert_eq!(bad["stringData"], json!({"k": 1}));
    }

    #[test]
    fn a_namespace_always_carries_its_name_label() {
        let ns = lookup("", "v1", "namespaces").expect("namespaces");
        // Missing, changed, removed: put back to the name, other labels kept.
        for labels in [
            json!(null),
            json!({"a": "b"}),
            json!({"kubernetes.io/metadata.name": "other", "a": "b"}),
        ] {
            let mut obj = json!({"metadata": {"name": "team", "labels": labels}});
            canonicalize(ns, &mut obj);
            assert_eq!(obj["metadata"]["labels"][NAMESPACE_NAME_LABEL], "team");
        }
        let svc = lookup("", "v1", "services").expect("services");
        let mut obj = json!({"metadata": {"name": "x"}});
        canonicalize(svc, &mut obj);
        assert!(obj["metadata"].get("labels").is_none());
    }

    #[test]
    fn create_sets_system_fields_and_resets_status() {
        let pods = lookup("", "v1", "pods").unwrap();
        let mut p = json!({"metadata": {"name": "p", "resourceVersion": "9"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}, "status": {"phase": "Running"}});
        prepare_create(pods, &mut p, Some("default"));
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["qosClass"], "BestEffort");
        assert_eq!(p["metadata"]["namespace"], "default");
        assert_eq!(p["metadata"]["generation"], 1);
        assert!(p["metadata"].get("resourceVersion").is_none());
        assert_eq!(p["kind"], "Pod");
    }

    #[test]
    fn update_keeps_status_and_bumps_generation_on_spec_change() {
        let d = lookup("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "d", "uid": "u", "generation": 3},
            "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut new = json!({"metadata": {"name": "d", "uid": "other"},
            "spec": {"replicas": 2}, "status": {"replicas": 99}});
        prepare_update(d, &old, &mut new, None);
        assert_eq!(new["status"]["replicas"], 1);
        assert_eq!(new["metadata"]["generation"], 4);
        assert_eq!(new["metadata"]["uid"], "u");
        let mut st =
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 7}, "status": {"replicas": 2}});
        prepare_update(d, &old, &mut st, Some("status"));
        assert_eq!(st["spec"]["replicas"], 1);
        assert_eq!(st["status"]["replicas"], 2);
        assert_eq!(st["metadata"]["generation"], 3);
    }

    #[test]
    fn qos() {
        let g = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
    }
}

//! Defaulting as upstream's `SetDefaults_*`: what `kubectl get -o yaml` shows for
//! fields the user left out.

use serde_json::{json, Value};

use crate::registry::Resource;

fn set_if_absent(obj: &mut Value, key: &str, v: Value) {
    if let Some(o) = obj.as_object_mut() {
        o.entry(key.to_string()).or_insert(v);
    }
}

fn container(c: &mut Value) {
    set_if_absent(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_if_absent(c, "terminationMessagePolicy", json!("File"));
    set_if_absent(c, "resources", json!({}));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    // Upstream: `Always` for `:latest` or untagged images, else `IfNotPresent`.
    let last = image.rsplit('/').next().unwrap_or(image);
    let untagged_or_latest =
        !last.contains(':') && !image.contains('@') || last.ends_with(":latest");
    let policy = if untagged_or_latest {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_if_absent(c, "imagePullPolicy", json!(policy));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_if_absent(p, "protocol", json!("TCP"));
        }
    }
}

/// Defaults of a PodSpec, shared by pods and every pod template.
pub fn pod_spec(spec: &mut Value) {
    set_if_absent(spec, "restartPolicy", json!("Always"));
    set_if_absent(spec, "terminationGracePeriodSeconds", json!(30));
    set_if_absent(spec, "dnsPolicy", json!("ClusterFirst"));
    set_if_absent(spec, "securityContext", json!({}));
    set_if_absent(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                container(c);
            }
        }
    }
}

fn template(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        pod_spec(spec);
    }
}

/// Applies the defaults of `resource`'s kind to `obj` in place.
pub fn apply(resource: &Resource, obj: &mut Value) {
    match (resource.group, resource.kind) {
        (crate::crd::GROUP, "CustomResourceDefinition") => crate::crd::validation::default(obj),
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
                set_if_absent(spec, "enableServiceLinks", json!(true));
            }
        }
        ("", "Service") => crate::service::default(obj),
        ("apps", "Deployment") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_if_absent(spec, "replicas", json!(1));
                set_if_absent(
                    spec,
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
                set_if_absent(spec, "revisionHistoryLimit", json!(10));
                set_if_absent(spec, "progressDeadlineSeconds", json!(600));
            }
            template(obj);
        }
        ("apps", "ReplicaSet") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_if_absent(spec, "replicas", json!(1));
            }
            template(obj);
        }
        ("apps", "StatefulSet") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_if_absent(spec, "replicas", json!(1));
                set_if_absent(spec, "podManagementPolicy", json!("OrderedReady"));
                set_if_absent(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                set_if_absent(spec, "revisionHistoryLimit", json!(10));
                set_if_absent(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
            }
            template(obj);
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_if_absent(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                );
                set_if_absent(spec, "revisionHistoryLimit", json!(10));
            }
            template(obj);
        }
        ("", "ReplicationController") => replication_controller(obj),
        ("batch", "Job") => {
            job(obj);
            template(obj);
        }
        ("batch", "CronJob") => {
            if let Some(spec) = obj.get_mut("spec") {
                set_if_absent(spec, "concurrencyPolicy", json!("Allow"));
                set_if_absent(spec, "suspend", json!(false));
                set_if_absent(spec, "successfulJobsHistoryLimit", json!(3));
                set_if_absent(spec, "failedJobsHistoryLimit", json!(1));
                if let Some(t) = spec.pointer_mut("/jobTemplate/spec/template/spec") {
                    pod_spec(t);
                }
            }
        }
        // A custom resource: pruned to its schema and defaulted from it.
        _ => crate::crd::prune_and_default(resource, obj),
    }
}

/// Upstream's core/v1 `SetDefaults_ReplicationController`: selector and labels
/// from the template's labels when empty, one replica.
fn replication_controller(obj: &mut Value) {
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    if let Some(spec) = obj.get_mut("spec") {
        set_if_absent(spec, "replicas", json!(1));
        let empty = spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty());
        if let (true, Some(l)) = (empty, &template_labels) {
            spec["selector"] = l.clone();
        }
    }
    labels_from_template(obj, template_labels);
    template(obj);
}

fn labels_from_template(obj: &mut Value, template_labels: Option<Value>) {
    let Some(l) = template_labels else { return };
    let empty = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty());
    if let (true, Some(meta)) = (
        empty,
        obj.get_mut("metadata").and_then(Value::as_object_mut),
    ) {
        meta.insert("labels".into(), l);
    }
}

/// The label (and selector key) that ties a Job's pods to that one Job.
pub const JOB_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const LEGACY_JOB_NAME: &str = "job-name";

/// Upstream's `SetDefaults_Job` and the Job strategy's generated selector:
/// unless `manualSelector` is true, the template is labelled with the Job's
/// name and uid (both the `batch.kubernetes.io/` and the legacy keys) and the
/// selector gains `batch.kubernetes.io/controller-uid`. Labels the user set are
/// kept, so validation can refuse a selector that was not generated. Runs on
/// every write; with a uid already present it changes nothing the second time.
fn job(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(spec) = obj.get_mut("spec") else {
        return;
    };
    if spec.get("completions").is_none() && spec.get("parallelism").is_none() {
        set_if_absent(spec, "completions", json!(1));
    }
    set_if_absent(spec, "parallelism", json!(1));
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    set_if_absent(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    set_if_absent(spec, "completionMode", json!("NonIndexed"));
    set_if_absent(spec, "suspend", json!(false));
    let replacement = if spec.get("podFailurePolicy").is_some_and(|v| !v.is_null()) {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_if_absent(spec, "podReplacementPolicy", json!(replacement));
    if let Some(rules) = spec
        .pointer_mut("/podFailurePolicy/rules")
        .and_then(Value::as_array_mut)
    {
        for r in rules {
            if let Some(conds) = r.get_mut("onPodConditions").and_then(Value::as_array_mut) {
                for c in conds {
                    set_if_absent(c, "status", json!("True"));
                }
            }
        }
    }
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if let (false, Some(name), Some(uid)) = (manual, name, uid) {
        if !spec.get("template").is_some_and(Value::is_object) {
            spec["template"] = json!({});
        }
        let t = &mut spec["template"];
        if !t.get("metadata").is_some_and(Value::is_object) {
            t["metadata"] = json!({});
        }
        if !t["metadata"].get("labels").is_some_and(Value::is_object) {
            t["metadata"]["labels"] = json!({});
        }
        let labels = &mut t["metadata"]["labels"];
        for key in [LEGACY_JOB_NAME, JOB_NAME] {
            set_if_absent(labels, key, json!(name));
        }
        for key in [LEGACY_CONTROLLER_UID, JOB_CONTROLLER_UID] {
            set_if_absent(labels, key, json!(uid));
        }
        if !spec.get("selector").is_some_and(Value::is_object) {
            spec["selector"] = json!({});
        }
        if !spec["selector"]
            .get("matchLabels")
            .is_some_and(Value::is_object)
        {
            spec["selector"]["matchLabels"] = json!({});
        }
        set_if_absent(
            &mut spec["selector"]["matchLabels"],
            JOB_CONTROLLER_UID,
            json!(uid),
        );
    }
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    labels_from_template(obj, template_labels);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;

    #[test]
    fn deployment_and_pod_template_defaults() {
        let d = lookup("apps", "v1", "deployments").unwrap();
        let mut o = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}});
        apply(d, &mut o);
        assert_eq!(o["spec"]["replicas"], 1);
        assert_eq!(o["spec"]["strategy"]["type"], "RollingUpdate");
        let cs = &o["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["imagePullPolicy"], "Always");
        assert_eq!(cs[1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(cs[1]["ports"][0]["protocol"], "TCP");
        assert_eq!(o["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn job_selector_and_labels_are_generated_from_name_and_uid() {
        let j = lookup("batch", "v1", "jobs").unwrap();
        let mut o = json!({"metadata": {"name": "pi", "uid": "u1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}});
        apply(j, &mut o);
        assert_eq!(o["spec"]["completions"], 1);
        assert_eq!(o["spec"]["parallelism"], 1);
        assert_eq!(o["spec"]["backoffLimit"], 6);
        assert_eq!(o["spec"]["completionMode"], "NonIndexed");
        assert_eq!(
            o["spec"]["selector"],
            json!({"matchLabels": {JOB_CONTROLLER_UID: "u1"}})
        );
        let labels = &o["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels[JOB_NAME], "pi");
        assert_eq!(labels["controller-uid"], "u1");
        assert_eq!(&o["metadata"]["labels"], labels);
        let again = o.clone();
        apply(j, &mut o);
        assert_eq!(o, again);
        // Parallelism alone leaves completions unset (a work queue).
        let mut o = json!({"spec": {"parallelism": 3}});
        apply(j, &mut o);
        assert!(o["spec"].get("completions").is_none());
    }

    #[test]
    fn replication_controller_selector_from_template() {
        let rc = lookup("", "v1", "replicationcontrollers").unwrap();
        let mut o = json!({"metadata": {"name": "r"}, "spec": {"template": {
            "metadata": {"labels": {"app": "r"}}, "spec": {"containers": []}}}});
        apply(rc, &mut o);
        assert_eq!(o["spec"]["selector"], json!({"app": "r"}));
        assert_eq!(o["metadata"]["labels"], json!({"app": "r"}));
        assert_eq!(o["spec"]["replicas"], 1);
    }

    #[test]
    fn service_target_port_defaults_to_port() {
        let s = lookup("", "v1", "services").unwrap();
        let mut o =
            json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}});
        apply(s, &mut o);
        assert_eq!(o["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(o["spec"]["ports"][1]["targetPort"], "https");
        assert_eq!(o["spec"]["type"], "ClusterIP");
    }
}

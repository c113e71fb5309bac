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
        _ => {}
    }
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

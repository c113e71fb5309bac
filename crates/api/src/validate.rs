//! Per-kind validation beyond object metadata, with upstream's field paths and
//! messages. Each kind's rules live in one function.

use serde_json::Value;

use crate::registry::Resource;
use crate::selector::LabelSelector;
use crate::validation::FieldError;

pub(crate) fn pod_spec(spec: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required(&format!("{path}.containers"), "")),
        Some(cs) if cs.is_empty() => {
            errs.push(FieldError::required(&format!("{path}.containers"), ""))
        }
        Some(cs) => {
            let mut names = Vec::new();
            for (i, c) in cs.iter().enumerate() {
                let p = format!("{path}.containers[{i}]");
                match c.get("name").and_then(Value::as_str) {
                    None | Some("") => errs.push(FieldError::required(&format!("{p}.name"), "")),
                    Some(n) => {
                        if names.contains(&n) {
                            errs.push(FieldError::duplicate(&format!("{p}.name"), Value::from(n)));
                        }
                        names.push(n);
                    }
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    errs.push(FieldError::required(&format!("{p}.image"), ""));
                }
            }
        }
    }
}

fn workload(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec");
    let selector = spec.and_then(|s| s.get("selector"));
    match selector {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => match LabelSelector::from_json(sel) {
            Err(e) => errs.push(FieldError::invalid(
                "spec.selector",
                sel.clone(),
                &e.to_string(),
            )),
            Ok(s) if s.is_empty() => errs.push(FieldError::invalid(
                "spec.selector",
                sel.clone(),
                "empty selector is invalid for deployment",
            )),
            Ok(s) => {
                let labels = obj.pointer("/spec/template/metadata/labels");
                if !s.matches(labels.and_then(Value::as_object)) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        labels.cloned().unwrap_or(Value::Null),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    if let Some(r) = spec.and_then(|s| s.get("replicas")).and_then(Value::as_i64) {
        if r < 0 {
            errs.push(FieldError::invalid(
                "spec.replicas",
                Value::from(r),
                "must be greater than or equal to 0",
            ));
        }
    }
    pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
        errs,
    );
}

/// Kind-specific validation of `obj` (and of the change from `old` on update).
pub fn validate(resource: &Resource, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (resource.group, resource.kind) {
        ("", "Pod") => {
            pod_spec(obj.get("spec"), "spec", &mut errs);
            errs.extend(crate::ephemeral::validate(obj, old));
        }
        ("", "Service") => errs.extend(crate::service::validate(obj, old)),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet") => workload(obj, &mut errs),
        ("batch", _) | ("apps", "DaemonSet") | ("", "ReplicationController") => errs.extend(
            crate::workload_validation::validate(resource.group, resource.kind, obj, old),
        ),
        ("networking.k8s.io", "Ingress") => {
            errs.extend(crate::ingress_validation::ingress(obj, old))
        }
        ("policy", "PodDisruptionBudget") => errs.extend(crate::pdb::validate(obj)),
        ("networking.k8s.io", "IngressClass") => {
            errs.extend(crate::ingress_validation::ingress_class(obj, old))
        }
        (crate::crd::GROUP, "CustomResourceDefinition") => {
            errs.extend(crate::crd::validation::validate(obj, old))
        }
        _ => errs.extend(crate::crd::validate_object(resource, obj)),
    }
    errs
}

//! Ephemeral containers (`spec.ephemeralContainers`, written through
//! `pods/<name>/ephemeralcontainers`): upstream's
//! `validateEphemeralContainers` and `ValidatePodEphemeralContainersUpdate`,
//! field paths and words.

use serde_json::{json, Value};

use crate::validation::{dns1123_label, FieldError};

/// Container fields an ephemeral container may not set (upstream
/// `validateEphemeralContainers`' forbidden list).
const FORBIDDEN: &[&str] = &[
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resources",
    "resizePolicy",
];

fn list<'v>(obj: &'v Value, pointer: &str) -> &'v [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn name_of(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The checks of a pod's ephemeral containers, on create (`old` `None`:
/// none may be set) and on update (existing ones unchanged, new ones valid).
pub fn validate(pod: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = "spec.ephemeralContainers";
    let new = list(pod, "/spec/ephemeralContainers");
    let Some(old) = old else {
        if !new.is_empty() {
            errs.push(FieldError::forbidden(path, "cannot be set on create"));
        }
        return errs;
    };
    // Existing ones stay as they are, and stay.
    let before = list(old, "/spec/ephemeralContainers");
    for o in before {
        match new.iter().position(|n| name_of(n) == name_of(o)) {
            None => errs.push(FieldError::forbidden(
                path,
                &format!(
                    "existing ephemeral containers \"{}\" may not be removed\n",
                    name_of(o)
                ),
            )),
            Some(i) if new[i] != *o => errs.push(FieldError::forbidden(
                &format!("{path}[{i}]"),
                &format!(
                    "existing ephemeral containers \"{}\" may not be changed\n",
                    name_of(o)
                ),
            )),
            _ => {}
        }
    }
    let regular: Vec<&str> = list(pod, "/spec/containers")
        .iter()
        .chain(list(pod, "/spec/initContainers"))
        .map(name_of)
        .collect();
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in new.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = name_of(c);
        if name.is_empty() {
            errs.push(FieldError::required(&format!("{p}.name"), ""));
        } else {
            for msg in dns1123_label(name) {
                errs.push(FieldError::invalid(&format!("{p}.name"), json!(name), &msg));
            }
            if regular.contains(&name) || seen.contains(&name) {
                errs.push(FieldError::duplicate(&format!("{p}.name"), json!(name)));
            }
            seen.push(name);
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            errs.push(FieldError::required(&format!("{p}.image"), ""));
        }
        for f in FORBIDDEN {
            // Set means not the zero value: kubectl sends `resources: {}`.
            let set = match c.get(*f) {
                None | Some(Value::Null) => false,
                Some(Value::Object(m)) => !m.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(_) => true,
            };
            if set {
                errs.push(FieldError::forbidden(
                    &format!("{p}.{f}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        if let Some(target) = c.get("targetContainerName").and_then(Value::as_str) {
            if !list(pod, "/spec/containers")
                .iter()
                .any(|x| name_of(x) == target)
            {
                errs.push(FieldError {
                    kind: crate::validation::FieldErrorKind::NotFound,
                    field: format!("{p}.targetContainerName"),
                    value: Some(json!(target)),
                    detail: String::new(),
                });
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(eph: Value) -> Value {
        json!({"spec": {"containers": [{"name": "app", "image": "x"}], "ephemeralContainers": eph}})
    }

    #[test]
    fn ephemeral_containers_as_upstream() {
        let debugger =
            json!({"name": "debugger", "image": "busybox", "targetContainerName": "app"});
        let e = validate(&pod(json!([debugger.clone()])), None);
        assert_eq!(
            e[0].to_string(),
            "spec.ephemeralContainers: Forbidden: cannot be set on create"
        );
        let old = pod(json!([]));
        assert!(validate(&pod(json!([debugger.clone()])), Some(&old)).is_empty());
        let with = pod(json!([debugger.clone()]));
        let e = validate(&pod(json!([])), Some(&with));
        assert!(e[0].message().contains("may not be removed"));
        let bad = json!({"name": "app", "image": "busybox", "ports": [{"containerPort": 80}],
                         "targetContainerName": "nope"});
        let e = validate(&pod(json!([bad])), Some(&old));
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.ephemeralContainers[0].name",
                "spec.ephemeralContainers[0].ports",
                "spec.ephemeralContainers[0].targetContainerName"
            ]
        );
    }
}

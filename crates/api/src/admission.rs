//! Mutating admission that upstream's API server applies to new objects beyond
//! defaulting: here `DefaultTolerationSeconds`, which gives every new pod a
//! bounded tolerance of its node becoming not ready or unreachable, so the
//! taint-eviction controller moves it after that long instead of never; and
//! [`service_account`], upstream's `ServiceAccount` plugin.

pub mod service_account;

use serde_json::{json, Value};

/// The taint a node gets when its agent reports it not ready.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// The taint a node gets when its Lease expires.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Upstream's default for both (`--default-not-ready-toleration-seconds`,
/// `--default-unreachable-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Adds `NoExecute` tolerations of [`NOT_READY_TAINT`] and [`UNREACHABLE_TAINT`]
/// for `not_ready` / `unreachable` seconds to a new pod's spec, unless it already
/// tolerates that taint's `NoExecute` effect (a toleration of the key with no
/// effect, or one with an empty key, counts, as upstream).
pub fn default_toleration_seconds(pod: &mut Value, not_ready: i64, unreachable: i64) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for (key, seconds) in [
        (NOT_READY_TAINT, not_ready),
        (UNREACHABLE_TAINT, unreachable),
    ] {
        let tolerated = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || k.is_empty()) && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": seconds,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_both_to_a_pod_without_tolerations() {
        let mut p = json!({"spec": {"containers": []}});
        default_toleration_seconds(&mut p, 300, 60);
        assert_eq!(
            p["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            ])
        );
    }

    #[test]
    fn keeps_what_the_pod_already_tolerates() {
        let mut p = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
            {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
        ]}});
        default_toleration_seconds(&mut p, 300, 300);
        let t = p["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0]["tolerationSeconds"], 5);
        assert_eq!(t[2]["key"], "node.kubernetes.io/not-ready");
        // Tolerating everything (empty key, Exists) adds nothing.
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut all, 300, 300);
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1);
        // A NoSchedule-only toleration of the key does not cover NoExecute.
        let mut ns = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]}});
        default_toleration_seconds(&mut ns, 300, 300);
        assert_eq!(ns["spec"]["tolerations"].as_array().unwrap().len(), 3);
    }
}

//! policy/v1 PodDisruptionBudgets: validation as upstream's
//! `ValidatePodDisruptionBudgetSpec`, and the arithmetic the disruption
//! controller and the eviction subresource share (upstream's
//! `getExpectedPodCount` and `updatePdbStatus`).

use serde_json::{json, Value};

use crate::validation::FieldError;

/// The condition the disruption controller keeps on every budget.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// Its reasons (upstream `policy.SufficientPodsReason` and friends).
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";
/// `spec.unhealthyPodEvictionPolicy` values.
pub const IF_HEALTHY_BUDGET: &str = "IfHealthyBudget";
pub const ALWAYS_ALLOW: &str = "AlwaysAllow";

const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%', or '93%', regex used for validation is '[0-9]+%')";

/// minAvailable / maxUnavailable: an int or a percent string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrPercent {
    Int(i64),
    Percent(i64),
}

impl IntOrPercent {
    pub fn parse(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => n.as_i64().map(IntOrPercent::Int),
            Value::String(s) => {
                let digits = s.strip_suffix('%')?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                digits.parse().ok().map(IntOrPercent::Percent)
            }
            _ => None,
        }
    }

    /// The value against `total`, rounding a percent up as upstream's
    /// `GetScaledValueFromIntOrPercent(..., true)`.
    pub fn scaled(self, total: i64) -> i64 {
        match self {
            IntOrPercent::Int(n) => n,
            IntOrPercent::Percent(p) => (p * total + 99) / 100,
        }
    }
}

fn int_or_percent(spec: &Value, field: &str, errs: &mut Vec<FieldError>) {
    let Some(v) = spec.get(field).filter(|v| !v.is_null()) else {
        return;
    };
    let path = format!("spec.{field}");
    match (v, IntOrPercent::parse(v)) {
        (Value::String(_), None) | (_, None) => {
            errs.push(FieldError::invalid(&path, v.clone(), PERCENT_MSG))
        }
        (_, Some(IntOrPercent::Int(n))) if n < 0 => errs.push(FieldError::invalid(
            &path,
            v.clone(),
            "must be greater than or equal to 0",
        )),
        (_, Some(IntOrPercent::Percent(p))) if p > 100 => errs.push(FieldError::invalid(
            &path,
            v.clone(),
            "must not be greater than 100%",
        )),
        _ => {}
    }
}

/// Upstream's `ValidatePodDisruptionBudgetSpec` (field paths and words).
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let set = |f: &str| spec.get(f).is_some_and(|v| !v.is_null());
    if set("minAvailable") && set("maxUnavailable") {
        errs.push(FieldError::invalid(
            "spec.minAvailable",
            spec["minAvailable"].clone(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    int_or_percent(spec, "minAvailable", &mut errs);
    int_or_percent(spec, "maxUnavailable", &mut errs);
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) {
        if let Err(e) = crate::selector::LabelSelector::from_json(sel) {
            errs.push(FieldError::invalid(
                "spec.selector",
                sel.clone(),
                &e.to_string(),
            ));
        }
    }
    if let Some(p) = spec
        .get("unhealthyPodEvictionPolicy")
        .filter(|v| !v.is_null())
    {
        let s = p.as_str().unwrap_or("");
        if s != IF_HEALTHY_BUDGET && s != ALWAYS_ALLOW {
            errs.push(FieldError::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                p.clone(),
                &[ALWAYS_ALLOW, IF_HEALTHY_BUDGET],
            ));
        }
    }
    errs
}

/// The budget's `(expectedPods, desiredHealthy)`: `pods` is how many pods it
/// selects, `scale` the summed replicas of their controllers (upstream reads
/// it only when the budget needs it: maxUnavailable, or a percent
/// minAvailable). `None` scale where it is needed is a sync failure.
pub fn expected(spec: &Value, pods: i64, scale: Option<i64>) -> Result<(i64, i64), String> {
    let min = spec.get("minAvailable").and_then(IntOrPercent::parse);
    let max = spec.get("maxUnavailable").and_then(IntOrPercent::parse);
    match (min, max) {
        (_, Some(max)) => {
            let expected = scale.ok_or("found no controllers for the selected pods")?;
            Ok((expected, (expected - max.scaled(expected)).max(0)))
        }
        (Some(IntOrPercent::Int(n)), None) => Ok((pods, n)),
        (Some(p @ IntOrPercent::Percent(_)), None) => {
            let expected = scale.ok_or("found no controllers for the selected pods")?;
            Ok((expected, p.scaled(expected)))
        }
        // Neither set: upstream defaults minAvailable to 1.
        (None, None) => Ok((pods, 1)),
    }
}

/// upstream `updatePdbStatus`'s disruptionsAllowed.
pub fn disruptions_allowed(current_healthy: i64, desired_healthy: i64, expected: i64) -> i64 {
    let allowed = current_healthy - desired_healthy;
    if expected <= 0 || allowed <= 0 {
        0
    } else {
        allowed
    }
}

/// The DisruptionAllowed condition for `allowed`, keeping the old transition
/// time when the status is unchanged.
pub fn condition(allowed: i64, old: Option<&Value>, generation: i64, now: &str) -> Value {
    let (status, reason) = if allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    let since = old
        .filter(|c| c["status"] == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    json!({
        "type": DISRUPTION_ALLOWED,
        "status": status,
        "reason": reason,
        "message": "",
        "observedGeneration": generation,
        "lastTransitionTime": since,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_round_up_and_bad_ones_are_refused() {
        assert_eq!(
            IntOrPercent::parse(&json!("50%")),
            Some(IntOrPercent::Percent(50))
        );
        assert_eq!(IntOrPercent::parse(&json!("5")), None);
        assert_eq!(IntOrPercent::Percent(50).scaled(3), 2);
        assert_eq!(IntOrPercent::Percent(34).scaled(3), 2);
        let e = validate(&json!({"spec": {"minAvailable": "x%"}}));
        assert_eq!(e[0].field, "spec.minAvailable");
        assert!(
            e[0].message().contains("a valid percent string"),
            "{}",
            e[0].message()
        );
        let e = validate(&json!({"spec": {"minAvailable": 1, "maxUnavailable": 1}}));
        assert!(e[0]
            .message()
            .contains("minAvailable and maxUnavailable cannot be both set"));
        let e = validate(&json!({"spec": {"maxUnavailable": -1}}));
        assert!(e[0]
            .message()
            .contains("must be greater than or equal to 0"));
        let e = validate(&json!({"spec": {"maxUnavailable": "101%"}}));
        assert!(e[0].message().contains("must not be greater than 100%"));
        assert!(validate(&json!({"spec": {"minAvailable": "100%", "selector": {}}})).is_empty());
    }

    #[test]
    fn expected_and_allowed_as_upstream() {
        // minAvailable 2 of 3 healthy pods: one may go.
        let (exp, want) = expected(&json!({"minAvailable": 2}), 3, None).unwrap();
        assert_eq!((exp, want), (3, 2));
        assert_eq!(disruptions_allowed(3, want, exp), 1);
        assert_eq!(disruptions_allowed(2, want, exp), 0);
        // maxUnavailable 1 of a 4-replica controller.
        assert_eq!(
            expected(&json!({"maxUnavailable": 1}), 4, Some(4)),
            Ok((4, 3))
        );
        assert_eq!(
            expected(&json!({"maxUnavailable": "50%"}), 4, Some(4)),
            Ok((4, 2))
        );
        assert_eq!(
            expected(&json!({"minAvailable": "50%"}), 3, Some(3)),
            Ok((3, 2))
        );
        assert!(expected(&json!({"maxUnavailable": 1}), 2, None).is_err());
        assert_eq!(disruptions_allowed(0, 0, 0), 0);
    }
}

//! `POST pods/<name>/eviction` (policy/v1 `Eviction`): what `kubectl drain`
//! uses to move pods off a node, as upstream's eviction REST
//! (`pkg/registry/core/pod/storage/eviction.go`): a pod that one
//! PodDisruptionBudget covers goes only when the budget allows a disruption,
//! which the eviction takes from `status.disruptionsAllowed` (and records in
//! `status.disruptedPods`) before the pod is deleted; otherwise 429
//! TooManyRequests, which kubectl retries. The pod gets the DisruptionTarget
//! condition before it is deleted.

use axum::response::Response;
use http::HeaderMap;
use serde_json::{json, Value};

use crate::body;
use crate::delete::{self, DeleteOptions};
use crate::request::{Query, Target};
use crate::response;
use crate::rest::{self, WriteOptions};
use crate::server::Api;
use skiff_api::pdb;
use skiff_api::registry;
use skiff_api::selector::LabelSelector;
use skiff_api::StatusError;

/// Upstream's words when a budget forbids the eviction.
pub const VIOLATES_BUDGET: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";
/// Upstream's `MaxDisruptedPodSize`.
const MAX_DISRUPTED_PODS: usize = 2000;

pub async fn evict(
    api: &Api,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, StatusError> {
    let media = body::content_type(headers);
    let eviction = body::decode_object(&media, bytes)?;
    let name = t.name.as_deref().unwrap_or_default();
    check(&eviction, name)?;
    let opts = match eviction.get("deleteOptions") {
        Some(o) if o.is_object() => DeleteOptions::from_value(q, o)?,
        _ => DeleteOptions::from_value(q, &json!({}))?,
    };
    let pod_target = Target {
        subresource: None,
        ..t.clone()
    };
    let pod = api
        .objects
        .get(t.resource, t.namespace.as_deref(), name)
        .await?;
    if !can_ignore_budget(&pod) {
        if let Some(budget) = budget_of(api, t, &pod).await? {
            take_disruption(api, t, &pod, &budget).await?;
        }
    }
    mark_disruption_target(api, t).await?;
    delete::delete(api, &pod_target, &opts).await?;
    Ok(response::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Upstream's `canIgnorePDB`: a pod that is done, not started, or already
/// going disrupts nothing.
fn can_ignore_budget(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    matches!(phase, Some("Succeeded" | "Failed" | "Pending"))
        || pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|d| !d.is_null())
}

fn pdb_resource() -> Result<&'static registry::Resource, StatusError> {
    registry::lookup("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| StatusError::internal("poddisruptionbudgets are not served"))
}

/// The one budget selecting `pod`, if any; more than one is refused as
/// upstream does.
async fn budget_of(api: &Api, t: &Target, pod: &Value) -> Result<Option<Value>, StatusError> {
    let pdbs = pdb_resource()?;
    let page = api
        .objects
        .list(pdbs, t.namespace.as_deref(), None, None)
        .await?;
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    let mut matching: Vec<Value> = page
        .items
        .into_iter()
        .filter(|b| {
            let sel = b.pointer("/spec/selector").unwrap_or(&Value::Null);
            // A nil or empty selector matches nothing here, as upstream.
            match LabelSelector::from_json(sel) {
                Ok(s) => !sel.is_null() && !s.is_empty() && s.matches(labels),
                Err(_) => false,
            }
        })
        .collect();
    if matching.len() > 1 {
        return Err(StatusError::internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    Ok(matching.pop())
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn status_i64(budget: &Value, field: &str) -> i64 {
    budget
        .pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn write_options() -> WriteOptions {
    WriteOptions {
        dry_run: false,
        validation: body::FieldValidation::Ignore,
        field_manager: None,
    }
}

/// Takes one disruption from the budget (upstream `checkAndDecrement`), or
/// says why not. An unready pod goes without taking one when the budget's
/// unhealthy-pod policy allows it.
async fn take_disruption(
    api: &Api,
    t: &Target,
    pod: &Value,
    budget: &Value,
) -> Result<(), StatusError> {
    if !is_ready(pod) {
        let policy = budget
            .pointer("/spec/unhealthyPodEvictionPolicy")
            .and_then(Value::as_str)
            .unwrap_or(pdb::IF_HEALTHY_BUDGET);
        let desired = status_i64(budget, "desiredHealthy");
        if policy == pdb::ALWAYS_ALLOW
            || (status_i64(budget, "currentHealthy") >= desired && desired > 0)
        {
            return Ok(());
        }
    }
    let pod_name = t.name.clone().unwrap_or_default();
    let budget_name = budget
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let status_target = Target {
        resource: pdb_resource()?,
        namespace: t.namespace.clone(),
        name: Some(budget_name),
        subresource: Some("status".into()),
    };
    let now = crate::strategy::now_rfc3339();
    rest::patch_with(api, &status_target, &write_options(), |cur| {
        decrement(cur, &pod_name, &now)
    })
    .await?;
    Ok(())
}

/// The budget with one disruption taken for `pod`, or upstream's refusal.
fn decrement(budget: &Value, pod: &str, now: &str) -> Result<Value, StatusError> {
    let name = budget
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let generation = budget
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status_i64(budget, "observedGeneration") < generation {
        return Err(too_many_requests(format!(
            "The disruption budget {name} is still being processed by the server."
        )));
    }
    let allowed = status_i64(budget, "disruptionsAllowed");
    let forbidden = |why: &str| {
        let mut e = StatusError::forbidden(pdb_resource()?, name, why);
        // Upstream names the resource in the singular here.
        e.message = format!("poddisruptionbudget.policy \"{name}\" is forbidden: {why}");
        Ok::<_, StatusError>(e)
    };
    if allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative")?);
    }
    let disrupted = budget
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        )?);
    }
    if allowed == 0 {
        return Err(too_many_requests(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status_i64(budget, "desiredHealthy"),
            status_i64(budget, "currentHealthy"),
        )));
    }
    let mut out = budget.clone();
    let status = &mut out["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(now);
    if allowed - 1 == 0 {
        let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
        let old = conditions
            .iter()
            .find(|c| c["type"] == pdb::DISRUPTION_ALLOWED)
            .cloned();
        let mut rest: Vec<Value> = conditions
            .into_iter()
            .filter(|c| c["type"] != pdb::DISRUPTION_ALLOWED)
            .collect();
        rest.push(pdb::condition(0, old.as_ref(), generation, now));
        status["conditions"] = Value::Array(rest);
    }
    Ok(out)
}

/// Upstream's `NewTooManyRequests(msg, 0)` with a DisruptionBudget cause.
fn too_many_requests(cause: String) -> StatusError {
    StatusError {
        code: 429,
        reason: "TooManyRequests",
        message: VIOLATES_BUDGET.to_string(),
        details: Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]})),
    }
}

/// Puts the DisruptionTarget condition on the pod (upstream
/// `addConditionAndDeletePod`), so its owner sees why it goes.
async fn mark_disruption_target(api: &Api, t: &Target) -> Result<(), StatusError> {
    let status_target = Target {
        subresource: Some("status".into()),
        ..t.clone()
    };
    let now = crate::strategy::now_rfc3339();
    let r = rest::patch_with(api, &status_target, &write_options(), |cur| {
        let mut pod = cur.clone();
        let conditions = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "DisruptionTarget") {
            return Ok(pod);
        }
        let mut conditions = conditions;
        conditions.push(json!({
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting",
            "lastProbeTime": null,
            "lastTransitionTime": now,
        }));
        if !pod["status"].is_object() {
            pod["status"] = json!({});
        }
        pod["status"]["conditions"] = Value::Array(conditions);
        Ok(pod)
    })
    .await;
    match r {
        Ok(_) => Ok(()),
        // Gone meanwhile: the delete below says so.
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The body must be an Eviction naming the pod of the URL (upstream's checks
/// and words).
fn check(eviction: &Value, name: &str) -> Result<(), StatusError> {
    let kind = eviction.get("kind").and_then(Value::as_str).unwrap_or("");
    if !kind.is_empty() && kind != "Eviction" {
        return Err(StatusError::bad_request(format!(
            "the body of an eviction must be an Eviction, not {kind}"
        )));
    }
    let given = eviction
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if given != name {
        return Err(StatusError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eviction_must_name_the_pod() {
        let ok =
            json!({"kind": "Eviction", "apiVersion": "policy/v1", "metadata": {"name": "web-1"}});
        assert!(check(&ok, "web-1").is_ok());
        let other = json!({"kind": "Eviction", "metadata": {"name": "web-2"}});
        let e = check(&other, "web-1").unwrap_err();
        assert!(format!("{e:?}").contains("name in URL does not match name in Eviction object"));
        assert!(check(
            &json!({"kind": "Pod", "metadata": {"name": "web-1"}}),
            "web-1"
        )
        .is_err());
    }

    fn budget(allowed: i64, observed: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": 1},
               "status": {"observedGeneration": observed, "disruptionsAllowed": allowed,
                          "currentHealthy": 2, "desiredHealthy": 2}})
    }

    #[test]
    fn a_budget_with_no_room_refuses_with_429() {
        let e = decrement(&budget(0, 1), "web-1", "now").unwrap_err();
        assert_eq!((e.code, e.reason), (429, "TooManyRequests"));
        assert_eq!(e.message, VIOLATES_BUDGET);
        let cause = &e.details.unwrap()["causes"][0];
        assert_eq!(cause["reason"], "DisruptionBudget");
        assert_eq!(
            cause["message"],
            "The disruption budget web needs 2 healthy pods and has 2 currently"
        );
        let e = decrement(&budget(1, 0), "web-1", "now").unwrap_err();
        assert_eq!(e.code, 429, "a budget not yet observed refuses");
    }

    #[test]
    fn an_allowed_eviction_takes_one_disruption() {
        let after = decrement(&budget(1, 1), "web-1", "now").unwrap();
        assert_eq!(after["status"]["disruptionsAllowed"], 0);
        assert_eq!(after["status"]["disruptedPods"]["web-1"], "now");
        assert_eq!(after["status"]["conditions"][0]["status"], "False");
        assert_eq!(
            after["status"]["conditions"][0]["reason"],
            "InsufficientPods"
        );
    }

    #[test]
    fn finished_pending_or_deleted_pods_ignore_budgets() {
        assert!(can_ignore_budget(
            &json!({"status": {"phase": "Succeeded"}})
        ));
        assert!(can_ignore_budget(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_budget(
            &json!({"metadata": {"deletionTimestamp": "x"}, "status": {"phase": "Running"}})
        ));
        assert!(!can_ignore_budget(&json!({"status": {"phase": "Running"}})));
    }
}

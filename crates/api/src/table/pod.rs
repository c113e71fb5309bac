//! The Pod printer: READY, the STATUS reason kubectl users know, RESTARTS.

use serde_json::{json, Value};

use super::{arr_at, at, col, docs, i64_at, name, str_at, wide, Ctx, Printer, Row, AGE, NAME};
use crate::fields::pod_primary_ip;

pub(crate) const POD: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        col(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
        ),
        col(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        wide("IP", "string", docs::POD_IP),
        wide("Node", "string", docs::POD_NODE_NAME),
        wide("Nominated Node", "string", docs::POD_NOMINATED_NODE),
        wide("Readiness Gates", "string", docs::POD_READINESS_GATES),
    ],
    row: pod_row,
};

/// Set on pods of an unreachable node (upstream `node.NodeUnreachablePodReason`).
const NODE_UNREACHABLE_REASON: &str = "NodeLost";

fn has_condition(pod: &Value, ty: &str) -> bool {
    arr_at(pod, &["status", "conditions"])
        .iter()
        .any(|c| str_at(c, &["type"]) == ty && str_at(c, &["status"]) == "True")
}

/// The latest `lastState.terminated.finishedAt`, if later than `current`.
fn later_termination(
    status: &Value,
    current: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let finished = at(status, &["lastState", "terminated"])
        .map(|t| str_at(t, &["finishedAt"]))
        .and_then(super::parse_time);
    match (current, finished) {
        (Some(c), Some(f)) if c < f => Some(f),
        (None, Some(f)) => Some(f),
        (c, _) => c,
    }
}

fn terminated_reason(term: &Value, prefix: &str) -> String {
    let reason = str_at(term, &["reason"]);
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = i64_at(term, &["signal"]);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", i64_at(term, &["exitCode"]))
    }
}

fn pod_row(pod: &Value, ctx: &Ctx) -> Row {
    let init_specs = arr_at(pod, &["spec", "initContainers"]);
    let restartable = |container_name: &str| {
        init_specs.iter().any(|c| {
            str_at(c, &["name"]) == container_name && str_at(c, &["restartPolicy"]) == "Always"
        })
    };
    let mut total = arr_at(pod, &["spec", "containers"]).len();
    total += init_specs
        .iter()
        .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
        .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut restartable_restarts = 0i64;
    let mut last_restart = None;
    let mut last_restartable_restart = None;

    let phase = str_at(pod, &["status", "phase"]);
    let mut reason = match str_at(pod, &["status", "reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    for c in arr_at(pod, &["status", "conditions"]) {
        if str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    let mut row = Row::new(Vec::new());
    row.conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    };

    // The first init container that has not finished decides the status.
    let mut initializing = false;
    let init_statuses = arr_at(pod, &["status", "initContainerStatuses"]);
    for (i, cs) in init_statuses.iter().enumerate() {
        let is_restartable = restartable(str_at(cs, &["name"]));
        restarts += i64_at(cs, &["restartCount"]);
        last_restart = later_termination(cs, last_restart);
        if is_restartable {
            restartable_restarts += i64_at(cs, &["restartCount"]);
            last_restartable_restart = later_termination(cs, last_restartable_restart);
        }
        let terminated = at(cs, &["state", "terminated"]).filter(|t| t.is_object());
        let waiting_reason = at(cs, &["state", "waiting"])
            .filter(|w| w.is_object())
            .map(|w| str_at(w, &["reason"]));
        if terminated.is_some_and(|t| i64_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if is_restartable && at(cs, &["started"]).and_then(Value::as_bool) == Some(true) {
            if at(cs, &["ready"]).and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = terminated_reason(t, "Init:");
        } else if let Some(w) = waiting_reason.filter(|w| !w.is_empty() && *w != "PodInitializing")
        {
            reason = format!("Init:{w}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for cs in arr_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += i64_at(cs, &["restartCount"]);
            last_restart = later_termination(cs, last_restart);
            let waiting = at(cs, &["state", "waiting"]).filter(|w| w.is_object());
            let terminated = at(cs, &["state", "terminated"]).filter(|t| t.is_object());
            let running = at(cs, &["state", "running"]).is_some_and(Value::is_object);
            if let Some(w) = waiting
                .map(|w| str_at(w, &["reason"]))
                .filter(|r| !r.is_empty())
            {
                reason = w.to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if at(cs, &["ready"]).and_then(Value::as_bool) == Some(true) && running {
                has_running = true;
                ready += 1;
            }
        }
        // A finished container next to a running one (a sidecar pattern) is not "Completed".
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = at(pod, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null());
    if deleting && str_at(pod, &["status", "reason"]) == NODE_UNREACHABLE_REASON {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", super::human_duration(ctx.now - t))
        }
        _ => restarts.to_string(),
    };

    let or_none = |s: String| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s
        }
    };
    let gates = arr_at(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr_at(pod, &["status", "conditions"]);
        let true_count = gates
            .iter()
            .filter(|g| {
                let ty = str_at(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| str_at(c, &["type"]) == ty)
                    .is_some_and(|c| str_at(c, &["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };

    row.cells = vec![
        name(pod).into(),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        ctx.age(pod).into(),
        or_none(pod_primary_ip(pod)).into(),
        or_none(str_at(pod, &["spec", "nodeName"]).to_string()).into(),
        or_none(str_at(pod, &["status", "nominatedNodeName"]).to_string()).into(),
        readiness_gates.into(),
    ];
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_upstream_order() {
        let names: Vec<&str> = POD.columns.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
    }
}

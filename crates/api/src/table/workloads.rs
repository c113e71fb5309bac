//! Printers for workload controllers: apps, batch and ReplicationController.

use serde_json::Value;

use super::{
    arr_at, at, col, docs, i64_at, layout_containers, name, parse_time, str_at, wide, Ctx, Printer,
    Row, AGE, CONTAINERS, IMAGES, NAME,
};
use crate::selector::{format_label_selector, format_labels, LabelSelector};

/// `spec.replicas`, with the v1 default of 1 when absent.
fn replicas(obj: &Value) -> i64 {
    at(obj, &["spec", "replicas"])
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn template_containers(obj: &Value, template: &[&str]) -> (String, String) {
    let mut path: Vec<&str> = template.to_vec();
    path.extend(["spec", "containers"]);
    layout_containers(arr_at(obj, &path))
}

pub(crate) const DEPLOYMENT: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", "Number of the pod with ready state"),
        col("Up-to-date", "string", docs::DEPLOY_UPDATED),
        col("Available", "string", docs::DEPLOY_AVAILABLE),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", docs::DEPLOY_SELECTOR),
    ],
    row: deployment_row,
};

fn deployment_row(d: &Value, ctx: &Ctx) -> Row {
    let (names, images) = template_containers(d, &["spec", "template"]);
    // Unlike the other workloads, a nil selector prints empty and a bad one `<invalid>`.
    let selector =
        match LabelSelector::from_json(at(d, &["spec", "selector"]).unwrap_or(&Value::Null)) {
            Ok(s) => s.to_string(),
            Err(_) => "<invalid>".to_string(),
        };
    Row::new(vec![
        name(d).into(),
        format!(
            "{}/{}",
            i64_at(d, &["status", "readyReplicas"]),
            replicas(d)
        )
        .into(),
        i64_at(d, &["status", "updatedReplicas"]).into(),
        i64_at(d, &["status", "availableReplicas"]).into(),
        ctx.age(d).into(),
        names.into(),
        images.into(),
        selector.into(),
    ])
}

pub(crate) const REPLICA_SET: Printer = Printer {
    columns: &[
        NAME,
        col("Desired", "integer", docs::RS_REPLICAS),
        col("Current", "integer", docs::RS_STATUS_REPLICAS),
        col("Ready", "integer", docs::RS_READY),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", docs::RS_SELECTOR),
    ],
    row: replica_set_row,
};

fn replica_set_row(rs: &Value, ctx: &Ctx) -> Row {
    let (names, images) = template_containers(rs, &["spec", "template"]);
    Row::new(vec![
        name(rs).into(),
        replicas(rs).into(),
        i64_at(rs, &["status", "replicas"]).into(),
        i64_at(rs, &["status", "readyReplicas"]).into(),
        ctx.age(rs).into(),
        names.into(),
        images.into(),
        format_label_selector(at(rs, &["spec", "selector"])).into(),
    ])
}

pub(crate) const REPLICATION_CONTROLLER: Printer = Printer {
    columns: &[
        NAME,
        col("Desired", "integer", docs::RC_REPLICAS),
        col("Current", "integer", docs::RC_STATUS_REPLICAS),
        col("Ready", "integer", docs::RC_READY),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", docs::RC_SELECTOR),
    ],
    row: replication_controller_row,
};

fn replication_controller_row(rc: &Value, ctx: &Ctx) -> Row {
    let (names, images) = template_containers(rc, &["spec", "template"]);
    Row::new(vec![
        name(rc).into(),
        replicas(rc).into(),
        i64_at(rc, &["status", "replicas"]).into(),
        i64_at(rc, &["status", "readyReplicas"]).into(),
        ctx.age(rc).into(),
        names.into(),
        images.into(),
        format_labels(at(rc, &["spec", "selector"]).and_then(Value::as_object)).into(),
    ])
}

pub(crate) const STATEFUL_SET: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", "Number of the pod with ready state"),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    row: stateful_set_row,
};

fn stateful_set_row(sts: &Value, ctx: &Ctx) -> Row {
    let (names, images) = template_containers(sts, &["spec", "template"]);
    Row::new(vec![
        name(sts).into(),
        format!(
            "{}/{}",
            i64_at(sts, &["status", "readyReplicas"]),
            replicas(sts)
        )
        .into(),
        ctx.age(sts).into(),
        names.into(),
        images.into(),
    ])
}

pub(crate) const DAEMON_SET: Printer = Printer {
    columns: &[
        NAME,
        col("Desired", "integer", docs::DS_DESIRED),
        col("Current", "integer", docs::DS_CURRENT),
        col("Ready", "integer", docs::DS_READY),
        col("Up-to-date", "integer", docs::DS_UPDATED),
        col("Available", "integer", docs::DS_AVAILABLE),
        col("Node Selector", "string", docs::POD_NODE_SELECTOR),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", docs::DS_SELECTOR),
    ],
    row: daemon_set_row,
};

fn daemon_set_row(ds: &Value, ctx: &Ctx) -> Row {
    let (names, images) = template_containers(ds, &["spec", "template"]);
    let status = |f: &str| i64_at(ds, &["status", f]);
    let node_selector =
        at(ds, &["spec", "template", "spec", "nodeSelector"]).and_then(Value::as_object);
    Row::new(vec![
        name(ds).into(),
        status("desiredNumberScheduled").into(),
        status("currentNumberScheduled").into(),
        status("numberReady").into(),
        status("updatedNumberScheduled").into(),
        status("numberAvailable").into(),
        format_labels(node_selector).into(),
        ctx.age(ds).into(),
        names.into(),
        images.into(),
        format_label_selector(at(ds, &["spec", "selector"])).into(),
    ])
}

pub(crate) const CONTROLLER_REVISION: Printer = Printer {
    columns: &[
        NAME,
        col("Controller", "string", "Controller of the object"),
        col(
            "Revision",
            "integer",
            "Revision indicates the revision of the state represented by Data.",
        ),
        AGE,
    ],
    row: controller_revision_row,
};

/// Upstream `printControllerRevision`: the controller as `kind.group/name`.
fn controller_revision_row(r: &Value, ctx: &Ctx) -> Row {
    let controller = arr_at(r, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| {
            let kind = str_at(o, &["kind"]).to_lowercase();
            let group = str_at(o, &["apiVersion"]).rsplit_once('/').map(|(g, _)| g);
            let name = str_at(o, &["name"]);
            match group {
                Some(g) => format!("{kind}.{g}/{name}"),
                None => format!("{kind}/{name}"),
            }
        })
        .unwrap_or_else(|| "<none>".to_string());
    Row::new(vec![
        name(r).into(),
        controller.into(),
        i64_at(r, &["revision"]).into(),
        ctx.age(r).into(),
    ])
}

pub(crate) const JOB: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "Status of the job."),
        col("Completions", "string", docs::JOB_SUCCEEDED),
        col("Duration", "string", "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", docs::JOB_SELECTOR),
    ],
    row: job_row,
};

/// Upstream `hasJobCondition`: the first condition of the type decides.
fn job_condition(job: &Value, ty: &str) -> bool {
    arr_at(job, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == ty)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

fn job_row(job: &Value, ctx: &Ctx) -> Row {
    let succeeded = i64_at(job, &["status", "succeeded"]);
    let completions = match at(job, &["spec", "completions"]).and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match i64_at(job, &["spec", "parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let time = |f: &str| {
        at(job, &["status", f])
            .and_then(Value::as_str)
            .and_then(parse_time)
    };
    let duration = match (time("startTime"), time("completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => super::human_duration(ctx.now - start),
        (Some(start), Some(end)) => super::human_duration(end - start),
    };
    let deleting = at(job, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null());
    let status = if job_condition(job, "Complete") {
        "Complete"
    } else if job_condition(job, "Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if job_condition(job, "Suspended") {
        "Suspended"
    } else if job_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = template_containers(job, &["spec", "template"]);
    Row::new(vec![
        name(job).into(),
        status.into(),
        completions.into(),
        duration.into(),
        ctx.age(job).into(),
        names.into(),
        images.into(),
        format_label_selector(at(job, &["spec", "selector"])).into(),
    ])
}

pub(crate) const CRON_JOB: Printer = Printer {
    columns: &[
        NAME,
        col("Schedule", "string", docs::CRON_SCHEDULE),
        col("Timezone", "string", docs::CRON_TIMEZONE),
        col("Suspend", "boolean", docs::CRON_SUSPEND),
        col("Active", "integer", docs::CRON_ACTIVE),
        col("Last Schedule", "string", docs::CRON_LAST_SCHEDULE),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", docs::JOB_SELECTOR),
    ],
    row: cron_job_row,
};

fn cron_job_row(cj: &Value, ctx: &Ctx) -> Row {
    let last_schedule = match at(cj, &["status", "lastScheduleTime"]).filter(|v| !v.is_null()) {
        Some(t) => ctx.since(Some(t)),
        None => "<none>".to_string(),
    };
    let time_zone = at(cj, &["spec", "timeZone"])
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    let suspend = match at(cj, &["spec", "suspend"]).and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let job_template = ["spec", "jobTemplate", "spec", "template"];
    let (names, images) = template_containers(cj, &job_template);
    Row::new(vec![
        name(cj).into(),
        str_at(cj, &["spec", "schedule"]).into(),
        time_zone.into(),
        suspend.into(),
        arr_at(cj, &["status", "active"]).len().into(),
        last_schedule.into(),
        ctx.age(cj).into(),
        names.into(),
        images.into(),
        format_label_selector(at(cj, &["spec", "jobTemplate", "spec", "selector"])).into(),
    ])
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use crate::table::{table, IncludeObject};

    #[test]
    fn controller_revisions_name_their_controller() {
        let now = Utc
            .with_ymd_and_hms(2024, 6, 1, 12, 0, 0)
            .single()
            .expect("valid time");
        let r = json!({"metadata": {"name": "agent-6b9c", "creationTimestamp": "2024-06-01T11:58:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                "uid": "u", "controller": true}]}, "revision": 3});
        let t = table(
            "apps",
            "ControllerRevision",
            &[r],
            now,
            IncludeObject::None,
            None,
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["Name", "Controller", "Revision", "Age"]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["agent-6b9c", "daemonset.apps/agent", 3, "2m"])
        );
    }
}

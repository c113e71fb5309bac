//! Validation of Jobs, CronJobs, DaemonSets and ReplicationControllers with
//! upstream's field paths and messages (pkg/apis/batch/validation,
//! pkg/apis/apps/validation, pkg/apis/core/validation).

use serde_json::{json, Value};

use crate::cron;
use crate::defaults::JOB_CONTROLLER_UID;
use crate::selector::LabelSelector;
use crate::validate::pod_spec;
use crate::validation::FieldError;

const NONNEGATIVE: &str = "must be greater than or equal to 0";

fn nonnegative(spec: Option<&Value>, key: &str, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(n) = spec.and_then(|s| s.get(key)).and_then(Value::as_i64) {
        if n < 0 {
            errs.push(FieldError::invalid(
                &format!("{path}.{key}"),
                json!(n),
                NONNEGATIVE,
            ));
        }
    }
}

fn restart_policy(
    template_spec: Option<&Value>,
    path: &str,
    allowed: &[&str],
) -> Option<FieldError> {
    let policy = template_spec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("Always");
    (!allowed.contains(&policy)).then(|| {
        FieldError::not_supported(&format!("{path}.restartPolicy"), json!(policy), allowed)
    })
}

/// A selector that must be present, non-empty and match the template's labels.
fn label_selector(spec: Option<&Value>, path: &str, kind: &str, errs: &mut Vec<FieldError>) {
    let Some(sel) = spec
        .and_then(|s| s.get("selector"))
        .filter(|s| !s.is_null())
    else {
        errs.push(FieldError::required(&format!("{path}.selector"), ""));
        return;
    };
    match LabelSelector::from_json(sel) {
        Err(e) => errs.push(FieldError::invalid(
            &format!("{path}.selector"),
            sel.clone(),
            &e.to_string(),
        )),
        Ok(s) if s.is_empty() => errs.push(FieldError::invalid(
            &format!("{path}.selector"),
            sel.clone(),
            &format!("empty selector is invalid for {kind}"),
        )),
        Ok(s) => {
            let labels = spec.and_then(|s| s.pointer("/template/metadata/labels"));
            if !s.matches(labels.and_then(Value::as_object)) {
                errs.push(FieldError::invalid(
                    &format!("{path}.template.metadata.labels"),
                    labels.cloned().unwrap_or(Value::Null),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
}

/// `JobSpec` at `path` (`spec`, or `spec.jobTemplate.spec` of a CronJob).
fn job_spec(spec: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative(spec, key, path, errs);
    }
    let mode = spec
        .and_then(|s| s.get("completionMode"))
        .and_then(Value::as_str);
    match mode {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if spec
                .and_then(|s| s.get("completions"))
                .is_none_or(Value::is_null)
            {
                errs.push(FieldError::required(
                    &format!("{path}.completions"),
                    "when completion mode is Indexed",
                ));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(
            &format!("{path}.completionMode"),
            json!(other),
            &["NonIndexed", "Indexed"],
        )),
    }
    let success_policy = spec
        .and_then(|s| s.get("successPolicy"))
        .filter(|v| !v.is_null());
    if success_policy.is_some() && mode != Some("Indexed") {
        errs.push(FieldError::invalid(
            &format!("{path}.completionMode"),
            mode.map_or(Value::Null, |m| json!(m)),
            "requires indexed completion mode",
        ));
    }
    let template_spec = spec.and_then(|s| s.pointer("/template/spec"));
    if let Some(e) = restart_policy(
        template_spec,
        &format!("{path}.template.spec"),
        &["OnFailure", "Never"],
    ) {
        errs.push(e);
    }
    if let Some(pfp) = spec
        .and_then(|s| s.get("podFailurePolicy"))
        .filter(|v| !v.is_null())
    {
        pod_failure_policy(
            pfp,
            template_spec,
            &format!("{path}.podFailurePolicy"),
            errs,
        );
    }
    pod_spec(template_spec, &format!("{path}.template.spec"), errs);
}

fn pod_failure_policy(
    pfp: &Value,
    template_spec: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let policy = template_spec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if policy != "Never" {
        errs.push(FieldError::invalid(
            "spec.template.spec.restartPolicy",
            json!(policy),
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
    let rules = pfp
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (i, r) in rules.iter().enumerate() {
        let rp = format!("{path}.rules[{i}]");
        let action = r.get("action").and_then(Value::as_str).unwrap_or("");
        if !["FailJob", "FailIndex", "Ignore", "Count"].contains(&action) {
            errs.push(FieldError::not_supported(
                &format!("{rp}.action"),
                json!(action),
                &["Count", "FailIndex", "FailJob", "Ignore"],
            ));
        }
        let codes = r.get("onExitCodes").filter(|v| !v.is_null());
        let conds = r
            .get("onPodConditions")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty());
        match (codes, conds) {
            (Some(_), Some(_)) => errs.push(FieldError::invalid(
                &rp,
                Value::Null,
                "specifying both OnExitCodes and OnPodConditions is not supported",
            )),
            (None, None) => errs.push(FieldError::invalid(
                &rp,
                Value::Null,
                "specifying one of OnExitCodes and OnPodConditions is required",
            )),
            _ => {}
        }
        if let Some(c) = codes {
            let op = c.get("operator").and_then(Value::as_str).unwrap_or("");
            if !["In", "NotIn"].contains(&op) {
                errs.push(FieldError::not_supported(
                    &format!("{rp}.onExitCodes.operator"),
                    json!(op),
                    &["In", "NotIn"],
                ));
            }
            let values = c.get("values").and_then(Value::as_array);
            if values.is_none_or(|v| v.is_empty()) {
                errs.push(FieldError::invalid(
                    &format!("{rp}.onExitCodes.values"),
                    json!([]),
                    "at least one value is required",
                ));
            }
            for (j, v) in values.into_iter().flatten().enumerate() {
                if op == "In" && v.as_i64() == Some(0) {
                    errs.push(FieldError::invalid(
                        &format!("{rp}.onExitCodes.values[{j}]"),
                        json!(0),
                        "must not be 0 for the In operator",
                    ));
                }
            }
        }
    }
}

fn job(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec");
    let manual = spec
        .and_then(|s| s.get("manualSelector"))
        .and_then(Value::as_bool)
        == Some(true);
    label_selector(spec, "spec", "job", errs);
    if !manual && old.is_none() {
        generated_selector(obj, errs);
    }
    job_spec(spec, "spec", errs);
    if let Some(old) = old {
        for key in ["selector", "template", "completionMode", "podFailurePolicy"] {
            immutable(obj, old, key, errs);
        }
        let indexed = spec
            .and_then(|s| s.get("completionMode"))
            .and_then(Value::as_str)
            == Some("Indexed");
        if !indexed {
            immutable(obj, old, "completions", errs);
        }
    }
}

/// Upstream's `ValidateGeneratedSelector`: without `manualSelector`, the
/// selector and template labels are the ones the server generated.
fn generated_selector(obj: &Value, errs: &mut Vec<FieldError>) {
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let labels = obj.pointer("/spec/template/metadata/labels");
    let label = labels
        .and_then(|l| l.get(JOB_CONTROLLER_UID))
        .and_then(Value::as_str);
    if label != Some(uid) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            labels.cloned().unwrap_or(Value::Null),
            &format!("`selector` not auto-generated: must be '{uid}'"),
        ));
    }
    let want = json!({"matchLabels": {JOB_CONTROLLER_UID: uid}});
    if let Some(sel) = obj.pointer("/spec/selector") {
        if *sel != want {
            errs.push(FieldError::invalid(
                "spec.selector",
                sel.clone(),
                "`selector` not auto-generated",
            ));
        }
    }
}

fn immutable(obj: &Value, old: &Value, key: &str, errs: &mut Vec<FieldError>) {
    let new = obj.pointer(&format!("/spec/{key}"));
    if new != old.pointer(&format!("/spec/{key}")) {
        errs.push(FieldError::invalid(
            &format!("spec.{key}"),
            new.cloned().unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
}

/// Upstream caps CronJob names so that `<name>-<11 digits>` fits a label value.
const CRON_JOB_NAME_MAX: usize = 52;

fn cron_job(obj: &Value, errs: &mut Vec<FieldError>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.len() > CRON_JOB_NAME_MAX {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            &format!("must be no more than {CRON_JOB_NAME_MAX} characters"),
        ));
    }
    let spec = obj.get("spec");
    match spec.and_then(|s| s.get("schedule")).and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("spec.schedule", "")),
        Some(s) if s.contains("TZ") => errs.push(FieldError::invalid(
            "spec.schedule",
            json!(s),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        )),
        Some(s) => {
            if let Err(e) = cron::Schedule::parse(s) {
                errs.push(FieldError::invalid("spec.schedule", json!(s), &e));
            }
        }
    }
    if let Some(tz) = spec.and_then(|s| s.get("timeZone")).and_then(Value::as_str) {
        if tz.eq_ignore_ascii_case("local") {
            errs.push(FieldError::invalid(
                "spec.timeZone",
                json!(tz),
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            ));
        } else if let Err(e) = cron::time_zone(Some(tz)) {
            errs.push(FieldError::invalid("spec.timeZone", json!(tz), &e));
        }
    }
    match spec
        .and_then(|s| s.get("concurrencyPolicy"))
        .and_then(Value::as_str)
    {
        None | Some("") => errs.push(FieldError::required("spec.concurrencyPolicy", "")),
        Some("Allow" | "Forbid" | "Replace") => {}
        Some(other) => errs.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            json!(other),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        nonnegative(spec, key, "spec", errs);
    }
    let template_spec = spec.and_then(|s| s.pointer("/jobTemplate/spec"));
    if let Some(sel) = template_spec
        .and_then(|s| s.get("selector"))
        .filter(|s| !s.is_null())
    {
        if LabelSelector::from_json(sel).is_err() {
            errs.push(FieldError::invalid(
                "spec.jobTemplate.spec.selector",
                sel.clone(),
                "invalid label selector",
            ));
        }
    }
    job_spec(template_spec, "spec.jobTemplate.spec", errs);
}

fn daemon_set(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec");
    label_selector(spec, "spec", "daemonset", errs);
    let template_spec = spec.and_then(|s| s.pointer("/template/spec"));
    if let Some(e) = restart_policy(template_spec, "spec.template.spec", &["Always"]) {
        errs.push(e);
    }
    pod_spec(template_spec, "spec.template.spec", errs);
    nonnegative(spec, "minReadySeconds", "spec", errs);
    nonnegative(spec, "revisionHistoryLimit", "spec", errs);
    let strategy = spec.and_then(|s| s.get("updateStrategy"));
    match strategy.and_then(|s| s.get("type")).and_then(Value::as_str) {
        Some("OnDelete") => {}
        Some("RollingUpdate") => {
            let ru = strategy.and_then(|s| s.get("rollingUpdate"));
            let unavailable = ru.and_then(|r| r.get("maxUnavailable"));
            let surge = ru.and_then(|r| r.get("maxSurge"));
            let zero = |v: Option<&Value>| {
                v.is_none_or(|v| v.as_i64() == Some(0) || v.as_str() == Some("0%"))
            };
            if zero(unavailable) && zero(surge) {
                errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    unavailable.cloned().unwrap_or(json!(0)),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        None => errs.push(FieldError::required("spec.updateStrategy.type", "")),
        Some(other) => errs.push(FieldError::not_supported(
            "spec.updateStrategy.type",
            json!(other),
            &["OnDelete", "RollingUpdate"],
        )),
    }
    if let Some(old) = old {
        immutable(obj, old, "selector", errs);
    }
}

fn replication_controller(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec");
    let selector = spec
        .and_then(|s| s.get("selector"))
        .and_then(Value::as_object);
    if selector.is_none_or(|m| m.is_empty()) {
        errs.push(FieldError::required("spec.selector", ""));
    }
    nonnegative(spec, "replicas", "spec", errs);
    nonnegative(spec, "minReadySeconds", "spec", errs);
    let Some(template) = spec
        .and_then(|s| s.get("template"))
        .filter(|t| !t.is_null())
    else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    let labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object);
    if let Some(sel) = selector.filter(|m| !m.is_empty()) {
        let matches = sel
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !matches {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                labels.cloned().map(Value::Object).unwrap_or(Value::Null),
                "selector does not match template labels",
            ));
        }
    }
    let template_spec = template.get("spec");
    if let Some(e) = restart_policy(template_spec, "spec.template.spec", &["Always"]) {
        errs.push(e);
    }
    pod_spec(template_spec, "spec.template.spec", errs);
}

/// The rules of these kinds; empty for any other.
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (group, kind) {
        ("batch", "Job") => job(obj, old, &mut errs),
        ("batch", "CronJob") => cron_job(obj, &mut errs),
        ("apps", "DaemonSet") => daemon_set(obj, old, &mut errs),
        ("", "ReplicationController") => replication_controller(obj, &mut errs),
        _ => {}
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.message()))
            .collect()
    }

    fn generated_job() -> Value {
        json!({"metadata": {"name": "j", "uid": "u"}, "spec": {
            "selector": {"matchLabels": {JOB_CONTROLLER_UID: "u"}},
            "template": {"metadata": {"labels": {JOB_CONTROLLER_UID: "u"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    #[test]
    fn job_rules() {
        assert!(validate("batch", "Job", &generated_job(), None).is_empty());
        let mut j = generated_job();
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        j["spec"]["backoffLimit"] = json!(-1);
        j["spec"]["completionMode"] = json!("Indexed");
        assert_eq!(
            messages(&validate("batch", "Job", &j, None)),
            vec![
                "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
                "spec.completions: Required value: when completion mode is Indexed",
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
            ]
        );
        let mut j = generated_job();
        j["spec"]["selector"] = json!({"matchLabels": {JOB_CONTROLLER_UID: "u", "app": "x"}});
        let m = messages(&validate("batch", "Job", &j, None));
        assert!(
            m.iter()
                .any(|m| m.contains("`selector` not auto-generated")),
            "{m:?}"
        );
        let mut j = generated_job();
        j["spec"]["completionMode"] = json!("NonIndexed");
        j["spec"]["successPolicy"] = json!({"rules": [{"succeededCount": 1}]});
        assert_eq!(
            messages(&validate("batch", "Job", &j, None)),
            vec!["spec.completionMode: Invalid value: \"NonIndexed\": requires indexed completion mode"]
        );
        let old = generated_job();
        let mut j = generated_job();
        j["spec"]["completions"] = json!(3);
        assert_eq!(
            messages(&validate("batch", "Job", &j, Some(&old))),
            vec!["spec.completions: Invalid value: 3: field is immutable"]
        );
    }

    #[test]
    fn cron_job_rules() {
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/1 * * * *",
            "concurrencyPolicy": "Allow", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        assert!(validate("batch", "CronJob", &cj, None).is_empty());
        let mut bad = cj.clone();
        bad["spec"]["schedule"] = json!("every minute");
        bad["spec"]["timeZone"] = json!("Nowhere/Town");
        bad["spec"]["concurrencyPolicy"] = json!("Sometimes");
        assert_eq!(
            messages(&validate("batch", "CronJob", &bad, None)),
            vec![
                "spec.schedule: Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]",
                "spec.timeZone: Invalid value: \"Nowhere/Town\": unknown time zone Nowhere/Town",
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
            ]
        );
    }

    #[test]
    fn daemon_set_and_rc_rules() {
        let ds = json!({"spec": {"selector": {"matchLabels": {"app": "d"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}});
        assert_eq!(
            messages(&validate("apps", "DaemonSet", &ds, None)),
            vec![
                "spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
            ]
        );
        let rc = json!({"spec": {"selector": {"app": "r"}, "replicas": -1,
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let m = messages(&validate("", "ReplicationController", &rc, None));
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m[1].ends_with("selector does not match template labels"),
            "{m:?}"
        );
    }
}

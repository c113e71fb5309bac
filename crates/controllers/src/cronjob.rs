//! The CronJob controller (upstream `cronjob` controller v2): at each
//! activation of `schedule` (in `timeZone`, else UTC) it creates the Job
//! `<cronjob>-<scheduled minutes since the epoch>` from `jobTemplate`, unless
//! suspended, past `startingDeadlineSeconds`, or held back by
//! `concurrencyPolicy` (Forbid: skip while one runs; Replace: delete the
//! running ones first); it keeps `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime`, and deletes finished Jobs beyond the history limits.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use skiff_api::cron::{time_zone, Schedule};

use crate::pods;
use crate::runtime::{Ctx, Key};
use crate::{Error, Result};

const COMPONENT: &str = "cronjob-controller";
/// The annotation with the time a Job was scheduled for (RFC 3339).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// How a Job of the CronJob ended, if it has.
fn finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            if c.type_ == "Complete" {
                "Complete"
            } else {
                "Failed"
            }
        })
}

/// Upstream's Job name: the CronJob's and the scheduled time in minutes.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// What one sync decides.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// The time to make a Job for.
    pub run: Option<Timestamp>,
    /// Running Jobs to delete first (Replace).
    pub replace: Vec<String>,
    /// Finished Jobs beyond the history limits.
    pub prune: Vec<String>,
    /// A Normal event per missed activation reason, if any.
    pub skipped: Option<String>,
    pub status: CronJobStatus,
    /// The next activation after now.
    pub next: Option<Timestamp>,
}

/// The pure sync: `jobs` are the Jobs the CronJob controls.
pub fn desired(cj: &CronJob, jobs: &[Arc<Job>], now: Timestamp) -> Result<Plan> {
    let spec = cj.spec.clone().unwrap_or_default();
    let schedule = Schedule::parse(&spec.schedule).map_err(Error::Invalid)?;
    let tz = time_zone(spec.time_zone.as_deref()).map_err(Error::Invalid)?;
    let old = cj.status.clone().unwrap_or_default();
    let mut plan = Plan::default();
    let mut running: Vec<&Arc<Job>> = jobs.iter().filter(|j| finished(j).is_none()).collect();
    running.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let last_success = jobs
        .iter()
        .filter(|j| finished(j) == Some("Complete"))
        .filter_map(|j| j.status.as_ref()?.completion_time.as_ref().map(|t| t.0))
        .max();
    plan.status = CronJobStatus {
        active: Some(running.iter().map(|j| reference(j)).collect::<Vec<_>>())
            .filter(|a| !a.is_empty()),
        last_schedule_time: old.last_schedule_time.clone(),
        last_successful_time: match (last_success, old.last_successful_time.as_ref().map(|t| t.0)) {
            (Some(a), Some(b)) => Some(Time(a.max(b))),
            (a, b) => a.or(b).map(Time),
        },
    };
    // History: the oldest finished Jobs beyond each limit.
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut done: Vec<&Arc<Job>> = jobs.iter().filter(|j| finished(j) == Some(kind)).collect();
        done.sort_by_key(|j| {
            let st = j.status.as_ref();
            st.and_then(|s| s.start_time.as_ref().map(|t| t.0))
                .or_else(|| j.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
        let extra = done
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        plan.prune
            .extend(done.iter().take(extra).map(|j| j.name_any()));
    }
    let since = old
        .last_schedule_time
        .as_ref()
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    plan.next = schedule.next(now, &tz);
    if spec.suspend == Some(true) {
        return Ok(plan);
    }
    let (latest, _missed) = schedule.most_recent(since, now, &tz);
    let Some(at) = latest else {
        return Ok(plan);
    };
    if let Some(deadline) = spec.starting_deadline_seconds {
        if at.as_second() + deadline < now.as_second() {
            plan.skipped = Some(format!(
                "Missed scheduled time to start a job: {}",
                at.strftime("%Y-%m-%dT%H:%M:%SZ")
            ));
            plan.status.last_schedule_time = Some(Time(at));
            return Ok(plan);
        }
    }
    let name = job_name(&cj.name_any(), at);
    if jobs.iter().any(|j| j.name_any() == name) {
        plan.status.last_schedule_time = Some(Time(at));
        return Ok(plan);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !running.is_empty() => {
            plan.skipped = Some(
                "Job skipped: the previous run is still active (concurrencyPolicy Forbid)".into(),
            );
            return Ok(plan);
        }
        Some("Replace") => plan.replace = running.iter().map(|j| j.name_any()).collect(),
        _ => {}
    }
    plan.run = Some(at);
    Ok(plan)
}

/// The Job of the CronJob for the activation `at`, in time zone `tz`.
pub fn job_for(cj: &CronJob, at: Timestamp) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tm = template.metadata.unwrap_or_default();
    let tz = time_zone(cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()))
        .unwrap_or(k8s_openapi::jiff::tz::TimeZone::UTC);
    let mut annotations = tm.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        at.to_zoned(tz)
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), at)),
            namespace: cj.metadata.namespace.clone(),
            labels: tm.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![pods::controller_ref(
                "batch/v1",
                "CronJob",
                &cj.metadata,
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let Some(cj) = ctx
        .cache
        .workloads
        .cronjobs
        .get(&ObjectRef::new(&key.name).within(&key.ns))
    else {
        return Ok(None);
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let jobs = crate::workloads::jobs_of(&ctx, &key.ns, &uid);
    let now = Timestamp::now();
    let mut plan = match desired(&cj, &jobs, now) {
        Ok(p) => p,
        Err(e) => {
            // A bad schedule stored before validation caught it: say so, retry never.
            ctx.events
                .record(&*cj, COMPONENT, true, "UnparseableSchedule", e.to_string());
            return Ok(None);
        }
    };
    // Jobs that left `status.active` because they finished, as upstream says.
    let was_active = cj.status.as_ref().and_then(|s| s.active.as_ref());
    for r in was_active.into_iter().flatten() {
        let done = jobs
            .iter()
            .find(|j| j.metadata.uid == r.uid)
            .and_then(|j| finished(j));
        if let (Some(status), Some(name)) = (done, r.name.as_deref()) {
            let message = format!("Saw completed job: {name}, status: {status}");
            ctx.events
                .record(&*cj, COMPONENT, false, "SawCompletedJob", message);
        }
    }
    let client = ctx.clients.of("cronjob");
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), &key.ns);
    let delete = |name: String| {
        let api = jobs_api.clone();
        async move {
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(Error::from(e)),
            }
        }
    };
    for name in std::mem::take(&mut plan.replace) {
        delete(name.clone()).await?;
        ctx.events.record(
            &*cj,
            COMPONENT,
            false,
            "SuccessfulDelete",
            format!("Deleted job {name}"),
        );
        if let Some(active) = plan.status.active.as_mut() {
            active.retain(|r| r.name.as_deref() != Some(name.as_str()));
        }
    }
    if let Some(reason) = plan.skipped.take() {
        let warning = reason.starts_with("Missed");
        let r = if warning {
            "MissSchedule"
        } else {
            "JobAlreadyActive"
        };
        ctx.events.record(&*cj, COMPONENT, warning, r, reason);
    }
    if let Some(at) = plan.run {
        let job = job_for(&cj, at);
        let name = job.name_any();
        match jobs_api.create(&PostParams::default(), &job).await {
            Ok(made) => {
                ctx.events.record(
                    &*cj,
                    COMPONENT,
                    false,
                    "SuccessfulCreate",
                    format!("Created job {name}"),
                );
                plan.status
                    .active
                    .get_or_insert_with(Vec::new)
                    .push(reference(&made));
                plan.status.last_schedule_time = Some(Time(at));
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                plan.status.last_schedule_time = Some(Time(at));
            }
            Err(e) => {
                ctx.events.record(
                    &*cj,
                    COMPONENT,
                    true,
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                );
                return Err(e.into());
            }
        }
    }
    for name in std::mem::take(&mut plan.prune) {
        delete(name.clone()).await?;
        ctx.events.record(
            &*cj,
            COMPONENT,
            false,
            "SuccessfulDelete",
            format!("Deleted job {name}"),
        );
    }
    if cj.status.as_ref() != Some(&plan.status) {
        let api: Api<CronJob> = Api::namespaced(client, &key.ns);
        let mut updated = (*cj).clone();
        updated.status = Some(plan.status.clone());
        api.replace_status(&key.name, &PostParams::default(), &updated)
            .await?;
    }
    // Wake at the next activation (a little after, so it is in the past then).
    Ok(plan.next.map(|n| {
        let ms = n.as_millisecond() - now.as_millisecond() + 100;
        Duration::from_millis(u64::try_from(ms.max(100)).unwrap_or(100))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobStatus};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cron_job(policy: &str) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("tick".into()),
                namespace: Some("default".into()),
                uid: Some("cj-uid".into()),
                creation_timestamp: Some(Time(ts("2026-12-07T05:00:30Z"))),
                ..Default::default()
            },
            spec: Some(CronJobSpec {
                schedule: "*/1 * * * *".into(),
                concurrency_policy: Some(policy.into()),
                successful_jobs_history_limit: Some(1),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn job(name: &str, done: Option<&str>, started: &str) -> Arc<Job> {
        Arc::new(Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(ts(started))),
                ..Default::default()
            },
            spec: None,
            status: Some(JobStatus {
                start_time: Some(Time(ts(started))),
                completion_time: done.filter(|d| *d == "Complete").map(|_| Time(ts(started))),
                conditions: done.map(|d| {
                    vec![JobCondition {
                        type_: d.into(),
                        status: "True".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn schedules_names_and_policies() {
        let now = ts("2026-12-07T05:02:10Z");
        let p = desired(&cron_job("Allow"), &[], now).unwrap();
        assert_eq!(p.run, Some(ts("2026-12-07T05:02:00Z")));
        assert_eq!(
            job_name("tick", ts("2026-12-07T05:02:00Z")),
            "tick-29943662"
        );
        assert_eq!(p.next, Some(ts("2026-12-07T05:03:00Z")));
        // Already made: nothing to do but remember it.
        let made = job("tick-29943662", None, "2026-12-07T05:02:00Z");
        let p = desired(&cron_job("Allow"), std::slice::from_ref(&made), now).unwrap();
        assert_eq!(p.run, None);
        assert_eq!(p.status.active.map(|a| a.len()), Some(1));
        // Forbid skips while one runs; Replace deletes it first.
        let older = job("tick-29943661", None, "2026-12-07T05:01:00Z");
        let p = desired(&cron_job("Forbid"), std::slice::from_ref(&older), now).unwrap();
        assert_eq!(p.run, None);
        let p = desired(&cron_job("Replace"), &[older], now).unwrap();
        assert_eq!(
            (p.run.is_some(), p.replace),
            (true, vec!["tick-29943661".to_string()])
        );
        // History: one successful Job kept, the older pruned.
        let a = job("a", Some("Complete"), "2026-12-07T05:00:00Z");
        let b = job("b", Some("Complete"), "2026-12-07T05:01:00Z");
        let p = desired(&cron_job("Allow"), &[b, a], now).unwrap();
        assert_eq!(p.prune, vec!["a".to_string()]);
        assert_eq!(
            p.status.last_successful_time,
            Some(Time(ts("2026-12-07T05:01:00Z")))
        );
        // Suspended: nothing runs.
        let mut s = cron_job("Allow");
        if let Some(spec) = s.spec.as_mut() {
            spec.suspend = Some(true);
        }
        assert_eq!(desired(&s, &[], now).unwrap().run, None);
        // Past the starting deadline: missed.
        let mut d = cron_job("Allow");
        if let Some(spec) = d.spec.as_mut() {
            spec.starting_deadline_seconds = Some(5);
        }
        let p = desired(&d, &[], now).unwrap();
        assert_eq!(p.run, None);
        assert!(p.skipped.is_some());
        let j = job_for(&cron_job("Allow"), ts("2026-12-07T05:02:00Z"));
        assert_eq!(
            j.annotations().get(SCHEDULED_TIMESTAMP).map(String::as_str),
            Some("2026-12-07T05:02:00Z")
        );
    }
}

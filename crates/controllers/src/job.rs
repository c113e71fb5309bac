//! The Job controller (upstream `job` controller, simplified): runs pods from
//! the template, up to `parallelism` at a time, until `completions` succeed
//! (or, Indexed, until every index in `0..completions` has a succeeded pod);
//! fails the Job past `backoffLimit` failures, past `activeDeadlineSeconds`, or
//! on a `podFailurePolicy` FailJob rule; deletes the running pods of a
//! suspended or finished Job; deletes a finished Job `ttlSecondsAfterFinished`
//! later (upstream's ttl-after-finished controller, here as that controller's
//! identity).
//!
//! Counting is from the pods that exist, never below what `status` already
//! says (upstream tracks pods with a finalizer instead; skiff does not add one,
//! so a finished pod removed by hand before it was counted is not counted).
//! The pure [`desired`] is table-tested in `job_tests.rs`; [`reconcile`] writes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{ContainerStatus, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use crate::pods;
use crate::runtime::{Ctx, Key};
use crate::Result;

/// The annotation and label with an Indexed Job pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const COMPONENT: &str = "job-controller";
/// Upstream's `BurstReplicas` cap on pod creations per sync.
const BURST: usize = 500;
/// Upstream's pod failure backoff: 10 s doubling, at most 6 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// One Event to record: (warning, reason, message).
pub type Event = (bool, &'static str, String);

/// What one sync of a Job does.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// One entry per pod to create: its completion index when Indexed.
    pub create: Vec<Option<i32>>,
    /// Running pods to delete.
    pub delete: Vec<String>,
    pub status: JobStatus,
    pub events: Vec<Event>,
    /// Finished longer than `ttlSecondsAfterFinished` ago: delete the Job.
    pub expired: bool,
    /// Look again after this long (a deadline, a backoff, a TTL).
    pub requeue: Option<Duration>,
}

fn condition_true(status: &JobStatus, ty: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == ty && c.status == "True")
}

fn condition(ty: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: ty.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets condition `c` (replacing one of its type only when its status changes).
fn set_condition(status: &mut JobStatus, c: JobCondition) {
    let list = status.conditions.get_or_insert_with(Vec::new);
    match list.iter_mut().find(|o| o.type_ == c.type_) {
        Some(o) if o.status == c.status => {}
        Some(o) => *o = c,
        None => list.push(c),
    }
}

fn secs(d: i64) -> Duration {
    Duration::from_secs(u64::try_from(d.max(0)).unwrap_or(0))
}

/// The pod's completion index (its annotation), if any.
pub fn index_of(pod: &Pod) -> Option<i32> {
    pod.annotations().get(COMPLETION_INDEX)?.parse().ok()
}

/// `0-2,4` -> {0, 1, 2, 4} (upstream's `completedIndexes` format).
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            out.extend(a..=b);
        }
    }
    out
}

/// {0, 1, 2, 4} -> `0-2,4`.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

fn terminated_codes(pod: &Pod) -> impl Iterator<Item = (&ContainerStatus, i32)> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            Some((c, t.exit_code))
        })
}

/// What a podFailurePolicy says about a failed pod.
#[derive(Debug, PartialEq)]
enum Verdict {
    Count,
    Ignore,
    FailJob(String),
}

fn failure_verdict(job: &Job, pod: &Pod) -> Verdict {
    let Some(rules) = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref())
        .map(|p| &p.rules)
    else {
        return Verdict::Count;
    };
    for (i, rule) in rules.iter().enumerate() {
        let mut matched: Option<String> = None;
        if let Some(codes) = &rule.on_exit_codes {
            for (c, code) in terminated_codes(pod) {
                if code == 0 || codes.container_name.as_ref().is_some_and(|n| *n != c.name) {
                    continue;
                }
                let listed = codes.values.contains(&code);
                if (codes.operator == "In") == listed {
                    matched = Some(format!(
                        "Container {} for pod {}/{} failed with exit code {code} matching {} rule at index {i}",
                        c.name,
                        pod.namespace().unwrap_or_default(),
                        pod.name_any(),
                        rule.action
                    ));
                    break;
                }
            }
        }
        for pc in rule.on_pod_conditions.iter().flatten() {
            let has = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == pc.type_ && c.status == pc.status);
            if has && matched.is_none() {
                matched = Some(format!(
                    "Pod {}/{} has condition {} matching {} rule at index {i}",
                    pod.namespace().unwrap_or_default(),
                    pod.name_any(),
                    pc.type_,
                    rule.action
                ));
            }
        }
        if let Some(message) = matched {
            return match rule.action.as_str() {
                "FailJob" => Verdict::FailJob(message),
                "Ignore" => Verdict::Ignore,
                // Count, and FailIndex (per-index backoff is not modelled).
                _ => Verdict::Count,
            };
        }
    }
    Verdict::Count
}

/// Whether a successPolicy rule holds for the succeeded indexes: all of
/// `succeededIndexes` (or `succeededCount` of them), or `succeededCount`
/// indexes at all.
fn rule_met(rule: &k8s_openapi::api::batch::v1::SuccessPolicyRule, done: &BTreeSet<i32>) -> bool {
    let count = rule
        .succeeded_count
        .map(|c| usize::try_from(c.max(0)).unwrap_or(0));
    match (&rule.succeeded_indexes, count) {
        (Some(set), count) => {
            let want = parse_indexes(set);
            let have = want.intersection(done).count();
            have >= count.unwrap_or(want.len()) && have > 0
        }
        (None, Some(c)) => done.len() >= c,
        (None, None) => false,
    }
}

/// When the pod's last container stopped (else when it was made).
fn finished_at(pod: &Pod) -> Option<Timestamp> {
    terminated_codes(pod)
        .filter_map(|(c, _)| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max()
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn restarts(pod: &Pod) -> i32 {
    let st = pod.status.as_ref();
    let init = st
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or_default();
    let main = st
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    init.iter().chain(main).map(|c| c.restart_count).sum()
}

/// The pure sync: `pods` are the pods of the Job's namespace.
pub fn desired(job: &Job, pods: &[Arc<Pod>], now: Timestamp) -> Plan {
    let mut plan = sync(job, pods, now);
    // `active`, `succeeded` and `failed` are omitempty upstream: 0 is absent.
    let st = &mut plan.status;
    for n in [&mut st.active, &mut st.succeeded, &mut st.failed] {
        *n = n.filter(|v| *v != 0);
    }
    plan
}

fn sync(job: &Job, pods: &[Arc<Pod>], now: Timestamp) -> Plan {
    let uid = job.metadata.uid.as_deref().unwrap_or("");
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut plan = Plan {
        status: old.clone(),
        ..Plan::default()
    };
    let owned: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == uid)
        })
        .collect();
    let active: Vec<&Arc<Pod>> = owned
        .iter()
        .copied()
        .filter(|p| pods::is_active(p))
        .collect();
    let finished = condition_true(&old, "Complete") || condition_true(&old, "Failed");
    if finished {
        // A finished Job keeps no pods running, and may have outlived its TTL.
        plan.delete = active.iter().map(|p| p.name_any()).collect();
        plan.status.active = Some(0).filter(|_| old.active.is_some());
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let finish = old.completion_time.as_ref().map(|t| t.0).or_else(|| {
                old.conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "Failed" && c.status == "True")
                    .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
            });
            if let Some(finish) = finish {
                let left = finish.as_second() + i64::from(ttl) - now.as_second();
                if left <= 0 {
                    plan.expired = true;
                } else {
                    plan.requeue = Some(secs(left));
                }
            }
        }
        return plan;
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1).max(0)).unwrap_or(0);
    let completions = spec
        .completions
        .map(|c| usize::try_from(c.max(0)).unwrap_or(0));
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);

    // Succeeded: pods (or indexes) that finished well, never fewer than before.
    let succeeded_pods: Vec<&Arc<Pod>> = owned
        .iter()
        .copied()
        .filter(|p| pods::phase(p) == "Succeeded")
        .collect();
    let mut done_indexes = parse_indexes(old.completed_indexes.as_deref().unwrap_or(""));
    if indexed {
        let limit = i32::try_from(completions.unwrap_or(0)).unwrap_or(i32::MAX);
        done_indexes.extend(
            succeeded_pods
                .iter()
                .filter_map(|p| index_of(p))
                .filter(|i| (0..limit).contains(i)),
        );
    }
    let succeeded = if indexed {
        done_indexes.len()
    } else {
        succeeded_pods
            .len()
            .max(usize::try_from(old.succeeded.unwrap_or(0)).unwrap_or(0))
    };
    // Failed: pods the podFailurePolicy does not ignore.
    let mut fail_job: Option<String> = None;
    let mut failed_pods = Vec::new();
    for p in owned.iter().filter(|p| pods::phase(p) == "Failed") {
        match failure_verdict(job, p) {
            Verdict::Ignore => {}
            Verdict::Count => failed_pods.push(*p),
            Verdict::FailJob(m) => {
                fail_job.get_or_insert(m);
                failed_pods.push(*p);
            }
        }
    }
    let failed = failed_pods
        .len()
        .max(usize::try_from(old.failed.unwrap_or(0)).unwrap_or(0));
    let as_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    plan.status.succeeded = Some(as_i32(succeeded));
    plan.status.failed = Some(as_i32(failed));
    plan.status.ready = Some(as_i32(active.iter().filter(|p| pods::is_ready(p)).count()));
    // Pods on their way out; with `podReplacementPolicy: Failed` their
    // replacements wait until they are gone.
    let terminating = owned
        .iter()
        .filter(|p| pods::is_terminating(p) && !pods::is_terminal(p))
        .count();
    plan.status.terminating = Some(as_i32(terminating));
    let hold = spec.pod_replacement_policy.as_deref() == Some("Failed") && terminating > 0;
    plan.status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    if indexed {
        plan.status.completed_indexes =
            Some(format_indexes(&done_indexes)).filter(|s| !s.is_empty());
    }

    // Suspension: no pods, and the deadline clock stops.
    if suspended {
        plan.delete = active.iter().map(|p| p.name_any()).collect();
        plan.status.active = Some(0);
        plan.status.start_time = None;
        if !condition_true(&old, "Suspended") {
            set_condition(
                &mut plan.status,
                condition("Suspended", "True", "JobSuspended", "Job suspended", now),
            );
            plan.events
                .push((false, "Suspended", "Job suspended".into()));
        }
        return plan;
    }
    if condition_true(&old, "Suspended") {
        set_condition(
            &mut plan.status,
            condition("Suspended", "False", "JobResumed", "Job resumed", now),
        );
        plan.events.push((false, "Resumed", "Job resumed".into()));
        plan.status.start_time = None;
    }
    let start = plan.status.start_time.as_ref().map(|t| t.0).unwrap_or(now);
    plan.status.start_time = Some(Time(start));

    // Failure: a FailJob rule, too many failures, or past the deadline.
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let restarts: i32 = active.iter().map(|p| restarts(p)).sum();
    let past_restarts = on_failure
        && if backoff_limit == 0 {
            restarts > 0
        } else {
            restarts >= backoff_limit
        };
    let deadline_left = spec
        .active_deadline_seconds
        .map(|d| start.as_second() + d - now.as_second());
    let failure = if let Some(m) = fail_job {
        Some(("PodFailurePolicy", m))
    } else if failed > usize::try_from(backoff_limit.max(0)).unwrap_or(0) || past_restarts {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".to_string(),
        ))
    } else if deadline_left.is_some_and(|l| l <= 0) {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline".to_string(),
        ))
    } else {
        None
    };
    if let Some((reason, message)) = failure {
        plan.delete = active.iter().map(|p| p.name_any()).collect();
        plan.status.active = Some(0);
        set_condition(
            &mut plan.status,
            condition("FailureTarget", "True", reason, &message, now),
        );
        set_condition(
            &mut plan.status,
            condition("Failed", "True", reason, &message, now),
        );
        plan.events.push((true, reason, message));
        plan.requeue = spec.ttl_seconds_after_finished.map(|t| secs(i64::from(t)));
        return plan;
    }

    // Success: all completions, or (Indexed) a successPolicy rule met.
    let complete = match (indexed, completions) {
        (true, Some(c)) => done_indexes.len() >= c,
        (_, Some(c)) => succeeded >= c,
        (_, None) => succeeded > 0 && active.is_empty(),
    };
    let policy_rule = spec
        .success_policy
        .as_ref()
        .filter(|_| indexed)
        .and_then(|p| p.rules.iter().position(|r| rule_met(r, &done_indexes)));
    if complete || policy_rule.is_some() {
        plan.delete = active.iter().map(|p| p.name_any()).collect();
        plan.status.active = Some(0);
        let (reason, m) = match policy_rule {
            Some(i) if !complete => ("SuccessPolicy", format!("Matched rules at index {i}")),
            _ => (
                "CompletionsReached",
                "Reached expected number of succeeded pods".to_string(),
            ),
        };
        set_condition(
            &mut plan.status,
            condition("SuccessCriteriaMet", "True", reason, &m, now),
        );
        set_condition(
            &mut plan.status,
            condition("Complete", "True", reason, &m, now),
        );
        plan.status.completion_time = Some(Time(now));
        plan.events
            .push((false, "Completed", "Job completed".into()));
        plan.requeue = spec.ttl_seconds_after_finished.map(|t| secs(i64::from(t)));
        return plan;
    }

    // Running: more pods, unless the last failure is still backing off.
    let mut requeue = deadline_left.map(secs);
    let backoff_left = (failed > 0)
        .then(|| {
            let last = failed_pods.iter().filter_map(|p| finished_at(p)).max()?;
            let exp = u32::try_from(failed - 1).unwrap_or(u32::MAX).min(16);
            let delay = BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_MAX);
            let left =
                last.as_second() + i64::try_from(delay.as_secs()).unwrap_or(0) - now.as_second();
            (left > 0).then(|| secs(left))
        })
        .flatten();
    if indexed {
        let limit = i32::try_from(completions.unwrap_or(0)).unwrap_or(i32::MAX);
        let running: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
        // Two pods of one index: keep the older.
        let mut seen = BTreeSet::new();
        let mut by_age = active.clone();
        by_age.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        for p in by_age {
            match index_of(p) {
                Some(i)
                    if (0..limit).contains(&i) && !done_indexes.contains(&i) && seen.insert(i) => {}
                _ => plan.delete.push(p.name_any()),
            }
        }
        let room = parallelism.saturating_sub(active.len() - plan.delete.len());
        if backoff_left.is_none() && !hold {
            plan.create = (0..limit)
                .filter(|i| !done_indexes.contains(i) && !running.contains(i))
                .take(room.min(BURST))
                .map(Some)
                .collect();
        }
    } else {
        let want = match completions {
            Some(c) => parallelism.min(c.saturating_sub(succeeded)),
            None if succeeded > 0 => active.len(),
            None => parallelism,
        };
        if active.len() < want && backoff_left.is_none() && !hold {
            plan.create = vec![None; (want - active.len()).min(BURST)];
        } else if active.len() > want {
            let mut victims = active.clone();
            victims.sort_by_key(|p| {
                (
                    pods::is_ready(p),
                    std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)),
                )
            });
            plan.delete = victims
                .iter()
                .take(active.len() - want)
                .map(|p| p.name_any())
                .collect();
        }
    }
    if let Some(b) = backoff_left {
        requeue = Some(requeue.map_or(b, |r| r.min(b)));
    }
    plan.requeue = requeue;
    plan.status.active = Some(as_i32(active.len() - plan.delete.len() + plan.create.len()));
    plan
}

/// The pod for completion index `index` (or any, NonIndexed).
fn pod_for(job: &Job, ns: &str, index: Option<i32>) -> Pod {
    let name = job.name_any();
    let owner = pods::controller_ref("batch/v1", "Job", &job.metadata);
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let pod_name = match index {
        Some(i) => format!("{name}-{i}-{}", pods::random_suffix(5)),
        None => format!("{name}-{}", pods::random_suffix(5)),
    };
    let mut pod = pods::from_template(&template, ns, &pod_name, owner);
    pod.metadata.generate_name = Some(match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    });
    if let Some(i) = index {
        let value = i.to_string();
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), value.clone());
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), value);
        if let Some(ps) = pod.spec.as_mut() {
            if ps.hostname.is_none() {
                ps.hostname = Some(format!("{name}-{i}"));
            }
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                    }),
                    ..Default::default()
                }),
            };
            let inits = ps.init_containers.iter_mut().flatten();
            for c in ps.containers.iter_mut().chain(inits) {
                c.env.get_or_insert_with(Vec::new).push(env.clone());
            }
        }
    }
    pod
}

/// The key this controller's pod writes are tracked under (apart from a
/// ReplicaSet of the same name).
fn owner_key(key: &Key) -> Key {
    Key::new(&format!("Job/{}", key.ns), &key.name)
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let Some(job) = ctx
        .cache
        .workloads
        .jobs
        .get(&ObjectRef::new(&key.name).within(&key.ns))
    else {
        return Ok(None);
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let tracked = owner_key(&key);
    if ctx.pod_writes.pending(&tracked) {
        return Ok(Some(crate::endpointslice::STALE_RETRY));
    }
    let plan = desired(&job, &ctx.cache.pods_in(&key.ns), Timestamp::now());
    if plan.expired {
        let api: Api<Job> = Api::namespaced(ctx.clients.of("ttl-after-finished"), &key.ns);
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: job.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        return match api.delete(&key.name, &dp).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        };
    }
    let client = ctx.clients.of("job");
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &key.ns);
    for name in &plan.delete {
        match pods_api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.pod_writes
                    .expect_delete(&tracked, Key::new(&key.ns, name));
                ctx.events.record(
                    &*job,
                    COMPONENT,
                    false,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                );
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut result: Result<()> = Ok(());
    for index in &plan.create {
        let pod = pod_for(&job, &key.ns, *index);
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(made) => {
                ctx.pod_writes.expect_write(
                    &tracked,
                    Key::of(&made),
                    made.metadata.resource_version.clone(),
                );
                ctx.events.record(
                    &*job,
                    COMPONENT,
                    false,
                    "SuccessfulCreate",
                    format!("Created pod: {}", made.name_any()),
                );
            }
            Err(e) => {
                ctx.events.record(
                    &*job,
                    COMPONENT,
                    true,
                    "FailedCreate",
                    format!("Error creating: {e}"),
                );
                result = Err(e.into());
                break;
            }
        }
    }
    if job.status.as_ref() != Some(&plan.status) {
        let api: Api<Job> = Api::namespaced(client, &key.ns);
        let mut updated = (*job).clone();
        updated.status = Some(plan.status.clone());
        api.replace_status(&key.name, &PostParams::default(), &updated)
            .await?;
        for (warning, reason, message) in &plan.events {
            ctx.events
                .record(&*job, COMPONENT, *warning, reason, message.clone());
        }
    }
    result?;
    Ok(plan.requeue)
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;

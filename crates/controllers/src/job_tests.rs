//! Table tests of the Job arithmetic.

use super::*;
use k8s_openapi::api::batch::v1::{
    JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-12-07T06:00:00Z";

fn job(f: impl FnOnce(&mut JobSpec)) -> Job {
    let mut spec = JobSpec {
        completions: Some(1),
        parallelism: Some(1),
        backoff_limit: Some(6),
        completion_mode: Some("NonIndexed".into()),
        template: PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                ..Default::default()
            }),
        },
        ..Default::default()
    };
    f(&mut spec);
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("default".into()),
            uid: Some("job-uid".into()),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn pod(name: &str, phase: &str, index: Option<i32>, exit: Option<i32>, finished: &str) -> Arc<Pod> {
    let annotations = index.map(|i| [(COMPLETION_INDEX.to_string(), i.to_string())].into());
    let statuses = exit.map(|code| {
        vec![ContainerStatus {
            name: "c".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    finished_at: Some(Time(ts(finished))),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations,
            creation_timestamp: Some(Time(ts(finished))),
            owner_references: Some(vec![OwnerReference {
                uid: "job-uid".into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: statuses,
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if phase == "Running" { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

fn conditions(p: &Plan) -> Vec<(String, String)> {
    p.status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn runs_to_completion() {
    let now = ts(NOW);
    let p = desired(&job(|_| {}), &[], now);
    assert_eq!(p.create, vec![None]);
    assert_eq!(p.status.active, Some(1));
    assert_eq!(p.status.start_time, Some(Time(now)));
    // Parallel: three at a time, never more than the completions left.
    let p = desired(
        &job(|s| (s.completions, s.parallelism) = (Some(5), Some(3))),
        &[],
        now,
    );
    assert_eq!(p.create.len(), 3);
    let done = pod("a", "Succeeded", None, Some(0), NOW);
    let running = pod("b", "Running", None, None, NOW);
    let p = desired(
        &job(|s| (s.completions, s.parallelism) = (Some(2), Some(2))),
        &[done.clone(), running],
        now,
    );
    assert_eq!(
        (p.create.len(), p.status.succeeded, p.status.ready),
        (0, Some(1), Some(1))
    );
    // Completions reached: SuccessCriteriaMet, then Complete.
    let p = desired(&job(|_| {}), &[done], now);
    assert_eq!(
        conditions(&p),
        vec![
            (
                "SuccessCriteriaMet".to_string(),
                "CompletionsReached".to_string()
            ),
            ("Complete".to_string(), "CompletionsReached".to_string())
        ]
    );
    assert_eq!(p.status.completion_time, Some(Time(now)));
    assert_eq!(p.events[0].1, "Completed");
}

#[test]
fn failures_back_off_then_fail_the_job() {
    let now = ts(NOW);
    // One failure 5 s ago: the next pod waits out the 10 s backoff.
    let failed = pod("a", "Failed", None, Some(1), "2026-12-07T05:59:55Z");
    let p = desired(&job(|_| {}), std::slice::from_ref(&failed), now);
    assert!(p.create.is_empty());
    assert_eq!(p.requeue, Some(Duration::from_secs(5)));
    assert_eq!(p.status.failed, Some(1));
    let long_ago = pod("a", "Failed", None, Some(1), "2026-12-07T05:00:00Z");
    assert_eq!(
        desired(&job(|_| {}), std::slice::from_ref(&long_ago), now)
            .create
            .len(),
        1
    );
    // backoffLimit 0: the first failure fails the Job.
    let p = desired(&job(|s| s.backoff_limit = Some(0)), &[long_ago], now);
    assert_eq!(
        conditions(&p),
        vec![
            (
                "FailureTarget".to_string(),
                "BackoffLimitExceeded".to_string()
            ),
            ("Failed".to_string(), "BackoffLimitExceeded".to_string())
        ]
    );
    assert_eq!(
        p.events[0],
        (
            true,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".into()
        )
    );
    // Past activeDeadlineSeconds: running pods are deleted.
    let mut j = job(|s| s.active_deadline_seconds = Some(10));
    j.status = Some(JobStatus {
        start_time: Some(Time(ts("2026-12-07T05:59:00Z"))),
        ..Default::default()
    });
    let p = desired(&j, &[pod("r", "Running", None, None, NOW)], now);
    assert_eq!(p.delete, vec!["r".to_string()]);
    assert_eq!(conditions(&p)[1].1, "DeadlineExceeded");
}

#[test]
fn pod_failure_policy_rules() {
    let now = ts(NOW);
    let rule = |action: &str, codes: Vec<i32>| PodFailurePolicyRule {
        action: action.into(),
        on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
            container_name: None,
            operator: "In".into(),
            values: codes,
        }),
        on_pod_conditions: None,
    };
    let j = job(|s| {
        s.pod_failure_policy = Some(PodFailurePolicy {
            rules: vec![rule("Ignore", vec![2]), rule("FailJob", vec![42])],
        })
    });
    let ignored = pod("a", "Failed", None, Some(2), "2026-12-07T05:00:00Z");
    let p = desired(&j, std::slice::from_ref(&ignored), now);
    assert_eq!((p.status.failed, p.create.len()), (None, 1));
    let fatal = pod("b", "Failed", None, Some(42), "2026-12-07T05:00:00Z");
    let p = desired(&j, &[ignored, fatal], now);
    assert_eq!(conditions(&p)[1].1, "PodFailurePolicy");
    assert_eq!(
        p.events[0].2,
        "Container c for pod /b failed with exit code 42 matching FailJob rule at index 1"
    );
}

#[test]
fn indexed_and_suspended() {
    let now = ts(NOW);
    let j = job(|s| {
        s.completion_mode = Some("Indexed".into());
        (s.completions, s.parallelism) = (Some(4), Some(2));
    });
    let p = desired(&j, &[], now);
    assert_eq!(p.create, vec![Some(0), Some(1)]);
    let pods = [
        pod("pi-0", "Succeeded", Some(0), Some(0), NOW),
        pod("pi-1", "Running", Some(1), None, NOW),
        pod("pi-3", "Succeeded", Some(3), Some(0), NOW),
    ];
    let p = desired(&j, &pods, now);
    assert_eq!(p.create, vec![Some(2)]);
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0,3"));
    assert_eq!(format_indexes(&parse_indexes("0-2,4,6-7")), "0-2,4,6-7");
    let pod = pod_for(&j, "default", Some(2));
    assert_eq!(
        pod.annotations().get(COMPLETION_INDEX).map(String::as_str),
        Some("2")
    );
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.hostname.as_deref()),
        Some("pi-2")
    );
    // Suspended: running pods go and the condition says so.
    let s = job(|s| s.suspend = Some(true));
    let p = desired(&s, &[self::pod("r", "Running", None, None, NOW)], now);
    assert_eq!(p.delete, vec!["r".to_string()]);
    assert_eq!(
        conditions(&p),
        vec![("Suspended".to_string(), "JobSuspended".to_string())]
    );
}

#[test]
fn a_success_policy_completes_an_indexed_job_early() {
    use k8s_openapi::api::batch::v1::{SuccessPolicy, SuccessPolicyRule};
    let now = ts(NOW);
    let j = job(|s| {
        s.completion_mode = Some("Indexed".into());
        (s.completions, s.parallelism) = (Some(3), Some(3));
        s.success_policy = Some(SuccessPolicy {
            rules: vec![SuccessPolicyRule {
                succeeded_indexes: Some("0".into()),
                succeeded_count: None,
            }],
        });
    });
    let running = pod("pi-1", "Running", Some(1), None, NOW);
    let p = desired(&j, std::slice::from_ref(&running), now);
    assert!(conditions(&p).is_empty());
    let leader = pod("pi-0", "Succeeded", Some(0), Some(0), NOW);
    let p = desired(&j, &[leader, running], now);
    assert_eq!(
        conditions(&p)[1],
        ("Complete".to_string(), "SuccessPolicy".to_string())
    );
    assert_eq!(p.delete, vec!["pi-1".to_string()]);
}

#[test]
fn replacements_of_terminating_pods() {
    let now = ts(NOW);
    let mut going = (*pod("a", "Running", None, None, NOW)).clone();
    going.metadata.deletion_timestamp = Some(Time(now));
    let going = Arc::new(going);
    // TerminatingOrFailed (the default): replaced at once.
    let p = desired(&job(|_| {}), std::slice::from_ref(&going), now);
    assert_eq!((p.create.len(), p.status.terminating), (1, Some(1)));
    // Failed: the replacement waits for the pod to be gone.
    let j = job(|s| s.pod_replacement_policy = Some("Failed".into()));
    assert!(desired(&j, &[going], now).create.is_empty());
}

#[test]
fn finished_jobs_expire_after_their_ttl() {
    let now = ts(NOW);
    let mut j = job(|s| s.ttl_seconds_after_finished = Some(30));
    j.status = Some(JobStatus {
        completion_time: Some(Time(ts("2026-12-07T05:59:50Z"))),
        conditions: Some(vec![condition(
            "Complete",
            "True",
            "CompletionsReached",
            "",
            now,
        )]),
        ..Default::default()
    });
    let p = desired(&j, &[], now);
    assert_eq!(
        (p.expired, p.requeue),
        (false, Some(Duration::from_secs(20)))
    );
    assert!(desired(&j, &[], ts("2026-12-07T06:00:30Z")).expired);
}

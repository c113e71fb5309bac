//! `k8s.io/api/batch/v1` messages: Job and CronJob.

use super::core::OBJECT_REFERENCE;
use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::pod::POD_TEMPLATE_SPEC;
use super::{field, msg, object, Message, BOOL, I32, I64, STR, TIME};

pub(crate) static JOB: Message = object!("Job", &JOB_SPEC, &JOB_STATUS);

static JOB_SPEC: Message = Message {
    name: "JobSpec",
    fields: &[
        field(1, "parallelism", I32).ptr(),
        field(2, "completions", I32).ptr(),
        field(3, "activeDeadlineSeconds", I64).ptr(),
        field(11, "podFailurePolicy", msg(&POD_FAILURE_POLICY)).ptr(),
        field(16, "successPolicy", msg(&SUCCESS_POLICY)).ptr(),
        field(7, "backoffLimit", I32).ptr(),
        field(12, "backoffLimitPerIndex", I32).ptr(),
        field(13, "maxFailedIndexes", I32).ptr(),
        field(4, "selector", msg(&LABEL_SELECTOR)).ptr(),
        field(5, "manualSelector", BOOL).ptr(),
        field(6, "template", msg(&POD_TEMPLATE_SPEC)),
        field(8, "ttlSecondsAfterFinished", I32).ptr(),
        field(9, "completionMode", STR).ptr(),
        field(10, "suspend", BOOL).ptr(),
        field(14, "podReplacementPolicy", STR).ptr(),
        field(15, "managedBy", STR).ptr(),
    ],
};

static POD_FAILURE_POLICY: Message = Message {
    name: "PodFailurePolicy",
    fields: &[field(1, "rules", msg(&POD_FAILURE_POLICY_RULE)).rep().req()],
};

static POD_FAILURE_POLICY_RULE: Message = Message {
    name: "PodFailurePolicyRule",
    fields: &[
        field(1, "action", STR).req(),
        field(
            2,
            "onExitCodes",
            msg(&POD_FAILURE_POLICY_ON_EXIT_CODES_REQUIREMENT),
        )
        .ptr(),
        field(
            3,
            "onPodConditions",
            msg(&POD_FAILURE_POLICY_ON_POD_CONDITIONS_PATTERN),
        )
        .rep(),
    ],
};

static POD_FAILURE_POLICY_ON_EXIT_CODES_REQUIREMENT: Message = Message {
    name: "PodFailurePolicyOnExitCodesRequirement",
    fields: &[
        field(1, "containerName", STR).ptr(),
        field(2, "operator", STR).req(),
        field(3, "values", I32).rep().req(),
    ],
};

static POD_FAILURE_POLICY_ON_POD_CONDITIONS_PATTERN: Message = Message {
    name: "PodFailurePolicyOnPodConditionsPattern",
    fields: &[field(1, "type", STR).req(), field(2, "status", STR).req()],
};

static SUCCESS_POLICY: Message = Message {
    name: "SuccessPolicy",
    fields: &[field(1, "rules", msg(&SUCCESS_POLICY_RULE)).rep().req()],
};

static SUCCESS_POLICY_RULE: Message = Message {
    name: "SuccessPolicyRule",
    fields: &[
        field(1, "succeededIndexes", STR).ptr(),
        field(2, "succeededCount", I32).ptr(),
    ],
};

static JOB_STATUS: Message = Message {
    name: "JobStatus",
    fields: &[
        field(1, "conditions", msg(&JOB_CONDITION)).rep(),
        field(2, "startTime", TIME).ptr(),
        field(3, "completionTime", TIME).ptr(),
        field(4, "active", I32),
        field(5, "succeeded", I32),
        field(6, "failed", I32),
        field(11, "terminating", I32).ptr(),
        field(7, "completedIndexes", STR),
        field(10, "failedIndexes", STR).ptr(),
        field(
            8,
            "uncountedTerminatedPods",
            msg(&UNCOUNTED_TERMINATED_PODS),
        )
        .ptr(),
        field(9, "ready", I32).ptr(),
    ],
};

static JOB_CONDITION: Message = Message {
    name: "JobCondition",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "status", STR).req(),
        field(3, "lastProbeTime", TIME),
        field(4, "lastTransitionTime", TIME),
        field(5, "reason", STR),
        field(6, "message", STR),
    ],
};

static UNCOUNTED_TERMINATED_PODS: Message = Message {
    name: "UncountedTerminatedPods",
    fields: &[
        field(1, "succeeded", STR).rep(),
        field(2, "failed", STR).rep(),
    ],
};

pub(crate) static CRON_JOB: Message = object!("CronJob", &CRON_JOB_SPEC, &CRON_JOB_STATUS);

static CRON_JOB_SPEC: Message = Message {
    name: "CronJobSpec",
    fields: &[
        field(1, "schedule", STR).req(),
        field(8, "timeZone", STR).ptr(),
        field(2, "startingDeadlineSeconds", I64).ptr(),
        field(3, "concurrencyPolicy", STR),
        field(4, "suspend", BOOL).ptr(),
        field(5, "jobTemplate", msg(&JOB_TEMPLATE_SPEC)),
        field(6, "successfulJobsHistoryLimit", I32).ptr(),
        field(7, "failedJobsHistoryLimit", I32).ptr(),
    ],
};

static JOB_TEMPLATE_SPEC: Message = Message {
    name: "JobTemplateSpec",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "spec", msg(&JOB_SPEC)),
    ],
};

static CRON_JOB_STATUS: Message = Message {
    name: "CronJobStatus",
    fields: &[
        field(1, "active", msg(&OBJECT_REFERENCE)).rep(),
        field(4, "lastScheduleTime", TIME).ptr(),
        field(5, "lastSuccessfulTime", TIME).ptr(),
    ],
};

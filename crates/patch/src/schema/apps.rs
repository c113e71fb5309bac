//! apps/v1 workloads. They embed the core PodTemplateSpec, so a Deployment's
//! containers merge exactly like a Pod's.

use super::core::POD_TEMPLATE_SPEC;
use super::{atomic, keyed, obj, Field, TypeDef, META, TYPE};

static WORKLOAD_STATUS: TypeDef = TypeDef {
    name: "WorkloadStatus",
    fields: &[keyed("conditions", TYPE)],
};

const SELECTOR: Field = atomic("selector");
const TEMPLATE: Field = obj("template", &POD_TEMPLATE_SPEC);
const STATUS: Field = obj("status", &WORKLOAD_STATUS);

static DEPLOYMENT_SPEC: TypeDef = TypeDef {
    name: "DeploymentSpec",
    // `strategy` is patchStrategy=retainKeys: honoured when a patch says `$retainKeys`.
    fields: &[SELECTOR, TEMPLATE],
};

pub(crate) static DEPLOYMENT: TypeDef = TypeDef {
    name: "Deployment",
    fields: &[META, obj("spec", &DEPLOYMENT_SPEC), STATUS],
};

static REPLICA_SET_SPEC: TypeDef = TypeDef {
    name: "ReplicaSetSpec",
    fields: &[SELECTOR, TEMPLATE],
};

pub(crate) static REPLICA_SET: TypeDef = TypeDef {
    name: "ReplicaSet",
    fields: &[META, obj("spec", &REPLICA_SET_SPEC), STATUS],
};

/// `volumeClaimTemplates` is atomic: it needs no row.
static STATEFUL_SET_SPEC: TypeDef = TypeDef {
    name: "StatefulSetSpec",
    fields: &[SELECTOR, TEMPLATE],
};

pub(crate) static STATEFUL_SET: TypeDef = TypeDef {
    name: "StatefulSet",
    fields: &[META, obj("spec", &STATEFUL_SET_SPEC), STATUS],
};

static DAEMON_SET_SPEC: TypeDef = TypeDef {
    name: "DaemonSetSpec",
    fields: &[SELECTOR, TEMPLATE],
};

pub(crate) static DAEMON_SET: TypeDef = TypeDef {
    name: "DaemonSet",
    fields: &[META, obj("spec", &DAEMON_SET_SPEC), STATUS],
};

/// A ReplicationController's selector is a plain label map.
static REPLICATION_CONTROLLER_SPEC: TypeDef = TypeDef {
    name: "ReplicationControllerSpec",
    fields: &[TEMPLATE],
};

pub(crate) static REPLICATION_CONTROLLER: TypeDef = TypeDef {
    name: "ReplicationController",
    fields: &[META, obj("spec", &REPLICATION_CONTROLLER_SPEC), STATUS],
};

/// batch/v1: a Job's template, and a CronJob's Job template.
static JOB_SPEC: TypeDef = TypeDef {
    name: "JobSpec",
    fields: &[SELECTOR, TEMPLATE],
};

pub(crate) static JOB: TypeDef = TypeDef {
    name: "Job",
    fields: &[META, obj("spec", &JOB_SPEC), STATUS],
};

static JOB_TEMPLATE_SPEC: TypeDef = TypeDef {
    name: "JobTemplateSpec",
    fields: &[META, obj("spec", &JOB_SPEC)],
};

static CRON_JOB_SPEC: TypeDef = TypeDef {
    name: "CronJobSpec",
    fields: &[obj("jobTemplate", &JOB_TEMPLATE_SPEC)],
};

pub(crate) static CRON_JOB: TypeDef = TypeDef {
    name: "CronJob",
    fields: &[META, obj("spec", &CRON_JOB_SPEC)],
};

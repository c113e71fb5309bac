//! `k8s.io/api/apps/v1` messages: Deployment, ReplicaSet, StatefulSet, DaemonSet.

use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::pod::POD_TEMPLATE_SPEC;
use super::volume::PERSISTENT_VOLUME_CLAIM;
use super::{field, msg, object, Kind, Message, BOOL, I32, I64, INT_OR_STR, STR, TIME};

pub(crate) static DEPLOYMENT: Message = object!("Deployment", &DEPLOYMENT_SPEC, &DEPLOYMENT_STATUS);

static DEPLOYMENT_SPEC: Message = Message {
    name: "DeploymentSpec",
    fields: &[
        field(1, "replicas", I32).ptr(),
        field(2, "selector", msg(&LABEL_SELECTOR)).ptr(),
        field(3, "template", msg(&POD_TEMPLATE_SPEC)),
        field(4, "strategy", msg(&DEPLOYMENT_STRATEGY)),
        field(5, "minReadySeconds", I32),
        field(6, "revisionHistoryLimit", I32).ptr(),
        field(7, "paused", BOOL),
        field(9, "progressDeadlineSeconds", I32).ptr(),
    ],
};

static DEPLOYMENT_STRATEGY: Message = Message {
    name: "DeploymentStrategy",
    fields: &[
        field(1, "type", STR),
        field(2, "rollingUpdate", msg(&ROLLING_UPDATE_DEPLOYMENT)).ptr(),
    ],
};

static ROLLING_UPDATE_DEPLOYMENT: Message = Message {
    name: "RollingUpdateDeployment",
    fields: &[
        field(1, "maxUnavailable", INT_OR_STR).ptr(),
        field(2, "maxSurge", INT_OR_STR).ptr(),
    ],
};

static DEPLOYMENT_STATUS: Message = Message {
    name: "DeploymentStatus",
    fields: &[
        field(1, "observedGeneration", I64),
        field(2, "replicas", I32),
        field(3, "updatedReplicas", I32),
        field(7, "readyReplicas", I32),
        field(4, "availableReplicas", I32),
        field(5, "unavailableReplicas", I32),
        field(9, "terminatingReplicas", I32).ptr(),
        field(6, "conditions", msg(&DEPLOYMENT_CONDITION)).rep(),
        field(8, "collisionCount", I32).ptr(),
    ],
};

static DEPLOYMENT_CONDITION: Message = Message {
    name: "DeploymentCondition",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "status", STR).req(),
        field(6, "lastUpdateTime", TIME),
        field(7, "lastTransitionTime", TIME),
        field(4, "reason", STR),
        field(5, "message", STR),
    ],
};

pub(crate) static REPLICA_SET: Message =
    object!("ReplicaSet", &REPLICA_SET_SPEC, &REPLICA_SET_STATUS);

static REPLICA_SET_SPEC: Message = Message {
    name: "ReplicaSetSpec",
    fields: &[
        field(1, "replicas", I32).ptr(),
        field(4, "minReadySeconds", I32),
        field(2, "selector", msg(&LABEL_SELECTOR)).ptr(),
        field(3, "template", msg(&POD_TEMPLATE_SPEC)),
    ],
};

static REPLICA_SET_STATUS: Message = Message {
    name: "ReplicaSetStatus",
    fields: &[
        field(1, "replicas", I32).req(),
        field(2, "fullyLabeledReplicas", I32),
        field(4, "readyReplicas", I32),
        field(5, "availableReplicas", I32),
        field(7, "terminatingReplicas", I32).ptr(),
        field(3, "observedGeneration", I64),
        field(6, "conditions", msg(&APPS_CONDITION)).rep(),
    ],
};

/// `ReplicaSetCondition`, `StatefulSetCondition` and `DaemonSetCondition` share this layout.
static APPS_CONDITION: Message = Message {
    name: "ReplicaSetCondition",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "status", STR).req(),
        field(3, "lastTransitionTime", TIME),
        field(4, "reason", STR),
        field(5, "message", STR),
    ],
};

pub(crate) static STATEFUL_SET: Message =
    object!("StatefulSet", &STATEFUL_SET_SPEC, &STATEFUL_SET_STATUS);

static STATEFUL_SET_SPEC: Message = Message {
    name: "StatefulSetSpec",
    fields: &[
        field(1, "replicas", I32).ptr(),
        field(2, "selector", msg(&LABEL_SELECTOR)).ptr(),
        field(3, "template", msg(&POD_TEMPLATE_SPEC)),
        field(4, "volumeClaimTemplates", msg(&PERSISTENT_VOLUME_CLAIM)).rep(),
        field(5, "serviceName", STR),
        field(6, "podManagementPolicy", STR),
        field(7, "updateStrategy", msg(&STATEFUL_SET_UPDATE_STRATEGY)),
        field(8, "revisionHistoryLimit", I32).ptr(),
        field(9, "minReadySeconds", I32),
        field(
            10,
            "persistentVolumeClaimRetentionPolicy",
            msg(&STATEFUL_SET_PERSISTENT_VOLUME_CLAIM_RETENTION_POLICY),
        )
        .ptr(),
        field(11, "ordinals", msg(&STATEFUL_SET_ORDINALS)).ptr(),
    ],
};

static STATEFUL_SET_UPDATE_STRATEGY: Message = Message {
    name: "StatefulSetUpdateStrategy",
    fields: &[
        field(1, "type", STR),
        field(
            2,
            "rollingUpdate",
            msg(&ROLLING_UPDATE_STATEFUL_SET_STRATEGY),
        )
        .ptr(),
    ],
};

static ROLLING_UPDATE_STATEFUL_SET_STRATEGY: Message = Message {
    name: "RollingUpdateStatefulSetStrategy",
    fields: &[
        field(1, "partition", I32).ptr(),
        field(2, "maxUnavailable", INT_OR_STR).ptr(),
    ],
};

static STATEFUL_SET_PERSISTENT_VOLUME_CLAIM_RETENTION_POLICY: Message = Message {
    name: "StatefulSetPersistentVolumeClaimRetentionPolicy",
    fields: &[field(1, "whenDeleted", STR), field(2, "whenScaled", STR)],
};

static STATEFUL_SET_ORDINALS: Message = Message {
    name: "StatefulSetOrdinals",
    fields: &[field(1, "start", I32)],
};

static STATEFUL_SET_STATUS: Message = Message {
    name: "StatefulSetStatus",
    fields: &[
        field(1, "observedGeneration", I64),
        field(2, "replicas", I32).req(),
        field(3, "readyReplicas", I32),
        field(4, "currentReplicas", I32),
        field(5, "updatedReplicas", I32),
        field(6, "currentRevision", STR),
        field(7, "updateRevision", STR),
        field(9, "collisionCount", I32).ptr(),
        field(10, "conditions", msg(&APPS_CONDITION)).rep(),
        field(11, "availableReplicas", I32),
    ],
};

pub(crate) static DAEMON_SET: Message = object!("DaemonSet", &DAEMON_SET_SPEC, &DAEMON_SET_STATUS);

static DAEMON_SET_SPEC: Message = Message {
    name: "DaemonSetSpec",
    fields: &[
        field(1, "selector", msg(&LABEL_SELECTOR)).ptr(),
        field(2, "template", msg(&POD_TEMPLATE_SPEC)),
        field(3, "updateStrategy", msg(&DAEMON_SET_UPDATE_STRATEGY)),
        field(4, "minReadySeconds", I32),
        field(6, "revisionHistoryLimit", I32).ptr(),
    ],
};

static DAEMON_SET_UPDATE_STRATEGY: Message = Message {
    name: "DaemonSetUpdateStrategy",
    fields: &[
        field(1, "type", STR),
        field(2, "rollingUpdate", msg(&ROLLING_UPDATE_DAEMON_SET)).ptr(),
    ],
};

static ROLLING_UPDATE_DAEMON_SET: Message = Message {
    name: "RollingUpdateDaemonSet",
    fields: &[
        field(1, "maxUnavailable", INT_OR_STR).ptr(),
        field(2, "maxSurge", INT_OR_STR).ptr(),
    ],
};

static DAEMON_SET_STATUS: Message = Message {
    name: "DaemonSetStatus",
    fields: &[
        field(1, "currentNumberScheduled", I32).req(),
        field(2, "numberMisscheduled", I32).req(),
        field(3, "desiredNumberScheduled", I32).req(),
        field(4, "numberReady", I32).req(),
        field(5, "observedGeneration", I64),
        field(6, "updatedNumberScheduled", I32),
        field(7, "numberAvailable", I32),
        field(8, "numberUnavailable", I32),
        field(9, "collisionCount", I32).ptr(),
        field(10, "conditions", msg(&APPS_CONDITION)).rep(),
    ],
};

pub(crate) static CONTROLLER_REVISION: Message = Message {
    name: "ControllerRevision",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "data", Kind::RawExtension),
        field(3, "revision", I64).req(),
    ],
};

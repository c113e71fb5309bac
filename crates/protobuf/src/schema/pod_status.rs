//! `k8s.io/api/core/v1` PodStatus and container statuses.

use super::pod::RESOURCE_REQUIREMENTS;
use super::{field, msg, Message, BOOL, I32, I64, MAP_QTY, STR, TIME};

pub(crate) static POD_STATUS: Message = Message {
    name: "PodStatus",
    fields: &[
        field(17, "observedGeneration", I64),
        field(1, "phase", STR),
        field(2, "conditions", msg(&POD_CONDITION)).rep(),
        field(3, "message", STR),
        field(4, "reason", STR),
        field(11, "nominatedNodeName", STR),
        field(5, "hostIP", STR),
        field(16, "hostIPs", msg(&HOST_IP)).rep(),
        field(6, "podIP", STR),
        field(12, "podIPs", msg(&POD_IP)).rep(),
        field(7, "startTime", TIME).ptr(),
        field(10, "initContainerStatuses", msg(&CONTAINER_STATUS)).rep(),
        field(8, "containerStatuses", msg(&CONTAINER_STATUS)).rep(),
        field(9, "qosClass", STR),
        field(13, "ephemeralContainerStatuses", msg(&CONTAINER_STATUS)).rep(),
        field(14, "resize", STR),
        field(15, "resourceClaimStatuses", msg(&POD_RESOURCE_CLAIM_STATUS)).rep(),
    ],
};

static POD_CONDITION: Message = Message {
    name: "PodCondition",
    fields: &[
        field(1, "type", STR).req(),
        field(7, "observedGeneration", I64),
        field(2, "status", STR).req(),
        field(3, "lastProbeTime", TIME),
        field(4, "lastTransitionTime", TIME),
        field(5, "reason", STR),
        field(6, "message", STR),
    ],
};

static HOST_IP: Message = Message {
    name: "HostIP",
    fields: &[field(1, "ip", STR).req()],
};

static POD_IP: Message = Message {
    name: "PodIP",
    fields: &[field(1, "ip", STR).req()],
};

static POD_RESOURCE_CLAIM_STATUS: Message = Message {
    name: "PodResourceClaimStatus",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "resourceClaimName", STR).ptr(),
    ],
};

static CONTAINER_STATUS: Message = Message {
    name: "ContainerStatus",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "state", msg(&CONTAINER_STATE)),
        field(3, "lastState", msg(&CONTAINER_STATE)),
        field(4, "ready", BOOL).req(),
        field(5, "restartCount", I32).req(),
        field(6, "image", STR).req(),
        field(7, "imageID", STR).req(),
        field(8, "containerID", STR),
        field(9, "started", BOOL).ptr(),
        field(10, "allocatedResources", MAP_QTY),
        field(11, "resources", msg(&RESOURCE_REQUIREMENTS)).ptr(),
        field(12, "volumeMounts", msg(&VOLUME_MOUNT_STATUS)).rep(),
        field(13, "user", msg(&CONTAINER_USER)).ptr(),
        field(14, "allocatedResourcesStatus", msg(&RESOURCE_STATUS)).rep(),
        field(15, "stopSignal", STR).ptr(),
    ],
};

static CONTAINER_STATE: Message = Message {
    name: "ContainerState",
    fields: &[
        field(1, "waiting", msg(&CONTAINER_STATE_WAITING)).ptr(),
        field(2, "running", msg(&CONTAINER_STATE_RUNNING)).ptr(),
        field(3, "terminated", msg(&CONTAINER_STATE_TERMINATED)).ptr(),
    ],
};

static CONTAINER_STATE_WAITING: Message = Message {
    name: "ContainerStateWaiting",
    fields: &[field(1, "reason", STR), field(2, "message", STR)],
};

static CONTAINER_STATE_RUNNING: Message = Message {
    name: "ContainerStateRunning",
    fields: &[field(1, "startedAt", TIME)],
};

static CONTAINER_STATE_TERMINATED: Message = Message {
    name: "ContainerStateTerminated",
    fields: &[
        field(1, "exitCode", I32).req(),
        field(2, "signal", I32),
        field(3, "reason", STR),
        field(4, "message", STR),
        field(5, "startedAt", TIME),
        field(6, "finishedAt", TIME),
        field(7, "containerID", STR),
    ],
};

static VOLUME_MOUNT_STATUS: Message = Message {
    name: "VolumeMountStatus",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "mountPath", STR).req(),
        field(3, "readOnly", BOOL),
        field(4, "recursiveReadOnly", STR).ptr(),
    ],
};

static CONTAINER_USER: Message = Message {
    name: "ContainerUser",
    fields: &[field(1, "linux", msg(&LINUX_CONTAINER_USER)).ptr()],
};

static LINUX_CONTAINER_USER: Message = Message {
    name: "LinuxContainerUser",
    fields: &[
        field(1, "uid", I64).req(),
        field(2, "gid", I64).req(),
        field(3, "supplementalGroups", I64).rep(),
    ],
};

static RESOURCE_STATUS: Message = Message {
    name: "ResourceStatus",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "resources", msg(&RESOURCE_HEALTH)).rep(),
    ],
};

static RESOURCE_HEALTH: Message = Message {
    name: "ResourceHealth",
    fields: &[field(1, "resourceID", STR).req(), field(2, "health", STR)],
};

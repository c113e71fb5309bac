//! `k8s.io/api/core/v1` volumes and PersistentVolumeClaim.
//!
//! Only the common volume sources are described; the deprecated in-tree cloud and
//! storage-vendor sources are reported as unknown fields.

use super::core::LOCAL_OBJECT_REFERENCE;
use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::pod::{OBJECT_FIELD_SELECTOR, RESOURCE_FIELD_SELECTOR};
use super::{field, msg, object, Message, BOOL, I32, I64, MAP_QTY, MAP_STR, QTY, STR, TIME};

pub(crate) static VOLUME: Message = Message {
    name: "Volume",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "volumeSource", msg(&VOLUME_SOURCE)).inline(),
    ],
};

static VOLUME_SOURCE: Message = Message {
    name: "VolumeSource",
    fields: &[
        field(1, "hostPath", msg(&HOST_PATH_VOLUME_SOURCE)).ptr(),
        field(2, "emptyDir", msg(&EMPTY_DIR_VOLUME_SOURCE)).ptr(),
        field(6, "secret", msg(&SECRET_VOLUME_SOURCE)).ptr(),
        field(7, "nfs", msg(&NFS_VOLUME_SOURCE)).ptr(),
        field(
            10,
            "persistentVolumeClaim",
            msg(&PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE),
        )
        .ptr(),
        field(16, "downwardAPI", msg(&DOWNWARD_API_VOLUME_SOURCE)).ptr(),
        field(19, "configMap", msg(&CONFIG_MAP_VOLUME_SOURCE)).ptr(),
        field(26, "projected", msg(&PROJECTED_VOLUME_SOURCE)).ptr(),
        field(28, "csi", msg(&CSI_VOLUME_SOURCE)).ptr(),
        field(29, "ephemeral", msg(&EPHEMERAL_VOLUME_SOURCE)).ptr(),
        field(30, "image", msg(&IMAGE_VOLUME_SOURCE)).ptr(),
    ],
};

static HOST_PATH_VOLUME_SOURCE: Message = Message {
    name: "HostPathVolumeSource",
    fields: &[field(1, "path", STR).req(), field(2, "type", STR).ptr()],
};

static EMPTY_DIR_VOLUME_SOURCE: Message = Message {
    name: "EmptyDirVolumeSource",
    fields: &[field(1, "medium", STR), field(2, "sizeLimit", QTY).ptr()],
};

static SECRET_VOLUME_SOURCE: Message = Message {
    name: "SecretVolumeSource",
    fields: &[
        field(1, "secretName", STR),
        field(2, "items", msg(&KEY_TO_PATH)).rep(),
        field(3, "defaultMode", I32).ptr(),
        field(4, "optional", BOOL).ptr(),
    ],
};

static NFS_VOLUME_SOURCE: Message = Message {
    name: "NFSVolumeSource",
    fields: &[
        field(1, "server", STR).req(),
        field(2, "path", STR).req(),
        field(3, "readOnly", BOOL),
    ],
};

static PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: Message = Message {
    name: "PersistentVolumeClaimVolumeSource",
    fields: &[field(1, "claimName", STR).req(), field(2, "readOnly", BOOL)],
};

static DOWNWARD_API_VOLUME_SOURCE: Message = Message {
    name: "DownwardAPIVolumeSource",
    fields: &[
        field(1, "items", msg(&DOWNWARD_API_VOLUME_FILE)).rep(),
        field(2, "defaultMode", I32).ptr(),
    ],
};

static DOWNWARD_API_VOLUME_FILE: Message = Message {
    name: "DownwardAPIVolumeFile",
    fields: &[
        field(1, "path", STR).req(),
        field(2, "fieldRef", msg(&OBJECT_FIELD_SELECTOR)).ptr(),
        field(3, "resourceFieldRef", msg(&RESOURCE_FIELD_SELECTOR)).ptr(),
        field(4, "mode", I32).ptr(),
    ],
};

static CONFIG_MAP_VOLUME_SOURCE: Message = Message {
    name: "ConfigMapVolumeSource",
    fields: &[
        field(1, "localObjectReference", msg(&LOCAL_OBJECT_REFERENCE)).inline(),
        field(2, "items", msg(&KEY_TO_PATH)).rep(),
        field(3, "defaultMode", I32).ptr(),
        field(4, "optional", BOOL).ptr(),
    ],
};

static KEY_TO_PATH: Message = Message {
    name: "KeyToPath",
    fields: &[
        field(1, "key", STR).req(),
        field(2, "path", STR).req(),
        field(3, "mode", I32).ptr(),
    ],
};

static PROJECTED_VOLUME_SOURCE: Message = Message {
    name: "ProjectedVolumeSource",
    fields: &[
        field(1, "sources", msg(&VOLUME_PROJECTION)).rep(),
        field(2, "defaultMode", I32).ptr(),
    ],
};

static VOLUME_PROJECTION: Message = Message {
    name: "VolumeProjection",
    fields: &[
        field(1, "secret", msg(&SECRET_PROJECTION)).ptr(),
        field(2, "downwardAPI", msg(&DOWNWARD_API_PROJECTION)).ptr(),
        field(3, "configMap", msg(&CONFIG_MAP_PROJECTION)).ptr(),
        field(
            4,
            "serviceAccountToken",
            msg(&SERVICE_ACCOUNT_TOKEN_PROJECTION),
        )
        .ptr(),
        field(
            5,
            "clusterTrustBundle",
            msg(&CLUSTER_TRUST_BUNDLE_PROJECTION),
        )
        .ptr(),
    ],
};

static SECRET_PROJECTION: Message = Message {
    name: "SecretProjection",
    fields: &[
        field(1, "localObjectReference", msg(&LOCAL_OBJECT_REFERENCE)).inline(),
        field(2, "items", msg(&KEY_TO_PATH)).rep(),
        field(4, "optional", BOOL).ptr(),
    ],
};

static CONFIG_MAP_PROJECTION: Message = Message {
    name: "ConfigMapProjection",
    fields: &[
        field(1, "localObjectReference", msg(&LOCAL_OBJECT_REFERENCE)).inline(),
        field(2, "items", msg(&KEY_TO_PATH)).rep(),
        field(4, "optional", BOOL).ptr(),
    ],
};

static DOWNWARD_API_PROJECTION: Message = Message {
    name: "DownwardAPIProjection",
    fields: &[field(1, "items", msg(&DOWNWARD_API_VOLUME_FILE)).rep()],
};

static SERVICE_ACCOUNT_TOKEN_PROJECTION: Message = Message {
    name: "ServiceAccountTokenProjection",
    fields: &[
        field(1, "audience", STR),
        field(2, "expirationSeconds", I64).ptr(),
        field(3, "path", STR).req(),
    ],
};

static CLUSTER_TRUST_BUNDLE_PROJECTION: Message = Message {
    name: "ClusterTrustBundleProjection",
    fields: &[
        field(1, "name", STR).ptr(),
        field(2, "signerName", STR).ptr(),
        field(3, "labelSelector", msg(&LABEL_SELECTOR)).ptr(),
        field(5, "optional", BOOL).ptr(),
        field(4, "path", STR).req(),
    ],
};

static CSI_VOLUME_SOURCE: Message = Message {
    name: "CSIVolumeSource",
    fields: &[
        field(1, "driver", STR).req(),
        field(2, "readOnly", BOOL).ptr(),
        field(3, "fsType", STR).ptr(),
        field(4, "volumeAttributes", MAP_STR),
        field(5, "nodePublishSecretRef", msg(&LOCAL_OBJECT_REFERENCE)).ptr(),
    ],
};

static EPHEMERAL_VOLUME_SOURCE: Message = Message {
    name: "EphemeralVolumeSource",
    fields: &[field(
        1,
        "volumeClaimTemplate",
        msg(&PERSISTENT_VOLUME_CLAIM_TEMPLATE),
    )
    .ptr()],
};

static PERSISTENT_VOLUME_CLAIM_TEMPLATE: Message = Message {
    name: "PersistentVolumeClaimTemplate",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "spec", msg(&PERSISTENT_VOLUME_CLAIM_SPEC)),
    ],
};

static IMAGE_VOLUME_SOURCE: Message = Message {
    name: "ImageVolumeSource",
    fields: &[field(1, "reference", STR), field(2, "pullPolicy", STR)],
};

pub(crate) static PERSISTENT_VOLUME_CLAIM: Message = object!(
    "PersistentVolumeClaim",
    &PERSISTENT_VOLUME_CLAIM_SPEC,
    &PERSISTENT_VOLUME_CLAIM_STATUS
);

static PERSISTENT_VOLUME_CLAIM_SPEC: Message = Message {
    name: "PersistentVolumeClaimSpec",
    fields: &[
        field(1, "accessModes", STR).rep(),
        field(4, "selector", msg(&LABEL_SELECTOR)).ptr(),
        field(2, "resources", msg(&VOLUME_RESOURCE_REQUIREMENTS)),
        field(3, "volumeName", STR),
        field(5, "storageClassName", STR).ptr(),
        field(6, "volumeMode", STR).ptr(),
        field(7, "dataSource", msg(&TYPED_LOCAL_OBJECT_REFERENCE)).ptr(),
        field(8, "dataSourceRef", msg(&TYPED_OBJECT_REFERENCE)).ptr(),
        field(9, "volumeAttributesClassName", STR).ptr(),
    ],
};

static VOLUME_RESOURCE_REQUIREMENTS: Message = Message {
    name: "VolumeResourceRequirements",
    fields: &[field(1, "limits", MAP_QTY), field(2, "requests", MAP_QTY)],
};

pub(crate) static TYPED_LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "TypedLocalObjectReference",
    fields: &[
        field(1, "apiGroup", STR).ptr(),
        field(2, "kind", STR).req(),
        field(3, "name", STR).req(),
    ],
};

static TYPED_OBJECT_REFERENCE: Message = Message {
    name: "TypedObjectReference",
    fields: &[
        field(1, "apiGroup", STR).ptr(),
        field(2, "kind", STR).req(),
        field(3, "name", STR).req(),
        field(4, "namespace", STR).ptr(),
    ],
};

static PERSISTENT_VOLUME_CLAIM_STATUS: Message = Message {
    name: "PersistentVolumeClaimStatus",
    fields: &[
        field(1, "phase", STR),
        field(2, "accessModes", STR).rep(),
        field(3, "capacity", MAP_QTY),
        field(4, "conditions", msg(&PERSISTENT_VOLUME_CLAIM_CONDITION)).rep(),
        field(5, "allocatedResources", MAP_QTY),
        field(7, "allocatedResourceStatuses", MAP_STR),
        field(8, "currentVolumeAttributesClassName", STR).ptr(),
        field(9, "modifyVolumeStatus", msg(&MODIFY_VOLUME_STATUS)).ptr(),
    ],
};

static PERSISTENT_VOLUME_CLAIM_CONDITION: Message = Message {
    name: "PersistentVolumeClaimCondition",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "status", STR).req(),
        field(3, "lastProbeTime", TIME),
        field(4, "lastTransitionTime", TIME),
        field(5, "reason", STR),
        field(6, "message", STR),
    ],
};

static MODIFY_VOLUME_STATUS: Message = Message {
    name: "ModifyVolumeStatus",
    fields: &[
        field(1, "targetVolumeAttributesClassName", STR),
        field(2, "status", STR).req(),
    ],
};

//! `k8s.io/apimachinery/pkg/apis/meta/v1` messages.

use super::{field, msg, Kind, Message, BOOL, I64, MAP_STR, STR, TIME};

pub(crate) static OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        field(1, "name", STR),
        field(2, "generateName", STR),
        field(3, "namespace", STR),
        field(4, "selfLink", STR),
        field(5, "uid", STR),
        field(6, "resourceVersion", STR),
        field(7, "generation", I64),
        field(8, "creationTimestamp", TIME),
        field(9, "deletionTimestamp", TIME).ptr(),
        field(10, "deletionGracePeriodSeconds", I64).ptr(),
        field(11, "labels", MAP_STR),
        field(12, "annotations", MAP_STR),
        field(13, "ownerReferences", msg(&OWNER_REFERENCE)).rep(),
        field(14, "finalizers", STR).rep(),
        field(17, "managedFields", msg(&MANAGED_FIELDS_ENTRY)).rep(),
    ],
};

pub(crate) static OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        field(5, "apiVersion", STR).req(),
        field(1, "kind", STR).req(),
        field(3, "name", STR).req(),
        field(4, "uid", STR).req(),
        field(6, "controller", BOOL).ptr(),
        field(7, "blockOwnerDeletion", BOOL).ptr(),
    ],
};

pub(crate) static MANAGED_FIELDS_ENTRY: Message = Message {
    name: "ManagedFieldsEntry",
    fields: &[
        field(1, "manager", STR),
        field(2, "operation", STR),
        field(3, "apiVersion", STR),
        field(4, "time", TIME).ptr(),
        field(6, "fieldsType", STR),
        field(7, "fieldsV1", Kind::FieldsV1).ptr(),
        field(8, "subresource", STR),
    ],
};

pub(crate) static LABEL_SELECTOR: Message = Message {
    name: "LabelSelector",
    fields: &[
        field(1, "matchLabels", MAP_STR),
        field(2, "matchExpressions", msg(&LABEL_SELECTOR_REQUIREMENT)).rep(),
    ],
};

pub(crate) static LABEL_SELECTOR_REQUIREMENT: Message = Message {
    name: "LabelSelectorRequirement",
    fields: &[
        field(1, "key", STR).req(),
        field(2, "operator", STR).req(),
        field(3, "values", STR).rep(),
    ],
};

pub(crate) static CONDITION: Message = Message {
    name: "Condition",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "status", STR).req(),
        field(3, "observedGeneration", I64),
        field(4, "lastTransitionTime", TIME),
        field(5, "reason", STR).req(),
        field(6, "message", STR).req(),
    ],
};

/// `metav1.DeleteOptions`: the body of a DELETE (and of an Eviction).
pub(crate) static DELETE_OPTIONS: Message = Message {
    name: "DeleteOptions",
    fields: &[
        field(1, "gracePeriodSeconds", I64).ptr(),
        field(2, "preconditions", msg(&PRECONDITIONS)).ptr(),
        field(3, "orphanDependents", BOOL).ptr(),
        field(4, "propagationPolicy", STR).ptr(),
        field(5, "dryRun", STR).rep(),
        field(6, "ignoreStoreReadErrorWithClusterBreakingPotential", BOOL).ptr(),
    ],
};

static PRECONDITIONS: Message = Message {
    name: "Preconditions",
    fields: &[
        field(1, "uid", STR).ptr(),
        field(2, "resourceVersion", STR).ptr(),
    ],
};

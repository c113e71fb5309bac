//! `k8s.io/api/policy/v1` PodDisruptionBudget and `k8s.io/api/scheduling/v1`
//! PriorityClass.

use super::meta::{CONDITION, DELETE_OPTIONS, LABEL_SELECTOR, OBJECT_META};
use super::{field, msg, object, Message, BOOL, I32, I64, INT_OR_STR, MAP_TIME, STR};

/// `policy/v1` Eviction: what `kubectl drain` posts to `pods/<name>/eviction`.
pub(crate) static EVICTION: Message = Message {
    name: "Eviction",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "deleteOptions", msg(&DELETE_OPTIONS)).ptr(),
    ],
};

pub(crate) static POD_DISRUPTION_BUDGET: Message = object!(
    "PodDisruptionBudget",
    &POD_DISRUPTION_BUDGET_SPEC,
    &POD_DISRUPTION_BUDGET_STATUS
);

static POD_DISRUPTION_BUDGET_SPEC: Message = Message {
    name: "PodDisruptionBudgetSpec",
    fields: &[
        field(1, "minAvailable", INT_OR_STR).ptr(),
        field(2, "selector", msg(&LABEL_SELECTOR)).ptr(),
        field(3, "maxUnavailable", INT_OR_STR).ptr(),
        field(4, "unhealthyPodEvictionPolicy", STR).ptr(),
    ],
};

static POD_DISRUPTION_BUDGET_STATUS: Message = Message {
    name: "PodDisruptionBudgetStatus",
    fields: &[
        field(1, "observedGeneration", I64),
        field(2, "disruptedPods", MAP_TIME),
        field(3, "disruptionsAllowed", I32).req(),
        field(4, "currentHealthy", I32).req(),
        field(5, "desiredHealthy", I32).req(),
        field(6, "expectedPods", I32).req(),
        field(7, "conditions", msg(&CONDITION)).rep(),
    ],
};

pub(crate) static PRIORITY_CLASS: Message = Message {
    name: "PriorityClass",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "value", I32).req(),
        field(3, "globalDefault", BOOL),
        field(4, "description", STR),
        field(5, "preemptionPolicy", STR).ptr(),
    ],
};

//! `k8s.io/api/autoscaling` HorizontalPodAutoscaler, v1 and v2 (`kubectl autoscale`).

use super::meta::LABEL_SELECTOR;
use super::{field, msg, object, Message, I32, I64, QTY, STR, TIME};

pub(crate) static HORIZONTAL_POD_AUTOSCALER_V1: Message =
    object!("HorizontalPodAutoscaler", &HPA_V1_SPEC, &HPA_V1_STATUS);

static HPA_V1_SPEC: Message = Message {
    name: "HorizontalPodAutoscalerSpec",
    fields: &[
        field(1, "scaleTargetRef", msg(&CROSS_VERSION_OBJECT_REFERENCE)),
        field(2, "minReplicas", I32).ptr(),
        field(3, "maxReplicas", I32).req(),
        field(4, "targetCPUUtilizationPercentage", I32).ptr(),
    ],
};

static HPA_V1_STATUS: Message = Message {
    name: "HorizontalPodAutoscalerStatus",
    fields: &[
        field(1, "observedGeneration", I64).ptr(),
        field(2, "lastScaleTime", TIME).ptr(),
        field(3, "currentReplicas", I32).req(),
        field(4, "desiredReplicas", I32).req(),
        field(5, "currentCPUUtilizationPercentage", I32).ptr(),
    ],
};

/// The same message in both versions.
static CROSS_VERSION_OBJECT_REFERENCE: Message = Message {
    name: "CrossVersionObjectReference",
    fields: &[
        field(1, "kind", STR).req(),
        field(2, "name", STR).req(),
        field(3, "apiVersion", STR),
    ],
};

pub(crate) static HORIZONTAL_POD_AUTOSCALER_V2: Message =
    object!("HorizontalPodAutoscaler", &HPA_V2_SPEC, &HPA_V2_STATUS);

static HPA_V2_SPEC: Message = Message {
    name: "HorizontalPodAutoscalerSpec",
    fields: &[
        field(1, "scaleTargetRef", msg(&CROSS_VERSION_OBJECT_REFERENCE)),
        field(2, "minReplicas", I32).ptr(),
        field(3, "maxReplicas", I32).req(),
        field(4, "metrics", msg(&METRIC_SPEC)).rep(),
        field(5, "behavior", msg(&HPA_BEHAVIOR)).ptr(),
    ],
};

static HPA_BEHAVIOR: Message = Message {
    name: "HorizontalPodAutoscalerBehavior",
    fields: &[
        field(1, "scaleUp", msg(&HPA_SCALING_RULES)).ptr(),
        field(2, "scaleDown", msg(&HPA_SCALING_RULES)).ptr(),
    ],
};

static HPA_SCALING_RULES: Message = Message {
    name: "HPAScalingRules",
    fields: &[
        field(3, "stabilizationWindowSeconds", I32).ptr(),
        field(1, "selectPolicy", STR).ptr(),
        field(2, "policies", msg(&HPA_SCALING_POLICY)).rep(),
        field(4, "tolerance", QTY).ptr(),
    ],
};

static HPA_SCALING_POLICY: Message = Message {
    name: "HPAScalingPolicy",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "value", I32).req(),
        field(3, "periodSeconds", I32).req(),
    ],
};

static METRIC_SPEC: Message = Message {
    name: "MetricSpec",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "object", msg(&OBJECT_METRIC_SOURCE)).ptr(),
        field(3, "pods", msg(&PODS_METRIC_SOURCE)).ptr(),
        field(4, "resource", msg(&RESOURCE_METRIC_SOURCE)).ptr(),
        field(
            7,
            "containerResource",
            msg(&CONTAINER_RESOURCE_METRIC_SOURCE),
        )
        .ptr(),
        field(5, "external", msg(&EXTERNAL_METRIC_SOURCE)).ptr(),
    ],
};

static OBJECT_METRIC_SOURCE: Message = Message {
    name: "ObjectMetricSource",
    fields: &[
        field(1, "describedObject", msg(&CROSS_VERSION_OBJECT_REFERENCE)),
        field(2, "target", msg(&METRIC_TARGET)),
        field(3, "metric", msg(&METRIC_IDENTIFIER)),
    ],
};

static PODS_METRIC_SOURCE: Message = Message {
    name: "PodsMetricSource",
    fields: &[
        field(1, "metric", msg(&METRIC_IDENTIFIER)),
        field(2, "target", msg(&METRIC_TARGET)),
    ],
};

static RESOURCE_METRIC_SOURCE: Message = Message {
    name: "ResourceMetricSource",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "target", msg(&METRIC_TARGET)),
    ],
};

static CONTAINER_RESOURCE_METRIC_SOURCE: Message = Message {
    name: "ContainerResourceMetricSource",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "target", msg(&METRIC_TARGET)),
        field(3, "container", STR).req(),
    ],
};

static EXTERNAL_METRIC_SOURCE: Message = Message {
    name: "ExternalMetricSource",
    fields: &[
        field(1, "metric", msg(&METRIC_IDENTIFIER)),
        field(2, "target", msg(&METRIC_TARGET)),
    ],
};

static METRIC_IDENTIFIER: Message = Message {
    name: "MetricIdentifier",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "selector", msg(&LABEL_SELECTOR)).ptr(),
    ],
};

static METRIC_TARGET: Message = Message {
    name: "MetricTarget",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "value", QTY).ptr(),
        field(3, "averageValue", QTY).ptr(),
        field(4, "averageUtilization", I32).ptr(),
    ],
};

static HPA_V2_STATUS: Message = Message {
    name: "HorizontalPodAutoscalerStatus",
    fields: &[
        field(1, "observedGeneration", I64).ptr(),
        field(2, "lastScaleTime", TIME).ptr(),
        field(3, "currentReplicas", I32),
        field(4, "desiredReplicas", I32).req(),
        field(5, "currentMetrics", msg(&METRIC_STATUS)).rep().req(),
        field(6, "conditions", msg(&HPA_CONDITION)).rep(),
    ],
};

static METRIC_STATUS: Message = Message {
    name: "MetricStatus",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "object", msg(&OBJECT_METRIC_STATUS)).ptr(),
        field(3, "pods", msg(&PODS_METRIC_STATUS)).ptr(),
        field(4, "resource", msg(&RESOURCE_METRIC_STATUS)).ptr(),
        field(
            7,
            "containerResource",
            msg(&CONTAINER_RESOURCE_METRIC_STATUS),
        )
        .ptr(),
        field(5, "external", msg(&EXTERNAL_METRIC_STATUS)).ptr(),
    ],
};

static OBJECT_METRIC_STATUS: Message = Message {
    name: "ObjectMetricStatus",
    fields: &[
        field(1, "metric", msg(&METRIC_IDENTIFIER)),
        field(2, "current", msg(&METRIC_VALUE_STATUS)),
        field(3, "describedObject", msg(&CROSS_VERSION_OBJECT_REFERENCE)),
    ],
};

static PODS_METRIC_STATUS: Message = Message {
    name: "PodsMetricStatus",
    fields: &[
        field(1, "metric", msg(&METRIC_IDENTIFIER)),
        field(2, "current", msg(&METRIC_VALUE_STATUS)),
    ],
};

static RESOURCE_METRIC_STATUS: Message = Message {
    name: "ResourceMetricStatus",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "current", msg(&METRIC_VALUE_STATUS)),
    ],
};

static CONTAINER_RESOURCE_METRIC_STATUS: Message = Message {
    name: "ContainerResourceMetricStatus",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "current", msg(&METRIC_VALUE_STATUS)),
        field(3, "container", STR).req(),
    ],
};

static EXTERNAL_METRIC_STATUS: Message = Message {
    name: "ExternalMetricStatus",
    fields: &[
        field(1, "metric", msg(&METRIC_IDENTIFIER)),
        field(2, "current", msg(&METRIC_VALUE_STATUS)),
    ],
};

static METRIC_VALUE_STATUS: Message = Message {
    name: "MetricValueStatus",
    fields: &[
        field(1, "value", QTY).ptr(),
        field(2, "averageValue", QTY).ptr(),
        field(3, "averageUtilization", I32).ptr(),
    ],
};

static HPA_CONDITION: Message = Message {
    name: "HorizontalPodAutoscalerCondition",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "status", STR).req(),
        field(3, "lastTransitionTime", TIME),
        field(4, "reason", STR),
        field(5, "message", STR),
    ],
};

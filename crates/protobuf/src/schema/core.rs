//! `k8s.io/api/core/v1` messages other than pods and volumes: Namespace, ConfigMap,
//! Secret, ServiceAccount, Service, ResourceQuota and shared references.

use super::meta::{CONDITION, OBJECT_META};
use super::{
    field, msg, object, Message, BOOL, I32, INT_OR_STR, MAP_BYTES, MAP_QTY, MAP_STR, MICRO_TIME,
    STR, TIME,
};

pub(crate) static NAMESPACE: Message = object!("Namespace", &NAMESPACE_SPEC, &NAMESPACE_STATUS);

static NAMESPACE_SPEC: Message = Message {
    name: "NamespaceSpec",
    fields: &[field(1, "finalizers", STR).rep()],
};

static NAMESPACE_STATUS: Message = Message {
    name: "NamespaceStatus",
    fields: &[
        field(1, "phase", STR),
        field(2, "conditions", msg(&NAMESPACE_CONDITION)).rep(),
    ],
};

static NAMESPACE_CONDITION: Message = Message {
    name: "NamespaceCondition",
    fields: &[
        field(1, "type", STR).req(),
        field(2, "status", STR).req(),
        field(4, "lastTransitionTime", TIME),
        field(5, "reason", STR),
        field(6, "message", STR),
    ],
};

pub(crate) static CONFIG_MAP: Message = Message {
    name: "ConfigMap",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(4, "immutable", BOOL).ptr(),
        field(2, "data", MAP_STR),
        field(3, "binaryData", MAP_BYTES),
    ],
};

pub(crate) static SECRET: Message = Message {
    name: "Secret",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(5, "immutable", BOOL).ptr(),
        field(2, "data", MAP_BYTES),
        field(4, "stringData", MAP_STR),
        field(3, "type", STR),
    ],
};

pub(crate) static SERVICE_ACCOUNT: Message = Message {
    name: "ServiceAccount",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "secrets", msg(&OBJECT_REFERENCE)).rep(),
        field(3, "imagePullSecrets", msg(&LOCAL_OBJECT_REFERENCE)).rep(),
        field(4, "automountServiceAccountToken", BOOL).ptr(),
    ],
};

pub(crate) static OBJECT_REFERENCE: Message = Message {
    name: "ObjectReference",
    fields: &[
        field(1, "kind", STR),
        field(2, "namespace", STR),
        field(3, "name", STR),
        field(4, "uid", STR),
        field(5, "apiVersion", STR),
        field(6, "resourceVersion", STR),
        field(7, "fieldPath", STR),
    ],
};

pub(crate) static LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "LocalObjectReference",
    fields: &[field(1, "name", STR)],
};

pub(crate) static SERVICE: Message = object!("Service", &SERVICE_SPEC, &SERVICE_STATUS);

static SERVICE_SPEC: Message = Message {
    name: "ServiceSpec",
    fields: &[
        field(1, "ports", msg(&SERVICE_PORT)).rep(),
        field(2, "selector", MAP_STR),
        field(3, "clusterIP", STR),
        field(18, "clusterIPs", STR).rep(),
        field(4, "type", STR),
        field(5, "externalIPs", STR).rep(),
        field(7, "sessionAffinity", STR),
        field(8, "loadBalancerIP", STR),
        field(9, "loadBalancerSourceRanges", STR).rep(),
        field(10, "externalName", STR),
        field(11, "externalTrafficPolicy", STR),
        field(12, "healthCheckNodePort", I32),
        field(13, "publishNotReadyAddresses", BOOL),
        field(14, "sessionAffinityConfig", msg(&SESSION_AFFINITY_CONFIG)).ptr(),
        field(19, "ipFamilies", STR).rep(),
        field(17, "ipFamilyPolicy", STR).ptr(),
        field(20, "allocateLoadBalancerNodePorts", BOOL).ptr(),
        field(21, "loadBalancerClass", STR).ptr(),
        field(22, "internalTrafficPolicy", STR).ptr(),
        field(23, "trafficDistribution", STR).ptr(),
    ],
};

static SERVICE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        field(1, "name", STR),
        field(2, "protocol", STR),
        field(6, "appProtocol", STR).ptr(),
        field(3, "port", I32).req(),
        field(4, "targetPort", INT_OR_STR),
        field(5, "nodePort", I32),
    ],
};

static SESSION_AFFINITY_CONFIG: Message = Message {
    name: "SessionAffinityConfig",
    fields: &[field(1, "clientIP", msg(&CLIENT_IP_CONFIG)).ptr()],
};

static CLIENT_IP_CONFIG: Message = Message {
    name: "ClientIPConfig",
    fields: &[field(1, "timeoutSeconds", I32).ptr()],
};

static SERVICE_STATUS: Message = Message {
    name: "ServiceStatus",
    fields: &[
        field(1, "loadBalancer", msg(&LOAD_BALANCER_STATUS)),
        field(2, "conditions", msg(&CONDITION)).rep(),
    ],
};

static LOAD_BALANCER_STATUS: Message = Message {
    name: "LoadBalancerStatus",
    fields: &[field(1, "ingress", msg(&LOAD_BALANCER_INGRESS)).rep()],
};

static LOAD_BALANCER_INGRESS: Message = Message {
    name: "LoadBalancerIngress",
    fields: &[
        field(1, "ip", STR),
        field(2, "hostname", STR),
        field(3, "ipMode", STR).ptr(),
        field(4, "ports", msg(&PORT_STATUS)).rep(),
    ],
};

static PORT_STATUS: Message = Message {
    name: "PortStatus",
    fields: &[
        field(1, "port", I32).req(),
        field(2, "protocol", STR).req(),
        field(3, "error", STR).ptr(),
    ],
};

pub(crate) static RESOURCE_QUOTA: Message = object!(
    "ResourceQuota",
    &RESOURCE_QUOTA_SPEC,
    &RESOURCE_QUOTA_STATUS
);

static RESOURCE_QUOTA_SPEC: Message = Message {
    name: "ResourceQuotaSpec",
    fields: &[
        field(1, "hard", MAP_QTY),
        field(2, "scopes", STR).rep(),
        field(3, "scopeSelector", msg(&SCOPE_SELECTOR)).ptr(),
    ],
};

static SCOPE_SELECTOR: Message = Message {
    name: "ScopeSelector",
    fields: &[field(
        1,
        "matchExpressions",
        msg(&SCOPED_RESOURCE_SELECTOR_REQUIREMENT),
    )
    .rep()],
};

static SCOPED_RESOURCE_SELECTOR_REQUIREMENT: Message = Message {
    name: "ScopedResourceSelectorRequirement",
    fields: &[
        field(1, "scopeName", STR).req(),
        field(2, "operator", STR).req(),
        field(3, "values", STR).rep(),
    ],
};

static RESOURCE_QUOTA_STATUS: Message = Message {
    name: "ResourceQuotaStatus",
    fields: &[field(1, "hard", MAP_QTY), field(2, "used", MAP_QTY)],
};

pub(crate) static EVENT: Message = Message {
    name: "Event",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "involvedObject", msg(&OBJECT_REFERENCE)),
        field(3, "reason", STR),
        field(4, "message", STR),
        field(5, "source", msg(&EVENT_SOURCE)),
        field(6, "firstTimestamp", TIME),
        field(7, "lastTimestamp", TIME),
        field(8, "count", I32),
        field(9, "type", STR),
        field(10, "eventTime", MICRO_TIME),
        field(11, "series", msg(&EVENT_SERIES)).ptr(),
        field(12, "action", STR),
        field(13, "related", msg(&OBJECT_REFERENCE)).ptr(),
        field(14, "reportingComponent", STR).req(),
        field(15, "reportingInstance", STR).req(),
    ],
};

static EVENT_SOURCE: Message = Message {
    name: "EventSource",
    fields: &[field(1, "component", STR), field(2, "host", STR)],
};

static EVENT_SERIES: Message = Message {
    name: "EventSeries",
    fields: &[
        field(1, "count", I32),
        field(2, "lastObservedTime", MICRO_TIME),
    ],
};

//! `k8s.io/api/networking/v1` Ingress.

use super::volume::TYPED_LOCAL_OBJECT_REFERENCE;
use super::{field, msg, object, Message, I32, STR};

pub(crate) static INGRESS: Message = object!("Ingress", &INGRESS_SPEC, &INGRESS_STATUS);

static INGRESS_SPEC: Message = Message {
    name: "IngressSpec",
    fields: &[
        field(4, "ingressClassName", STR).ptr(),
        field(1, "defaultBackend", msg(&INGRESS_BACKEND)).ptr(),
        field(2, "tls", msg(&INGRESS_TLS)).rep(),
        field(3, "rules", msg(&INGRESS_RULE)).rep(),
    ],
};

static INGRESS_BACKEND: Message = Message {
    name: "IngressBackend",
    fields: &[
        field(4, "service", msg(&INGRESS_SERVICE_BACKEND)).ptr(),
        field(3, "resource", msg(&TYPED_LOCAL_OBJECT_REFERENCE)).ptr(),
    ],
};

static INGRESS_SERVICE_BACKEND: Message = Message {
    name: "IngressServiceBackend",
    fields: &[
        field(1, "name", STR).req(),
        field(2, "port", msg(&SERVICE_BACKEND_PORT)),
    ],
};

static SERVICE_BACKEND_PORT: Message = Message {
    name: "ServiceBackendPort",
    fields: &[field(1, "name", STR), field(2, "number", I32)],
};

static INGRESS_TLS: Message = Message {
    name: "IngressTLS",
    fields: &[field(1, "hosts", STR).rep(), field(2, "secretName", STR)],
};

static INGRESS_RULE: Message = Message {
    name: "IngressRule",
    fields: &[
        field(1, "host", STR),
        field(2, "ingressRuleValue", msg(&INGRESS_RULE_VALUE)).inline(),
    ],
};

static INGRESS_RULE_VALUE: Message = Message {
    name: "IngressRuleValue",
    fields: &[field(1, "http", msg(&HTTP_INGRESS_RULE_VALUE)).ptr()],
};

static HTTP_INGRESS_RULE_VALUE: Message = Message {
    name: "HTTPIngressRuleValue",
    fields: &[field(1, "paths", msg(&HTTP_INGRESS_PATH)).rep().req()],
};

static HTTP_INGRESS_PATH: Message = Message {
    name: "HTTPIngressPath",
    fields: &[
        field(1, "path", STR),
        field(3, "pathType", STR).nullable(),
        field(2, "backend", msg(&INGRESS_BACKEND)),
    ],
};

static INGRESS_STATUS: Message = Message {
    name: "IngressStatus",
    fields: &[field(1, "loadBalancer", msg(&INGRESS_LOAD_BALANCER_STATUS))],
};

static INGRESS_LOAD_BALANCER_STATUS: Message = Message {
    name: "IngressLoadBalancerStatus",
    fields: &[field(1, "ingress", msg(&INGRESS_LOAD_BALANCER_INGRESS)).rep()],
};

static INGRESS_LOAD_BALANCER_INGRESS: Message = Message {
    name: "IngressLoadBalancerIngress",
    fields: &[
        field(1, "ip", STR),
        field(2, "hostname", STR),
        field(4, "ports", msg(&INGRESS_PORT_STATUS)).rep(),
    ],
};

static INGRESS_PORT_STATUS: Message = Message {
    name: "IngressPortStatus",
    fields: &[
        field(1, "port", I32).req(),
        field(2, "protocol", STR).req(),
        field(3, "error", STR).ptr(),
    ],
};

//! The remaining served kinds: autoscaling/v1 Scale, discovery.k8s.io/v1
//! EndpointSlice, networking.k8s.io/v1 NetworkPolicy, Ingress and IngressClass,
//! coordination.k8s.io/v1 Lease and events.k8s.io/v1 Event. Their lists
//! (endpoints, ports, rules, ingress/egress peers, tls) are all atomic upstream,
//! so beyond metadata only the atomic selectors need rows.

use super::{atomic, obj, TypeDef, META};

pub(crate) static SCALE: TypeDef = TypeDef {
    name: "Scale",
    fields: &[META],
};

pub(crate) static ENDPOINT_SLICE: TypeDef = TypeDef {
    name: "EndpointSlice",
    fields: &[META],
};

static NETWORK_POLICY_SPEC: TypeDef = TypeDef {
    name: "NetworkPolicySpec",
    fields: &[atomic("podSelector")],
};

pub(crate) static NETWORK_POLICY: TypeDef = TypeDef {
    name: "NetworkPolicy",
    fields: &[META, obj("spec", &NETWORK_POLICY_SPEC)],
};

pub(crate) static INGRESS: TypeDef = TypeDef {
    name: "Ingress",
    fields: &[META],
};

pub(crate) static INGRESS_CLASS: TypeDef = TypeDef {
    name: "IngressClass",
    fields: &[META],
};

pub(crate) static LEASE: TypeDef = TypeDef {
    name: "Lease",
    fields: &[META],
};

pub(crate) static EVENTS_EVENT: TypeDef = TypeDef {
    name: "Event",
    fields: &[META],
};

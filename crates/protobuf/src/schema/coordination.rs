//! `k8s.io/api/coordination/v1` Lease (leader election and node heartbeats).

use super::meta::OBJECT_META;
use super::{field, msg, Message, I32, MICRO_TIME, STR};

pub(crate) static LEASE: Message = Message {
    name: "Lease",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "spec", msg(&LEASE_SPEC)),
    ],
};

static LEASE_SPEC: Message = Message {
    name: "LeaseSpec",
    fields: &[
        field(1, "holderIdentity", STR).ptr(),
        field(2, "leaseDurationSeconds", I32).ptr(),
        field(3, "acquireTime", MICRO_TIME).ptr(),
        field(4, "renewTime", MICRO_TIME).ptr(),
        field(5, "leaseTransitions", I32).ptr(),
        field(6, "strategy", STR).ptr(),
        field(7, "preferredHolder", STR).ptr(),
    ],
};

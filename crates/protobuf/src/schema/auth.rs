//! `k8s.io/api/rbac/v1` (Role, ClusterRole and their bindings) and
//! `k8s.io/api/authentication/v1` TokenRequest (`kubectl create token`).

use super::meta::{LABEL_SELECTOR, OBJECT_META};
use super::{field, msg, Message, I64, STR, TIME};

pub(crate) static ROLE: Message = Message {
    name: "Role",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "rules", msg(&POLICY_RULE)).rep().req(),
    ],
};

pub(crate) static CLUSTER_ROLE: Message = Message {
    name: "ClusterRole",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "rules", msg(&POLICY_RULE)).rep().req(),
        field(3, "aggregationRule", msg(&AGGREGATION_RULE)).ptr(),
    ],
};

static POLICY_RULE: Message = Message {
    name: "PolicyRule",
    fields: &[
        field(1, "verbs", STR).rep().req(),
        field(2, "apiGroups", STR).rep(),
        field(3, "resources", STR).rep(),
        field(4, "resourceNames", STR).rep(),
        field(5, "nonResourceURLs", STR).rep(),
    ],
};

static AGGREGATION_RULE: Message = Message {
    name: "AggregationRule",
    fields: &[field(1, "clusterRoleSelectors", msg(&LABEL_SELECTOR)).rep()],
};

pub(crate) static ROLE_BINDING: Message = Message {
    name: "RoleBinding",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "subjects", msg(&SUBJECT)).rep(),
        field(3, "roleRef", msg(&ROLE_REF)),
    ],
};

pub(crate) static CLUSTER_ROLE_BINDING: Message = Message {
    name: "ClusterRoleBinding",
    fields: &[
        field(1, "metadata", msg(&OBJECT_META)),
        field(2, "subjects", msg(&SUBJECT)).rep(),
        field(3, "roleRef", msg(&ROLE_REF)),
    ],
};

static SUBJECT: Message = Message {
    name: "Subject",
    fields: &[
        field(1, "kind", STR).req(),
        field(2, "apiGroup", STR),
        field(3, "name", STR).req(),
        field(4, "namespace", STR),
    ],
};

static ROLE_REF: Message = Message {
    name: "RoleRef",
    fields: &[
        field(1, "apiGroup", STR).req(),
        field(2, "kind", STR).req(),
        field(3, "name", STR).req(),
    ],
};

pub(crate) static TOKEN_REQUEST: Message =
    super::object!("TokenRequest", &TOKEN_REQUEST_SPEC, &TOKEN_REQUEST_STATUS);

static TOKEN_REQUEST_SPEC: Message = Message {
    name: "TokenRequestSpec",
    fields: &[
        field(1, "audiences", STR).rep().req(),
        field(4, "expirationSeconds", I64).ptr(),
        field(3, "boundObjectRef", msg(&BOUND_OBJECT_REFERENCE)).ptr(),
    ],
};

static BOUND_OBJECT_REFERENCE: Message = Message {
    name: "BoundObjectReference",
    fields: &[
        field(1, "kind", STR),
        field(2, "apiVersion", STR),
        field(3, "name", STR),
        field(4, "uid", STR),
    ],
};

static TOKEN_REQUEST_STATUS: Message = Message {
    name: "TokenRequestStatus",
    fields: &[
        field(1, "token", STR).req(),
        field(2, "expirationTimestamp", TIME),
    ],
};

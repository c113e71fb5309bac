//! core/v1 types: Pod and its template parts, Service, Endpoints, Namespace, Node,
//! ConfigMap, Secret, Event, ServiceAccount. Keys mirror k8s.io/api core/v1 tags.

use super::{
    apply_keyed, atomic, k, keyed, keyed_of, map, obj, set, Field, Key, TypeDef, IP, META, NAME,
    PROTOCOL_TCP, TYPE,
};

const STATUS_CONDITIONS: Field = keyed("conditions", TYPE);

pub(crate) static RESOURCE_REQUIREMENTS: TypeDef = TypeDef {
    name: "ResourceRequirements",
    fields: &[map("limits"), map("requests"), apply_keyed("claims", NAME)],
};

/// `Container`, also used for init and ephemeral containers (same tags).
pub(crate) static CONTAINER: TypeDef = TypeDef {
    name: "Container",
    fields: &[
        // patchMergeKey containerPort; listMapKey containerPort + protocol.
        keyed("ports", &[k("containerPort"), PROTOCOL_TCP]),
        keyed("env", NAME),
        keyed("volumeMounts", &[k("mountPath")]),
        keyed("volumeDevices", &[k("devicePath")]),
        obj("resources", &RESOURCE_REQUIREMENTS),
    ],
};

pub(crate) static POD_SPEC: TypeDef = TypeDef {
    name: "PodSpec",
    fields: &[
        // patchStrategy "merge,retainKeys": retainKeys only matters when a patch
        // carries `$retainKeys`, which the merge honours wherever it appears.
        keyed("volumes", NAME),
        keyed_of("initContainers", NAME, &CONTAINER),
        keyed_of("containers", NAME, &CONTAINER),
        keyed_of("ephemeralContainers", NAME, &CONTAINER),
        keyed("imagePullSecrets", NAME),
        keyed("hostAliases", IP),
        atomic("nodeSelector"),
        keyed(
            "topologySpreadConstraints",
            &[k("topologyKey"), k("whenUnsatisfiable")],
        ),
        keyed("schedulingGates", NAME),
        keyed("resourceClaims", NAME),
        map("overhead"),
    ],
};

pub(crate) static POD_STATUS: TypeDef = TypeDef {
    name: "PodStatus",
    fields: &[
        STATUS_CONDITIONS,
        keyed("podIPs", IP),
        keyed("hostIPs", IP),
        keyed("resourceClaimStatuses", NAME),
    ],
};

pub(crate) static POD: TypeDef = TypeDef {
    name: "Pod",
    fields: &[META, obj("spec", &POD_SPEC), obj("status", &POD_STATUS)],
};

pub(crate) static POD_TEMPLATE_SPEC: TypeDef = TypeDef {
    name: "PodTemplateSpec",
    fields: &[META, obj("spec", &POD_SPEC)],
};

const SERVICE_PORT_KEY: &[Key] = &[k("port"), PROTOCOL_TCP];

static SERVICE_SPEC: TypeDef = TypeDef {
    name: "ServiceSpec",
    fields: &[keyed("ports", SERVICE_PORT_KEY), atomic("selector")],
};

static CONDITIONS_ONLY: TypeDef = TypeDef {
    name: "StatusWithConditions",
    fields: &[STATUS_CONDITIONS],
};

pub(crate) static SERVICE: TypeDef = TypeDef {
    name: "Service",
    fields: &[
        META,
        obj("spec", &SERVICE_SPEC),
        obj("status", &CONDITIONS_ONLY),
    ],
};

/// `subsets` (and the addresses and ports inside) carry no patch strategy
/// upstream: a patch replaces them whole.
pub(crate) static ENDPOINTS: TypeDef = TypeDef {
    name: "Endpoints",
    fields: &[META],
};

pub(crate) static NAMESPACE: TypeDef = TypeDef {
    name: "Namespace",
    fields: &[META, obj("status", &CONDITIONS_ONLY)],
};

static NODE_SPEC: TypeDef = TypeDef {
    name: "NodeSpec",
    fields: &[set("podCIDRs")],
};

static NODE_STATUS: TypeDef = TypeDef {
    name: "NodeStatus",
    fields: &[
        STATUS_CONDITIONS,
        // Upstream warns the key is not unique enough, but it is the declared one.
        keyed("addresses", TYPE),
        map("capacity"),
        map("allocatable"),
    ],
};

pub(crate) static NODE: TypeDef = TypeDef {
    name: "Node",
    fields: &[META, obj("spec", &NODE_SPEC), obj("status", &NODE_STATUS)],
};

pub(crate) static CONFIG_MAP: TypeDef = TypeDef {
    name: "ConfigMap",
    fields: &[META, map("data"), map("binaryData")],
};

pub(crate) static SECRET: TypeDef = TypeDef {
    name: "Secret",
    fields: &[META, map("data"), map("stringData")],
};

pub(crate) static EVENT: TypeDef = TypeDef {
    name: "Event",
    fields: &[META],
};

pub(crate) static SERVICE_ACCOUNT: TypeDef = TypeDef {
    name: "ServiceAccount",
    fields: &[META, keyed("secrets", NAME)],
};

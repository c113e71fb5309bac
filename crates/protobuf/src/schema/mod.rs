//! Message tables: for each protobuf message, its fields in Go struct order (which is the
//! order upstream's JSON uses), with protobuf field number, JSON name, value kind and the
//! Go-side presence rule.
//!
//! Field numbers come from the `generated.proto` files of `k8s.io/api` and
//! `k8s.io/apimachinery` (Kubernetes v1.33). Fields added after v1.33 are left out, so they
//! are reported as unknown fields.
//!
//! Presence mirrors how Go's `encoding/json` prints the typed object that upstream would
//! have decoded from the same bytes:
//! - [`Presence::OmitEmpty`] (default): a non-pointer field tagged `omitempty`; zero values
//!   are dropped. For message-like kinds (a non-pointer struct) the field is always printed,
//!   as Go does.
//! - [`Presence::Pointer`]: a Go pointer (`*int32`, `*bool`, `*string`, `*Struct`): printed
//!   whenever it is on the wire, even when zero, and dropped when absent.
//! - [`Presence::Always`]: a field without `omitempty`: always printed, zero if absent
//!   (`null` for an absent list or map).
//! - [`Presence::Nullable`]: a Go pointer without `omitempty`: printed when on the wire,
//!   `null` when absent.

mod apps;
mod auth;
mod autoscaling;
mod batch;
mod certificates;
mod coordination;
mod core;
mod meta;
mod networking;
mod pod;
mod pod_status;
mod policy;
mod volume;

/// The value type of a field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// `string` -> JSON string (invalid UTF-8 is replaced, as Go's JSON encoder does).
    String,
    /// `int32` varint.
    Int32,
    /// `int64` varint.
    Int64,
    /// `bool` varint.
    Bool,
    /// `bytes` -> base64 JSON string (`null` when absent).
    Bytes,
    /// A nested message.
    Message(&'static Message),
    /// `intstr.IntOrString` {1 type, 2 intVal, 3 strVal} -> JSON number or string.
    IntOrString,
    /// `resource.Quantity` {1 string} -> JSON string.
    Quantity,
    /// `metav1.Time` {1 seconds, 2 nanos} -> RFC 3339 string (seconds), or null when zero.
    Time,
    /// `metav1.MicroTime` -> RFC 3339 string with microseconds, or null when zero.
    MicroTime,
    /// `metav1.Duration` {1 duration (ns)} -> Go duration string such as `1h2m3s`.
    #[allow(
        dead_code,
        reason = "no covered kind has a Duration field; kept for new tables"
    )]
    Duration,
    /// `runtime.RawExtension` {1 raw} -> the embedded JSON.
    RawExtension,
    /// `metav1.FieldsV1` {1 Raw} -> the embedded JSON.
    FieldsV1,
    /// `map<string, string>`.
    MapString,
    /// `map<string, bytes>` (values base64 in JSON).
    MapBytes,
    /// `map<string, Quantity>`.
    MapQuantity,
    /// `map<string, Time>`.
    MapTime,
    /// `map<string, ExtraValue>` where `ExtraValue` is {repeated string items = 1}: a map
    /// of string lists in JSON.
    MapStringList,
}

/// How a field's absence or zero value shows in JSON; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    OmitEmpty,
    Pointer,
    Always,
    Nullable,
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) number: u32,
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) repeated: bool,
    pub(crate) presence: Presence,
    /// An embedded Go struct (`json:",inline"`): its fields are printed in the parent.
    pub(crate) inline: bool,
}

/// A message type.
#[derive(Debug)]
pub(crate) struct Message {
    /// The protobuf message name (for diagnostics).
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [Field],
}

impl Message {
    /// Index of the field with this number.
    pub(crate) fn position(&self, number: u32) -> Option<usize> {
        self.fields.iter().position(|f| f.number == number)
    }
}

/// A plain optional (`omitempty`) field.
pub(crate) const fn field(number: u32, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: false,
        presence: Presence::OmitEmpty,
        inline: false,
    }
}

impl Field {
    /// A Go pointer field: keeps explicit zero values.
    pub(crate) const fn ptr(mut self) -> Self {
        self.presence = Presence::Pointer;
        self
    }

    /// A field without `omitempty`: always printed.
    pub(crate) const fn req(mut self) -> Self {
        self.presence = Presence::Always;
        self
    }

    /// A Go pointer without `omitempty`: `null` when absent.
    pub(crate) const fn nullable(mut self) -> Self {
        self.presence = Presence::Nullable;
        self
    }

    /// A repeated field (a Go slice).
    pub(crate) const fn rep(mut self) -> Self {
        self.repeated = true;
        self
    }

    /// An embedded struct whose fields are printed inline.
    pub(crate) const fn inline(mut self) -> Self {
        self.inline = true;
        self
    }
}

pub(crate) const STR: Kind = Kind::String;
pub(crate) const I32: Kind = Kind::Int32;
pub(crate) const I64: Kind = Kind::Int64;
pub(crate) const BYTES: Kind = Kind::Bytes;
pub(crate) const BOOL: Kind = Kind::Bool;
pub(crate) const INT_OR_STR: Kind = Kind::IntOrString;
pub(crate) const QTY: Kind = Kind::Quantity;
pub(crate) const TIME: Kind = Kind::Time;
pub(crate) const MICRO_TIME: Kind = Kind::MicroTime;
pub(crate) const MAP_STR: Kind = Kind::MapString;
pub(crate) const MAP_BYTES: Kind = Kind::MapBytes;
pub(crate) const MAP_QTY: Kind = Kind::MapQuantity;
pub(crate) const MAP_TIME: Kind = Kind::MapTime;

/// A nested message kind.
pub(crate) const fn msg(m: &'static Message) -> Kind {
    Kind::Message(m)
}

/// `metadata`, `spec`, `status`: the usual top-level layout.
macro_rules! object {
    ($name:literal, $spec:expr, $status:expr) => {
        $crate::schema::Message {
            name: $name,
            fields: &[
                $crate::schema::field(
                    1,
                    "metadata",
                    $crate::schema::msg(&$crate::schema::meta::OBJECT_META),
                ),
                $crate::schema::field(2, "spec", $crate::schema::msg($spec)),
                $crate::schema::field(3, "status", $crate::schema::msg($status)),
            ],
        }
    };
}
pub(crate) use object;

/// Top-level kinds: (apiVersion, kind, message).
static ROOTS: &[(&str, &str, &Message)] = &[
    ("v1", "ConfigMap", &core::CONFIG_MAP),
    // client-go encodes DeleteOptions under the client's group version.
    ("v1", "DeleteOptions", &meta::DELETE_OPTIONS),
    ("meta.k8s.io/v1", "DeleteOptions", &meta::DELETE_OPTIONS),
    ("policy/v1", "DeleteOptions", &meta::DELETE_OPTIONS),
    ("policy/v1", "Eviction", &policy::EVICTION),
    ("v1", "Event", &core::EVENT),
    ("v1", "Namespace", &core::NAMESPACE),
    ("v1", "Pod", &pod::POD),
    (
        "v1",
        "PersistentVolumeClaim",
        &volume::PERSISTENT_VOLUME_CLAIM,
    ),
    ("v1", "ResourceQuota", &core::RESOURCE_QUOTA),
    ("v1", "Secret", &core::SECRET),
    ("v1", "Service", &core::SERVICE),
    ("v1", "ServiceAccount", &core::SERVICE_ACCOUNT),
    ("apps/v1", "ControllerRevision", &apps::CONTROLLER_REVISION),
    ("apps/v1", "DaemonSet", &apps::DAEMON_SET),
    ("apps/v1", "Deployment", &apps::DEPLOYMENT),
    ("apps/v1", "ReplicaSet", &apps::REPLICA_SET),
    ("apps/v1", "StatefulSet", &apps::STATEFUL_SET),
    (
        "authentication.k8s.io/v1",
        "TokenRequest",
        &auth::TOKEN_REQUEST,
    ),
    (
        "autoscaling/v1",
        "HorizontalPodAutoscaler",
        &autoscaling::HORIZONTAL_POD_AUTOSCALER_V1,
    ),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        &autoscaling::HORIZONTAL_POD_AUTOSCALER_V2,
    ),
    ("batch/v1", "CronJob", &batch::CRON_JOB),
    ("batch/v1", "Job", &batch::JOB),
    (
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        &certificates::CERTIFICATE_SIGNING_REQUEST,
    ),
    ("coordination.k8s.io/v1", "Lease", &coordination::LEASE),
    ("networking.k8s.io/v1", "Ingress", &networking::INGRESS),
    (
        "policy/v1",
        "PodDisruptionBudget",
        &policy::POD_DISRUPTION_BUDGET,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        &auth::CLUSTER_ROLE,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        &auth::CLUSTER_ROLE_BINDING,
    ),
    ("rbac.authorization.k8s.io/v1", "Role", &auth::ROLE),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        &auth::ROLE_BINDING,
    ),
    (
        "scheduling.k8s.io/v1",
        "PriorityClass",
        &policy::PRIORITY_CLASS,
    ),
];

/// The schema of a top-level kind.
pub(crate) fn root(api_version: &str, kind: &str) -> Option<&'static Message> {
    ROOTS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, m)| *m)
}

/// All supported (apiVersion, kind) pairs.
pub(crate) fn roots() -> impl Iterator<Item = (&'static str, &'static str)> {
    ROOTS.iter().map(|(v, k, _)| (*v, *k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(m: &'static Message, seen: &mut Vec<&'static Message>) {
        if seen.iter().any(|s| std::ptr::eq(*s, m)) {
            return;
        }
        seen.push(m);
        for (i, f) in m.fields.iter().enumerate() {
            assert!(f.number > 0, "{}.{}", m.name, f.name);
            assert!(
                m.fields[..i]
                    .iter()
                    .all(|g| g.number != f.number && g.name != f.name),
                "duplicate field {}.{}",
                m.name,
                f.name
            );
            if f.inline {
                assert!(
                    matches!(f.kind, Kind::Message(_)) && !f.repeated,
                    "{}.{}",
                    m.name,
                    f.name
                );
            }
            if let Kind::Message(inner) = f.kind {
                visit(inner, seen);
            }
        }
    }

    /// Every message reachable from a root is well formed: unique numbers and names.
    #[test]
    fn tables_are_consistent() {
        let mut seen = Vec::new();
        for (_, _, m) in ROOTS {
            visit(m, &mut seen);
        }
        assert!(seen.len() > 50);
    }
}

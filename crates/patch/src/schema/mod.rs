//! The merge schema: per served kind, which fields are merge lists and by what key.
//!
//! Upstream derives this from Go struct tags (`patchStrategy`, `patchMergeKey`,
//! `+listType`, `+listMapKey`, `+mapType`, `+structType`). Here it is plain data:
//! a [`TypeDef`] lists only the fields that behave specially or lead to types that
//! do; every other field is an ordinary one (objects merge field by field, lists are
//! replaced whole, scalars are replaced). Strategic merge patch and server-side
//! apply read the same table, so a list key is stated once.

mod apps;
mod core;
pub mod custom;
mod other;

/// An API group and kind; the core group is `""`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

impl GroupKind {
    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
        }
    }
}

/// A Go struct of the Kubernetes API, reduced to the fields that matter for merging.
#[derive(Debug)]
pub struct TypeDef {
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl TypeDef {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        // Fields are 'static because every TypeDef is a static; re-borrow them so.
        let fields: &'static [Field] = self.fields;
        fields.iter().find(|f| f.name == name)
    }
}

/// One field of a [`TypeDef`].
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    /// The type of the value, or of each list element, when that type has fields
    /// of its own in the table.
    pub ty: Option<&'static TypeDef>,
    pub shape: Shape,
}

/// How a field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An ordinary field: objects merge field by field, lists are atomic.
    Plain,
    /// A string-keyed map (`map[string]T`): merges key by key, and server-side
    /// apply tracks each key as its own field.
    Map,
    /// `+mapType=atomic` / `+structType=atomic` (selectors): server-side apply owns
    /// it as one value. Strategic merge patch still merges it like a map, as upstream.
    Atomic,
    /// A list of objects identified by key fields: `patchStrategy:"merge"` with
    /// `patchMergeKey` for strategic merge patch (`None`: replaced whole there),
    /// `+listType=map` with `+listMapKey`s for server-side apply.
    MapList {
        merge_key: Option<&'static str>,
        keys: &'static [Key],
    },
    /// A list of scalars merged as a set: `patchStrategy:"merge"` on a `[]string`
    /// (strategic merge patch unions it) and `+listType=set` (apply owns each value).
    Set,
}

/// A `+listMapKey` of a server-side apply associative list. Kubernetes fills
/// `default` in when the item omits the key (ports' `protocol` is `TCP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

/// The root type of a served kind; `None` for kinds this table does not know.
pub fn root(kind: &GroupKind) -> Option<&'static TypeDef> {
    let t: &'static TypeDef = match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => &core::POD,
        ("", "Service") => &core::SERVICE,
        ("", "Endpoints") => &core::ENDPOINTS,
        ("", "Namespace") => &core::NAMESPACE,
        ("", "Node") => &core::NODE,
        ("", "ConfigMap") => &core::CONFIG_MAP,
        ("", "Secret") => &core::SECRET,
        ("", "Event") => &core::EVENT,
        ("", "ServiceAccount") => &core::SERVICE_ACCOUNT,
        ("apps", "Deployment") => &apps::DEPLOYMENT,
        ("apps", "ReplicaSet") => &apps::REPLICA_SET,
        ("apps", "StatefulSet") => &apps::STATEFUL_SET,
        ("apps", "DaemonSet") => &apps::DAEMON_SET,
        ("", "ReplicationController") => &apps::REPLICATION_CONTROLLER,
        ("batch", "Job") => &apps::JOB,
        ("batch", "CronJob") => &apps::CRON_JOB,
        ("autoscaling", "Scale") => &other::SCALE,
        ("discovery.k8s.io", "EndpointSlice") => &other::ENDPOINT_SLICE,
        ("networking.k8s.io", "NetworkPolicy") => &other::NETWORK_POLICY,
        ("networking.k8s.io", "Ingress") => &other::INGRESS,
        ("networking.k8s.io", "IngressClass") => &other::INGRESS_CLASS,
        ("coordination.k8s.io", "Lease") => &other::LEASE,
        ("events.k8s.io", "Event") => &other::EVENTS_EVENT,
        (group, kind) => return custom::root(group, kind),
    };
    Some(t)
}

/// Fields whose upstream Go tag includes `patchStrategy:"retainKeys"`, by the name of
/// the [`TypeDef`] that holds them. Merging never needs this (a patch that wants
/// retainKeys says `$retainKeys` itself); kubectl does, to know when to send it, and
/// reads it from the OpenAPI v2 document built from this table.
const RETAIN_KEYS: &[(&str, &str)] = &[("DeploymentSpec", "strategy"), ("PodSpec", "volumes")];

/// Upstream's `x-kubernetes-patch-strategy` for field `name` of `ty`: `merge` for a
/// keyed or set list, `retainKeys`, both, or none.
pub fn patch_strategy(ty: &TypeDef, name: &str) -> Option<&'static str> {
    let merge = matches!(
        ty.field(name).map(|f| f.shape),
        Some(Shape::MapList {
            merge_key: Some(_),
            ..
        }) | Some(Shape::Set)
    );
    let retain = RETAIN_KEYS.contains(&(ty.name, name));
    match (merge, retain) {
        (true, true) => Some("merge,retainKeys"),
        (true, false) => Some("merge"),
        (false, true) => Some("retainKeys"),
        (false, false) => None,
    }
}

/// Upstream's `x-kubernetes-patch-merge-key` for field `name` of `ty`.
pub fn patch_merge_key(ty: &TypeDef, name: &str) -> Option<&'static str> {
    match ty.field(name)?.shape {
        Shape::MapList { merge_key, .. } => merge_key,
        _ => None,
    }
}

/// Where a walk over an object stands in the schema. Kinds outside the table
/// are "deduced", as upstream does for schemaless objects: every object is a
/// map and every list is atomic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor {
    pub ty: Option<&'static TypeDef>,
    pub shape: Shape,
    pub deduced: bool,
}

impl Cursor {
    pub fn root(kind: &GroupKind) -> Self {
        match root(kind) {
            Some(t) => Self {
                ty: Some(t),
                shape: Shape::Plain,
                deduced: false,
            },
            None => Self {
                ty: None,
                shape: Shape::Plain,
                deduced: true,
            },
        }
    }

    /// The field `name` of the object at this cursor.
    pub fn child(&self, name: &str) -> Self {
        let field = match self.shape {
            // A map's values are all of its element type; no per-key fields.
            Shape::Map | Shape::Atomic => None,
            _ => self.ty.and_then(|t| t.field(name)),
        };
        match field {
            Some(f) => Self {
                ty: f.ty,
                shape: f.shape,
                deduced: self.deduced,
            },
            None => Self {
                ty: None,
                shape: Shape::Plain,
                deduced: self.deduced,
            },
        }
    }

    /// An element of the list at this cursor.
    pub fn element(&self) -> Self {
        Self {
            ty: self.ty,
            shape: Shape::Plain,
            deduced: self.deduced,
        }
    }
}

// Table-building helpers, so a row reads like the struct tag it mirrors.

pub(crate) const fn obj(name: &'static str, ty: &'static TypeDef) -> Field {
    Field {
        name,
        ty: Some(ty),
        shape: Shape::Plain,
    }
}

pub(crate) const fn map(name: &'static str) -> Field {
    Field {
        name,
        ty: None,
        shape: Shape::Map,
    }
}

pub(crate) const fn atomic(name: &'static str) -> Field {
    Field {
        name,
        ty: None,
        shape: Shape::Atomic,
    }
}

pub(crate) const fn set(name: &'static str) -> Field {
    Field {
        name,
        ty: None,
        shape: Shape::Set,
    }
}

/// A list merged by `key` in both strategic merge patch and apply.
pub(crate) const fn keyed(name: &'static str, key: &'static [Key]) -> Field {
    Field {
        name,
        ty: None,
        shape: Shape::MapList {
            merge_key: Some(key[0].name),
            keys: key,
        },
    }
}

/// A keyed list whose elements have fields of their own in the table.
pub(crate) const fn keyed_of(
    name: &'static str,
    key: &'static [Key],
    ty: &'static TypeDef,
) -> Field {
    Field {
        name,
        ty: Some(ty),
        shape: Shape::MapList {
            merge_key: Some(key[0].name),
            keys: key,
        },
    }
}

/// A list that only server-side apply treats as keyed (`+listType=map` without
/// a patch strategy): strategic merge patch replaces it.
pub(crate) const fn apply_keyed(name: &'static str, key: &'static [Key]) -> Field {
    Field {
        name,
        ty: None,
        shape: Shape::MapList {
            merge_key: None,
            keys: key,
        },
    }
}

pub(crate) const fn k(name: &'static str) -> Key {
    Key {
        name,
        default: None,
    }
}

pub(crate) const PROTOCOL_TCP: Key = Key {
    name: "protocol",
    default: Some("TCP"),
};

pub(crate) const NAME: &[Key] = &[k("name")];
pub(crate) const TYPE: &[Key] = &[k("type")];
pub(crate) const IP: &[Key] = &[k("ip")];

/// `metav1.ObjectMeta`, shared by every kind.
pub(crate) static OBJECT_META: TypeDef = TypeDef {
    name: "ObjectMeta",
    fields: &[
        map("labels"),
        map("annotations"),
        set("finalizers"),
        keyed("ownerReferences", &[k("uid")]),
    ],
};

/// Just metadata: kinds with nothing else special.
pub(crate) const META: Field = obj("metadata", &OBJECT_META);

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(kind: (&str, &str), path: &[&str]) -> Shape {
        let mut c = Cursor::root(&GroupKind::new(kind.0, kind.1));
        for p in path {
            c = if *p == "[]" { c.element() } else { c.child(p) };
        }
        c.shape
    }

    fn merge_key(kind: (&str, &str), path: &[&str]) -> Option<&'static str> {
        match shape(kind, path) {
            Shape::MapList { merge_key, .. } => merge_key,
            _ => None,
        }
    }

    #[test]
    fn patch_strategies_as_upstream_openapi_states_them() {
        let pod_spec = &core::POD_SPEC;
        assert_eq!(
            patch_strategy(pod_spec, "volumes"),
            Some("merge,retainKeys")
        );
        assert_eq!(patch_strategy(pod_spec, "containers"), Some("merge"));
        assert_eq!(patch_merge_key(pod_spec, "containers"), Some("name"));
        assert_eq!(patch_strategy(pod_spec, "tolerations"), None);
        assert_eq!(patch_strategy(pod_spec, "nodeSelector"), None);
        assert_eq!(patch_strategy(&OBJECT_META, "finalizers"), Some("merge"));
        assert_eq!(patch_merge_key(&OBJECT_META, "finalizers"), None);
        assert_eq!(
            patch_merge_key(&core::CONTAINER, "ports"),
            Some("containerPort")
        );
        // `claims` is keyed for apply only: strategic merge patch replaces it.
        assert_eq!(patch_strategy(&core::RESOURCE_REQUIREMENTS, "claims"), None);
        let deployment_spec = apps::DEPLOYMENT.field("spec").and_then(|f| f.ty);
        assert_eq!(
            deployment_spec.and_then(|t| patch_strategy(t, "strategy")),
            Some("retainKeys")
        );
    }

    #[test]
    fn merge_keys_match_upstream_struct_tags() {
        let pod_spec = ["spec", "template", "spec"];
        let d = ("apps", "Deployment");
        let with = |rest: &[&'static str]| -> Vec<&'static str> {
            pod_spec
                .iter()
                .copied()
                .chain(rest.iter().copied())
                .collect()
        };
        assert_eq!(merge_key(d, &with(&["containers"])), Some("name"));
        assert_eq!(merge_key(d, &with(&["initContainers"])), Some("name"));
        assert_eq!(
            merge_key(d, &with(&["containers", "[]", "ports"])),
            Some("containerPort")
        );
        assert_eq!(
            merge_key(d, &with(&["containers", "[]", "env"])),
            Some("name")
        );
        assert_eq!(
            merge_key(d, &with(&["containers", "[]", "volumeMounts"])),
            Some("mountPath")
        );
        assert_eq!(merge_key(d, &with(&["volumes"])), Some("name"));
        assert_eq!(merge_key(d, &with(&["imagePullSecrets"])), Some("name"));
        assert_eq!(shape(d, &with(&["tolerations"])), Shape::Plain);
        assert_eq!(shape(d, &["spec", "selector"]), Shape::Atomic);
        assert_eq!(merge_key(("", "Service"), &["spec", "ports"]), Some("port"));
        assert_eq!(
            merge_key(("", "Pod"), &["metadata", "ownerReferences"]),
            Some("uid")
        );
        assert_eq!(
            merge_key(("", "Pod"), &["status", "conditions"]),
            Some("type")
        );
        assert_eq!(shape(("", "Pod"), &["metadata", "finalizers"]), Shape::Set);
        assert_eq!(shape(("", "Endpoints"), &["subsets"]), Shape::Plain);
        assert_eq!(
            merge_key(
                ("apps", "StatefulSet"),
                &["spec", "template", "spec", "containers"]
            ),
            Some("name")
        );
        for kind in [
            ("apps", "DaemonSet"),
            ("batch", "Job"),
            ("", "ReplicationController"),
        ] {
            assert_eq!(
                merge_key(kind, &["spec", "template", "spec", "containers"]),
                Some("name")
            );
        }
        assert_eq!(
            merge_key(
                ("batch", "CronJob"),
                &[
                    "spec",
                    "jobTemplate",
                    "spec",
                    "template",
                    "spec",
                    "containers"
                ]
            ),
            Some("name")
        );
        assert_eq!(
            merge_key(("", "ServiceAccount"), &["secrets"]),
            Some("name")
        );
        match shape(("", "Service"), &["spec", "ports"]) {
            Shape::MapList { keys, .. } => {
                assert_eq!(
                    keys.iter().map(|k| k.name).collect::<Vec<_>>(),
                    ["port", "protocol"]
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_served_kind_has_metadata() {
        let kinds = [
            ("", "Pod"),
            ("", "Service"),
            ("", "Endpoints"),
            ("", "Namespace"),
            ("", "Node"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "Event"),
            ("", "ServiceAccount"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("", "ReplicationController"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("networking.k8s.io", "Ingress"),
            ("networking.k8s.io", "IngressClass"),
            ("coordination.k8s.io", "Lease"),
            ("events.k8s.io", "Event"),
            ("autoscaling", "Scale"),
        ];
        for (g, k) in kinds {
            assert_eq!(
                shape((g, k), &["metadata", "labels"]),
                Shape::Map,
                "{g}/{k}"
            );
            assert_eq!(
                merge_key((g, k), &["metadata", "ownerReferences"]),
                Some("uid"),
                "{g}/{k}"
            );
        }
        assert!(root(&GroupKind::new("example.com", "Widget")).is_none());
    }
}

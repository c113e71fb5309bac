//! The resources skiff serves: one static table, the single source of truth for
//! discovery, routing, storage keys and OpenAPI.

/// Verbs a collection resource supports, in the order discovery lists them.
pub const VERBS_ALL: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces cannot be deleted as a collection, as upstream.
const VERBS_NO_COLLECTION_DELETE: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// One served resource (a group/version/plural triple) and everything clients learn about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// API group; `""` is the core group served under `/api`.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// Has a `/status` subresource; writes to the main resource then leave status alone.
    pub status: bool,
    /// Has a `/scale` subresource (autoscaling/v1 Scale over `spec.replicas`).
    pub scale: bool,
    /// Objects carry a spec whose changes bump `metadata.generation`.
    pub has_spec: bool,
    /// Storage prefix segment; two versions of one resource share it.
    pub storage: &'static str,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `services`, `deployments.apps`: how upstream names a resource in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The store key prefix of every object of this resource, optionally in one namespace.
    pub fn key_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{}/", self.storage, ns),
            _ => format!("/registry/{}/", self.storage),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{}", self.key_prefix(namespace), name)
    }
}

const fn res(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names: &[],
        categories: &[],
        verbs: VERBS_ALL,
        status: false,
        scale: false,
        has_spec: false,
        storage: plural,
    }
}

const ALL: &[&str] = &["all"];

/// Every resource skiff serves, grouped as discovery lists them.
pub static RESOURCES: &[Resource] = &[
    Resource {
        short_names: &["ns"],
        verbs: VERBS_NO_COLLECTION_DELETE,
        status: true,
        has_spec: true,
        ..res("", "namespaces", "namespace", "Namespace", false)
    },
    Resource {
        short_names: &["no"],
        status: true,
        has_spec: true,
        ..res("", "nodes", "node", "Node", false)
    },
    Resource {
        short_names: &["po"],
        categories: ALL,
        status: true,
        has_spec: true,
        ..res("", "pods", "pod", "Pod", true)
    },
    Resource {
        short_names: &["svc"],
        categories: ALL,
        status: true,
        has_spec: true,
        ..res("", "services", "service", "Service", true)
    },
    Resource {
        short_names: &["ep"],
        ..res("", "endpoints", "endpoints", "Endpoints", true)
    },
    Resource {
        short_names: &["ev"],
        ..res("", "events", "event", "Event", true)
    },
    Resource {
        short_names: &["cm"],
        ..res("", "configmaps", "configmap", "ConfigMap", true)
    },
    res("", "secrets", "secret", "Secret", true),
    Resource {
        short_names: &["sa"],
        ..res(
            "",
            "serviceaccounts",
            "serviceaccount",
            "ServiceAccount",
            true,
        )
    },
    Resource {
        short_names: &["deploy"],
        categories: ALL,
        status: true,
        scale: true,
        has_spec: true,
        storage: "deployments",
        ..res("apps", "deployments", "deployment", "Deployment", true)
    },
    Resource {
        short_names: &["rs"],
        categories: ALL,
        status: true,
        scale: true,
        has_spec: true,
        storage: "replicasets",
        ..res("apps", "replicasets", "replicaset", "ReplicaSet", true)
    },
    Resource {
        short_names: &["sts"],
        categories: ALL,
        status: true,
        scale: true,
        has_spec: true,
        storage: "statefulsets",
        ..res("apps", "statefulsets", "statefulset", "StatefulSet", true)
    },
    // A DaemonSet's template history, as `kubectl rollout history/undo` read it.
    Resource {
        storage: "controllerrevisions",
        ..res(
            "apps",
            "controllerrevisions",
            "controllerrevision",
            "ControllerRevision",
            true,
        )
    },
    Resource {
        short_names: &["ds"],
        categories: ALL,
        status: true,
        has_spec: true,
        storage: "daemonsets",
        ..res("apps", "daemonsets", "daemonset", "DaemonSet", true)
    },
    Resource {
        short_names: &["rc"],
        categories: ALL,
        status: true,
        scale: true,
        has_spec: true,
        ..res(
            "",
            "replicationcontrollers",
            "replicationcontroller",
            "ReplicationController",
            true,
        )
    },
    Resource {
        categories: ALL,
        status: true,
        has_spec: true,
        storage: "jobs",
        ..res("batch", "jobs", "job", "Job", true)
    },
    Resource {
        short_names: &["cj"],
        categories: ALL,
        status: true,
        has_spec: true,
        storage: "cronjobs",
        ..res("batch", "cronjobs", "cronjob", "CronJob", true)
    },
    Resource {
        has_spec: true,
        storage: "endpointslices",
        ..res(
            "discovery.k8s.io",
            "endpointslices",
            "endpointslice",
            "EndpointSlice",
            true,
        )
    },
    Resource {
        short_names: &["netpol"],
        has_spec: true,
        storage: "networkpolicies",
        ..res(
            "networking.k8s.io",
            "networkpolicies",
            "networkpolicy",
            "NetworkPolicy",
            true,
        )
    },
    Resource {
        short_names: &["ing"],
        status: true,
        has_spec: true,
        storage: "ingresses",
        ..res("networking.k8s.io", "ingresses", "ingress", "Ingress", true)
    },
    Resource {
        has_spec: true,
        storage: "ingressclasses",
        ..res(
            "networking.k8s.io",
            "ingressclasses",
            "ingressclass",
            "IngressClass",
            false,
        )
    },
    Resource {
        has_spec: true,
        storage: "leases",
        ..res("coordination.k8s.io", "leases", "lease", "Lease", true)
    },
    Resource {
        short_names: &["pdb"],
        status: true,
        has_spec: true,
        storage: "poddisruptionbudgets",
        ..res(
            "policy",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            "PodDisruptionBudget",
            true,
        )
    },
    Resource {
        short_names: &["csr"],
        status: true,
        has_spec: true,
        storage: "certificatesigningrequests",
        ..res(
            "certificates.k8s.io",
            "certificatesigningrequests",
            "certificatesigningrequest",
            "CertificateSigningRequest",
            false,
        )
    },
    // The local group versions, as the aggregator lists them (read-only).
    Resource {
        verbs: &["get", "list", "watch"],
        has_spec: true,
        storage: "apiservices",
        ..res(
            "apiregistration.k8s.io",
            "apiservices",
            "apiservice",
            "APIService",
            false,
        )
    },
    // RBAC objects are stored and served so manifests that carry them (a ServiceAccount
    // with its ClusterRoleBinding, say) apply as written; skiff has one admin user and
    // does not authorize by them.
    Resource {
        storage: "roles",
        ..res("rbac.authorization.k8s.io", "roles", "role", "Role", true)
    },
    Resource {
        storage: "rolebindings",
        ..res(
            "rbac.authorization.k8s.io",
            "rolebindings",
            "rolebinding",
            "RoleBinding",
            true,
        )
    },
    Resource {
        storage: "clusterroles",
        ..res(
            "rbac.authorization.k8s.io",
            "clusterroles",
            "clusterrole",
            "ClusterRole",
            false,
        )
    },
    Resource {
        storage: "clusterrolebindings",
        ..res(
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "clusterrolebinding",
            "ClusterRoleBinding",
            false,
        )
    },
    // The definitions of custom resources; the resources they define are
    // registered at run time (crate::crd::registered).
    Resource {
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        status: true,
        has_spec: true,
        storage: "apiextensions.k8s.io/customresourcedefinitions",
        ..res(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "customresourcedefinition",
            "CustomResourceDefinition",
            false,
        )
    },
    // events.k8s.io/v1 is another view of the core events: same storage, converted at the edge.
    Resource {
        short_names: &["ev"],
        storage: "events",
        ..res("events.k8s.io", "events", "event", "Event", true)
    },
];

/// API groups in the order discovery presents them (preferred first); custom
/// resources' groups come after the built-in ones.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in all() {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// Every served resource: the static table, then the custom resources the
/// CustomResourceDefinitions define now.
pub fn all() -> Vec<&'static Resource> {
    let mut out: Vec<&'static Resource> = RESOURCES.iter().collect();
    out.extend(crate::crd::registered::resources());
    out
}

pub fn resources_in<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    all()
        .into_iter()
        .filter(move |r| r.group == group && r.version == version)
}

pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
        .or_else(|| crate::crd::registered::lookup(group, version, plural))
}

pub fn by_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
        .or_else(|| crate::crd::registered::by_kind(group, kind))
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_unique_and_findable() {
        for r in RESOURCES {
            assert_eq!(lookup(r.group, r.version, r.plural), Some(r));
            let dupes = RESOURCES
                .iter()
                .filter(|o| o.group == r.group && o.plural == r.plural)
                .count();
            assert_eq!(dupes, 1, "{} listed twice", r.qualified_plural());
        }
    }

    #[test]
    fn keys_keep_namespaces_apart() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "a"), "/registry/pods/default/a");
        assert_eq!(pods.key_prefix(None), "/registry/pods/");
        let nodes = lookup("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/nodes/n1");
        let deploy = by_kind("apps", "Deployment").unwrap();
        assert_eq!(deploy.qualified_plural(), "deployments.apps");
        assert_eq!(deploy.api_version(), "apps/v1");
    }

    #[test]
    fn both_event_apis_share_storage() {
        let core = lookup("", "v1", "events").unwrap();
        let new = lookup("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(core.key_prefix(Some("x")), new.key_prefix(Some("x")));
    }
}

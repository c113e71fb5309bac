//! Table-driven decisions: upstream's RBAC authorizer cases in our own words
//! ([`upstream`]) and the default roles skiff bootstraps ([`bootstrap`],
//! from [`crate::rbac`]). Here: the helpers both share.

mod bootstrap;
mod upstream;

use serde_json::{json, Value};

use super::*;
use crate::rbac;

/// A user for tests, built from an existing constructor so it compiles
/// whatever other fields `User` has (uid, extra).
pub(crate) fn test_user(name: &str, groups: &[&str]) -> User {
    let mut u = User::admin();
    u.name = name.to_string();
    u.groups = groups.iter().map(|g| g.to_string()).collect();
    u
}

/// A ServiceAccount as upstream's authenticator makes it (its groups and
/// `system:authenticated`), for tests.
pub(crate) fn test_service_account(namespace: &str, name: &str) -> User {
    let ns_group = format!("system:serviceaccounts:{namespace}");
    test_user(
        &service_account_username(namespace, name),
        &[
            "system:serviceaccounts",
            &ns_group,
            crate::authn::AUTHENTICATED,
        ],
    )
}

pub(crate) const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub(crate) fn user(name: &str, groups: &[&str]) -> User {
    test_user(name, groups)
}

pub(crate) fn rule(verbs: &str, groups: &str, resources: &str, urls: &str) -> Value {
    let split = |s: &str| -> Vec<String> { s.split(',').map(str::to_string).collect() };
    let mut r = json!({"verbs": split(verbs)});
    if !resources.is_empty() {
        r["apiGroups"] = json!(groups.split(',').collect::<Vec<_>>());
        r["resources"] = json!(split(resources));
    }
    if !urls.is_empty() {
        r["nonResourceURLs"] = json!(split(urls));
    }
    r
}

pub(crate) fn cluster_role(name: &str, rules: &[Value]) -> Value {
    json!({"kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
}

pub(crate) fn role(ns: &str, name: &str, rules: &[Value]) -> Value {
    json!({"kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules})
}

/// `Kind:name` or `ServiceAccount:ns/name` (`ServiceAccount:name` leaves the
/// namespace out).
pub(crate) fn subjects(list: &[&str]) -> Vec<Value> {
    list.iter()
        .map(|s| {
            let (kind, name) = s.split_once(':').unwrap_or(("User", s));
            match (kind, name.split_once('/')) {
                ("ServiceAccount", Some((ns, n))) => {
                    json!({"kind": kind, "name": n, "namespace": ns})
                }
                ("ServiceAccount", None) => json!({"kind": kind, "name": name}),
                _ => json!({"kind": kind, "apiGroup": RBAC_GROUP, "name": name}),
            }
        })
        .collect()
}

pub(crate) fn crb(name: &str, cluster_role: &str, who: &[&str]) -> Value {
    json!({
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cluster_role},
        "subjects": subjects(who),
    })
}

pub(crate) fn rb(ns: &str, name: &str, kind: &str, role: &str, who: &[&str]) -> Value {
    json!({
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": kind, "name": role},
        "subjects": subjects(who),
    })
}

#[derive(Default)]
pub(crate) struct World {
    pub(crate) roles: Vec<Value>,
    pub(crate) role_bindings: Vec<Value>,
    pub(crate) cluster_roles: Vec<Value>,
    pub(crate) cluster_role_bindings: Vec<Value>,
}

impl World {
    pub(crate) fn index(&self) -> RbacIndex {
        RbacIndex::build(&RbacObjects {
            roles: &self.roles,
            role_bindings: &self.role_bindings,
            cluster_roles: &self.cluster_roles,
            cluster_role_bindings: &self.cluster_role_bindings,
        })
    }

    /// skiff's bootstrap roles and bindings, plus what a test adds.
    pub(crate) fn bootstrap() -> Self {
        World {
            cluster_roles: rbac::cluster_roles(),
            cluster_role_bindings: rbac::cluster_role_bindings(),
            ..Default::default()
        }
    }
}

/// A resource request: user, groups, verb, group, resource, subresource,
/// name, namespace.
pub(crate) type Res<'a> = (
    &'a str,
    &'a [&'a str],
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
);

pub(crate) fn res(r: &Res<'_>) -> Attributes {
    let (u, groups, verb, group, resource, sub, name, ns) = *r;
    Attributes::resource(user(u, groups), verb, group, resource)
        .subresource(sub)
        .name(name)
        .namespace(ns)
}

pub(crate) fn expect(index: &RbacIndex, pass: &[Res<'_>], fail: &[Res<'_>]) {
    for r in pass {
        assert!(index.allows(&res(r)), "should be allowed: {r:?}");
    }
    for r in fail {
        assert!(!index.allows(&res(r)), "should be refused: {r:?}");
    }
}

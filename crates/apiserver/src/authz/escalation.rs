//! Escalation prevention, as upstream's RBAC storage enforces it on writes:
//!
//! - a Role or ClusterRole may only be written with rules its writer holds
//!   (in the role's namespace; cluster-wide for a ClusterRole), unless the
//!   writer may `escalate` it; an `aggregationRule` needs `escalate` too;
//! - a RoleBinding or ClusterRoleBinding may only be written by someone who
//!   may `bind` its role, or who holds every rule of that role;
//! - `system:masters` may do anything.
//!
//! "Holds" is what the writer's own request for each (verb, group,
//! resource, name) the rule names would be decided, which is upstream's
//! `Covers` of the writer's rules over the new ones: a wildcard is only held
//! as a wildcard, and a rule without resourceNames only by one without.

use std::collections::BTreeMap;

use serde_json::Value;
use skiff_api::registry::Resource;
use skiff_api::StatusError;

use super::message::go_quote;
use super::rules::PolicyRule;
use super::{policy, Attributes, RbacIndex, SUPERUSER_GROUP};
use crate::authn::User;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// What a written object is, for escalation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

impl Kind {
    pub fn of(resource: &Resource) -> Option<Kind> {
        if resource.group != RBAC_GROUP {
            return None;
        }
        match resource.plural {
            "roles" => Some(Kind::Role),
            "clusterroles" => Some(Kind::ClusterRole),
            "rolebindings" => Some(Kind::RoleBinding),
            "clusterrolebindings" => Some(Kind::ClusterRoleBinding),
            _ => None,
        }
    }
}

/// One (verb, group, resource, name) or (verb, path) a rule grants.
fn breakdown(rule: &PolicyRule, user: &User, namespace: &str) -> Vec<Attributes> {
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                let (r, sub) = resource.split_once('/').unwrap_or((resource, ""));
                let base = Attributes::resource(user.clone(), verb, group, r)
                    .subresource(sub)
                    .namespace(namespace);
                if rule.resource_names.is_empty() {
                    out.push(base);
                } else {
                    for name in &rule.resource_names {
                        out.push(base.clone().name(name));
                    }
                }
            }
        }
        for url in &rule.non_resource_urls {
            out.push(Attributes::non_resource(user.clone(), verb, url));
        }
    }
    out
}

/// Upstream's `CompactString` of the missing rights, one line each, with
/// the verbs of one resource (or path) gathered.
fn describe(missing: &[Attributes]) -> String {
    let mut by_target: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for a in missing {
        let target = match &a.request {
            super::Request::Resource(r) => {
                let resource = if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                let mut s = format!(
                    "APIGroups:[{}], Resources:[{}]",
                    go_quote(&r.api_group),
                    go_quote(&resource)
                );
                if !r.name.is_empty() {
                    s.push_str(&format!(", ResourceNames:[{}]", go_quote(&r.name)));
                }
                s
            }
            super::Request::NonResource { path } => {
                format!("NonResourceURLs:[{}]", go_quote(path))
            }
        };
        let verbs = by_target.entry(target).or_default();
        if !verbs.contains(&a.verb.as_str()) {
            verbs.push(&a.verb);
        }
    }
    let mut lines: Vec<String> = by_target
        .into_iter()
        .map(|(target, verbs)| {
            let verbs: Vec<String> = verbs.iter().map(|v| go_quote(v)).collect();
            format!("{{{target}, Verbs:[{}]}}", verbs.join(" "))
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// `Err` naming what `user` would grant without holding it.
fn confirm_no_escalation(
    index: Option<&RbacIndex>,
    user: &User,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let missing: Vec<Attributes> = rules
        .iter()
        .flat_map(|r| breakdown(r, user, namespace))
        .filter(|a| !policy::decide(index, a).is_allowed())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = user.groups.iter().map(|g| go_quote(g)).collect();
    Err(format!(
        "user {} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.name),
        groups.join(" "),
        describe(&missing)
    ))
}

fn allowed(
    index: Option<&RbacIndex>,
    user: &User,
    verb: &str,
    resource: &str,
    name: &str,
    ns: &str,
) -> bool {
    let attrs = Attributes::resource(user.clone(), verb, RBAC_GROUP, resource)
        .name(name)
        .namespace(ns);
    policy::decide(index, &attrs).is_allowed()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Checks that `user` may write `obj`, a `kind` object in `namespace`
/// (`""` for cluster-scoped ones) of `resource`.
pub fn check(
    index: Option<&RbacIndex>,
    user: &User,
    resource: &Resource,
    kind: Kind,
    namespace: &str,
    obj: &Value,
) -> Result<(), StatusError> {
    if user.in_group(SUPERUSER_GROUP) {
        return Ok(());
    }
    let name = str_at(obj, "/metadata/name");
    let forbidden = |why: &str| StatusError::forbidden(resource, name, why);
    match kind {
        Kind::Role | Kind::ClusterRole => {
            let plural = if kind == Kind::Role {
                "roles"
            } else {
                "clusterroles"
            };
            if allowed(index, user, "escalate", plural, name, namespace) {
                return Ok(());
            }
            if kind == Kind::ClusterRole && obj.get("aggregationRule").is_some_and(|a| !a.is_null())
            {
                return Err(forbidden(
                    "must have cluster-admin privileges to use the aggregationRule",
                ));
            }
            let rules = PolicyRule::list_from(obj.get("rules"));
            confirm_no_escalation(index, user, namespace, &rules).map_err(|e| forbidden(&e))
        }
        Kind::RoleBinding | Kind::ClusterRoleBinding => {
            let role_kind = str_at(obj, "/roleRef/kind");
            let role_name = str_at(obj, "/roleRef/name");
            let plural = match role_kind {
                "Role" => "roles",
                _ => "clusterroles",
            };
            if allowed(index, user, "bind", plural, role_name, namespace) {
                return Ok(());
            }
            let Some(index) = index else {
                return Err(forbidden("the authorization index is not loaded yet"));
            };
            let rules = index.role_rules(role_kind, role_name, namespace)?;
            confirm_no_escalation(Some(index), user, namespace, &rules).map_err(|e| forbidden(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roles() -> &'static Resource {
        skiff_api::registry::lookup(RBAC_GROUP, "v1", "roles").unwrap()
    }

    fn sa() -> User {
        User::service_account("d", "robot", "u", Default::default())
    }

    fn index_with(rules: Value) -> RbacIndex {
        let role = [json!({"metadata": {"name": "r"}, "rules": rules})];
        let binding = [json!({"metadata": {"name": "b", "namespace": "d"},
            "roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot"}]})];
        RbacIndex::build(&super::super::RbacObjects {
            cluster_roles: &role,
            role_bindings: &binding,
            ..Default::default()
        })
    }

    #[test]
    fn roles_may_only_grant_what_their_writer_holds() {
        let index = index_with(json!([
            {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]},
            {"verbs": ["create"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"]},
        ]));
        let ok = json!({"metadata": {"name": "x", "namespace": "d"},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}]});
        assert!(check(Some(&index), &sa(), roles(), Kind::Role, "d", &ok).is_ok());
        let more = json!({"metadata": {"name": "x", "namespace": "d"},
            "rules": [{"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods", "secrets"]}]});
        let e = check(Some(&index), &sa(), roles(), Kind::Role, "d", &more).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "roles.rbac.authorization.k8s.io \"x\" is forbidden: user \"system:serviceaccount:d:robot\" \
             (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:d\" \"system:authenticated\"]) \
             is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}"
        );
        // Not in another namespace, and a wildcard is not held by a list.
        assert!(check(Some(&index), &sa(), roles(), Kind::Role, "e", &ok).is_err());
        let wild = json!({"metadata": {"name": "x"},
            "rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}]});
        assert!(check(Some(&index), &sa(), roles(), Kind::Role, "d", &wild).is_err());
        assert!(check(
            Some(&index),
            &User::admin(),
            roles(),
            Kind::Role,
            "d",
            &wild
        )
        .is_ok());
    }

    #[test]
    fn bindings_need_bind_or_every_rule_of_their_role() {
        let index = index_with(json!([
            {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]},
        ]));
        let rb = skiff_api::registry::lookup(RBAC_GROUP, "v1", "rolebindings").unwrap();
        let to = |role: &str| {
            json!({"metadata": {"name": "x", "namespace": "d"},
            "roleRef": {"kind": "ClusterRole", "name": role}, "subjects": []})
        };
        // It holds every rule of its own role, so it may hand it on.
        assert!(check(Some(&index), &sa(), rb, Kind::RoleBinding, "d", &to("r")).is_ok());
        let e = check(Some(&index), &sa(), rb, Kind::RoleBinding, "d", &to("nope")).unwrap_err();
        assert_eq!(e.code, 404);
        let bind = index_with(json!([
            {"verbs": ["bind"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "resourceNames": ["nope"]},
        ]));
        assert!(check(Some(&bind), &sa(), rb, Kind::RoleBinding, "d", &to("nope")).is_ok());
    }
}

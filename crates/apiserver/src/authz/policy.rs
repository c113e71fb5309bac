//! Which authorizer decides for whom, in upstream's order
//! (`--authorization-mode=Node,RBAC` behind the `system:masters` shortcut):
//!
//! - `system:masters` may do everything;
//! - a bootstrap token (`system:bootstrappers`) may only join a node
//!   ([`crate::authn::authorize`]), nothing of the API;
//! - a node (`system:node:<name>` in `system:nodes`) is decided by the Node
//!   authorizer ([`super::node`]) first: its own Node and Lease, the pods
//!   bound to it and what they reference, the static `system:node` rules.
//!   What it has no opinion on goes to RBAC, so a binding can still grant a
//!   node more (`system:skiff:node-routes`: every Node, for the agent's
//!   routes). A node's proxy, DNS and NetworkPolicy enforcer are not the
//!   node: they have identities and roles of their own
//!   ([`crate::rbac_components`], [`crate::component_certs`]);
//! - everyone else (service accounts, users of client certificates) gets what
//!   the RBAC index grants, nothing before the first index is built.
//!
//! Reasons of the authorizers that had no opinion are joined with newlines,
//! as upstream's union authorizer joins them.

use super::node::{self, NodeGraph};
use super::{Attributes, Decision, RbacIndex, SUPERUSER_GROUP};
use crate::authn::BOOTSTRAPPERS;
use skiff_api::StatusError;

/// Why a request was refused before RBAC could be asked.
const NOT_READY_REASON: &str = "RBAC: the authorization index is not loaded yet";

/// What the authorizers decide with: the RBAC index (`None` before the first
/// build) and the node graph (`None` where a caller has none: then a node is
/// refused what needs the graph, and RBAC decides).
#[derive(Clone, Copy, Default)]
pub struct Authorizers<'a> {
    pub rbac: Option<&'a RbacIndex>,
    pub nodes: Option<&'a NodeGraph>,
}

impl<'a> From<Option<&'a RbacIndex>> for Authorizers<'a> {
    fn from(rbac: Option<&'a RbacIndex>) -> Self {
        Self { rbac, nodes: None }
    }
}

/// The decision for `attrs`.
pub fn decide<'a>(authorizers: impl Into<Authorizers<'a>>, attrs: &Attributes) -> Decision {
    let authorizers = authorizers.into();
    let user = &attrs.user;
    if user.in_group(SUPERUSER_GROUP) {
        return Decision::Allow {
            reason: String::new(),
        };
    }
    if user.in_group(BOOTSTRAPPERS) {
        return Decision::NoOpinion {
            reason: String::new(),
        };
    }
    let mut reasons = Vec::new();
    if user.node_name().is_some() {
        match node::authorize(authorizers.nodes, attrs) {
            allowed @ Decision::Allow { .. } => return allowed,
            Decision::NoOpinion { reason } => reasons.push(reason),
        }
    }
    match authorizers.rbac {
        Some(index) => match index.authorize(attrs) {
            allowed @ Decision::Allow { .. } => return allowed,
            Decision::NoOpinion { reason } => reasons.push(reason),
        },
        None => reasons.push(NOT_READY_REASON.to_string()),
    }
    reasons.retain(|r| !r.is_empty());
    Decision::NoOpinion {
        reason: reasons.join("\n"),
    }
}

/// `Ok` when allowed, upstream's 403 otherwise.
pub fn check<'a>(
    authorizers: impl Into<Authorizers<'a>>,
    attrs: &Attributes,
) -> Result<(), StatusError> {
    match decide(authorizers, attrs) {
        Decision::Allow { .. } => Ok(()),
        Decision::NoOpinion { reason } => Err(super::message::forbidden(attrs, &reason)),
    }
}

/// Whether a rules review of `user` is incomplete: a node's access is not
/// described by rules (upstream's Node authorizer says the same).
pub fn rules_incomplete(user: &crate::authn::User) -> bool {
    user.node_name().is_some() && !user.in_group(SUPERUSER_GROUP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::User;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn sa() -> User {
        User::service_account("default", "robot", "uid", BTreeMap::new())
    }

    const NO_INDEX: Option<&RbacIndex> = None;

    #[test]
    fn each_kind_of_user_is_decided_by_its_authorizer() {
        let list = |u: User| Attributes::resource(u, "list", "", "services").namespace("default");
        // No index yet: masters, and nodes for what the Node authorizer allows.
        assert!(check(NO_INDEX, &list(User::admin())).is_ok());
        assert!(check(NO_INDEX, &list(User::node("n1"))).is_ok());
        let e = check(NO_INDEX, &list(sa())).unwrap_err();
        assert_eq!(e.code, 403);
        let empty = RbacIndex::default();
        let e = check(Some(&empty), &list(sa())).unwrap_err();
        assert_eq!(
            e.message,
            r#"services is forbidden: User "system:serviceaccount:default:robot" cannot list resource "services" in API group "" in the namespace "default""#
        );
        let view = [json!({"metadata": {"name": "view"},
            "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["services"]}]})];
        let binding = [json!({"metadata": {"name": "b", "namespace": "default"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot"}]})];
        let index = RbacIndex::build(&super::super::RbacObjects {
            cluster_roles: &view,
            role_bindings: &binding,
            ..Default::default()
        });
        assert!(check(Some(&index), &list(sa())).is_ok());
        let elsewhere = list(sa()).namespace("kube-system");
        assert!(check(Some(&index), &elsewhere).is_err());
        assert!(rules_incomplete(&User::node("n1")));
        assert!(!rules_incomplete(&sa()));
    }

    #[test]
    fn a_node_is_refused_with_the_node_authorizers_reason_unless_rbac_grants() {
        let graph = NodeGraph::default();
        let get = Attributes::resource(User::node("n1"), "get", "", "secrets")
            .name("s")
            .namespace("default");
        let empty = RbacIndex::default();
        let both = Authorizers {
            rbac: Some(&empty),
            nodes: Some(&graph),
        };
        let e = check(both, &get).unwrap_err();
        assert_eq!(
            e.message,
            r#"secrets "s" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'n1' and this object"#
        );
        // A binding still grants a node more (Node,RBAC).
        let reader = [json!({"metadata": {"name": "secret-reader"},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]})];
        let binding = [json!({"metadata": {"name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "secret-reader"},
            "subjects": [{"kind": "User", "name": "system:node:n1"}]})];
        let index = RbacIndex::build(&super::super::RbacObjects {
            cluster_roles: &reader,
            cluster_role_bindings: &binding,
            ..Default::default()
        });
        let granted = Authorizers {
            rbac: Some(&index),
            nodes: Some(&graph),
        };
        assert!(check(granted, &get).is_ok());
    }

    #[test]
    fn a_nodes_components_reads_and_writes_are_not_the_nodes() {
        // The proxy, DNS and NetworkPolicy enforcer have identities of their
        // own: the node itself gets none of what they do.
        let graph = NodeGraph::default();
        let empty = RbacIndex::default();
        let both = Authorizers {
            rbac: Some(&empty),
            nodes: Some(&graph),
        };
        let allowed = |a: Attributes| check(both, &a).is_ok();
        let node = || User::node("n1");
        let watch = |group, resource| Attributes::resource(node(), "watch", group, resource);
        assert!(allowed(watch("", "services")));
        for (group, resource) in [
            ("discovery.k8s.io", "endpointslices"),
            ("", "endpoints"),
            ("", "namespaces"),
            ("networking.k8s.io", "networkpolicies"),
        ] {
            assert!(!allowed(watch(group, resource)), "{resource}");
        }
        let lease = |verb| {
            Attributes::resource(node(), verb, "coordination.k8s.io", "leases")
                .namespace("kube-system")
                .name("skiff-lb-10-0-0-1")
        };
        assert!(!allowed(lease("update")));
        assert!(!allowed(lease("delete")));
        let slice = Attributes::resource(node(), "patch", "discovery.k8s.io", "endpointslices")
            .namespace("kube-system")
            .name("kube-dns-n1");
        assert!(!allowed(slice));
    }
}

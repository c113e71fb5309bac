//! Which authorizer decides for whom, in upstream's order
//! (`--authorization-mode=Node,RBAC` behind the `system:masters` shortcut):
//!
//! - `system:masters` may do everything;
//! - a bootstrap token (`system:bootstrappers`) may only join a node
//!   ([`crate::authn::authorize`]), nothing of the API;
//! - a node (`system:node:<name>` in `system:nodes`) may use the whole API.
//!   This is a known gap: upstream's Node authorizer limits a node to its own
//!   Node, Lease, the pods bound to it and what they reference, and that needs
//!   a graph of pods, volumes and secrets per node which skiff does not keep
//!   yet. Until it does, refusing nodes what RBAC's `system:node` role lacks
//!   would break the node agents, while allowing them what they do today keeps
//!   the cluster working; the gap is tracked in issue #17;
//! - everyone else (service accounts, users of client certificates) gets what
//!   the RBAC index grants, nothing before the first index is built.

use super::{Attributes, Decision, RbacIndex, SUPERUSER_GROUP};
use crate::authn::BOOTSTRAPPERS;
use skiff_api::StatusError;

/// Why a node was allowed, for access reviews.
const NODE_REASON: &str = "skiff: nodes are not limited yet (no Node authorizer)";
/// Why a request was refused before RBAC could be asked.
const NOT_READY_REASON: &str = "RBAC: the authorization index is not loaded yet";

/// The decision for `attrs` with `index` (`None` before the first build).
pub fn decide(index: Option<&RbacIndex>, attrs: &Attributes) -> Decision {
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
    if user.node_name().is_some() {
        return Decision::Allow {
            reason: NODE_REASON.to_string(),
        };
    }
    match index {
        Some(index) => index.authorize(attrs),
        None => Decision::NoOpinion {
            reason: NOT_READY_REASON.to_string(),
        },
    }
}

/// `Ok` when allowed, upstream's 403 otherwise.
pub fn check(index: Option<&RbacIndex>, attrs: &Attributes) -> Result<(), StatusError> {
    match decide(index, attrs) {
        Decision::Allow { .. } => Ok(()),
        Decision::NoOpinion { reason } => Err(super::message::forbidden(attrs, &reason)),
    }
}

/// Whether a rules review of `user` is incomplete: a node's access is not
/// described by rules (upstream says the same of its Node authorizer).
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

    #[test]
    fn each_kind_of_user_is_decided_by_its_authorizer() {
        let list = |u: User| Attributes::resource(u, "list", "", "services").namespace("default");
        // No index yet: masters and nodes only.
        assert!(check(None, &list(User::admin())).is_ok());
        assert!(check(None, &list(User::node("n1"))).is_ok());
        let e = check(None, &list(sa())).unwrap_err();
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
}

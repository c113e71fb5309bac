//! Upstream's Node authorizer (`--authorization-mode=Node`): what a node
//! (`system:node:<name>` in `system:nodes`) may do, decided as
//! `plugin/pkg/auth/authorizer/node/node_authorizer.go` decides it.
//!
//! - Secrets and ConfigMaps: get, or a list/watch of one object
//!   (`fieldSelector=metadata.name=<n>`, as upstream since 1.31), only of what
//!   a pod bound to the node references; PersistentVolumeClaims and
//!   PersistentVolumes: get of the same (a PV through its claim), a claim's
//!   status: update/patch;
//! - ServiceAccounts: only `create` of a `token` for one a pod of the node runs
//!   as (NodeRestriction then checks the token is bound to such a pod);
//! - Leases: only its own, in `kube-node-lease`;
//! - Nodes: any write its rules allow (NodeRestriction keeps it to its own
//!   Node), reads only of its own Node (upstream's `AuthorizeNodeWithSelectors`);
//! - everything else by the static rules of the `system:node` role
//!   ([`rules::node_rules`]): pods read, pod status, events, services, ...
//!
//! A refusal is "no opinion" with upstream's reason, so RBAC is asked next
//! ([`super::policy`]). Which objects a node reaches is the [`graph`], kept
//! current from the store's watch of pods ([`live`]): a decision never reads
//! the store.

pub mod graph;
pub mod live;
pub mod rules;

#[cfg(test)]
mod tests;

pub use graph::{Graph, Kind};
pub use live::NodeGraph;

use super::message::go_quote;
use super::{Attributes, Decision, Request, ResourceAttributes};

const CORE: &str = "";
const COORDINATION: &str = "coordination.k8s.io";
const STORAGE: &str = "storage.k8s.io";
/// The namespace of the nodes' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

fn allow() -> Decision {
    Decision::Allow {
        reason: String::new(),
    }
}

fn deny(reason: impl Into<String>) -> Decision {
    Decision::NoOpinion {
        reason: reason.into(),
    }
}

/// What a graph-checked request is about.
#[derive(Debug, Clone, Copy)]
enum Vertex {
    Object(Kind),
    PersistentVolume,
    /// Upstream relates VolumeAttachments to nodes; skiff serves none, so no
    /// node reaches one.
    VolumeAttachment,
}

/// The Node authorizer's decision on `attrs`: no opinion for users that are
/// not nodes. `graph` is `None` where the caller has none (it then refuses
/// what needs one).
pub fn authorize(graph: Option<&NodeGraph>, attrs: &Attributes) -> Decision {
    let user = &attrs.user;
    let Some(node) = user.node_name() else {
        return deny("");
    };
    if node.is_empty() {
        return deny(format!("unknown node for user {}", go_quote(&user.name)));
    }
    let Request::Resource(r) = &attrs.request else {
        return static_rules(attrs);
    };
    let on = |v| Check {
        graph,
        node,
        verb: &attrs.verb,
        r,
        vertex: v,
    };
    match (r.api_group.as_str(), r.resource.as_str()) {
        (CORE, "secrets") => on(Vertex::Object(Kind::Secret)).read_namespaced(),
        (CORE, "configmaps") => on(Vertex::Object(Kind::ConfigMap)).read_namespaced(),
        (CORE, "persistentvolumeclaims") => {
            let c = on(Vertex::Object(Kind::PersistentVolumeClaim));
            if r.subresource == "status" {
                c.status_update()
            } else {
                c.get()
            }
        }
        (CORE, "persistentvolumes") => on(Vertex::PersistentVolume).get(),
        (STORAGE, "volumeattachments") => on(Vertex::VolumeAttachment).get(),
        (CORE, "serviceaccounts") => on(Vertex::Object(Kind::ServiceAccount)).create_token(),
        (COORDINATION, "leases") => lease(node, &attrs.verb, r),
        (STORAGE, "csinodes") => csi_node(node, &attrs.verb, r),
        (CORE, "nodes") => node_object(node, &attrs.verb, r),
        _ => static_rules(attrs),
    }
}

/// Whether the static `system:node` rules allow `attrs`.
fn static_rules(attrs: &Attributes) -> Decision {
    if rules::node_rules().iter().any(|rule| rule.allows(attrs)) {
        allow()
    } else {
        deny("")
    }
}

/// One request on an object the graph relates to nodes.
struct Check<'a> {
    graph: Option<&'a NodeGraph>,
    node: &'a str,
    verb: &'a str,
    r: &'a ResourceAttributes,
    vertex: Vertex,
}

impl Check<'_> {
    /// Upstream's `authorizeReadNamespacedObject`: get, or list/watch of one
    /// named object, of a namespaced object related to the node.
    fn read_namespaced(&self) -> Decision {
        if !matches!(self.verb, "get" | "list" | "watch") {
            return deny("can only read resources of this type");
        }
        if !self.r.subresource.is_empty() {
            return deny("cannot read subresource");
        }
        if self.r.namespace.is_empty() {
            return deny("can only read namespaced object of this type");
        }
        self.related()
    }

    /// Upstream's `authorizeGet`.
    fn get(&self) -> Decision {
        if self.verb != "get" {
            return deny("can only get individual resources of this type");
        }
        if !self.r.subresource.is_empty() {
            return deny("cannot get subresource");
        }
        self.related()
    }

    /// Upstream's `authorizeStatusUpdate`.
    fn status_update(&self) -> Decision {
        if !matches!(self.verb, "update" | "patch") {
            return deny("can only get/update/patch this type");
        }
        if self.r.subresource != "status" {
            return deny("can only update status subresource");
        }
        self.related()
    }

    /// Upstream's `authorizeCreateToken`.
    fn create_token(&self) -> Decision {
        if self.verb != "create" || self.r.name.is_empty() {
            return deny("can only create tokens for individual service accounts");
        }
        if self.r.subresource != "token" {
            return deny("can only create token subresource of serviceaccount");
        }
        self.related()
    }

    /// Upstream's `authorize`: the named object must be related to the node.
    fn related(&self) -> Decision {
        let r = self.r;
        if r.name.is_empty() {
            return deny("No Object name found");
        }
        let reachable = self.graph.is_some_and(|g| {
            let g = g.read();
            match self.vertex {
                Vertex::Object(Kind::Secret) => {
                    g.secret_reachable(self.node, &r.namespace, &r.name)
                }
                Vertex::Object(kind) => g.referenced(self.node, kind, &r.namespace, &r.name),
                Vertex::PersistentVolume => g.pv_reachable(self.node, &r.name),
                Vertex::VolumeAttachment => false,
            }
        });
        if reachable {
            allow()
        } else {
            deny(format!(
                "no relationship found between node '{}' and this object",
                self.node
            ))
        }
    }
}

/// Upstream's `authorizeLease`: the node's own Lease in `kube-node-lease`
/// (the name of a create is checked by NodeRestriction).
fn lease(node: &str, verb: &str, r: &ResourceAttributes) -> Decision {
    if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
        return deny("can only get, create, update, patch, or delete a node lease");
    }
    if r.namespace != NODE_LEASE_NAMESPACE {
        return deny(format!(
            "can only access leases in the {} system namespace",
            go_quote(NODE_LEASE_NAMESPACE)
        ));
    }
    if verb != "create" && r.name != node {
        return deny("can only access node lease with the same name as the requesting node");
    }
    allow()
}

/// Upstream's `authorizeCSINode` (skiff serves no CSINodes; kept for the same
/// answers).
fn csi_node(node: &str, verb: &str, r: &ResourceAttributes) -> Decision {
    if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
        return deny("can only get, create, update, patch, or delete a CSINode");
    }
    if !r.subresource.is_empty() {
        return deny("cannot authorize CSINode subresources");
    }
    if verb != "create" && r.name != node {
        return deny("can only access CSINode with the same name as the requesting node");
    }
    allow()
}

/// Upstream's `authorizeNode`: writes for NodeRestriction to narrow, reads of
/// the node's own Node only (a list or watch names it by field selector).
fn node_object(node: &str, verb: &str, r: &ResourceAttributes) -> Decision {
    match (r.subresource.as_str(), verb) {
        ("", "create" | "update" | "patch") | ("status", "update" | "patch") => allow(),
        ("", "get" | "list" | "watch") if r.name == node => allow(),
        ("", "get" | "list" | "watch") if r.name.is_empty() => deny(format!(
            "node '{node}' cannot read all nodes, only its own Node object"
        )),
        ("", "get" | "list" | "watch") => deny(format!(
            "node '{node}' cannot read '{}', only its own Node object",
            r.name
        )),
        _ => deny(""),
    }
}

//! Authorization as upstream's Node and RBAC authorizers decide it (issue #17).
//!
//! A request is described by [`Attributes`] (upstream's
//! `authorizer.Attributes`: who, which verb, on which resource or path). An
//! [`RbacIndex`] is built from the Roles, RoleBindings, ClusterRoles and
//! ClusterRoleBindings as the store returns them, and answers
//! [`RbacIndex::authorize`] from the bindings of the user and its groups only,
//! never by scanning every binding. A refused request gets upstream's 403
//! ([`message::forbidden`]); [`RbacIndex::rules_for`] is what
//! `SelfSubjectRulesReview` (`kubectl auth can-i --list`) shows.
//!
//! - [`rules`]: one `PolicyRule` against one request;
//! - [`selector`] and [`aggregate`]: aggregated ClusterRoles;
//! - [`index`]: bindings by subject, decisions, rules of a user;
//! - [`message`]: the words of a denial;
//! - [`review`]: the rules of a user as `SelfSubjectRulesReview` returns them;
//! - [`live`]: the index the server decides with, kept current from the store;
//! - [`request_info`]: a request's attributes from its path, method and query;
//! - [`policy`]: which authorizer decides for which user;
//! - [`node`]: upstream's Node authorizer, what a node may reach (its own
//!   Node and Lease, its pods and what they reference);
//! - [`impersonate`]: `Impersonate-*` headers, checked with `impersonate`;
//! - [`access_review`]: the `authorization.k8s.io` reviews (`kubectl auth can-i`),
//!   [`review_proto`] their protobuf bodies;
//! - [`escalation`]: no Role or binding grants more than its writer holds.

pub mod access_review;
pub mod aggregate;
pub mod escalation;
pub mod impersonate;
pub mod index;
pub mod live;
pub mod message;
pub mod node;
pub mod policy;
pub mod request_info;
pub mod review;
pub mod review_proto;
pub mod rules;
pub mod selector;

#[cfg(test)]
mod tests;

pub use index::{RbacIndex, RbacObjects};
pub use review::RulesReview;
pub use rules::PolicyRule;

use crate::authn::{User, MASTERS};
use crate::request::Target;

/// The group upstream's kube-apiserver allows everything, before RBAC is
/// asked (`authorizerfactory.NewPrivilegedGroups(user.SystemPrivilegedGroup)`).
pub const SUPERUSER_GROUP: &str = MASTERS;
/// How upstream names a ServiceAccount as a user. A binding's ServiceAccount
/// subject is indexed under that name, which is exactly upstream's
/// `serviceaccount.MatchesUsername`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

const CORE_GROUP: &str = "";
const NAMESPACES: &str = "namespaces";

/// The user name of ServiceAccount `name` in `namespace`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

/// What a resource request is about. Empty strings are "none", as upstream's
/// attributes have them: the core group is `""`, a list has no name, a
/// cluster-scoped resource has no namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
}

/// A resource request, or a request for a path that is not a resource
/// (`/api`, `/healthz`, `/version`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Resource(ResourceAttributes),
    NonResource { path: String },
}

/// One request as authorization sees it (upstream's `authorizer.Attributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub user: User,
    /// Upstream's verb: `get`, `list`, `watch`, `create`, ... for resources
    /// (see [`crate::authn::verb_of`]); the lower-cased method for paths.
    pub verb: String,
    pub request: Request,
}

impl Attributes {
    /// A request on `resource` of `api_group`; add the rest with
    /// [`subresource`](Self::subresource), [`name`](Self::name) and
    /// [`namespace`](Self::namespace).
    pub fn resource(user: User, verb: &str, api_group: &str, resource: &str) -> Self {
        Self {
            user,
            verb: verb.to_string(),
            request: Request::Resource(ResourceAttributes {
                api_group: api_group.to_string(),
                resource: resource.to_string(),
                ..Default::default()
            }),
        }
    }

    /// A request for a path that is not a resource.
    pub fn non_resource(user: User, verb: &str, path: &str) -> Self {
        Self {
            user,
            verb: verb.to_string(),
            request: Request::NonResource {
                path: path.to_string(),
            },
        }
    }

    /// The request skiff's dispatcher parsed, by `user` with `verb`.
    ///
    /// A request for one namespace (`/api/v1/namespaces/<name>[/status]`) is
    /// *in* that namespace, as upstream's `RequestInfoFactory` makes it, so a
    /// RoleBinding there (e.g. to `view`) lets its subjects read it. (A list
    /// or watch narrowed by `fieldSelector=metadata.name=<n>` is named `<n>`
    /// upstream; the target does not carry the query, so callers set that
    /// with [`name`](Self::name).)
    pub fn for_target(user: User, verb: &str, target: &Target) -> Self {
        let r = target.resource;
        let name = target.name.as_deref().unwrap_or("");
        let namespace = match target.namespace.as_deref() {
            Some(ns) => ns,
            None if r.group == CORE_GROUP && r.plural == NAMESPACES => name,
            None => "",
        };
        Self::resource(user, verb, r.group, r.plural)
            .subresource(target.subresource.as_deref().unwrap_or(""))
            .name(name)
            .namespace(namespace)
    }

    fn with_resource(mut self, f: impl FnOnce(&mut ResourceAttributes)) -> Self {
        if let Request::Resource(r) = &mut self.request {
            f(r);
        }
        self
    }

    /// Sets the subresource (no effect on a non-resource request).
    pub fn subresource(self, subresource: &str) -> Self {
        self.with_resource(|r| r.subresource = subresource.to_string())
    }

    /// Sets the object's name (no effect on a non-resource request).
    pub fn name(self, name: &str) -> Self {
        self.with_resource(|r| r.name = name.to_string())
    }

    /// Sets the namespace (no effect on a non-resource request).
    pub fn namespace(self, namespace: &str) -> Self {
        self.with_resource(|r| r.namespace = namespace.to_string())
    }

    /// The namespace the request is in; `""` at the cluster scope and for
    /// paths, where only ClusterRoleBindings count.
    pub fn namespace_str(&self) -> &str {
        match &self.request {
            Request::Resource(r) => &r.namespace,
            Request::NonResource { .. } => "",
        }
    }
}

/// An authorizer's answer, as upstream's: `NoOpinion` is a refusal unless
/// another authorizer allows. `reason` is upstream's: `RBAC: allowed by ...`
/// on allow, the bindings that could not be resolved on a refusal (shown
/// after the 403 message), empty otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow { reason: String },
    NoOpinion { reason: String },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { reason } | Decision::NoOpinion { reason } => reason,
        }
    }
}

//! The RBAC objects indexed for deciding: every binding resolved to its
//! role's rules when the index is built, and found by its subjects (user
//! name, group name, ServiceAccount as its user name), ClusterRoleBindings
//! for everywhere and RoleBindings for their namespace only. A decision
//! reads the entries of the user and of each of its groups; it never scans.
//!
//! Semantics are upstream's `DefaultRuleResolver.VisitRulesFor` and
//! `RBACAuthorizer.Authorize`: ClusterRoleBindings first, then the
//! RoleBindings of the request's namespace, each in list order; the first
//! rule that allows decides; a binding whose role does not exist grants
//! nothing and is named in the reason of a refusal.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;
use skiff_api::StatusError;
use smallvec::SmallVec;

use super::aggregate::{cluster_role_rules, Rules};
use super::message;
use super::review::RulesReview;
use super::rules::PolicyRule;
use super::{service_account_username, Attributes, Decision, SUPERUSER_GROUP};
use crate::authn::User;

pub const KIND_USER: &str = "User";
pub const KIND_GROUP: &str = "Group";
pub const KIND_SERVICE_ACCOUNT: &str = "ServiceAccount";
pub const KIND_ROLE: &str = "Role";
pub const KIND_CLUSTER_ROLE: &str = "ClusterRole";
/// How upstream's listers name what they did not find.
const ROLE_RESOURCE: &str = "role.rbac.authorization.k8s.io";
const CLUSTER_ROLE_RESOURCE: &str = "clusterrole.rbac.authorization.k8s.io";
/// How the API words a role it did not find.
const ROLE_RESOURCE_PLURAL: &str = "roles.rbac.authorization.k8s.io";
const CLUSTER_ROLE_RESOURCE_PLURAL: &str = "clusterroles.rbac.authorization.k8s.io";
/// How many applicable bindings a decision collects without allocating.
const INLINE_ENTRIES: usize = 16;

/// The four lists the index is built from, objects as the store returns them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RbacObjects<'a> {
    pub roles: &'a [Value],
    pub role_bindings: &'a [Value],
    pub cluster_roles: &'a [Value],
    pub cluster_role_bindings: &'a [Value],
}

/// A subject of a binding, for describing why a request was allowed.
#[derive(Debug, Clone)]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

/// One binding, its role resolved.
#[derive(Debug, Clone)]
struct Binding {
    /// `None` for a ClusterRoleBinding.
    namespace: Option<String>,
    name: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
    /// The role's rules, or upstream's error for a role it cannot resolve.
    rules: Result<Rules, String>,
    /// `RBAC: allowed by ...` for each subject, made when first needed: every
    /// allowed request carries it, so it is formatted once per index, not per
    /// request.
    allowed_by: Box<[OnceLock<String>]>,
}

impl Binding {
    /// The reason a request allowed through `subject` of this binding gives.
    fn allowed_by(&self, subject: usize) -> String {
        let reason = || format!("RBAC: allowed by {}", self.describe(subject));
        match self.allowed_by.get(subject) {
            Some(cell) => cell.get_or_init(reason).clone(),
            None => reason(),
        }
    }

    /// Upstream's `clusterRoleBindingDescriber` / `roleBindingDescriber`.
    fn describe(&self, subject: usize) -> String {
        let who = self.subjects.get(subject).map_or(String::new(), |s| {
            if s.kind == KIND_SERVICE_ACCOUNT {
                let ns = if s.namespace.is_empty() {
                    self.namespace.as_deref().unwrap_or("")
                } else {
                    &s.namespace
                };
                format!(
                    "{} {}",
                    s.kind,
                    message::go_quote(&format!("{}/{ns}", s.name))
                )
            } else {
                format!("{} {}", s.kind, message::go_quote(&s.name))
            }
        });
        let (kind, name) = match &self.namespace {
            Some(ns) => ("RoleBinding", format!("{}/{ns}", self.name)),
            None => ("ClusterRoleBinding", self.name.clone()),
        };
        format!(
            "{kind} {} of {} {} to {who}",
            message::go_quote(&name),
            self.role_kind,
            message::go_quote(&self.role_name)
        )
    }
}

/// Where one subject of one binding is: indices into `RbacIndex::bindings`
/// (ClusterRoleBindings numbered before RoleBindings, each in list order, so
/// sorting entries is upstream's visiting order) and into its subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    binding: u32,
    subject: u32,
}

/// Bindings by the subjects they name, for one scope.
#[derive(Debug, Clone, Default)]
struct Grants {
    by_user: HashMap<String, Vec<Entry>>,
    by_group: HashMap<String, Vec<Entry>>,
}

impl Grants {
    fn entries<'a>(&'a self, user: &'a User) -> impl Iterator<Item = Entry> + 'a {
        let named = self.by_user.get(user.name.as_str());
        let grouped = user
            .groups
            .iter()
            .filter_map(|g| self.by_group.get(g.as_str()));
        named.into_iter().chain(grouped).flatten().copied()
    }
}

/// The RBAC objects, ready to decide on.
#[derive(Debug, Clone, Default)]
pub struct RbacIndex {
    bindings: Vec<Binding>,
    cluster: Grants,
    namespaced: HashMap<String, Grants>,
    /// Roles by (namespace, name) and ClusterRoles by name, for what a new
    /// binding would grant ([`RbacIndex::role_rules`]).
    roles: HashMap<(String, String), Rules>,
    cluster_roles: HashMap<String, Rules>,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn subjects_of(binding: &Value) -> Vec<Subject> {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| Subject {
            kind: str_at(s, "/kind").to_string(),
            name: str_at(s, "/name").to_string(),
            namespace: str_at(s, "/namespace").to_string(),
        })
        .collect()
}

/// `name "x" not found`, worded as upstream's listers word it.
fn not_found(resource: &str, name: &str) -> String {
    format!("{resource} {} not found", message::go_quote(name))
}

impl RbacIndex {
    /// Indexes the four lists. Objects without a name (or RoleBindings and
    /// Roles without a namespace) are left out: the store holds none.
    pub fn build(objects: &RbacObjects<'_>) -> Self {
        let cluster_roles = cluster_role_rules(objects.cluster_roles);
        let roles: HashMap<(String, String), Rules> = objects
            .roles
            .iter()
            .filter_map(|r| {
                let ns = r.pointer("/metadata/namespace")?.as_str()?;
                let name = r.pointer("/metadata/name")?.as_str()?;
                Some((
                    (ns.to_string(), name.to_string()),
                    Rules::from(PolicyRule::list_from(r.get("rules"))),
                ))
            })
            .collect();
        // Upstream's `GetRoleReferenceRules`.
        let resolve = |kind: &str, name: &str, ns: &str| -> Result<Rules, String> {
            match kind {
                KIND_ROLE => roles
                    .get(&(ns.to_string(), name.to_string()))
                    .cloned()
                    .ok_or_else(|| not_found(ROLE_RESOURCE, name)),
                KIND_CLUSTER_ROLE => cluster_roles
                    .get(name)
                    .cloned()
                    .ok_or_else(|| not_found(CLUSTER_ROLE_RESOURCE, name)),
                other => Err(format!(
                    "unsupported role reference kind: {}",
                    message::go_quote(other)
                )),
            }
        };
        let mut index = RbacIndex::default();
        let scoped = objects
            .cluster_role_bindings
            .iter()
            .map(|b| (None, b))
            .chain(objects.role_bindings.iter().map(|b| {
                let ns = b.pointer("/metadata/namespace").and_then(Value::as_str);
                (Some(ns), b)
            }));
        for (ns, obj) in scoped {
            let namespace = match ns {
                None => None,
                Some(Some(ns)) if !ns.is_empty() => Some(ns.to_string()),
                Some(_) => continue,
            };
            let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let role_kind = str_at(obj, "/roleRef/kind");
            let role_name = str_at(obj, "/roleRef/name");
            let subjects = subjects_of(obj);
            let binding = Binding {
                rules: resolve(role_kind, role_name, namespace.as_deref().unwrap_or("")),
                namespace,
                name: name.to_string(),
                role_kind: role_kind.to_string(),
                role_name: role_name.to_string(),
                allowed_by: subjects.iter().map(|_| OnceLock::new()).collect(),
                subjects,
            };
            index.add(binding);
        }
        index.roles = roles;
        index.cluster_roles = cluster_roles;
        index
    }

    /// The rules of the role a binding in `namespace` (`""` for a
    /// ClusterRoleBinding) refers to; upstream's `GetRoleReferenceRules`,
    /// with the 404 its listers give for a missing role.
    pub fn role_rules(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
    ) -> Result<Rules, StatusError> {
        let found = match kind {
            KIND_ROLE => self.roles.get(&(namespace.to_string(), name.to_string())),
            KIND_CLUSTER_ROLE => self.cluster_roles.get(name),
            other => {
                return Err(StatusError::bad_request(format!(
                    "unsupported role reference kind: {}",
                    message::go_quote(other)
                )))
            }
        };
        found.cloned().ok_or_else(|| StatusError {
            code: 404,
            reason: "NotFound",
            message: if kind == KIND_ROLE {
                not_found(ROLE_RESOURCE_PLURAL, name)
            } else {
                not_found(CLUSTER_ROLE_RESOURCE_PLURAL, name)
            },
            details: None,
        })
    }

    fn add(&mut self, binding: Binding) {
        let Ok(id) = u32::try_from(self.bindings.len()) else {
            // Four billion bindings do not fit in a store; refuse the rest
            // rather than wrap around.
            return;
        };
        let grants = match &binding.namespace {
            None => &mut self.cluster,
            Some(ns) => self.namespaced.entry(ns.clone()).or_default(),
        };
        for (i, s) in binding.subjects.iter().enumerate() {
            let entry = Entry {
                binding: id,
                subject: i as u32,
            };
            let (map, key) = match s.kind.as_str() {
                KIND_USER => (&mut grants.by_user, s.name.clone()),
                KIND_GROUP => (&mut grants.by_group, s.name.clone()),
                KIND_SERVICE_ACCOUNT => {
                    // A subject without a namespace means the binding's own;
                    // in a ClusterRoleBinding it names no one (upstream).
                    let ns = match (s.namespace.as_str(), &binding.namespace) {
                        ("", Some(own)) => own.as_str(),
                        ("", None) => continue,
                        (ns, _) => ns,
                    };
                    (&mut grants.by_user, service_account_username(ns, &s.name))
                }
                _ => continue,
            };
            map.entry(key).or_default().push(entry);
        }
        self.bindings.push(binding);
    }

    /// The bindings that apply to `user` in `namespace` (`""`: cluster-wide
    /// only), in upstream's order, each with the first subject that names
    /// the user. Collected inline: a user's applicable bindings are a handful
    /// (its own and its groups', `system:authenticated`'s among them), and
    /// this runs for every request that is not the admin's.
    fn applicable<'a>(
        &'a self,
        user: &User,
        namespace: &str,
    ) -> impl Iterator<Item = (&'a Binding, usize)> + 'a {
        let mut entries: SmallVec<[Entry; INLINE_ENTRIES]> = self.cluster.entries(user).collect();
        if !namespace.is_empty() {
            if let Some(g) = self.namespaced.get(namespace) {
                entries.extend(g.entries(user));
            }
        }
        entries.sort_unstable();
        entries.dedup_by_key(|e| e.binding);
        entries.into_iter().filter_map(|e| {
            let b = self.bindings.get(e.binding as usize)?;
            Some((b, e.subject as usize))
        })
    }

    /// Upstream's decision: `system:masters` is allowed everything; anyone
    /// else what a rule of a binding naming them allows.
    pub fn authorize(&self, attrs: &Attributes) -> Decision {
        if attrs.user.in_group(SUPERUSER_GROUP) {
            return Decision::Allow {
                reason: String::new(),
            };
        }
        let mut errors: Vec<&str> = Vec::new();
        for (binding, subject) in self.applicable(&attrs.user, attrs.namespace_str()) {
            match &binding.rules {
                Ok(rules) => {
                    if rules.iter().any(|r| r.allows(attrs)) {
                        return Decision::Allow {
                            reason: binding.allowed_by(subject),
                        };
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let reason = if errors.is_empty() {
            String::new()
        } else {
            format!("RBAC: {}", aggregate_errors(&errors))
        };
        Decision::NoOpinion { reason }
    }

    /// Whether `attrs` is allowed.
    pub fn allows(&self, attrs: &Attributes) -> bool {
        self.authorize(attrs).is_allowed()
    }

    /// `Ok` when allowed; otherwise the 403 upstream answers with.
    pub fn check(&self, attrs: &Attributes) -> Result<(), StatusError> {
        match self.authorize(attrs) {
            Decision::Allow { .. } => Ok(()),
            Decision::NoOpinion { reason } => Err(message::forbidden(attrs, &reason)),
        }
    }

    /// Every rule that applies to `user` in `namespace` (`""`: cluster-wide
    /// bindings only), as upstream's `RBACAuthorizer.RulesFor` lists them for
    /// `SelfSubjectRulesReview`: in visiting order, duplicates kept, and the
    /// bindings whose role is missing in `evaluation_error`. `system:masters`
    /// gets nothing extra here (upstream's superuser authorizer lists no
    /// rules); it sees what its bindings, e.g. `cluster-admin`, grant.
    pub fn rules_for(&self, user: &User, namespace: &str) -> RulesReview {
        let mut rules: Vec<&PolicyRule> = Vec::new();
        let mut errors: Vec<&str> = Vec::new();
        for (binding, _) in self.applicable(user, namespace) {
            match &binding.rules {
                Ok(r) => rules.extend(r.iter()),
                Err(e) => errors.push(e),
            }
        }
        let error = (!errors.is_empty()).then(|| aggregate_errors(&errors));
        RulesReview::from_rules(rules, error)
    }
}

/// Errors joined as upstream's `utilerrors.NewAggregate(...).Error()`: one
/// alone as it is, several distinct ones as `[a, b]`.
fn aggregate_errors(errors: &[&str]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(e) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [one] => one.to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_aggregate_as_upstream() {
        assert_eq!(aggregate_errors(&["a"]), "a");
        assert_eq!(aggregate_errors(&["a", "a"]), "a");
        assert_eq!(aggregate_errors(&["a", "b", "a"]), "[a, b]");
    }
}

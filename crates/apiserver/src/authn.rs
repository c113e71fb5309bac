//! Who a request comes from, and who may join a node. What they may do with
//! the API is [`crate::authz::policy`]'s to decide (RBAC, issue #17).
//!
//! A client certificate verified against the cluster CA is tried first
//! ([`crate::x509`]): user its CN, groups its O's. Otherwise a bearer token is
//! one of:
//! - the admin token (`<data-dir>/admin.token`): user `admin`, group `system:masters`;
//! - a bootstrap token `<id>.<secret>`, checked against the Secret
//!   `kube-system/bootstrap-token-<id>` exactly as upstream's bootstrap token
//!   authenticator does (type, secret, `usage-bootstrap-authentication`,
//!   `expiration`, `auth-extra-groups`): user `system:bootstrap:<id>`, group
//!   `system:bootstrappers`. A deleted or expired token no longer authenticates;
//! - a node token `skiff-node.<node>.<secret>`, issued by the join endpoint
//!   ([`crate::join`]) and stored hashed (sha256) in the Secret
//!   `kube-system/skiff-node-credential-<node>`: user `system:node:<node>`, group
//!   `system:nodes`. Deleting that Secret revokes the node;
//! - a service-account token (an ES256 JWT, [`crate::serviceaccount`]), valid
//!   while the objects it is bound to exist: user
//!   `system:serviceaccount:<ns>:<name>`, groups `system:serviceaccounts` and
//!   `system:serviceaccounts:<ns>`.
//!
//! Every authenticated user is also in `system:authenticated`, as upstream adds.
//! Bootstrap and node tokens name their Secret, so checking one is one store
//! read by key, never a scan. It is a read per request, though: a cache in front
//! of it is for issue #18 (many API servers, performance).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use http::HeaderMap;
use serde_json::{json, Value};
use skiff_api::{registry, StatusError};

use crate::request::Target;
use crate::server::Api;

mod tokens;
pub use tokens::*;

pub const MASTERS: &str = "system:masters";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
pub const NODES: &str = "system:nodes";
pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

/// The namespace every credential Secret lives in.
pub const NAMESPACE: &str = "kube-system";

/// An authenticated user: what authorization (RBAC, #17) will decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    /// Set for service accounts (the ServiceAccount's uid), as upstream.
    pub uid: String,
    /// Upstream's `user.extra` (a service account's pod and node, its token's id).
    /// Shared: a service account's is the same on every request with its token,
    /// and a request clones its user (a dozen allocations for a pod's token).
    pub extra: Arc<BTreeMap<String, Vec<String>>>,
}

impl User {
    pub(crate) fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        Self {
            name: name.into(),
            groups,
            uid: String::new(),
            extra: Arc::default(),
        }
    }

    pub fn admin() -> Self {
        Self::new("admin", &[MASTERS])
    }

    pub fn node(name: &str) -> Self {
        Self::new(format!("system:node:{name}"), &[NODES])
    }

    /// `system:serviceaccount:<ns>:<name>` in upstream's service-account groups.
    pub fn service_account(
        namespace: &str,
        name: &str,
        uid: &str,
        extra: BTreeMap<String, Vec<String>>,
    ) -> Self {
        let ns_group = format!("{SERVICE_ACCOUNTS}:{namespace}");
        let mut u = Self::new(
            crate::serviceaccount::bound::service_account_user(namespace, name),
            &[SERVICE_ACCOUNTS, &ns_group],
        );
        u.uid = uid.to_string();
        u.extra = Arc::new(extra);
        u
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node this user is (`system:node:<name>` in `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        self.name
            .strip_prefix("system:node:")
            .filter(|_| self.in_group(NODES))
    }
}

/// Equality without an early exit, so timing does not reveal a prefix.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    // UTF-8 rather than `HeaderValue::to_str`'s visible-ASCII check: that one
    // reads a pod's ~1 KB token byte by byte on every request, and any token
    // that is not ASCII matches none of the formats below anyway.
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
}

async fn credential_secret(api: &Api, name: &str) -> Result<Option<Value>, StatusError> {
    let secrets =
        registry::lookup("", "v1", "secrets").ok_or_else(StatusError::no_such_resource)?;
    api.objects.get_opt(secrets, Some(NAMESPACE), name).await
}

/// Authenticates a request: its verified client certificate first, then its
/// bearer token, as upstream's union of authenticators; 401 Unauthorized
/// when neither names a user.
pub async fn authenticate_request(
    api: &Api,
    parts: &http::request::Parts,
) -> Result<User, StatusError> {
    let by_certificate = parts
        .extensions
        .get::<crate::x509::PeerCertificate>()
        .and_then(crate::x509::PeerCertificate::user);
    match by_certificate {
        Some(user) => Ok(user),
        None => authenticate(api, &parts.headers).await,
    }
}

/// Authenticates a request by its bearer token; 401 Unauthorized otherwise.
pub async fn authenticate(api: &Api, headers: &HeaderMap) -> Result<User, StatusError> {
    let Some(given) = bearer(headers) else {
        return Err(StatusError::unauthorized());
    };
    if ct_eq(given.as_bytes(), api.admin_token.as_bytes()) {
        return Ok(User::admin());
    }
    let refused = |why: &str| {
        tracing::debug!(reason = why, "bearer token refused");
        StatusError::unauthorized()
    };
    if let Some(token) = NodeToken::parse(given) {
        let Some(secret) = credential_secret(api, &token.secret_name()).await? else {
            return Err(refused("no credential Secret for the node (revoked)"));
        };
        return node_user(&secret, &token).map_err(refused);
    }
    if let Some(token) = BootstrapToken::parse(given) {
        let Some(secret) = credential_secret(api, &token.secret_name()).await? else {
            return Err(refused("no bootstrap token Secret (deleted)"));
        };
        return bootstrap_user(&secret, &token, Utc::now()).map_err(refused);
    }
    if crate::serviceaccount::jwt::looks_like_jwt(given) {
        return match crate::serviceaccount::bound::authenticate(api, given, None).await? {
            Ok(a) => Ok(a.user),
            Err(why) => Err(refused(&why)),
        };
    }
    Err(StatusError::unauthorized())
}

/// What a request asks to do, as authorization sees it.
pub enum Action<'a> {
    /// `POST /skiff/v1/join`.
    Join,
    Resource {
        verb: &'a str,
        target: &'a Target,
    },
    NonResource {
        verb: &'a str,
        path: &'a str,
    },
}

/// The verb of a resource request, as upstream's RequestInfo names it.
pub fn verb_of(method: &http::Method, t: &Target, watch: bool) -> String {
    let named = t.name.is_some();
    match method.as_str() {
        "GET" | "HEAD" if watch => "watch".into(),
        "GET" | "HEAD" if named => "get".into(),
        "GET" | "HEAD" => "list".into(),
        "POST" => "create".into(),
        "PUT" => "update".into(),
        "PATCH" => "patch".into(),
        "DELETE" if named => "delete".into(),
        "DELETE" => "deletecollection".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// 403 Forbidden, worded as upstream's authorization filter words it.
pub fn forbidden(user: &User, action: &Action<'_>) -> StatusError {
    let (message, details) = match action {
        Action::Join => (
            format!(
                "forbidden: User {:?} cannot create path {:?}",
                user.name,
                crate::join::JOIN_PATH
            ),
            json!({}),
        ),
        Action::NonResource { verb, path } => (
            format!(
                "forbidden: User {:?} cannot {verb} path {path:?}",
                user.name
            ),
            json!({}),
        ),
        Action::Resource { verb, target } => {
            let r = target.resource;
            let mut resource = r.plural.to_string();
            if let Some(sub) = &target.subresource {
                resource = format!("{resource}/{sub}");
            }
            let scope = match &target.namespace {
                Some(ns) => format!("in the namespace {ns:?}"),
                None => "at the cluster scope".to_string(),
            };
            let why = format!(
                "User {:?} cannot {verb} resource {resource:?} in API group {:?} {scope}",
                user.name, r.group
            );
            let mut details = json!({"kind": r.plural});
            if !r.group.is_empty() {
                details["group"] = json!(r.group);
            }
            let message = match &target.name {
                Some(name) => {
                    details["name"] = json!(name);
                    format!("{} {name:?} is forbidden: {why}", r.qualified_plural())
                }
                None => format!("{} is forbidden: {why}", r.qualified_plural()),
            };
            (message, details)
        }
    };
    StatusError {
        code: 403,
        reason: "Forbidden",
        message,
        details: Some(details),
    }
}

/// Who may join a node (`POST /skiff/v1/join`, not an API path RBAC knows):
/// bootstrap tokens and `system:masters`. For the API, a bootstrap token may
/// do nothing here either; everyone else is for [`crate::authz::policy`]
/// (nodes are decided by the Node authorizer there, then RBAC).
pub fn authorize(user: &User, action: &Action<'_>) -> Result<(), StatusError> {
    let allowed = match action {
        Action::Join => user.in_group(BOOTSTRAPPERS) || user.in_group(MASTERS),
        _ => !user.in_group(BOOTSTRAPPERS),
    };
    if allowed {
        Ok(())
    } else {
        Err(forbidden(user, action))
    }
}

#[cfg(test)]
mod tests {
    use super::tokens::tests::{now, tok};
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(http::header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(http::header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn bootstrap_users_may_only_join_and_are_told_as_upstream_tells() {
        let boot = bootstrap_user(&tok().to_secret(None, None), &tok(), now()).unwrap();
        let pods = registry::lookup("", "v1", "pods").unwrap();
        let all = Target {
            resource: pods,
            namespace: None,
            name: None,
            subresource: None,
        };
        let e = authorize(
            &boot,
            &Action::Resource {
                verb: "list",
                target: &all,
            },
        )
        .unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(e.reason, "Forbidden");
        assert_eq!(
            e.message,
            r#"pods is forbidden: User "system:bootstrap:abcdef" cannot list resource "pods" in API group "" at the cluster scope"#
        );
        assert_eq!(e.details, Some(json!({"kind": "pods"})));
        let deploys = registry::lookup("apps", "v1", "deployments").unwrap();
        let one = Target {
            resource: deploys,
            namespace: Some("default".into()),
            name: Some("web".into()),
            subresource: Some("scale".into()),
        };
        let e = authorize(
            &boot,
            &Action::Resource {
                verb: "get",
                target: &one,
            },
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            r#"deployments.apps "web" is forbidden: User "system:bootstrap:abcdef" cannot get resource "deployments/scale" in API group "apps" in the namespace "default""#
        );
        assert_eq!(
            e.details,
            Some(json!({"kind": "deployments", "group": "apps", "name": "web"}))
        );
        let e = authorize(
            &boot,
            &Action::NonResource {
                verb: "get",
                path: "/api",
            },
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            r#"forbidden: User "system:bootstrap:abcdef" cannot get path "/api""#
        );
        assert!(authorize(&boot, &Action::Join).is_ok());
        // Admin may do anything; nodes anything but joining (for now: #17).
        assert!(authorize(&User::admin(), &Action::Join).is_ok());
        let node = User::node("n1");
        assert!(authorize(
            &node,
            &Action::Resource {
                verb: "list",
                target: &all
            }
        )
        .is_ok());
        assert_eq!(authorize(&node, &Action::Join).unwrap_err().code, 403);
    }
}

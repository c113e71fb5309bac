//! The 403 of a refused request, worded exactly as upstream's
//! `responsewriters.Forbidden` (`forbiddenMessage`, then
//! `apierrors.NewForbidden`) words it, since kubectl and scripts print and
//! match it:
//!
//! - `services is forbidden: User "u" cannot list resource "services" in API
//!   group "" in the namespace "default"`;
//! - `... at the cluster scope` without a namespace;
//! - `deployments.apps "web" is forbidden: ...` for a named object;
//! - `cannot get resource "pods/log" ...` for a subresource (the prefix keeps
//!   the bare resource);
//! - `forbidden: User "u" cannot get path "/foo"` for a non-resource path;
//! - `...: <reason>` when the authorizer gave one (e.g. a missing role).

use serde_json::{json, Value};
use skiff_api::StatusError;

use super::{Attributes, Request};

/// `Forbidden`, the Status reason of a 403.
pub const REASON_FORBIDDEN: &str = "Forbidden";

/// A string as Go's `%q` prints it: double-quoted, with `"` and `\`
/// escaped and control characters as Go escapes them (`\n`, `\x01`,
/// `\u0085`), printable characters as they are.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What the user may not do: upstream's `forbiddenMessage`.
pub fn forbidden_message(attrs: &Attributes) -> String {
    let user = go_quote(&attrs.user.name);
    let verb = &attrs.verb;
    let r = match &attrs.request {
        Request::NonResource { path } => {
            return format!("User {user} cannot {verb} path {}", go_quote(path));
        }
        Request::Resource(r) => r,
    };
    let resource = if r.subresource.is_empty() {
        go_quote(&r.resource)
    } else {
        go_quote(&format!("{}/{}", r.resource, r.subresource))
    };
    let group = go_quote(&r.api_group);
    let scope = if r.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {}", go_quote(&r.namespace))
    };
    format!("User {user} cannot {verb} resource {resource} in API group {group} {scope}")
}

/// The 403 for a refused request; `reason` is the authorizer's (empty for
/// none), appended as upstream appends it.
pub fn forbidden(attrs: &Attributes, reason: &str) -> StatusError {
    let mut why = forbidden_message(attrs);
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    // Upstream's NewForbidden over the request's group and resource: a path
    // has neither, so the message starts with `forbidden:` and the details
    // are empty.
    let (group, resource, name) = match &attrs.request {
        Request::Resource(r) => (r.api_group.as_str(), r.resource.as_str(), r.name.as_str()),
        Request::NonResource { .. } => ("", "", ""),
    };
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let message = if qualified.is_empty() {
        format!("forbidden: {why}")
    } else if name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {} is forbidden: {why}", go_quote(name))
    };
    let mut details = json!({});
    for (key, value) in [("name", name), ("group", group), ("kind", resource)] {
        if !value.is_empty() {
            details[key] = Value::String(value.to_string());
        }
    }
    StatusError {
        code: 403,
        reason: REASON_FORBIDDEN,
        message,
        details: Some(details),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::User;
    use crate::authz::tests::test_service_account;

    fn user(name: &str) -> User {
        crate::authz::tests::test_user(name, &[])
    }

    #[test]
    fn the_issues_example_is_word_for_word() {
        let a = Attributes::resource(test_service_account("ns", "sa"), "list", "", "services")
            .namespace("default");
        let e = forbidden(&a, "");
        assert_eq!(e.code, 403);
        assert_eq!(e.reason, "Forbidden");
        assert_eq!(
            e.message,
            r#"services is forbidden: User "system:serviceaccount:ns:sa" cannot list resource "services" in API group "" in the namespace "default""#
        );
        assert_eq!(e.details, Some(json!({"kind": "services"})));
    }

    #[test]
    fn variants_of_scope_name_group_and_subresource() {
        let cases = [
            (
                Attributes::resource(user("u"), "list", "", "nodes"),
                r#"nodes is forbidden: User "u" cannot list resource "nodes" in API group "" at the cluster scope"#,
            ),
            (
                Attributes::resource(user("u"), "get", "", "services")
                    .name("x")
                    .namespace("default"),
                r#"services "x" is forbidden: User "u" cannot get resource "services" in API group "" in the namespace "default""#,
            ),
            (
                Attributes::resource(user("u"), "get", "", "pods")
                    .subresource("log")
                    .name("p")
                    .namespace("ns"),
                r#"pods "p" is forbidden: User "u" cannot get resource "pods/log" in API group "" in the namespace "ns""#,
            ),
            (
                Attributes::resource(user("u"), "create", "apps", "deployments").namespace("ns"),
                r#"deployments.apps is forbidden: User "u" cannot create resource "deployments" in API group "apps" in the namespace "ns""#,
            ),
            (
                Attributes::resource(
                    user("u"),
                    "delete",
                    "rbac.authorization.k8s.io",
                    "clusterroles",
                )
                .name("admin"),
                r#"clusterroles.rbac.authorization.k8s.io "admin" is forbidden: User "u" cannot delete resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope"#,
            ),
            (
                Attributes::non_resource(user("u"), "get", "/foo"),
                r#"forbidden: User "u" cannot get path "/foo""#,
            ),
        ];
        for (attrs, want) in cases {
            assert_eq!(forbidden(&attrs, "").message, want);
        }
    }

    #[test]
    fn details_name_the_object_and_group() {
        let a = Attributes::resource(user("u"), "get", "apps", "deployments")
            .subresource("scale")
            .name("web")
            .namespace("ns");
        assert_eq!(
            forbidden(&a, "").details,
            Some(json!({"name": "web", "group": "apps", "kind": "deployments"}))
        );
        let path = Attributes::non_resource(user("u"), "get", "/metrics");
        assert_eq!(forbidden(&path, "").details, Some(json!({})));
    }

    #[test]
    fn a_reason_follows_the_message() {
        let a = Attributes::resource(user("u"), "get", "", "pods").namespace("ns");
        assert_eq!(
            forbidden(
                &a,
                r#"RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#
            )
            .message,
            r#"pods is forbidden: User "u" cannot get resource "pods" in API group "" in the namespace "ns": RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#
        );
    }

    #[test]
    fn quoting_is_gos() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("x\ny\u{1}"), r#""x\ny\x01""#);
        assert_eq!(go_quote("é"), "\"é\"");
        assert_eq!(go_quote(""), "\"\"");
    }
}

//! What a request asks for, as upstream's `RequestInfoFactory` reads it from
//! the path, method and query, before any resource is looked up: a request
//! for a resource that does not exist is still authorized as that resource
//! (a user without access gets 403, not 404, as upstream answers), and
//! `/api`, `/apis/<group>/<version>`, `/metrics`, `/openapi/...` are paths.

use super::Attributes;
use crate::authn::User;
use crate::request::Query;

/// Path prefixes of resource requests; `api` has no group segment.
const API_PREFIX: &str = "api";
const APIS_PREFIX: &str = "apis";
/// `/api/v1/watch/...` and `/api/v1/proxy/...`: the verb is in the path.
const SPECIAL_VERBS: &[&str] = &["proxy", "watch"];
/// Subresources of a namespace, read as `namespaces/<ns>/<subresource>`.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Upstream's `path.IsValidPathSegmentName`: a name from a field selector is
/// only used when it could be a path segment.
fn valid_path_segment(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
}

/// The name a field selector pins (`metadata.name=x` or `==`), as upstream's
/// `RequiresExactMatch("metadata.name")` finds it among the terms.
fn field_selector_name(selector: &str) -> Option<&str> {
    selector.split(',').find_map(|term| {
        let term = term.trim();
        if term.contains("!=") {
            return None;
        }
        let (key, value) = term.split_once("==").or_else(|| term.split_once('='))?;
        (key.trim() == "metadata.name").then_some(value.trim())
    })
}

/// The request's attributes for authorization, by `user`.
pub fn attributes(user: User, method: &http::Method, path: &str, query: &Query) -> Attributes {
    let non_resource =
        |user| Attributes::non_resource(user, &method.as_str().to_ascii_lowercase(), path);
    // Inline: a resource path has at most eight segments
    // (`/apis/<g>/<v>/namespaces/<ns>/<resource>/<name>/<sub>`).
    let parts: smallvec::SmallVec<[&str; 8]> = path.trim_matches('/').split('/').collect();
    // Fewer than three segments (`/api`, `/api/v1`, `/apis/g`) is a path.
    if parts.len() < 3 {
        return non_resource(user);
    }
    let mut rest: &[&str] = &parts;
    let group = match rest[0] {
        API_PREFIX => {
            rest = &rest[1..];
            ""
        }
        APIS_PREFIX => {
            // `/apis/<group>/<version>` is discovery, a path.
            if rest.len() < 4 {
                return non_resource(user);
            }
            let g = rest[1];
            rest = &rest[2..];
            g
        }
        _ => return non_resource(user),
    };
    // The version.
    rest = &rest[1..];
    let mut verb = match method.as_str() {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
    .to_string();
    let mut special = false;
    if let Some(v) = rest.first().filter(|v| SPECIAL_VERBS.contains(v)) {
        verb = (*v).to_string();
        special = true;
        rest = &rest[1..];
        if rest.is_empty() {
            // Upstream cannot tell what such a request is about; nothing grants it.
            return non_resource(user);
        }
    }
    let mut namespace = "";
    if rest.first() == Some(&"namespaces") {
        if let Some(ns) = rest.get(1) {
            namespace = ns;
            if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
                rest = &rest[2..];
            }
        }
    }
    let resource = rest.first().copied().unwrap_or("");
    let mut name = rest.get(1).copied().unwrap_or("").to_string();
    // Upstream keeps a watch's or proxy's trailing parts out of the subresource.
    let subresource = if special {
        ""
    } else {
        rest.get(2).copied().unwrap_or("")
    };
    if name.is_empty() && verb == "get" {
        verb = if query.flag("watch") { "watch" } else { "list" }.to_string();
    }
    if name.is_empty() && matches!(verb.as_str(), "list" | "watch") {
        if let Some(n) = query
            .get("fieldSelector")
            .and_then(field_selector_name)
            .filter(|n| valid_path_segment(n))
        {
            name = n.to_string();
        }
    }
    if name.is_empty() && verb == "delete" {
        verb = "deletecollection".to_string();
    }
    Attributes::resource(user, &verb, group, resource)
        .subresource(subresource)
        .name(&name)
        .namespace(namespace)
}

#[cfg(test)]
mod tests {
    use super::super::{Request, ResourceAttributes};
    use super::*;
    use http::Method;

    fn attrs(method: Method, path: &str, query: &str) -> (String, Request) {
        let a = attributes(User::admin(), &method, path, &Query::parse(Some(query)));
        (a.verb, a.request)
    }

    fn res(group: &str, resource: &str, sub: &str, name: &str, ns: &str) -> Request {
        Request::Resource(ResourceAttributes {
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            namespace: ns.into(),
        })
    }

    #[test]
    fn resources_verbs_and_scopes_as_upstream_reads_them() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/default/services",
                "",
                "list",
                res("", "services", "", "", "default"),
            ),
            (
                Method::GET,
                "/api/v1/services",
                "watch=true",
                "watch",
                res("", "services", "", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/d/pods",
                "fieldSelector=metadata.name%3Dweb",
                "list",
                res("", "pods", "", "web", "d"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/d/pods",
                "watch=1&fieldSelector=metadata.name%3D%3Dweb",
                "watch",
                res("", "pods", "", "web", "d"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/d/pods",
                "fieldSelector=metadata.name!%3Dweb",
                "list",
                res("", "pods", "", "", "d"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/d/pods/p/log",
                "",
                "get",
                res("", "pods", "log", "p", "d"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/d/pods/p/exec",
                "",
                "create",
                res("", "pods", "exec", "p", "d"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/d/pods/p/eviction",
                "",
                "create",
                res("", "pods", "eviction", "p", "d"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/d/serviceaccounts/sa/token",
                "",
                "create",
                res("", "serviceaccounts", "token", "sa", "d"),
            ),
            (
                Method::PUT,
                "/apis/apps/v1/namespaces/d/deployments/w/status",
                "",
                "update",
                res("apps", "deployments", "status", "w", "d"),
            ),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/d/deployments",
                "",
                "deletecollection",
                res("apps", "deployments", "", "", "d"),
            ),
            (
                Method::PATCH,
                "/api/v1/nodes/n1",
                "",
                "patch",
                res("", "nodes", "", "n1", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/moon",
                "",
                "get",
                res("", "namespaces", "", "moon", "moon"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/moon/finalize",
                "",
                "update",
                res("", "namespaces", "finalize", "moon", "moon"),
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/d/pods",
                "",
                "watch",
                res("", "pods", "", "", "d"),
            ),
            (
                Method::POST,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                "",
                "create",
                res("authentication.k8s.io", "tokenreviews", "", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/bogus",
                "",
                "list",
                res("", "bogus", "", "", ""),
            ),
        ];
        for (method, path, query, verb, request) in cases {
            assert_eq!(
                attrs(method, path, query),
                (verb.to_string(), request),
                "{path}?{query}"
            );
        }
    }

    #[test]
    fn discovery_and_other_paths_are_not_resources() {
        for path in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/metrics",
            "/openapi/v3/apis/apps/v1",
            "/.well-known/openid-configuration",
            "/openid/v1/jwks",
        ] {
            assert_eq!(
                attrs(Method::GET, path, ""),
                (
                    "get".to_string(),
                    Request::NonResource { path: path.into() }
                ),
                "{path}"
            );
        }
    }
}

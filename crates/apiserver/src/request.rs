//! What a request addresses, parsed once from its path and query, as upstream's
//! `RequestInfoFactory` does.

use std::collections::HashMap;

use skiff_api::registry::{self, Resource};
use skiff_api::StatusError;

/// A request for a resource collection, object or subresource.
#[derive(Debug, Clone)]
pub struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Everything under `/api` and `/apis` that is not a resource request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryPath {
    CoreVersions,
    Groups,
    Group(String),
    Resources { group: String, version: String },
}

#[derive(Debug)]
pub enum Route {
    Discovery(DiscoveryPath),
    Resource(Target),
}

/// Subresources of a namespace that must not be read as `namespaces/{ns}/{resource}`.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...`.
pub fn route(path: &str) -> Result<Route, StatusError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Ok(Route::Discovery(DiscoveryPath::CoreVersions)),
        ["apis"] => return Ok(Route::Discovery(DiscoveryPath::Groups)),
        ["apis", g] => return Ok(Route::Discovery(DiscoveryPath::Group(g.to_string()))),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(StatusError::no_such_resource()),
    };
    if rest.is_empty() {
        return Ok(Route::Discovery(DiscoveryPath::Resources {
            group: group.to_string(),
            version: version.to_string(),
        }));
    }
    let mut rest: &[&str] = rest;
    let mut namespace = None;
    if rest[0] == "namespaces" && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        } else {
            // `namespaces/{name}[/status]`: the namespace is the object itself.
            namespace = None;
        }
    }
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return Err(StatusError::no_such_resource()),
    };
    let resource =
        registry::lookup(group, version, plural).ok_or_else(StatusError::no_such_resource)?;
    if !resource.namespaced && namespace.is_some() {
        return Err(StatusError::no_such_resource());
    }
    if name.is_some_and(str::is_empty) {
        return Err(StatusError::no_such_resource());
    }
    Ok(Route::Resource(Target {
        resource,
        namespace,
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    }))
}

/// Decoded query parameters (repeated keys keep every value, as `exec`'s `command` needs).
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, Vec<String>>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.entry(percent_decode(k))
                .or_default()
                .push(percent_decode(v));
        }
        Self(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | ""))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, StatusError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                StatusError::bad_request(format!("invalid value {v:?} for query parameter {key}"))
            }),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match route(path).unwrap() {
            Route::Resource(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths() {
        let t = target("/api/v1/namespaces/default/services/web");
        assert_eq!(t.resource.plural, "services");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        let t = target("/api/v1/namespaces/moon");
        assert_eq!(t.resource.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("moon"));
        assert!(t.namespace.is_none());
        let t = target("/api/v1/namespaces/moon/status");
        assert_eq!(t.name.as_deref(), Some("moon"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = target("/apis/apps/v1/namespaces/x/deployments/d/scale");
        assert_eq!(t.subresource.as_deref(), Some("scale"));
        let t = target("/api/v1/services");
        assert!(t.namespace.is_none() && t.name.is_none());
        assert!(route("/api/v1/namespaces/x/nodes").is_err());
        assert!(route("/api/v1/bogus").is_err());
        assert!(matches!(
            route("/apis/apps/v1").unwrap(),
            Route::Discovery(DiscoveryPath::Resources { .. })
        ));
    }

    #[test]
    fn query() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&command=sh&command=-c&watch=1",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(q.all("command"), ["sh", "-c"]);
        assert!(q.flag("watch"));
        assert!(Query::parse(Some("limit=x")).int("limit").is_err());
    }
}

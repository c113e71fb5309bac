//! Discovery: legacy `APIVersions`/`APIGroupList`/`APIResourceList` and the
//! aggregated `apidiscovery.k8s.io/v2` documents, all derived from the registry.

use http::HeaderMap;
use serde_json::{json, Value};
use skiff_api::registry::{self, Resource};
use skiff_api::StatusError;

use crate::request::DiscoveryPath;

/// kubectl uses aggregated discovery only when the response has exactly this type.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            let p = p.replace(' ', "");
            p.contains("g=apidiscovery.k8s.io")
                && p.contains("v=v2;")
                && p.contains("as=APIGroupDiscoveryList")
                || p.ends_with("v=v2") && p.contains("as=APIGroupDiscoveryList")
        })
}

/// Subresources per resource: (name, kind, group, version, verbs).
fn subresources(
    r: &Resource,
) -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
)> {
    const GPU: &[&str] = &["get", "patch", "update"];
    let mut out = Vec::new();
    if r.status {
        out.push(("status", r.kind, r.group, r.version, GPU));
    }
    if r.scale {
        out.push(("scale", "Scale", "autoscaling", "v1", GPU));
    }
    if (r.group, r.plural) == ("", "pods") {
        out.push(("log", "Pod", "", "v1", &["get"][..]));
        out.push(("exec", "PodExecOptions", "", "v1", &["create", "get"][..]));
        out.push((
            "attach",
            "PodAttachOptions",
            "",
            "v1",
            &["create", "get"][..],
        ));
        out.push(("binding", "Binding", "", "v1", &["create"][..]));
        out.push(("eviction", "Eviction", "policy", "v1", &["create"][..]));
        out.push(("ephemeralcontainers", "Pod", "", "v1", GPU));
    }
    if (r.group, r.plural) == ("", "serviceaccounts") {
        out.push(crate::serviceaccount::discovery::TOKEN_SUBRESOURCE);
    }
    if (r.group, r.plural) == ("", "namespaces") {
        out.push(("finalize", "Namespace", "", "v1", &["update"][..]));
    }
    out
}

/// Resources served outside the registry (reviews: created, never stored).
fn unstored() -> impl Iterator<Item = &'static Resource> {
    crate::serviceaccount::discovery::RESOURCES
        .iter()
        .chain(crate::authz::access_review::RESOURCES)
        .copied()
}

/// The registry's groups, then those served outside it (not stored).
fn groups() -> Vec<&'static str> {
    let mut out = registry::groups();
    for r in unstored() {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// The registry's resources of a group version and those served outside it.
fn resources_in<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    registry::resources_in(group, version)
        .chain(unstored().filter(move |r| r.group == group && r.version == version))
}

fn legacy_resources(group: &str, version: &str) -> Value {
    let mut list = Vec::new();
    for r in resources_in(group, version) {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        list.push(e);
        for (sub, kind, g, v, verbs) in subresources(r) {
            let mut s = json!({
                "name": format!("{}/{}", r.plural, sub),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if g != r.group || v != r.version {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            list.push(s);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
}

/// Upstream's version priority: GA before beta before alpha, higher numbers
/// first, and anything not of the `v<N>[alpha|beta<M>]` form last by name.
fn version_priority(v: &str) -> (u8, u64, u64, String) {
    let parse = |rest: &str| -> Option<(u8, u64, u64)> {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        match &rest[digits.len()..] {
            "" => Some((0, major, 0)),
            tail => {
                let (stage, minor) = tail
                    .strip_prefix("beta")
                    .map(|m| (1, m))
                    .or_else(|| tail.strip_prefix("alpha").map(|m| (2, m)))?;
                Some((stage, major, minor.parse().ok()?))
            }
        }
    };
    match v.strip_prefix('v').and_then(parse) {
        // Higher majors and minors first: sort by their complements.
        Some((stage, major, minor)) => (stage, u64::MAX - major, u64::MAX - minor, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

/// The versions a group serves, preferred first.
fn versions_of(group: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in registry::all().into_iter().chain(unstored()) {
        if r.group == group && !out.contains(&r.version) {
            out.push(r.version);
        }
    }
    out.sort_by_key(|v| version_priority(v));
    out
}

fn group_doc(group: &str) -> Value {
    let versions: Vec<Value> = versions_of(group)
        .into_iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = versions
        .first()
        .cloned()
        .unwrap_or_else(|| json!({"groupVersion": format!("{group}/v1"), "version": "v1"}));
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

fn aggregated_versions(group: &str) -> Value {
    let versions: Vec<Value> = versions_of(group)
        .into_iter()
        .map(|v| aggregated_version(group, v))
        .collect();
    Value::Array(versions)
}

fn aggregated_version(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = resources_in(group, version)
        .map(|r| {
            let subs: Vec<Value> = subresources(r)
                .into_iter()
                .map(|(sub, kind, g, v, verbs)| {
                    json!({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": verbs})
                })
                .collect();
            let mut e = json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs,
            });
            if !r.short_names.is_empty() {
                e["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                e["categories"] = json!(r.categories);
            }
            if !subs.is_empty() {
                e["subresources"] = json!(subs);
            }
            e
        })
        .collect();
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![json!({"metadata": {"creationTimestamp": null}, "versions": aggregated_versions("")})]
    } else {
        groups()
            .into_iter()
            .map(|g| json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": aggregated_versions(g)}))
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// Answers a discovery path: the document and whether it is the aggregated form.
pub fn serve(
    path: &DiscoveryPath,
    headers: &HeaderMap,
    server_address: &str,
) -> Result<(Value, bool), StatusError> {
    let agg = wants_aggregated(headers);
    match path {
        DiscoveryPath::CoreVersions if agg => Ok((aggregated(true), true)),
        DiscoveryPath::Groups if agg => Ok((aggregated(false), true)),
        DiscoveryPath::CoreVersions => Ok((
            json!({"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}),
            false,
        )),
        DiscoveryPath::Groups => Ok((
            json!({"kind": "APIGroupList", "apiVersion": "v1",
                   "groups": groups().into_iter().map(group_doc).collect::<Vec<_>>()}),
            false,
        )),
        DiscoveryPath::Group(g) if groups().contains(&g.as_str()) => {
            let mut d = group_doc(g);
            d["kind"] = json!("APIGroup");
            d["apiVersion"] = json!("v1");
            Ok((d, false))
        }
        DiscoveryPath::Resources { group, version }
            if resources_in(group, version).next().is_some() =>
        {
            Ok((legacy_resources(group, version), false))
        }
        _ => Err(StatusError::no_such_resource()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_only_for_v2() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
                .parse()
                .unwrap(),
        );
        assert!(wants_aggregated(&h));
        h.insert(http::header::ACCEPT, "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json".parse().unwrap());
        assert!(!wants_aggregated(&h));
    }

    #[test]
    fn core_resources_have_short_names_and_subresources() {
        let (doc, _) = serve(
            &DiscoveryPath::Resources {
                group: String::new(),
                version: "v1".into(),
            },
            &HeaderMap::new(),
            "x",
        )
        .unwrap();
        let res = doc["resources"].as_array().unwrap();
        let svc = res.iter().find(|r| r["name"] == "services").unwrap();
        assert_eq!(svc["shortNames"][0], "svc");
        assert!(res.iter().any(|r| r["name"] == "pods/exec"));
        let (apps, _) = serve(
            &DiscoveryPath::Resources {
                group: "apps".into(),
                version: "v1".into(),
            },
            &HeaderMap::new(),
            "x",
        )
        .unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap()
            .clone();
        assert_eq!(scale["group"], "autoscaling");
    }

    #[test]
    fn token_requests_and_reviews_are_discovered_as_upstream() {
        let core = legacy_resources("", "v1");
        let token = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "serviceaccounts/token")
            .unwrap()
            .clone();
        assert_eq!(token["kind"], "TokenRequest");
        assert_eq!(token["group"], "authentication.k8s.io");
        assert!(groups().contains(&"authentication.k8s.io"));
        let agg = aggregated(false);
        let authn = agg["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "authentication.k8s.io")
            .unwrap()
            .clone();
        let r = &authn["versions"][0]["resources"];
        assert_eq!(r[0]["resource"], "selfsubjectreviews");
        assert_eq!(r[1]["resource"], "tokenreviews");
        assert_eq!(r[1]["scope"], "Cluster");
        assert_eq!(r[1]["verbs"], json!(["create"]));
    }

    #[test]
    fn access_reviews_are_discovered_as_upstream() {
        let doc = legacy_resources("authorization.k8s.io", "v1");
        let names: Vec<&str> = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "localsubjectaccessreviews",
                "selfsubjectaccessreviews",
                "selfsubjectrulesreviews",
                "subjectaccessreviews"
            ]
        );
        assert_eq!(doc["resources"][0]["namespaced"], true);
        assert!(groups().contains(&"authorization.k8s.io"));
    }
}

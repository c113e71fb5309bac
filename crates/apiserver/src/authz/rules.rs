//! One RBAC `PolicyRule` and whether it allows a request, exactly as
//! upstream's `pkg/apis/rbac/v1/evaluation_helpers.go` and `RuleAllows`
//! (`plugin/pkg/auth/authorizer/rbac`) decide it.
//!
//! Matching is literal: there is no case folding and no globbing beyond what
//! upstream has — `*` alone in verbs, apiGroups and resources; `*/<sub>` for a
//! subresource of any resource; a trailing `*` in nonResourceURLs. In
//! particular `pods/*` is *not* a wildcard for every subresource of pods
//! (upstream compares it literally), so neither is it here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Attributes, Request};

/// The wildcard of verbs, apiGroups, resources and nonResourceURLs.
pub const ALL: &str = "*";
/// The prefix of a rule resource naming a subresource of any resource.
const ANY_RESOURCE_PREFIX: &str = "*/";

/// A rule of a Role or ClusterRole. Missing lists are empty, as upstream's
/// decoder leaves them nil; an empty `resourceNames` means every name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
}

impl PolicyRule {
    /// The rules of a role object's `rules`. A rule that does not decode
    /// (the store validated it, so only a hand-edited store could hold one)
    /// is left out: it grants nothing, which is what RBAC does with anything
    /// it cannot read.
    pub fn list_from(rules: Option<&Value>) -> Vec<PolicyRule> {
        rules
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| PolicyRule::deserialize(r).ok())
            .collect()
    }

    /// Whether this rule allows the request (upstream's `RuleAllows`).
    pub fn allows(&self, attrs: &Attributes) -> bool {
        if !self.verb_matches(&attrs.verb) {
            return false;
        }
        match &attrs.request {
            Request::Resource(r) => {
                self.api_group_matches(&r.api_group)
                    && self.resource_matches(&r.resource, &r.subresource)
                    && self.resource_name_matches(&r.name)
            }
            Request::NonResource { path } => self.non_resource_url_matches(path),
        }
    }

    pub fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    pub fn api_group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == ALL || g == group)
    }

    /// `resource` with `subresource` (empty when there is none) against the
    /// rule's resources: `*`, the exact `resource` or `resource/subresource`,
    /// or `*/subresource`.
    pub fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|rule| {
            if rule == ALL {
                return true;
            }
            if subresource.is_empty() {
                return rule == resource;
            }
            // `resource/subresource` without building the combined string.
            let combined = rule
                .strip_prefix(resource)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|sub| sub == subresource);
            let any_resource = rule
                .strip_prefix(ANY_RESOURCE_PREFIX)
                .is_some_and(|sub| sub == subresource);
            combined || any_resource
        })
    }

    /// An empty list allows every name. Otherwise the request's name must be
    /// listed, so a request without one (list, watch, create, deletecollection)
    /// is not allowed by a rule that names objects.
    pub fn resource_name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    /// `*`, the exact path, or a rule ending in `*` whose stem prefixes it.
    pub fn non_resource_url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|url| {
            if url == ALL || url == path {
                return true;
            }
            // Upstream trims every trailing `*`, not just one.
            url.ends_with('*') && path.starts_with(url.trim_end_matches('*'))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::User;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        PolicyRule {
            verbs: owned(verbs),
            api_groups: owned(groups),
            resources: owned(resources),
            ..Default::default()
        }
    }

    fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        PolicyRule {
            verbs: owned(verbs),
            non_resource_urls: owned(urls),
            ..Default::default()
        }
    }

    fn user() -> User {
        crate::authz::tests::test_user("u", &[])
    }

    /// (verb, group, resource, subresource, name)
    type Res<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

    fn res(r: Res<'_>) -> Attributes {
        let (verb, group, resource, sub, name) = r;
        Attributes::resource(user(), verb, group, resource)
            .subresource(sub)
            .name(name)
            .namespace("ns")
    }

    fn check(what: &str, rule: &PolicyRule, cases: &[(Res<'_>, bool)]) {
        for (r, want) in cases {
            assert_eq!(rule.allows(&res(*r)), *want, "{what}: {r:?}");
        }
    }

    fn check_urls(what: &str, rule: &PolicyRule, cases: &[(&str, &str, bool)]) {
        for (verb, path, want) in cases {
            let a = Attributes::non_resource(user(), verb, path);
            assert_eq!(rule.allows(&a), *want, "{what}: {verb} {path}");
        }
    }

    #[test]
    fn a_star_verb_allows_any_verb_but_only_the_named_group_and_resource() {
        let r = rule(&["*"], &["g1"], &["r1"]);
        check(
            "star verb",
            &r,
            &[
                (("v1", "g1", "r1", "", ""), true),
                (("v2", "g1", "r1", "", ""), true),
                (("v1", "g2", "r1", "", ""), false),
                (("v1", "g1", "r2", "", ""), false),
                (("v2", "g2", "r2", "", ""), false),
            ],
        );
    }

    #[test]
    fn a_star_group_allows_any_group_but_only_the_named_verb_and_resource() {
        let r = rule(&["v1"], &["*"], &["r1"]);
        check(
            "star group",
            &r,
            &[
                (("v1", "g1", "r1", "", ""), true),
                (("v1", "g2", "r1", "", ""), true),
                (("v1", "", "r1", "", ""), true),
                (("v1", "g1", "r2", "", ""), false),
                (("v2", "g1", "r1", "", ""), false),
            ],
        );
    }

    #[test]
    fn a_star_resource_allows_any_resource_and_any_subresource() {
        let r = rule(&["v1"], &["g1"], &["*"]);
        check(
            "star resource",
            &r,
            &[
                (("v1", "g1", "r1", "", ""), true),
                (("v1", "g1", "r2", "", ""), true),
                (("v1", "g1", "r2", "status", ""), true),
                (("v1", "g2", "r1", "", ""), false),
                (("v2", "g1", "r1", "", ""), false),
            ],
        );
    }

    #[test]
    fn every_combination_of_listed_verbs_groups_and_resources_is_allowed() {
        let r = rule(&["v1", "v2"], &["g1", "g2"], &["r1", "r2"]);
        for verb in ["v1", "v2"] {
            for group in ["g1", "g2"] {
                for resource in ["r1", "r2"] {
                    assert!(r.allows(&res((verb, group, resource, "", ""))));
                }
            }
        }
        assert!(!r.allows(&res(("v3", "g1", "r1", "", ""))));
        assert!(!r.allows(&res(("v1", "g3", "r1", "", ""))));
        assert!(!r.allows(&res(("v1", "g1", "r3", "", ""))));
    }

    #[test]
    fn a_subresource_is_matched_only_as_resource_slash_subresource() {
        let r = rule(&["*"], &["*"], &["r1/s1"]);
        check(
            "subresource",
            &r,
            &[
                (("v1", "g1", "r1", "s1", ""), true),
                (("v2", "g2", "r1", "s1", ""), true),
                (("v1", "g1", "r1", "s2", ""), false),
                (("v1", "g1", "r2", "s1", ""), false),
                // The resource itself is not its subresource.
                (("v1", "g1", "r1", "", ""), false),
            ],
        );
        // ... nor is a subresource its resource.
        let pods = rule(&["get"], &[""], &["pods"]);
        assert!(!pods.allows(&res(("get", "", "pods", "status", ""))));
        assert!(pods.allows(&res(("get", "", "pods", "", ""))));
        // A prefix of the resource name is not the resource.
        let pod = rule(&["get"], &[""], &["pod/status"]);
        assert!(!pod.allows(&res(("get", "", "pods", "status", ""))));
    }

    #[test]
    fn star_slash_subresource_matches_that_subresource_of_any_resource() {
        let r = rule(&["get"], &["*"], &["*/scale"]);
        check(
            "*/scale",
            &r,
            &[
                (("get", "apps", "deployments", "scale", ""), true),
                (("get", "", "replicationcontrollers", "scale", ""), true),
                (("get", "apps", "deployments", "status", ""), false),
                (("get", "apps", "deployments", "", ""), false),
                (("get", "apps", "deployments", "scalex", ""), false),
            ],
        );
    }

    #[test]
    fn resource_slash_star_is_literal_as_upstream() {
        // Upstream has no `pods/*` wildcard: the rule only matches a
        // subresource literally called `*`.
        let r = rule(&["get"], &[""], &["pods/*"]);
        assert!(!r.allows(&res(("get", "", "pods", "log", ""))));
        assert!(!r.allows(&res(("get", "", "pods", "", ""))));
        assert!(r.allows(&res(("get", "", "pods", "*", ""))));
    }

    #[test]
    fn resource_names_limit_the_rule_to_named_objects() {
        let mut r = rule(&["get", "list", "update"], &[""], &["configmaps"]);
        r.resource_names = vec!["a".into(), "b".into()];
        check(
            "resourceNames",
            &r,
            &[
                (("get", "", "configmaps", "", "a"), true),
                (("update", "", "configmaps", "", "b"), true),
                (("get", "", "configmaps", "", "c"), false),
                // list has no name: a rule naming objects does not allow it.
                (("list", "", "configmaps", "", ""), false),
            ],
        );
        r.resource_names.clear();
        assert!(r.allows(&res(("list", "", "configmaps", "", ""))));
        assert!(r.allows(&res(("get", "", "configmaps", "", "c"))));
    }

    #[test]
    fn a_resource_rule_never_allows_a_path_and_a_path_rule_never_a_resource() {
        let resources = rule(&["*"], &["*"], &["*"]);
        let paths = url_rule(&["*"], &["*"]);
        assert!(!resources.allows(&Attributes::non_resource(user(), "get", "/api")));
        assert!(!paths.allows(&res(("get", "", "pods", "", ""))));
    }

    #[test]
    fn non_resource_star_matches_every_path_for_the_listed_verb() {
        let r = url_rule(&["v1"], &["*"]);
        check_urls(
            "star url",
            &r,
            &[
                ("v1", "/foo", true),
                ("v1", "/foo/bar", true),
                ("v1", "/foo/bar/one", true),
                ("v2", "/foo", false),
                ("v2", "/foo/bar/one", false),
            ],
        );
    }

    #[test]
    fn a_trailing_star_is_a_prefix_match() {
        let r = url_rule(&["v1"], &["/foo/*"]);
        check_urls(
            "prefix url",
            &r,
            &[
                ("v1", "/foo", false),
                ("v1", "/foo/", true),
                ("v1", "/foo/bar", true),
                ("v1", "/foo/bar/one", true),
                ("v1", "/notfoo", false),
                ("v1", "/notfoo/bar", false),
            ],
        );
        // A star after a partial segment is a plain string prefix.
        let partial = url_rule(&["get"], &["/heal*"]);
        assert!(partial.allows(&Attributes::non_resource(user(), "get", "/healthz")));
    }

    #[test]
    fn urls_without_a_star_match_exactly() {
        let r = url_rule(&["*"], &["/foo", "/foo/bar/one"]);
        check_urls(
            "exact url",
            &r,
            &[
                ("v1", "/foo", true),
                ("v2", "/foo", true),
                ("v1", "/foo/bar", false),
                ("v1", "/foo/baz", false),
                ("v1", "/foo/bar/one", true),
                ("v1", "/foo/baz/one", false),
                ("v1", "/foo/", false),
            ],
        );
    }

    #[test]
    fn matching_is_case_sensitive() {
        let r = rule(&["get"], &[""], &["pods"]);
        assert!(!r.allows(&res(("GET", "", "pods", "", ""))));
        assert!(!r.allows(&res(("get", "", "Pods", "", ""))));
    }

    #[test]
    fn rules_decode_from_role_json_and_bad_rules_grant_nothing() {
        let rules = serde_json::json!([
            {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"]},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
            {"verbs": "get"},
        ]);
        let got = PolicyRule::list_from(Some(&rules));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].resource_names, vec!["p".to_string()]);
        assert_eq!(got[1].non_resource_urls, vec!["/healthz".to_string()]);
        assert!(PolicyRule::list_from(None).is_empty());
    }
}

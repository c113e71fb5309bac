//! The rules of a user as `SelfSubjectRulesReview` returns them
//! (`authorization.k8s.io/v1` `SubjectRulesReviewStatus`): a rule with
//! resources becomes a `resourceRules` entry, one with nonResourceURLs a
//! `nonResourceRules` entry (a rule with both, which validation refuses, would
//! be both), as upstream's `RBACAuthorizer.RulesFor` splits them.

use serde::Serialize;
use serde_json::Value;

use super::rules::PolicyRule;

/// `authorization.k8s.io/v1` `ResourceRule`: empty lists are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRule {
    pub verbs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
}

/// `authorization.k8s.io/v1` `NonResourceRule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NonResourceRule {
    pub verbs: Vec<String>,
    #[serde(rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

/// `SubjectRulesReviewStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesReview {
    pub resource_rules: Vec<ResourceRule>,
    pub non_resource_rules: Vec<NonResourceRule>,
    /// Upstream sets it when an authorizer cannot list what it allows (the
    /// Node authorizer, for nodes); RBAC always can.
    pub incomplete: bool,
    /// The bindings whose role could not be resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation_error: Option<String>,
}

impl RulesReview {
    pub fn from_rules<'a>(
        rules: impl IntoIterator<Item = &'a PolicyRule>,
        evaluation_error: Option<String>,
    ) -> Self {
        let mut review = RulesReview {
            evaluation_error,
            ..Default::default()
        };
        for r in rules {
            if !r.resources.is_empty() {
                review.resource_rules.push(ResourceRule {
                    verbs: r.verbs.clone(),
                    api_groups: r.api_groups.clone(),
                    resources: r.resources.clone(),
                    resource_names: r.resource_names.clone(),
                });
            }
            if !r.non_resource_urls.is_empty() {
                review.non_resource_rules.push(NonResourceRule {
                    verbs: r.verbs.clone(),
                    non_resource_urls: r.non_resource_urls.clone(),
                });
            }
        }
        review
    }

    /// The review's `status`, as JSON.
    pub fn to_status(&self) -> Value {
        // Serializing plain strings, lists and a bool cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_split_into_resource_and_non_resource_as_upstream_shows_them() {
        let rules = PolicyRule::list_from(Some(&json!([
            {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"]},
            {"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*"]},
            {"verbs": ["list"], "apiGroups": ["apps"], "resources": ["deployments"]},
        ])));
        let review = RulesReview::from_rules(&rules, None);
        assert_eq!(
            review.to_status(),
            json!({
                "resourceRules": [
                    {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"]},
                    {"verbs": ["list"], "apiGroups": ["apps"], "resources": ["deployments"]},
                ],
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*"]}],
                "incomplete": false,
            })
        );
    }

    #[test]
    fn nothing_is_empty_lists_and_an_error_is_shown() {
        let review = RulesReview::from_rules(
            &[],
            Some("role.rbac.authorization.k8s.io \"r\" not found".into()),
        );
        assert_eq!(
            review.to_status(),
            json!({
                "resourceRules": [],
                "nonResourceRules": [],
                "incomplete": false,
                "evaluationError": "role.rbac.authorization.k8s.io \"r\" not found",
            })
        );
    }
}

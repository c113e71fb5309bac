//! Aggregated ClusterRoles: a ClusterRole with an `aggregationRule` has the
//! union of the rules of every ClusterRole one of its `clusterRoleSelectors`
//! selects. Upstream's aggregation controller writes that union into the
//! role's `rules` some time after a change; skiff computes it whenever the
//! index is built, so a new `aggregate-to-view` role counts at once and the
//! stored `rules` of an aggregated role (possibly stale) are not trusted.
//!
//! The order is the controller's: selectors in order, the roles each selects
//! sorted by name (the aggregated role itself left out), their rules in
//! order, a rule equal to one already taken left out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::rules::PolicyRule;
use super::selector::{labels_of, Labels, Selector};

/// Rules shared between the role table and every binding to the role.
pub type Rules = Arc<[PolicyRule]>;

struct ClusterRole {
    labels: Labels,
    rules: Vec<PolicyRule>,
    /// `None` for a plain role; `Err` for an aggregation rule a selector of
    /// which is invalid: upstream's controller then fails on the role and
    /// leaves its rules as they are, and so does this.
    selectors: Option<Result<Vec<Selector>, String>>,
}

fn parse(obj: &Value) -> ClusterRole {
    let selectors = obj.get("aggregationRule").map(|rule| {
        rule.get("clusterRoleSelectors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(Selector::parse)
            .collect::<Result<Vec<_>, _>>()
    });
    ClusterRole {
        labels: labels_of(obj),
        rules: PolicyRule::list_from(obj.get("rules")),
        selectors,
    }
}

/// What resolving one role needs: every role by name, and what is done.
struct Resolver<'a> {
    roles: &'a BTreeMap<&'a str, ClusterRole>,
    done: HashMap<&'a str, Rules>,
    /// Roles being resolved: a role selected again while on this stack (a
    /// cycle of aggregations) contributes its stored rules instead.
    stack: Vec<&'a str>,
}

impl<'a> Resolver<'a> {
    fn resolve(&mut self, name: &'a str) -> Rules {
        if let Some(r) = self.done.get(name) {
            return r.clone();
        }
        let Some(role) = self.roles.get(name) else {
            return Arc::from(Vec::new());
        };
        let selectors = match &role.selectors {
            Some(Ok(s)) if !self.stack.contains(&name) => s,
            _ => {
                let rules: Rules = Arc::from(role.rules.clone());
                self.done.insert(name, rules.clone());
                return rules;
            }
        };
        self.stack.push(name);
        let mut union: Vec<PolicyRule> = Vec::new();
        for selector in selectors {
            // The map is ordered by name, as the controller sorts.
            let selected: Vec<&'a str> = self
                .roles
                .iter()
                .filter(|(other, r)| **other != name && selector.matches(&r.labels))
                .map(|(other, _)| *other)
                .collect();
            for other in selected {
                for rule in self.resolve(other).iter() {
                    if !union.contains(rule) {
                        union.push(rule.clone());
                    }
                }
            }
        }
        self.stack.pop();
        let rules: Rules = Arc::from(union);
        // Cached even when a cycle made it use a stored fallback: every role
        // is resolved once, so roles selecting each other cannot make the
        // build blow up. (Upstream's controller has no better answer for a
        // cycle: where it settles depends on the order it syncs in.)
        self.done.insert(name, rules.clone());
        rules
    }
}

/// Every ClusterRole's effective rules by name, aggregation applied.
pub fn cluster_role_rules(cluster_roles: &[Value]) -> HashMap<String, Rules> {
    let roles: BTreeMap<&str, ClusterRole> = cluster_roles
        .iter()
        .filter_map(|obj| Some((obj.pointer("/metadata/name")?.as_str()?, parse(obj))))
        .collect();
    let mut resolver = Resolver {
        roles: &roles,
        done: HashMap::new(),
        stack: Vec::new(),
    };
    roles
        .keys()
        .map(|name| (name.to_string(), resolver.resolve(name)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(name: &str, labels: Value, rules: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "rules": rules})
    }

    fn aggregated(name: &str, labels: Value, selectors: Value) -> Value {
        json!({
            "metadata": {"name": name, "labels": labels},
            "aggregationRule": {"clusterRoleSelectors": selectors},
            "rules": [{"verbs": ["stale"], "apiGroups": [""], "resources": ["stale"]}],
        })
    }

    fn rule(verb: &str, resource: &str) -> Value {
        json!({"verbs": [verb], "apiGroups": [""], "resources": [resource]})
    }

    fn verbs(rules: &Rules) -> Vec<String> {
        rules
            .iter()
            .map(|r| format!("{} {}", r.verbs.join(","), r.resources.join(",")))
            .collect()
    }

    #[test]
    fn an_aggregated_role_has_the_union_of_what_it_selects_in_name_order() {
        let all = cluster_role_rules(&[
            aggregated("agg", json!({}), json!([{"matchLabels": {"x": "true"}}])),
            role(
                "b",
                json!({"x": "true"}),
                json!([rule("get", "pods"), rule("list", "pods")]),
            ),
            role(
                "a",
                json!({"x": "true"}),
                json!([rule("get", "pods"), rule("get", "svc")]),
            ),
            role("c", json!({"x": "false"}), json!([rule("delete", "pods")])),
        ]);
        assert_eq!(
            verbs(&all["agg"]),
            ["get pods", "get svc", "list pods"],
            "a's rules first, b's duplicate left out, c not selected, stored rules replaced"
        );
        assert_eq!(verbs(&all["c"]), ["delete pods"]);
    }

    #[test]
    fn any_selector_selects_and_expressions_count() {
        let all = cluster_role_rules(&[
            aggregated(
                "agg",
                json!({}),
                json!([
                    {"matchLabels": {"x": "true"}},
                    {"matchExpressions": [{"key": "y", "operator": "In", "values": ["1", "2"]}]},
                ]),
            ),
            role("a", json!({"x": "true"}), json!([rule("get", "a")])),
            role("b", json!({"y": "2"}), json!([rule("get", "b")])),
            role("c", json!({"y": "3"}), json!([rule("get", "c")])),
        ]);
        assert_eq!(verbs(&all["agg"]), ["get a", "get b"]);
    }

    #[test]
    fn aggregation_chains_and_the_role_never_selects_itself() {
        // view feeds edit (labelled to-admin), which feeds admin.
        let all = cluster_role_rules(&[
            aggregated(
                "admin",
                json!({}),
                json!([{"matchLabels": {"to-admin": "true"}}]),
            ),
            aggregated(
                "edit",
                json!({"to-admin": "true"}),
                json!([{"matchLabels": {"to-edit": "true"}}]),
            ),
            role(
                "admin-extra",
                json!({"to-admin": "true"}),
                json!([rule("create", "roles")]),
            ),
            role(
                "edit-extra",
                json!({"to-edit": "true"}),
                json!([rule("create", "pods")]),
            ),
        ]);
        assert_eq!(
            verbs(&all["edit"]).first().map(String::as_str),
            Some("create pods")
        );
        let admin = verbs(&all["admin"]);
        assert!(admin.contains(&"create roles".to_string()), "{admin:?}");
        assert!(admin.contains(&"create pods".to_string()), "{admin:?}");
        assert!(!admin.contains(&"stale stale".to_string()), "{admin:?}");
    }

    #[test]
    fn a_cycle_ends_and_an_invalid_selector_keeps_the_stored_rules() {
        let all = cluster_role_rules(&[
            aggregated("p", json!({"q": "y"}), json!([{"matchLabels": {"p": "y"}}])),
            aggregated("q", json!({"p": "y"}), json!([{"matchLabels": {"q": "y"}}])),
            aggregated(
                "bad",
                json!({}),
                json!([{"matchExpressions": [{"key": "k", "operator": "In", "values": []}]}]),
            ),
        ]);
        // Each ends up with the other's stored rules: finite, like upstream.
        assert_eq!(verbs(&all["p"]), ["stale stale"]);
        assert_eq!(verbs(&all["q"]), ["stale stale"]);
        assert_eq!(verbs(&all["bad"]), ["stale stale"]);
    }

    #[test]
    fn an_aggregation_rule_without_selectors_grants_nothing() {
        let all = cluster_role_rules(&[
            aggregated("empty", json!({}), json!([])),
            role("a", json!({}), json!([rule("get", "a")])),
        ]);
        assert!(all["empty"].is_empty());
    }
}

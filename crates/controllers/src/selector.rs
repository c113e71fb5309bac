//! Label selectors over typed objects (upstream `labels.SelectorFromSet` and
//! `metav1.LabelSelectorAsSelector`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A Service's `spec.selector` map: every pair must match. An empty map selects
/// nothing here, as Services with an empty selector get no endpoints upstream.
pub fn map_matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A `metav1.LabelSelector`: `None` selects nothing, `{}` everything; an invalid
/// operator selects nothing.
pub fn matches(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = selector else { return false };
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let has = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => has.is_some_and(|v| values.contains(v)),
            "NotIn" => !has.is_some_and(|v| values.contains(v)),
            "Exists" => has.is_some(),
            "DoesNotExist" => has.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selector_table() {
        let app = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        };
        let not_canary = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "track".into(),
                operator: "NotIn".into(),
                values: Some(vec!["canary".into()]),
            }]),
            ..Default::default()
        };
        type Case<'a> = (Option<&'a LabelSelector>, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            (None, &[("app", "web")], false),
            (Some(&LabelSelector::default()), &[], true),
            (Some(&app), &[("app", "web"), ("x", "y")], true),
            (Some(&app), &[("app", "db")], false),
            (Some(&not_canary), &[("track", "stable")], true),
            (Some(&not_canary), &[], true),
            (Some(&not_canary), &[("track", "canary")], false),
        ];
        for (sel, l, want) in cases {
            assert_eq!(matches(*sel, &labels(l)), *want, "{sel:?} {l:?}");
        }
        assert!(map_matches(
            &labels(&[("app", "web")]),
            &labels(&[("app", "web")])
        ));
        assert!(!map_matches(&labels(&[]), &labels(&[("app", "web")])));
    }
}

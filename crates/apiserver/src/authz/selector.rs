//! `metav1.LabelSelector` as an aggregated ClusterRole's
//! `aggregationRule.clusterRoleSelectors` uses it: `matchLabels` and
//! `matchExpressions` (In, NotIn, Exists, DoesNotExist), all of which must
//! hold. An empty selector matches every role, as upstream's
//! `LabelSelectorAsSelector` makes it `labels.Everything()`.

use std::collections::BTreeMap;

use serde_json::Value;

const OP_IN: &str = "In";
const OP_NOT_IN: &str = "NotIn";
const OP_EXISTS: &str = "Exists";
const OP_DOES_NOT_EXIST: &str = "DoesNotExist";

/// One requirement on a label.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// Labels of an object, as `metadata.labels` holds them.
pub type Labels = BTreeMap<String, String>;

/// An object's `metadata.labels`; values that are not strings are ignored
/// (the store does not keep such objects).
pub fn labels_of(obj: &Value) -> Labels {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

fn strings(v: Option<&Value>) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or("a value is not a string")
            })
            .collect::<Result<_, _>>()
            .map_err(str::to_string),
        Some(_) => Err("values is not a list".into()),
    }
}

impl Selector {
    /// Parses a selector object. `Err` is why it is invalid — upstream then
    /// refuses the selector rather than guess, and so do callers.
    pub fn parse(sel: &Value) -> Result<Self, String> {
        let obj = match sel {
            Value::Null => return Ok(Self::default()),
            Value::Object(o) => o,
            _ => return Err("a selector is not an object".into()),
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let v = v
                        .as_str()
                        .ok_or_else(|| format!("label {k:?} is not a string"))?;
                    requirements.push(Requirement::Equals(k.clone(), v.to_string()));
                }
            }
            Some(_) => return Err("matchLabels is not an object".into()),
        }
        let expressions = match obj.get("matchExpressions") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(e)) => e.as_slice(),
            Some(_) => return Err("matchExpressions is not a list".into()),
        };
        for e in expressions {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .ok_or("an expression has no key")?
                .to_string();
            let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
            let values = strings(e.get("values"))?;
            let req = match op {
                OP_IN | OP_NOT_IN if values.is_empty() => {
                    return Err(format!("for '{op}' operator, values set can't be empty"))
                }
                OP_EXISTS | OP_DOES_NOT_EXIST if !values.is_empty() => {
                    return Err(format!("values set must be empty for {op}"))
                }
                OP_IN => Requirement::In(key, values),
                OP_NOT_IN => Requirement::NotIn(key, values),
                OP_EXISTS => Requirement::Exists(key),
                OP_DOES_NOT_EXIST => Requirement::DoesNotExist(key),
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            requirements.push(req);
        }
        Ok(Self { requirements })
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            // Upstream's NotIn holds for an object without the label.
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_need_every_pair() {
        let s = Selector::parse(&json!({"matchLabels": {"a": "1", "b": "2"}})).unwrap();
        assert!(s.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(!s.matches(&labels(&[("a", "1")])));
        assert!(!s.matches(&labels(&[("a", "1"), ("b", "3")])));
    }

    #[test]
    fn expressions_follow_upstream_operators() {
        let s = |e: Value| Selector::parse(&json!({"matchExpressions": [e]})).unwrap();
        let tier_in = s(json!({"key": "tier", "operator": "In", "values": ["a", "b"]}));
        assert!(tier_in.matches(&labels(&[("tier", "a")])));
        assert!(!tier_in.matches(&labels(&[("tier", "c")])));
        assert!(!tier_in.matches(&labels(&[])));
        let not_in = s(json!({"key": "tier", "operator": "NotIn", "values": ["a"]}));
        assert!(not_in.matches(&labels(&[("tier", "b")])));
        assert!(not_in.matches(&labels(&[])));
        assert!(!not_in.matches(&labels(&[("tier", "a")])));
        let exists = s(json!({"key": "tier", "operator": "Exists"}));
        assert!(exists.matches(&labels(&[("tier", "")])));
        assert!(!exists.matches(&labels(&[])));
        let absent = s(json!({"key": "tier", "operator": "DoesNotExist"}));
        assert!(absent.matches(&labels(&[])));
        assert!(!absent.matches(&labels(&[("tier", "x")])));
    }

    #[test]
    fn an_empty_selector_matches_everything() {
        assert!(Selector::parse(&json!({})).unwrap().matches(&labels(&[])));
        assert!(Selector::parse(&json!({"matchLabels": {}}))
            .unwrap()
            .matches(&labels(&[("x", "y")])));
    }

    #[test]
    fn invalid_selectors_are_refused() {
        for bad in [
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Near"}]}),
            json!({"matchExpressions": [{"operator": "Exists"}]}),
            json!({"matchLabels": {"a": 1}}),
            json!("a=b"),
        ] {
            assert!(Selector::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_are_read_from_metadata() {
        let obj = json!({"metadata": {"labels": {"a": "1", "n": 2}}});
        assert_eq!(labels_of(&obj), labels(&[("a", "1")]));
        assert!(labels_of(&json!({})).is_empty());
    }
}

//! Node selection by labels (upstream `NodeAffinity` plugin and
//! `component-helpers/scheduling/corev1/nodeaffinity`): `nodeSelector`,
//! required node affinity (a filter) and preferred node affinity (a score).

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};
use kube::ResourceExt;

/// One requirement against a node's labels. As upstream, an invalid one (no
/// values for In/NotIn, values for Exists/DoesNotExist, a non-integer for
/// Gt/Lt, an unknown operator) matches nothing.
fn label_requirement(r: &NodeSelectorRequirement, node: &Node) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let have = node.labels().get(&r.key);
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" if !values.is_empty() => have.is_some_and(|v| values.contains(v)),
        "NotIn" if !values.is_empty() => !have.is_some_and(|v| values.contains(v)),
        "Exists" if values.is_empty() => have.is_some(),
        "DoesNotExist" if values.is_empty() => have.is_none(),
        "Gt" | "Lt" if values.len() == 1 => {
            let (Some(want), Some(got)) = (int(&values[0]), have.and_then(|v| int(v))) else {
                return false;
            };
            if r.operator == "Gt" {
                got > want
            } else {
                got < want
            }
        }
        _ => false,
    }
}

/// One requirement against the node's fields: only `metadata.name` with In or
/// NotIn and exactly one value is valid, as upstream.
fn field_requirement(r: &NodeSelectorRequirement, node: &Node) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    if r.key != "metadata.name" || values.len() != 1 {
        return false;
    }
    let name = node.metadata.name.as_deref().unwrap_or("");
    match r.operator.as_str() {
        "In" => values[0] == name,
        "NotIn" => values[0] != name,
        _ => false,
    }
}

/// A term's expressions and fields must all match; an empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| label_requirement(r, node))
        && fields.iter().all(|r| field_requirement(r, node))
}

/// `nodeSelector` and required node affinity (terms ORed): upstream's
/// `GetRequiredNodeAffinity(pod).Match(node)`.
pub fn required_matches(pod: &Pod, node: &Node) -> bool {
    let spec = pod.spec.as_ref();
    let selector_ok = spec
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| sel.iter().all(|(k, v)| node.labels().get(k) == Some(v)));
    let required = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// The sum of the weights of the preferred terms the node matches (upstream
/// NodeAffinity `Score`; terms of weight 0 count for nothing).
pub fn preferred_score(pod: &Pod, node: &Node) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|terms| {
            terms
                .iter()
                .filter(|t| t.weight != 0 && term_matches(&t.preference, node))
                .map(|t| i64::from(t.weight))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, PodSpec, PreferredSchedulingTerm,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn exprs(r: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(r),
            match_fields: None,
        }
    }

    #[test]
    fn requirement_table() {
        let n = node("n1", &[("disk", "ssd"), ("cores", "8")]);
        let cases = [
            (req("disk", "In", &["ssd", "nvme"]), true),
            (req("disk", "In", &["hdd"]), false),
            (req("disk", "In", &[]), false),
            (req("disk", "NotIn", &["hdd"]), true),
            (req("gpu", "NotIn", &["yes"]), true),
            (req("disk", "Exists", &[]), true),
            (req("disk", "Exists", &["ssd"]), false),
            (req("gpu", "DoesNotExist", &[]), true),
            (req("cores", "Gt", &["4"]), true),
            (req("cores", "Gt", &["8"]), false),
            (req("cores", "Lt", &["16"]), true),
            (req("cores", "Lt", &["x"]), false),
            (req("disk", "Gt", &["1"]), false),
            (req("disk", "Near", &["ssd"]), false),
        ];
        for (r, want) in cases {
            assert_eq!(term_matches(&exprs(vec![r.clone()]), &n), want, "{r:?}");
        }
        let field = |op: &str, v: &[&str]| NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", op, v)]),
        };
        assert!(term_matches(&field("In", &["n1"]), &n));
        assert!(!term_matches(&field("In", &["n2"]), &n));
        assert!(term_matches(&field("NotIn", &["n2"]), &n));
        assert!(!term_matches(&field("In", &["n1", "n2"]), &n));
        assert!(
            !term_matches(&NodeSelectorTerm::default(), &n),
            "empty term"
        );
    }

    #[test]
    fn pod_affinity() {
        let pod = |selector: Option<(&str, &str)>,
                   terms: Vec<NodeSelectorTerm>,
                   preferred: Vec<(i32, NodeSelectorTerm)>| Pod {
            spec: Some(PodSpec {
                node_selector: selector.map(|(k, v)| [(k.to_string(), v.to_string())].into()),
                affinity: Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: (!terms.is_empty())
                            .then_some(NodeSelector {
                                node_selector_terms: terms,
                            }),
                        preferred_during_scheduling_ignored_during_execution: Some(
                            preferred
                                .into_iter()
                                .map(|(weight, preference)| PreferredSchedulingTerm {
                                    weight,
                                    preference,
                                })
                                .collect(),
                        ),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ssd = node("a", &[("disk", "ssd"), ("zone", "z1")]);
        let hdd = node("b", &[("disk", "hdd"), ("zone", "z2")]);
        // Terms are ORed.
        let p = pod(
            None,
            vec![
                exprs(vec![req("disk", "In", &["ssd"])]),
                exprs(vec![req("zone", "In", &["z9"])]),
            ],
            vec![],
        );
        assert!(required_matches(&p, &ssd) && !required_matches(&p, &hdd));
        // nodeSelector and affinity must both hold.
        let p = pod(
            Some(("zone", "z2")),
            vec![exprs(vec![req("disk", "Exists", &[])])],
            vec![],
        );
        assert!(!required_matches(&p, &ssd) && required_matches(&p, &hdd));
        let p = pod(
            None,
            vec![],
            vec![
                (10, exprs(vec![req("disk", "In", &["ssd"])])),
                (5, exprs(vec![req("zone", "Exists", &[])])),
                (0, exprs(vec![req("zone", "In", &["z2"])])),
            ],
        );
        assert_eq!(
            (preferred_score(&p, &ssd), preferred_score(&p, &hdd)),
            (15, 5)
        );
        assert!(required_matches(&p, &hdd));
    }
}

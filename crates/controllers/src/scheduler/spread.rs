//! Topology spreading (upstream `PodTopologySpread` plugin): the pod's
//! `DoNotSchedule` constraints filter nodes, its `ScheduleAnyway` ones score
//! them; a pod without constraints gets upstream's system defaults (hostname
//! with maxSkew 3, zone with maxSkew 5, both ScheduleAnyway) over the pods its
//! Services, ReplicaSet or StatefulSet select, which is how a Service's pods
//! end up spread across nodes.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use super::{affinity, Misfit, Snapshot};
use crate::nodeutil::{self, NO_EXECUTE, NO_SCHEDULE};

pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const ZONE: &str = "topology.kubernetes.io/zone";
const SKEW: &str = "node(s) didn't match pod topology spread constraints";
const MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    pub max_skew: i64,
    pub key: String,
    pub selector: LabelSelector,
    pub min_domains: i64,
    /// `nodeAffinityPolicy: Honor` (the default): only nodes the pod may go to count.
    pub honor_affinity: bool,
    /// `nodeTaintsPolicy: Honor` (default Ignore): only nodes whose taints it tolerates.
    pub honor_taints: bool,
}

/// The pod's own constraints with `whenUnsatisfiable == when`; `matchLabelKeys`
/// add the pod's values of those labels to the selector, as upstream.
pub fn explicit(pod: &Pod, when: &str) -> Vec<Constraint> {
    let list: &[TopologySpreadConstraint] = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default();
    list.iter()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| {
            let mut selector = c.label_selector.clone().unwrap_or_default();
            for k in c.match_label_keys.iter().flatten() {
                if let Some(v) = pod.labels().get(k) {
                    selector
                        .match_labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k.clone(), v.clone());
                }
            }
            Constraint {
                max_skew: i64::from(c.max_skew),
                key: c.topology_key.clone(),
                // A constraint without a selector selects nothing: an empty
                // one here would select everything, so make it impossible.
                selector: if c.label_selector.is_none() && selector.match_labels.is_none() {
                    impossible()
                } else {
                    selector
                },
                min_domains: c.min_domains.map_or(1, i64::from),
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

fn impossible() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                key: "skiff.invalid/none".into(),
                operator: "In".into(),
                values: Some(vec![]),
            },
        ]),
        match_labels: None,
    }
}

/// Upstream `DefaultSelector`: the selectors of the Services that select the
/// pod, and of its controlling ReplicaSet or StatefulSet, ANDed; `None` when
/// nothing selects it.
pub fn default_selector(pod: &Pod, snap: &Snapshot) -> Option<LabelSelector> {
    let ns = pod.metadata.namespace.as_deref();
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for s in snap.services {
        if s.metadata.namespace.as_deref() != ns {
            continue;
        }
        if let Some(sel) = s.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            if crate::selector::map_matches(sel, pod.labels()) {
                labels.extend(sel.clone());
            }
        }
    }
    let mut selector = LabelSelector {
        match_labels: Some(labels),
        match_expressions: None,
    };
    let owner = pod
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true) && r.api_version == "apps/v1");
    let owned = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.namespace.as_deref() == ns && owner.is_some_and(|o| m.name.as_deref() == Some(&o.name))
    };
    let from_owner = match owner.map(|o| o.kind.as_str()) {
        Some("ReplicaSet") => snap
            .replicasets
            .iter()
            .find(|r| owned(&r.metadata))
            .and_then(|r| r.spec.as_ref().map(|s| s.selector.clone())),
        Some("StatefulSet") => snap
            .statefulsets
            .iter()
            .find(|s| owned(&s.metadata))
            .and_then(|s| s.spec.as_ref().map(|s| s.selector.clone())),
        _ => None,
    };
    if let Some(o) = from_owner {
        if let Some(l) = selector.match_labels.as_mut() {
            l.extend(o.match_labels.unwrap_or_default());
        }
        selector.match_expressions = o.match_expressions;
    }
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    (!empty).then_some(selector)
}

/// Upstream's system default constraints over `selector`.
pub fn defaults(selector: LabelSelector) -> Vec<Constraint> {
    [(HOSTNAME, 3), (ZONE, 5)]
        .into_iter()
        .map(|(key, max_skew)| Constraint {
            max_skew,
            key: key.into(),
            selector: selector.clone(),
            min_domains: 1,
            honor_affinity: true,
            honor_taints: false,
        })
        .collect()
}

fn has_keys(node: &Node, cons: &[Constraint]) -> bool {
    cons.iter().all(|c| node.labels().contains_key(&c.key))
}

/// Whether `node` counts for `c` (upstream `matchNodeInclusionPolicies`).
fn includes(c: &Constraint, pod: &Pod, node: &Node) -> bool {
    (!c.honor_affinity || affinity::required_matches(pod, node))
        && (!c.honor_taints
            || nodeutil::taints(node).iter().all(|t| {
                (t.effect != NO_SCHEDULE && t.effect != NO_EXECUTE)
                    || nodeutil::toleration_for(nodeutil::tolerations(pod), t).is_some()
            }))
}

/// Pods on `node` in the pod's namespace, not terminating, that `c` selects.
fn matching(c: &Constraint, pod: &Pod, node: &Node, snap: &Snapshot) -> i64 {
    let ns = pod.metadata.namespace.as_deref();
    snap.on(&node.name_any())
        .filter(|p| p.metadata.namespace.as_deref() == ns && !crate::pods::is_terminating(p))
        .filter(|p| crate::selector::matches(Some(&c.selector), p.labels()))
        .count() as i64
}

/// The DoNotSchedule constraints with the matching pods per domain, counted
/// over every node (upstream `PreFilter`).
pub struct Hard {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    self_match: Vec<bool>,
}

impl Hard {
    pub fn new(pod: &Pod, snap: &Snapshot) -> Hard {
        let constraints = explicit(pod, "DoNotSchedule");
        let mut counts = vec![HashMap::new(); constraints.len()];
        for n in snap.nodes.iter().filter(|n| has_keys(n, &constraints)) {
            for (i, c) in constraints.iter().enumerate() {
                if includes(c, pod, n) {
                    let v = n.labels().get(&c.key).cloned().unwrap_or_default();
                    *counts[i].entry(v).or_insert(0) += matching(c, pod, n, snap);
                }
            }
        }
        let self_match = constraints
            .iter()
            .map(|c| crate::selector::matches(Some(&c.selector), pod.labels()))
            .collect();
        Hard {
            constraints,
            counts,
            self_match,
        }
    }

    /// Why `node` would break a constraint (upstream `Filter`).
    pub fn check(&self, node: &Node) -> Option<Misfit> {
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(value) = node.labels().get(&c.key) else {
                return Some(Misfit::unresolvable(MISSING_LABEL.into()));
            };
            let counts = &self.counts[i];
            let min = if (counts.len() as i64) < c.min_domains {
                0
            } else {
                counts.values().copied().min().unwrap_or(i64::MAX)
            };
            let skew =
                counts.get(value).copied().unwrap_or(0) + i64::from(self.self_match[i]) - min;
            if skew > c.max_skew {
                return Some(Misfit::resolvable(SKEW.into()));
            }
        }
        None
    }
}

/// The ScheduleAnyway scores of `candidates`, 0..=100, fewer matching pods in
/// the node's domains scoring higher (upstream `PreScore`/`Score`/`NormalizeScore`).
pub fn scores(pod: &Pod, snap: &Snapshot, candidates: &[&Node]) -> Vec<i64> {
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty());
    let cons = if own {
        explicit(pod, "ScheduleAnyway")
    } else {
        default_selector(pod, snap)
            .map(defaults)
            .unwrap_or_default()
    };
    if cons.is_empty() {
        return vec![0; candidates.len()];
    }
    // With the system defaults, nodes without a zone label still get hostname
    // spreading; with the pod's own constraints they are not scored.
    let ignored: Vec<bool> = candidates
        .iter()
        .map(|n| own && !has_keys(n, &cons))
        .collect();
    let scored = candidates.len() - ignored.iter().filter(|i| **i).count();
    let value = |n: &Node, c: &Constraint| n.labels().get(&c.key).cloned().unwrap_or_default();
    let domains: Vec<HashSet<String>> = cons
        .iter()
        .map(|c| {
            candidates
                .iter()
                .zip(&ignored)
                .filter(|(_, i)| !**i)
                .map(|(n, _)| value(n, c))
                .collect()
        })
        .collect();
    let weights: Vec<f64> = cons
        .iter()
        .zip(&domains)
        .map(|(c, d)| {
            let size = if c.key == HOSTNAME { scored } else { d.len() };
            ((size + 2) as f64).ln()
        })
        .collect();
    let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cons.len()];
    for n in snap.nodes.iter().filter(|n| !own || has_keys(n, &cons)) {
        for (i, c) in cons.iter().enumerate() {
            let v = value(n, c);
            if c.key != HOSTNAME && domains[i].contains(&v) && includes(c, pod, n) {
                *counts[i].entry(v).or_insert(0) += matching(c, pod, n, snap);
            }
        }
    }
    let raw: Vec<Option<i64>> = candidates
        .iter()
        .zip(&ignored)
        .map(|(n, ignored)| {
            if *ignored {
                return None;
            }
            let mut score = 0.0;
            for (i, c) in cons.iter().enumerate() {
                let Some(v) = n.labels().get(&c.key) else {
                    continue;
                };
                let cnt = if c.key == HOSTNAME {
                    matching(c, pod, n, snap)
                } else {
                    counts[i].get(v).copied().unwrap_or(0)
                };
                score += cnt as f64 * weights[i] + (c.max_skew - 1) as f64;
            }
            Some(score.round() as i64)
        })
        .collect();
    let min = raw.iter().flatten().copied().min().unwrap_or(0);
    let max = raw.iter().flatten().copied().max().unwrap_or(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => 100,
            Some(s) => 100 * (max + min - s) / max,
        })
        .collect()
}

#[cfg(test)]
#[path = "spread_tests.rs"]
mod tests;

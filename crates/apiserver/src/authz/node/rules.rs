//! The static rules of upstream's `system:node` role (`bootstrappolicy`'s
//! `NodeRules`, as of v1.33, without the rules of alpha and beta features
//! skiff does not serve: dynamic resource allocation, cluster trust bundles).
//! The Node authorizer decides every request it does not subdivide by these.

use std::sync::OnceLock;

use super::super::PolicyRule;

const CORE: &str = "";
const READ: &[&str] = &["get", "list", "watch"];

/// `(verbs, api group, resources)` of each rule, in upstream's order.
const NODE_RULES: &[(&[&str], &str, &[&str])] = &[
    // Checking API access: these creates are non-mutating.
    (&["create"], "authentication.k8s.io", &["tokenreviews"]),
    (
        &["create"],
        "authorization.k8s.io",
        &["subjectaccessreviews", "localsubjectaccessreviews"],
    ),
    // The service environment variables of pods.
    (READ, CORE, &["services"]),
    // Registering and reporting: NodeRestriction limits a node to its own.
    (&["create", "get", "list", "watch"], CORE, &["nodes"]),
    (&["update", "patch"], CORE, &["nodes/status"]),
    (&["update", "patch"], CORE, &["nodes"]),
    (&["create", "update", "patch"], CORE, &["events"]),
    (READ, CORE, &["pods"]),
    // Mirror pods, pod status, evictions: NodeRestriction limits them to
    // pods bound to the node.
    (&["create", "delete"], CORE, &["pods"]),
    (&["update", "patch"], CORE, &["pods/status"]),
    (&["create"], CORE, &["pods/eviction"]),
    // The graph narrows these to what the node's pods reference.
    (READ, CORE, &["secrets", "configmaps"]),
    (
        &["get"],
        CORE,
        &["persistentvolumeclaims", "persistentvolumes"],
    ),
    (&["get"], CORE, &["endpoints"]),
    (
        &["create", "get", "list", "watch"],
        "certificates.k8s.io",
        &["certificatesigningrequests"],
    ),
    (
        &["get", "create", "update", "patch", "delete"],
        "coordination.k8s.io",
        &["leases"],
    ),
    (&["get"], "storage.k8s.io", &["volumeattachments"]),
    (
        &["get", "update", "patch"],
        CORE,
        &["persistentvolumeclaims/status"],
    ),
    (&["create"], CORE, &["serviceaccounts/token"]),
    (&["get", "watch", "list"], "storage.k8s.io", &["csidrivers"]),
    (
        &["get", "create", "update", "patch", "delete"],
        "storage.k8s.io",
        &["csinodes"],
    ),
    (READ, "node.k8s.io", &["runtimeclasses"]),
];

fn owned(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// Builds `(verbs, group, resources)` triples into policy rules.
pub fn build(rules: &[(&[&str], &str, &[&str])]) -> Vec<PolicyRule> {
    rules
        .iter()
        .map(|(verbs, group, resources)| PolicyRule {
            verbs: owned(verbs),
            api_groups: vec![group.to_string()],
            resources: owned(resources),
            ..Default::default()
        })
        .collect()
}

/// Upstream's `NodeRules()`.
pub fn node_rules() -> &'static [PolicyRule] {
    static RULES: OnceLock<Vec<PolicyRule>> = OnceLock::new();
    RULES.get_or_init(|| build(NODE_RULES))
}

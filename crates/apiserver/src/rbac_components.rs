//! The default roles of skiff's own components (issue #17), beside the
//! user-facing ones in [`crate::rbac`]: each component gets its own identity
//! and only what its code calls.
//!
//! - every controller skiff runs: `system:controller:<account>`, bound to the
//!   ServiceAccount `kube-system/<account>`, as upstream's kube-controller-manager
//!   bootstraps them (`--use-service-account-credentials`: a controller writes as
//!   its own account);
//! - `system:kube-controller-manager` (user of the same name): the shared
//!   informers (list/watch everything) and the leader Lease;
//! - `system:kube-scheduler` (user of the same name);
//! - `system:node-proxier`, bound to user `system:kube-proxy` as upstream, plus
//!   a Role in `kube-system` for the Leases the proxy elects load-balancer
//!   announcers with;
//! - skiff's own `system:skiff:dns`, `system:skiff:netpol` and
//!   `system:skiff:ingress` (users of the same name, as k3s names its
//!   `system:k3s-controller`);
//! - `system:skiff:node-routes`, bound to group `system:nodes`: every Node,
//!   which each node's agent follows for its routes to the others' pods.
//!
//! Where skiff's code needs a verb upstream's role lacks (say, the deployment
//! controller merge-patches a Deployment's revision annotation where upstream
//! updates it), the role grants that verb too and says why: a role that
//! refused what the controller does would stop it.

use serde_json::{json, Value};

use crate::rbac::default_metadata;

const RBAC_API: &str = "rbac.authorization.k8s.io";
const RBAC_API_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// Upstream's prefix of a controller's role and binding.
pub const CONTROLLER_ROLE_PREFIX: &str = "system:controller:";
/// Where the controllers' ServiceAccounts live.
pub const CONTROLLER_NAMESPACE: &str = "kube-system";
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
pub const SCHEDULER_USER: &str = "system:kube-scheduler";
pub const PROXY_USER: &str = "system:kube-proxy";
pub const DNS_USER: &str = "system:skiff:dns";
pub const NETPOL_USER: &str = "system:skiff:netpol";
/// The ingress component (issue #19, crates/ingress).
pub const INGRESS_USER: &str = "system:skiff:ingress";
/// The Lease upstream's controller manager (and skiff's) leads with.
pub const CONTROLLER_MANAGER_LEASE: &str = "kube-controller-manager";

const READ: &[&str] = &["get", "list", "watch"];
const LIST_WATCH: &[&str] = &["list", "watch"];

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn named_rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "resourceNames": names, "verbs": verbs})
}

/// Upstream's `eventsRule()`: components record Events in both APIs.
fn events() -> Value {
    rule(
        &["create", "update", "patch"],
        &["", "events.k8s.io"],
        &["events"],
    )
}

/// The ServiceAccount (in [`CONTROLLER_NAMESPACE`]) and role rules of each
/// controller skiff runs, by upstream's account names.
fn controller_roles() -> Vec<(&'static str, Vec<Value>)> {
    let slices_rw = &["get", "list", "watch", "create", "update", "delete"];
    vec![
        (
            "endpointslice-controller",
            vec![
                rule(READ, &[""], &["services", "pods", "nodes"]),
                // Slices are owned by their Service with blockOwnerDeletion.
                rule(&["update"], &[""], &["services/finalizers"]),
                rule(slices_rw, &["discovery.k8s.io"], &["endpointslices"]),
                events(),
            ],
        ),
        (
            "endpointslicemirroring-controller",
            vec![
                rule(READ, &[""], &["services", "endpoints"]),
                rule(
                    &["update"],
                    &[""],
                    &["services/finalizers", "endpoints/finalizers"],
                ),
                rule(slices_rw, &["discovery.k8s.io"], &["endpointslices"]),
                events(),
            ],
        ),
        (
            "endpoint-controller",
            vec![
                rule(READ, &[""], &["services", "pods"]),
                rule(slices_rw, &[""], &["endpoints"]),
                rule(&["create"], &[""], &["endpoints/restricted"]),
                events(),
            ],
        ),
        (
            "replicaset-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &["apps", "extensions"],
                    &["replicasets"],
                ),
                rule(
                    &["update"],
                    &["apps", "extensions"],
                    &["replicasets/status", "replicasets/finalizers"],
                ),
                rule(
                    &["list", "watch", "patch", "create", "delete"],
                    &[""],
                    &["pods"],
                ),
                events(),
            ],
        ),
        (
            "deployment-controller",
            vec![
                // patch: skiff writes the revision annotation with a merge patch.
                rule(
                    &["get", "list", "watch", "update", "patch"],
                    &["apps", "extensions"],
                    &["deployments"],
                ),
                rule(
                    &["update"],
                    &["apps", "extensions"],
                    &["deployments/status", "deployments/finalizers"],
                ),
                rule(
                    &[
                        "get", "list", "watch", "create", "update", "patch", "delete",
                    ],
                    &["apps", "extensions"],
                    &["replicasets"],
                ),
                rule(&["get", "list", "watch", "update"], &[""], &["pods"]),
                events(),
            ],
        ),
        (
            "statefulset-controller",
            vec![
                rule(LIST_WATCH, &[""], &["pods"]),
                rule(READ, &["apps"], &["statefulsets"]),
                rule(
                    &["update"],
                    &["apps"],
                    &["statefulsets/status", "statefulsets/finalizers"],
                ),
                rule(
                    &["get", "create", "delete", "update", "patch"],
                    &[""],
                    &["pods"],
                ),
                rule(
                    &[
                        "get", "create", "delete", "update", "patch", "list", "watch",
                    ],
                    &["apps"],
                    &["controllerrevisions"],
                ),
                rule(
                    &["get", "create", "list", "watch", "update", "delete"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
                rule(&["update"], &[""], &["pods/finalizers"]),
                events(),
            ],
        ),
        (
            "job-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update", "patch"],
                    &["batch"],
                    &["jobs"],
                ),
                rule(&["update", "patch"], &["batch"], &["jobs/status"]),
                rule(&["update"], &["batch"], &["jobs/finalizers"]),
                rule(
                    &["list", "watch", "create", "delete", "patch"],
                    &[""],
                    &["pods"],
                ),
                events(),
            ],
        ),
        (
            "cronjob-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &["batch"],
                    &["cronjobs"],
                ),
                rule(
                    &[
                        "get", "list", "watch", "create", "update", "delete", "patch",
                    ],
                    &["batch"],
                    &["jobs"],
                ),
                rule(&["update"], &["batch"], &["cronjobs/status"]),
                rule(&["update"], &["batch"], &["cronjobs/finalizers"]),
                rule(&["list", "delete"], &[""], &["pods"]),
                events(),
            ],
        ),
        (
            "ttl-after-finished-controller",
            vec![
                rule(&["get", "list", "watch", "delete"], &["batch"], &["jobs"]),
                events(),
            ],
        ),
        (
            "daemon-set-controller",
            vec![
                rule(READ, &["extensions", "apps"], &["daemonsets"]),
                rule(&["update"], &["extensions", "apps"], &["daemonsets/status"]),
                rule(
                    &["update"],
                    &["extensions", "apps"],
                    &["daemonsets/finalizers"],
                ),
                rule(LIST_WATCH, &[""], &["nodes"]),
                rule(
                    &["list", "watch", "create", "delete", "patch"],
                    &[""],
                    &["pods"],
                ),
                rule(&["create"], &[""], &["pods/binding"]),
                rule(
                    &[
                        "get", "list", "watch", "create", "delete", "update", "patch",
                    ],
                    &["apps"],
                    &["controllerrevisions"],
                ),
                events(),
            ],
        ),
        (
            "replication-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &[""],
                    &["replicationcontrollers"],
                ),
                rule(&["update"], &[""], &["replicationcontrollers/status"]),
                rule(&["update"], &[""], &["replicationcontrollers/finalizers"]),
                rule(
                    &["list", "watch", "patch", "create", "delete"],
                    &[""],
                    &["pods"],
                ),
                events(),
            ],
        ),
        (
            "generic-garbage-collector",
            vec![
                // Dependents of any kind: read, orphan (patch) or delete them.
                rule(
                    &["get", "list", "watch", "patch", "update", "delete"],
                    &["*"],
                    &["*"],
                ),
                events(),
            ],
        ),
        (
            // Node IPAM and node lifecycle, as upstream's node-controller.
            "node-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update", "delete", "patch"],
                    &[""],
                    &["nodes"],
                ),
                rule(
                    &["patch", "update"],
                    &[""],
                    &["nodes/status", "pods/status"],
                ),
                rule(&["list", "watch", "get", "delete"], &[""], &["pods"]),
                // skiff: a silent node's node-component endpoints (the
                // kube-dns slices) are marked not ready, as its pods are.
                rule(&["patch"], &["discovery.k8s.io"], &["endpointslices"]),
                events(),
            ],
        ),
        (
            "taint-eviction-controller",
            vec![
                rule(&["patch", "update"], &[""], &["pods/status"]),
                rule(&["list", "watch", "get", "delete"], &[""], &["pods"]),
                events(),
            ],
        ),
        (
            "pod-garbage-collector",
            vec![
                rule(&["list", "watch", "delete"], &[""], &["pods"]),
                rule(READ, &[""], &["nodes"]),
                rule(&["patch"], &[""], &["pods/status"]),
            ],
        ),
        (
            "service-account-controller",
            vec![rule(&["create"], &[""], &["serviceaccounts"]), events()],
        ),
        (
            "root-ca-cert-publisher",
            vec![
                rule(&["create", "update"], &[""], &["configmaps"]),
                events(),
            ],
        ),
        // Reads budgets and pods through the shared informers; writes only
        // the budgets' status.
        (
            "disruption-controller",
            vec![
                rule(&["update"], &["policy"], &["poddisruptionbudgets/status"]),
                events(),
            ],
        ),
    ]
}

/// The user-bound ClusterRoles: name, rules, the user bound to it.
fn user_roles() -> Vec<(&'static str, Vec<Value>, &'static str)> {
    vec![
        (
            "system:kube-controller-manager",
            vec![
                events(),
                // The shared informers every controller reads from.
                rule(LIST_WATCH, &["*"], &["*"]),
                // Leader election (`--leader-elect`).
                rule(&["create"], &["coordination.k8s.io"], &["leases"]),
                named_rule(
                    &["get", "update"],
                    &["coordination.k8s.io"],
                    &["leases"],
                    &[CONTROLLER_MANAGER_LEASE],
                ),
            ],
            CONTROLLER_MANAGER_USER,
        ),
        (
            "system:kube-scheduler",
            vec![
                events(),
                rule(READ, &[""], &["nodes", "namespaces", "services"]),
                rule(READ, &[""], &["replicationcontrollers"]),
                rule(READ, &["apps", "extensions"], &["replicasets"]),
                rule(READ, &["apps"], &["statefulsets"]),
                // patch: skiff binds a pod by setting spec.nodeName with a
                // uid-preconditioned patch (it serves no pods/binding).
                rule(
                    &["get", "list", "watch", "delete", "patch"],
                    &[""],
                    &["pods"],
                ),
                rule(&["create"], &[""], &["bindings", "pods/binding"]),
                rule(&["patch", "update"], &[""], &["pods/status"]),
            ],
            SCHEDULER_USER,
        ),
        (
            "system:node-proxier",
            vec![
                rule(LIST_WATCH, &[""], &["services", "endpoints"]),
                rule(READ, &[""], &["nodes"]),
                events(),
                rule(LIST_WATCH, &["discovery.k8s.io"], &["endpointslices"]),
            ],
            PROXY_USER,
        ),
        (
            DNS_USER,
            vec![
                // What the index is built from.
                rule(LIST_WATCH, &[""], &["services"]),
                rule(LIST_WATCH, &["discovery.k8s.io"], &["endpointslices"]),
                // The node's pod range: where pods reach this node's server.
                rule(&["get"], &[""], &["nodes"]),
            ],
            DNS_USER,
        ),
        (
            NETPOL_USER,
            vec![
                rule(LIST_WATCH, &["networking.k8s.io"], &["networkpolicies"]),
                rule(LIST_WATCH, &[""], &["pods", "namespaces"]),
            ],
            NETPOL_USER,
        ),
        (
            // As ingress-nginx's ClusterRole: the routes' sources (Secrets for
            // TLS, cluster-wide), Ingress statuses, the IngressClass it creates
            // at start, its node's address, and events on Ingresses.
            INGRESS_USER,
            vec![
                rule(LIST_WATCH, &["networking.k8s.io"], &["ingresses"]),
                rule(
                    &["update", "patch"],
                    &["networking.k8s.io"],
                    &["ingresses/status"],
                ),
                rule(
                    &["get", "list", "watch", "create"],
                    &["networking.k8s.io"],
                    &["ingressclasses"],
                ),
                rule(LIST_WATCH, &[""], &["services", "secrets"]),
                rule(LIST_WATCH, &["discovery.k8s.io"], &["endpointslices"]),
                rule(&["get"], &[""], &["nodes"]),
                events(),
            ],
            INGRESS_USER,
        ),
    ]
}

/// The ClusterRoles bound to a group: name, rules, the group.
fn group_roles() -> Vec<(&'static str, Vec<Value>, &'static str)> {
    vec![(
        // Every node's agent routes to the other nodes' pod ranges (as
        // flannel, whose role reads Nodes), so it follows every Node; the
        // Node authorizer lets a node read its own Node only.
        "system:skiff:node-routes",
        vec![rule(READ, &[""], &["nodes"])],
        crate::authn::NODES,
    )]
}

/// The Roles in [`CONTROLLER_NAMESPACE`]: name, rules, the user bound to it.
fn namespaced_user_roles() -> Vec<(&'static str, Vec<Value>, &'static str)> {
    vec![
        (
            // The Leases a proxy holds while it announces a load-balancer
            // address (`skiff-lb-<address>`, one per address: no fixed names).
            "system:skiff:load-balancer-election",
            // list: a proxy learns who holds which address from one list.
            vec![rule(
                &["get", "list", "create", "update", "delete"],
                &["coordination.k8s.io"],
                &["leases"],
            )],
            PROXY_USER,
        ),
        (
            // The node's own slice of the `kube-dns` Service (server-side apply).
            DNS_USER,
            vec![rule(
                &["create", "patch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            )],
            DNS_USER,
        ),
        (
            // The `skiff-ingress` LoadBalancer Service (created once) and each
            // node's slice of it (server-side apply).
            INGRESS_USER,
            vec![
                rule(&["get", "create"], &[""], &["services"]),
                rule(
                    &["create", "patch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
            ],
            INGRESS_USER,
        ),
    ]
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": RBAC_API_VERSION,
        "kind": "ClusterRole",
        "metadata": default_metadata(name, None),
        "rules": rules,
    })
}

fn binding(kind: &str, name: &str, role_kind: &str, subject: Value) -> Value {
    json!({
        "apiVersion": RBAC_API_VERSION,
        "kind": kind,
        "metadata": default_metadata(name, None),
        "roleRef": {"apiGroup": RBAC_API, "kind": role_kind, "name": name},
        "subjects": [subject],
    })
}

fn user(name: &str) -> Value {
    json!({"apiGroup": RBAC_API, "kind": "User", "name": name})
}

/// The components' ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let controllers = controller_roles()
        .into_iter()
        .map(|(account, rules)| cluster_role(&format!("{CONTROLLER_ROLE_PREFIX}{account}"), rules));
    let users = user_roles()
        .into_iter()
        .chain(group_roles())
        .map(|(name, rules, _)| cluster_role(name, rules));
    controllers.chain(users).collect()
}

/// The components' ClusterRoleBindings, each named as its role.
pub fn cluster_role_bindings() -> Vec<Value> {
    let controllers = controller_roles().into_iter().map(|(account, _)| {
        binding(
            "ClusterRoleBinding",
            &format!("{CONTROLLER_ROLE_PREFIX}{account}"),
            "ClusterRole",
            json!({"kind": "ServiceAccount", "name": account, "namespace": CONTROLLER_NAMESPACE}),
        )
    });
    let users = user_roles()
        .into_iter()
        .map(|(name, _, who)| binding("ClusterRoleBinding", name, "ClusterRole", user(who)));
    let groups = group_roles().into_iter().map(|(name, _, group)| {
        binding(
            "ClusterRoleBinding",
            name,
            "ClusterRole",
            json!({"apiGroup": RBAC_API, "kind": "Group", "name": group}),
        )
    });
    controllers.chain(users).chain(groups).collect()
}

fn in_namespace(mut obj: Value) -> Value {
    obj["metadata"]["namespace"] = json!(CONTROLLER_NAMESPACE);
    obj
}

/// The components' Roles in [`CONTROLLER_NAMESPACE`].
pub fn roles() -> Vec<Value> {
    namespaced_user_roles()
        .into_iter()
        .map(|(name, rules, _)| {
            let mut r = cluster_role(name, rules);
            r["kind"] = json!("Role");
            in_namespace(r)
        })
        .collect()
}

/// The components' RoleBindings in [`CONTROLLER_NAMESPACE`].
pub fn role_bindings() -> Vec<Value> {
    namespaced_user_roles()
        .into_iter()
        .map(|(name, _, who)| in_namespace(binding("RoleBinding", name, "Role", user(who))))
        .collect()
}

/// The ServiceAccount user name a controller account writes as.
pub fn controller_user(account: &str) -> String {
    crate::authz::service_account_username(CONTROLLER_NAMESPACE, account)
}

#[cfg(test)]
#[path = "rbac_components_tests.rs"]
mod tests;

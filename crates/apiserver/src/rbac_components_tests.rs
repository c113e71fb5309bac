//! Each component's role against what its code calls: allowed, and the
//! writes it does not need refused.

use super::*;
use crate::authn::User;
use crate::authz::{Attributes, RbacIndex, RbacObjects};

/// Every default, as `ensure` stores them.
fn index() -> RbacIndex {
    RbacIndex::build(&RbacObjects {
        roles: &roles(),
        role_bindings: &role_bindings(),
        cluster_roles: &crate::rbac::cluster_roles(),
        cluster_role_bindings: &crate::rbac::cluster_role_bindings(),
    })
}

fn who(name: &str) -> User {
    if name.starts_with(crate::authz::SERVICE_ACCOUNT_USER_PREFIX) {
        User::new(
            name,
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:kube-system",
            ],
        )
    } else {
        User::new(name, &[])
    }
}

/// (verb, group, resource/subresource, name, namespace)
type Call<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

fn allowed(index: &RbacIndex, user: &str, call: Call<'_>) -> bool {
    let (verb, group, resource, name, ns) = call;
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    index.allows(
        &Attributes::resource(who(user), verb, group, resource)
            .subresource(sub)
            .name(name)
            .namespace(ns),
    )
}

fn check(user: &str, yes: &[Call<'_>], no: &[Call<'_>]) {
    let index = index();
    for c in yes {
        assert!(allowed(&index, user, *c), "{user} must be allowed {c:?}");
    }
    for c in no {
        assert!(!allowed(&index, user, *c), "{user} must be refused {c:?}");
    }
}

/// Writes no component makes, refused to every component but the GC
/// (whose role, as upstream's, may patch and delete anything).
const NEVER: &[Call<'static>] = &[
    ("get", "", "secrets", "s", "default"),
    ("list", "", "secrets", "", ""),
    (
        "create",
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "",
        "",
    ),
    ("create", "", "namespaces", "", ""),
    ("create", "", "serviceaccounts/token", "default", "default"),
    ("create", "", "pods/exec", "p", "default"),
    ("delete", "", "namespaces", "default", ""),
];

#[test]
fn the_proxy_reads_services_and_slices_and_holds_its_leases_only() {
    check(
        PROXY_USER,
        &[
            ("list", "", "services", "", ""),
            ("watch", "", "services", "", ""),
            ("list", "discovery.k8s.io", "endpointslices", "", ""),
            ("watch", "discovery.k8s.io", "endpointslices", "", ""),
            ("get", "", "nodes", "n1", ""),
            ("create", "", "events", "", "default"),
            ("list", "coordination.k8s.io", "leases", "", "kube-system"),
            ("create", "coordination.k8s.io", "leases", "", "kube-system"),
            (
                "update",
                "coordination.k8s.io",
                "leases",
                "skiff-lb-10-0-0-1",
                "kube-system",
            ),
            (
                "delete",
                "coordination.k8s.io",
                "leases",
                "skiff-lb-10-0-0-1",
                "kube-system",
            ),
        ],
        &[
            ("delete", "", "pods", "p", "default"),
            ("create", "", "services", "", "default"),
            (
                "update",
                "discovery.k8s.io",
                "endpointslices",
                "s",
                "default",
            ),
            (
                "create",
                "coordination.k8s.io",
                "leases",
                "",
                "kube-node-lease",
            ),
            ("get", "", "configmaps", "c", "default"),
        ],
    );
    check(PROXY_USER, &[], NEVER);
}

#[test]
fn dns_reads_what_it_serves_and_writes_only_its_kube_dns_slice() {
    check(
        DNS_USER,
        &[
            ("list", "", "services", "", ""),
            ("watch", "discovery.k8s.io", "endpointslices", "", ""),
            ("get", "", "nodes", "n1", ""),
            (
                "patch",
                "discovery.k8s.io",
                "endpointslices",
                "kube-dns-n1",
                "kube-system",
            ),
            (
                "create",
                "discovery.k8s.io",
                "endpointslices",
                "",
                "kube-system",
            ),
        ],
        &[
            ("create", "", "services", "", "default"),
            ("update", "", "services", "s", "default"),
            ("delete", "", "services", "s", "default"),
            (
                "patch",
                "discovery.k8s.io",
                "endpointslices",
                "s",
                "default",
            ),
            (
                "delete",
                "discovery.k8s.io",
                "endpointslices",
                "kube-dns-n1",
                "kube-system",
            ),
            ("list", "", "pods", "", ""),
            ("list", "", "nodes", "", ""),
            ("patch", "", "nodes", "n1", ""),
        ],
    );
    check(DNS_USER, &[], NEVER);
}

#[test]
fn netpol_only_reads_policies_pods_and_namespaces() {
    check(
        NETPOL_USER,
        &[
            ("watch", "networking.k8s.io", "networkpolicies", "", ""),
            ("list", "", "pods", "", ""),
            ("watch", "", "namespaces", "", ""),
        ],
        &[
            (
                "create",
                "networking.k8s.io",
                "networkpolicies",
                "",
                "default",
            ),
            ("delete", "", "pods", "p", "default"),
            ("patch", "", "pods/status", "p", "default"),
            ("list", "", "services", "", ""),
        ],
    );
    check(NETPOL_USER, &[], NEVER);
}

#[test]
fn the_controller_manager_reads_everything_and_leads_but_writes_nothing_else() {
    check(
        CONTROLLER_MANAGER_USER,
        &[
            ("list", "", "pods", "", ""),
            ("watch", "apps", "deployments", "", ""),
            (
                "list",
                "coordination.k8s.io",
                "leases",
                "",
                "kube-node-lease",
            ),
            ("create", "coordination.k8s.io", "leases", "", "kube-system"),
            (
                "get",
                "coordination.k8s.io",
                "leases",
                CONTROLLER_MANAGER_LEASE,
                "kube-system",
            ),
            (
                "update",
                "coordination.k8s.io",
                "leases",
                CONTROLLER_MANAGER_LEASE,
                "kube-system",
            ),
        ],
        &[
            (
                "update",
                "coordination.k8s.io",
                "leases",
                "other",
                "kube-system",
            ),
            ("create", "", "pods", "", "default"),
            ("delete", "", "pods", "p", "default"),
            ("get", "", "secrets", "s", "default"),
            ("patch", "", "nodes", "n1", ""),
        ],
    );
}

#[test]
fn each_controller_may_make_its_writes_and_no_other_controllers() {
    let sa = |a: &str| controller_user(a);
    check(
        &sa("deployment-controller"),
        &[
            ("create", "apps", "replicasets", "", "default"),
            ("patch", "apps", "replicasets", "r", "default"),
            ("delete", "apps", "replicasets", "r", "default"),
            ("update", "apps", "deployments/status", "d", "default"),
            ("patch", "apps", "deployments", "d", "default"),
            ("create", "", "events", "", "default"),
        ],
        &[
            ("create", "", "pods", "", "default"),
            ("delete", "", "pods", "p", "default"),
            ("create", "apps", "deployments", "", "default"),
            (
                "create",
                "discovery.k8s.io",
                "endpointslices",
                "",
                "default",
            ),
        ],
    );
    check(
        &sa("replicaset-controller"),
        &[
            ("create", "", "pods", "", "default"),
            ("patch", "", "pods", "p", "default"),
            ("delete", "", "pods", "p", "default"),
            ("update", "apps", "replicasets/status", "r", "default"),
        ],
        &[
            ("create", "apps", "replicasets", "", "default"),
            ("patch", "", "pods/status", "p", "default"),
            ("patch", "", "nodes", "n", ""),
        ],
    );
    check(
        &sa("statefulset-controller"),
        &[
            ("create", "", "pods", "", "default"),
            ("delete", "", "pods", "p", "default"),
            ("update", "apps", "statefulsets/status", "s", "default"),
        ],
        &[("create", "apps", "replicasets", "", "default")],
    );
    check(
        &sa("endpointslice-controller"),
        &[
            (
                "create",
                "discovery.k8s.io",
                "endpointslices",
                "",
                "default",
            ),
            (
                "update",
                "discovery.k8s.io",
                "endpointslices",
                "s",
                "default",
            ),
            (
                "delete",
                "discovery.k8s.io",
                "endpointslices",
                "s",
                "default",
            ),
        ],
        &[
            ("create", "", "endpoints", "", "default"),
            ("update", "", "services", "s", "default"),
        ],
    );
    check(
        &sa("endpointslicemirroring-controller"),
        &[(
            "create",
            "discovery.k8s.io",
            "endpointslices",
            "",
            "default",
        )],
        &[("create", "", "endpoints", "", "default")],
    );
    check(
        &sa("endpoint-controller"),
        &[
            ("create", "", "endpoints", "", "default"),
            ("update", "", "endpoints", "e", "default"),
            ("delete", "", "endpoints", "e", "default"),
        ],
        &[(
            "create",
            "discovery.k8s.io",
            "endpointslices",
            "",
            "default",
        )],
    );
    check(
        &sa("node-controller"),
        &[
            ("patch", "", "nodes", "n", ""),
            ("patch", "", "nodes/status", "n", ""),
            ("patch", "", "pods/status", "p", "default"),
            (
                "patch",
                "discovery.k8s.io",
                "endpointslices",
                "kube-dns-n",
                "kube-system",
            ),
        ],
        &[
            ("create", "", "pods", "", "default"),
            ("create", "", "nodes", "", ""),
        ],
    );
    check(
        &sa("taint-eviction-controller"),
        &[
            ("delete", "", "pods", "p", "default"),
            ("patch", "", "pods/status", "p", "default"),
        ],
        &[
            ("patch", "", "nodes", "n", ""),
            ("create", "", "pods", "", "default"),
        ],
    );
    check(
        &sa("pod-garbage-collector"),
        &[
            ("delete", "", "pods", "p", "default"),
            ("patch", "", "pods/status", "p", "default"),
            ("get", "", "nodes", "n", ""),
        ],
        &[
            ("create", "", "events", "", "default"),
            ("patch", "", "nodes", "n", ""),
        ],
    );
    check(
        &sa("service-account-controller"),
        &[("create", "", "serviceaccounts", "", "default")],
        &[
            ("delete", "", "serviceaccounts", "default", "default"),
            ("create", "", "configmaps", "", "default"),
        ],
    );
    check(
        &sa("root-ca-cert-publisher"),
        &[
            ("create", "", "configmaps", "", "default"),
            ("update", "", "configmaps", "kube-root-ca.crt", "default"),
        ],
        &[("delete", "", "configmaps", "kube-root-ca.crt", "default")],
    );
    check(
        &sa("generic-garbage-collector"),
        &[
            ("delete", "", "pods", "p", "default"),
            ("patch", "apps", "replicasets", "r", "default"),
        ],
        &[("create", "", "pods", "", "default")],
    );
    for account in controller_roles().iter().map(|(a, _)| *a) {
        let never: &[Call<'_>] = if account == "generic-garbage-collector" {
            &NEVER[2..6]
        } else {
            NEVER
        };
        check(&sa(account), &[], never);
    }
    // Another namespace's account of the same name is nobody.
    assert!(!allowed(
        &index(),
        "system:serviceaccount:default:deployment-controller",
        ("create", "apps", "replicasets", "", "default"),
    ));
}

#[test]
fn the_scheduler_binds_pods_and_writes_their_scheduling_condition() {
    check(
        SCHEDULER_USER,
        &[
            ("patch", "", "pods", "p", "default"),
            ("patch", "", "pods/status", "p", "default"),
            ("create", "", "pods/binding", "p", "default"),
            ("list", "", "nodes", "", ""),
            ("create", "", "events", "", "default"),
        ],
        &[
            ("create", "", "pods", "", "default"),
            ("patch", "", "nodes", "n", ""),
        ],
    );
    check(SCHEDULER_USER, &[], NEVER);
}

#[test]
fn component_defaults_are_labelled_and_bound_as_upstream_names_them() {
    let all = cluster_roles()
        .into_iter()
        .chain(cluster_role_bindings())
        .chain(roles())
        .chain(role_bindings());
    for obj in all {
        let m = &obj["metadata"];
        assert_eq!(
            m["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults",
            "{obj}"
        );
    }
    let b = cluster_role_bindings()
        .into_iter()
        .find(|b| b["metadata"]["name"] == "system:controller:deployment-controller")
        .unwrap_or_default();
    assert_eq!(b["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(b["subjects"][0]["namespace"], "kube-system");
    assert_eq!(b["subjects"][0]["name"], "deployment-controller");
    let p = cluster_role_bindings()
        .into_iter()
        .find(|b| b["metadata"]["name"] == "system:node-proxier")
        .unwrap_or_default();
    assert_eq!(p["subjects"][0]["name"], PROXY_USER);
    for r in roles() {
        assert_eq!(r["kind"], "Role");
        assert_eq!(r["metadata"]["namespace"], CONTROLLER_NAMESPACE);
    }
}

#[test]
fn every_node_may_read_all_nodes_for_its_routes_and_nothing_more_through_it() {
    let index = index();
    let graph = crate::authz::node::NodeGraph::default();
    let both = crate::authz::policy::Authorizers {
        rbac: Some(&index),
        nodes: Some(&graph),
    };
    let node = || User::node("n1");
    let allowed = |a: Attributes| crate::authz::policy::check(both, &a).is_ok();
    assert!(allowed(Attributes::resource(node(), "list", "", "nodes")));
    assert!(allowed(Attributes::resource(node(), "watch", "", "nodes")));
    assert!(allowed(
        Attributes::resource(node(), "get", "", "nodes").name("n2")
    ));
    assert!(!allowed(
        Attributes::resource(node(), "delete", "", "nodes").name("n2")
    ));
    assert!(!allowed(Attributes::resource(
        node(),
        "list",
        "discovery.k8s.io",
        "endpointslices"
    )));
    assert!(!allowed(
        Attributes::resource(node(), "update", "coordination.k8s.io", "leases")
            .namespace("kube-system")
            .name("skiff-lb-10-0-0-1")
    ));
    // Without the binding, the Node authorizer alone: its own Node only.
    let bare = crate::authz::policy::Authorizers {
        rbac: Some(&RbacIndex::default()),
        nodes: Some(&graph),
    };
    let list = Attributes::resource(node(), "list", "", "nodes");
    assert!(crate::authz::policy::check(bare, &list).is_err());
}

//! Upstream's RBAC authorizer cases (`plugin/pkg/auth/authorizer/rbac`), in
//! our own words, and the subject, scope and role-resolution rules of its
//! rule resolver.

use serde_json::json;

use super::*;
use crate::authz::{Attributes, Decision};

#[test]
fn a_role_binding_to_a_cluster_role_grants_only_in_its_namespace() {
    let w = World {
        cluster_roles: vec![cluster_role("admin", &[rule("*", "*", "*", "*")])],
        role_bindings: vec![rb(
            "ns1",
            "b",
            "ClusterRole",
            "admin",
            &["User:admin", "Group:admins"],
        )],
        ..Default::default()
    };
    expect(
        &w.index(),
        &[
            ("admin", &[], "get", "", "Pods", "", "", "ns1"),
            ("admin", &[], "watch", "", "Pods", "", "", "ns1"),
            ("admin", &["group1"], "watch", "", "Foobar", "", "", "ns1"),
            ("joe", &["admins"], "watch", "", "Foobar", "", "", "ns1"),
            (
                "joe",
                &["group1", "admins"],
                "watch",
                "",
                "Foobar",
                "",
                "",
                "ns1",
            ),
        ],
        &[
            ("admin", &[], "GET", "", "Pods", "", "", "ns2"),
            ("admin", &[], "GET", "", "Nodes", "", "", ""),
            ("admin", &["admins"], "GET", "", "Pods", "", "", "ns2"),
            ("admin", &["admins"], "GET", "", "Nodes", "", "", ""),
            ("joe", &["group1"], "get", "", "pods", "", "", "ns1"),
        ],
    );
}

#[test]
fn non_resource_urls_through_cluster_role_bindings() {
    let w = World {
        cluster_roles: vec![
            cluster_role("url-getter", &[rule("get", "", "", "/apis")]),
            cluster_role("url-any-verb", &[rule("*", "", "", "/apis")]),
            cluster_role("url-prefix", &[rule("get", "", "", "/apis/*")]),
        ],
        cluster_role_bindings: vec![
            crb("a", "url-getter", &["User:foo", "Group:bar"]),
            crb("b", "url-any-verb", &["User:admin", "Group:admin"]),
            crb("c", "url-prefix", &["User:prefixed", "Group:prefixed"]),
        ],
        ..Default::default()
    };
    let index = w.index();
    let path = |name: &str, groups: &[&str], verb: &str, p: &str| {
        Attributes::non_resource(user(name, groups), verb, p)
    };
    let pass = [
        path("foo", &[], "get", "/apis"),
        path("", &["bar"], "get", "/apis"),
        path("admin", &[], "get", "/apis"),
        path("", &["admin"], "get", "/apis"),
        path("admin", &[], "watch", "/apis"),
        path("", &["admin"], "watch", "/apis"),
        path("prefixed", &[], "get", "/apis/v1"),
        path("", &["prefixed"], "get", "/apis/v1"),
        path("prefixed", &[], "get", "/apis/v1/foobar"),
    ];
    let fail = [
        // Wrong verb.
        path("foo", &[], "watch", "/apis"),
        path("", &["bar"], "watch", "/apis"),
        // Wrong path.
        path("foo", &[], "get", "/api/v1"),
        path("admin", &[], "get", "/api/v1"),
        path("", &["admin"], "get", "/api/v1"),
        // Outside the prefix.
        path("prefixed", &[], "get", "/api/v1"),
        path("prefixed", &[], "get", "/apis"),
    ];
    for a in &pass {
        assert!(index.allows(a), "should be allowed: {a:?}");
    }
    for a in &fail {
        assert!(!index.allows(a), "should be refused: {a:?}");
    }
}

#[test]
fn a_resource_and_its_subresources_are_granted_separately() {
    let pods_only = World {
        cluster_roles: vec![cluster_role("r", &[rule("*", "*", "pods", "")])],
        role_bindings: vec![rb("ns1", "b", "ClusterRole", "r", &["User:admin"])],
        ..Default::default()
    };
    expect(
        &pods_only.index(),
        &[("admin", &[], "get", "", "pods", "", "", "ns1")],
        &[("admin", &[], "get", "", "pods", "status", "", "ns1")],
    );
    let status_only = World {
        cluster_roles: vec![cluster_role("r", &[rule("*", "*", "pods/status", "")])],
        role_bindings: vec![rb("ns1", "b", "ClusterRole", "r", &["User:admin"])],
        ..Default::default()
    };
    expect(
        &status_only.index(),
        &[("admin", &[], "get", "", "pods", "status", "", "ns1")],
        &[("admin", &[], "get", "", "pods", "", "", "ns1")],
    );
}

#[test]
fn role_bindings_use_roles_of_their_own_namespace() {
    let w = World {
        roles: vec![
            role("ns1", "reader", &[rule("get,list", "", "configmaps", "")]),
            role("ns2", "reader", &[rule("*", "*", "*", "")]),
            role("ns2", "other", &[rule("delete", "", "secrets", "")]),
        ],
        role_bindings: vec![
            rb("ns1", "b", "Role", "reader", &["User:alice"]),
            // A Role of another namespace cannot be bound: `other` is in ns2.
            rb("ns1", "c", "Role", "other", &["User:alice"]),
        ],
        ..Default::default()
    };
    expect(
        &w.index(),
        &[
            ("alice", &[], "list", "", "configmaps", "", "", "ns1"),
            ("alice", &[], "get", "", "configmaps", "", "x", "ns1"),
        ],
        &[
            ("alice", &[], "delete", "", "configmaps", "", "x", "ns1"),
            ("alice", &[], "delete", "", "secrets", "", "x", "ns1"),
            ("alice", &[], "list", "", "configmaps", "", "", "ns2"),
            ("alice", &[], "list", "", "configmaps", "", "", ""),
        ],
    );
}

#[test]
fn cluster_role_bindings_grant_everywhere() {
    let w = World {
        cluster_roles: vec![cluster_role(
            "reader",
            &[rule("get,list,watch", "", "pods,nodes", "")],
        )],
        cluster_role_bindings: vec![crb("b", "reader", &["Group:readers"])],
        ..Default::default()
    };
    expect(
        &w.index(),
        &[
            ("x", &["readers"], "list", "", "pods", "", "", ""),
            ("x", &["readers"], "list", "", "pods", "", "", "any"),
            ("x", &["readers"], "get", "", "nodes", "", "n1", ""),
        ],
        &[
            ("x", &[], "list", "", "pods", "", "", ""),
            ("x", &["readers"], "delete", "", "pods", "", "p", "any"),
        ],
    );
}

#[test]
fn service_accounts_are_users_and_groups() {
    let w = World {
        cluster_roles: vec![
            cluster_role("svc-lister", &[rule("list", "", "services", "")]),
            cluster_role("cm-reader", &[rule("get", "", "configmaps", "")]),
            cluster_role("ep-reader", &[rule("get", "", "endpoints", "")]),
            cluster_role("node-reader", &[rule("get", "", "nodes", "")]),
        ],
        role_bindings: vec![
            // No namespace on the subject: the binding's own (upstream).
            rb(
                "app",
                "a",
                "ClusterRole",
                "svc-lister",
                &["ServiceAccount:sa"],
            ),
            rb(
                "app",
                "b",
                "ClusterRole",
                "cm-reader",
                &["ServiceAccount:other/sa"],
            ),
            rb(
                "app",
                "c",
                "ClusterRole",
                "ep-reader",
                &["Group:system:serviceaccounts:app"],
            ),
        ],
        cluster_role_bindings: vec![
            // In a ClusterRoleBinding, a ServiceAccount needs a namespace.
            crb("d", "node-reader", &["ServiceAccount:sa"]),
            crb("e", "cm-reader", &["ServiceAccount:app/sa"]),
        ],
        ..Default::default()
    };
    let index = w.index();
    let sa = |ns: &str, name: &str| test_service_account(ns, name);
    let can = |u: User, verb: &str, resource: &str, ns: &str| {
        index.allows(
            &Attributes::resource(u, verb, "", resource)
                .name(if verb == "get" { "x" } else { "" })
                .namespace(ns),
        )
    };
    assert_eq!(sa("app", "sa").name, "system:serviceaccount:app:sa");
    assert!(can(sa("app", "sa"), "list", "services", "app"));
    assert!(!can(sa("app", "sa"), "list", "services", "default"));
    assert!(!can(sa("other", "sa"), "list", "services", "app"));
    // Named in another namespace, granted in this one.
    assert!(can(sa("other", "sa"), "get", "configmaps", "app"));
    // The namespace's ServiceAccounts group.
    assert!(can(sa("app", "anyone"), "get", "endpoints", "app"));
    assert!(!can(sa("web", "anyone"), "get", "endpoints", "app"));
    // The ClusterRoleBinding without a namespace names no one.
    assert!(!can(sa("app", "sa"), "get", "nodes", ""));
    assert!(can(sa("app", "sa"), "get", "configmaps", "elsewhere"));
    // A user merely called like a ServiceAccount's name is not it.
    assert!(!can(user("sa", &[]), "list", "services", "app"));
}

#[test]
fn resource_names_limit_to_named_objects_and_not_lists() {
    let mut r = rule("get,list,update", "", "secrets", "");
    r["resourceNames"] = json!(["token"]);
    let w = World {
        roles: vec![role("ns", "one-secret", &[r])],
        role_bindings: vec![rb("ns", "b", "Role", "one-secret", &["User:u"])],
        ..Default::default()
    };
    expect(
        &w.index(),
        &[
            ("u", &[], "get", "", "secrets", "", "token", "ns"),
            ("u", &[], "update", "", "secrets", "", "token", "ns"),
        ],
        &[
            ("u", &[], "get", "", "secrets", "", "other", "ns"),
            ("u", &[], "list", "", "secrets", "", "", "ns"),
            ("u", &[], "watch", "", "secrets", "", "", "ns"),
        ],
    );
}

#[test]
fn system_masters_is_allowed_everything_without_a_binding() {
    let index = World::default().index();
    let admin = User::admin();
    assert!(index.allows(&Attributes::resource(admin.clone(), "delete", "", "nodes").name("n")));
    assert!(index.allows(&Attributes::non_resource(admin, "get", "/anything")));
    assert!(!index.allows(&Attributes::resource(user("admin", &[]), "get", "", "pods")));
}

#[test]
fn unsupported_subject_and_role_kinds_grant_nothing() {
    let mut b = crb("b", "all", &["User:u"]);
    b["subjects"] = json!([{"kind": "Robot", "name": "u"}]);
    let mut bad_ref = crb("c", "all", &["User:v"]);
    bad_ref["roleRef"]["kind"] = json!("Policy");
    let w = World {
        cluster_roles: vec![cluster_role("all", &[rule("*", "*", "*", "")])],
        cluster_role_bindings: vec![b, bad_ref],
        ..Default::default()
    };
    let index = w.index();
    let a = Attributes::resource(user("v", &[]), "get", "", "pods");
    assert_eq!(
        index.authorize(&a),
        Decision::NoOpinion {
            reason: r#"RBAC: unsupported role reference kind: "Policy""#.into()
        }
    );
    assert!(!index.allows(&Attributes::resource(user("u", &[]), "get", "", "pods")));
}

#[test]
fn missing_roles_are_named_in_the_refusal() {
    let w = World {
        cluster_roles: vec![cluster_role("reader", &[rule("get", "", "pods", "")])],
        role_bindings: vec![
            rb("ns", "a", "Role", "gone", &["User:u"]),
            rb("ns", "b", "ClusterRole", "gone-too", &["Group:g"]),
            rb("ns", "c", "ClusterRole", "reader", &["User:u"]),
        ],
        ..Default::default()
    };
    let index = w.index();
    let refused = Attributes::resource(user("u", &["g"]), "list", "", "pods").namespace("ns");
    let err = index.check(&refused).unwrap_err();
    assert_eq!(
        err.message,
        r#"pods is forbidden: User "u" cannot list resource "pods" in API group "" in the namespace "ns": RBAC: [role.rbac.authorization.k8s.io "gone" not found, clusterrole.rbac.authorization.k8s.io "gone-too" not found]"#
    );
    // A binding that resolves still grants.
    let allowed = Attributes::resource(user("u", &["g"]), "get", "", "pods")
        .name("p")
        .namespace("ns");
    assert!(index.check(&allowed).is_ok());
    // A missing role of someone else's binding is not this user's business.
    let stranger = Attributes::resource(user("v", &[]), "list", "", "pods").namespace("ns");
    assert_eq!(index.authorize(&stranger).reason(), "");
}

#[test]
fn the_allow_reason_names_the_first_binding_and_subject_that_grant() {
    let w = World {
        cluster_roles: vec![cluster_role("reader", &[rule("get", "", "pods", "")])],
        role_bindings: vec![rb(
            "ns",
            "rb",
            "ClusterRole",
            "reader",
            &["Group:g", "ServiceAccount:sa"],
        )],
        cluster_role_bindings: vec![
            crb("none", "reader", &["User:someone-else"]),
            crb("crb", "reader", &["User:u", "Group:g"]),
        ],
        ..Default::default()
    };
    let index = w.index();
    let a = Attributes::resource(user("u", &["g"]), "get", "", "pods").namespace("ns");
    assert_eq!(
        index.authorize(&a).reason(),
        r#"RBAC: allowed by ClusterRoleBinding "crb" of ClusterRole "reader" to User "u""#
    );
    let sa =
        Attributes::resource(test_service_account("ns", "sa"), "get", "", "pods").namespace("ns");
    assert_eq!(
        index.authorize(&sa).reason(),
        r#"RBAC: allowed by RoleBinding "rb/ns" of ClusterRole "reader" to ServiceAccount "sa/ns""#
    );
}

#[test]
fn aggregated_cluster_roles_are_evaluated_when_the_index_is_built() {
    let w = World {
        cluster_roles: vec![
            json!({
                "metadata": {"name": "monitoring"},
                "aggregationRule": {"clusterRoleSelectors": [
                    {"matchLabels": {"example.com/aggregate-to-monitoring": "true"}},
                    {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["metrics"]}]},
                ]},
                "rules": [],
            }),
            json!({
                "metadata": {"name": "read-pods", "labels": {"example.com/aggregate-to-monitoring": "true"}},
                "rules": [rule("get,list", "", "pods", "")],
            }),
            json!({
                "metadata": {"name": "read-metrics", "labels": {"tier": "metrics"}},
                "rules": [rule("get", "", "", "/metrics")],
            }),
            json!({
                "metadata": {"name": "write-pods", "labels": {"tier": "writes"}},
                "rules": [rule("create", "", "pods", "")],
            }),
        ],
        cluster_role_bindings: vec![crb("m", "monitoring", &["User:prom"])],
        ..Default::default()
    };
    let index = w.index();
    expect(
        &index,
        &[("prom", &[], "list", "", "pods", "", "", "ns")],
        &[("prom", &[], "create", "", "pods", "", "", "ns")],
    );
    assert!(index.allows(&Attributes::non_resource(
        user("prom", &[]),
        "get",
        "/metrics"
    )));
}

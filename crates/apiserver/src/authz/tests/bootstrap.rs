//! The default roles and bindings skiff bootstraps ([`crate::rbac`]),
//! evaluated: view, edit and admin, discovery, aggregation into them, the
//! issue's shpod case, and what `SelfSubjectRulesReview` shows.

use serde_json::json;

use super::*;
use crate::authn::User;
use crate::authz::{Attributes, Request, ResourceAttributes};
use crate::request::Target;

#[test]
fn bootstrap_view_edit_and_admin() {
    let mut w = World::bootstrap();
    w.role_bindings = vec![
        rb("dev", "v", "ClusterRole", "view", &["User:viewer"]),
        rb("dev", "e", "ClusterRole", "edit", &["User:editor"]),
        rb("dev", "a", "ClusterRole", "admin", &["User:boss"]),
    ];
    let a: &[&str] = &[crate::authn::AUTHENTICATED];
    expect(
        &w.index(),
        &[
            ("viewer", a, "list", "", "pods", "", "", "dev"),
            ("viewer", a, "get", "", "pods", "log", "p", "dev"),
            ("viewer", a, "watch", "apps", "deployments", "", "", "dev"),
            ("editor", a, "create", "apps", "deployments", "", "", "dev"),
            ("editor", a, "get", "", "secrets", "", "s", "dev"),
            ("editor", a, "create", "", "pods", "exec", "p", "dev"),
            (
                "editor",
                a,
                "update",
                "apps",
                "deployments",
                "scale",
                "d",
                "dev",
            ),
            (
                "boss",
                a,
                "create",
                RBAC_GROUP,
                "rolebindings",
                "",
                "",
                "dev",
            ),
            ("boss", a, "delete", "apps", "deployments", "", "d", "dev"),
        ],
        &[
            ("viewer", a, "get", "", "secrets", "", "s", "dev"),
            ("viewer", a, "list", "", "secrets", "", "", "dev"),
            ("viewer", a, "create", "apps", "deployments", "", "", "dev"),
            ("viewer", a, "list", "", "pods", "", "", "prod"),
            (
                "editor",
                a,
                "create",
                RBAC_GROUP,
                "rolebindings",
                "",
                "",
                "dev",
            ),
            ("editor", a, "create", "", "resourcequotas", "", "", "dev"),
            ("boss", a, "list", "", "nodes", "", "", ""),
            ("boss", a, "create", "apps", "deployments", "", "", "prod"),
        ],
    );
}

#[test]
fn bootstrap_discovery_and_public_paths() {
    let index = World::bootstrap().index();
    let path = |groups: &[&str], verb: &str, p: &str| {
        index.allows(&Attributes::non_resource(user("someone", groups), verb, p))
    };
    let authn = &[crate::authn::AUTHENTICATED][..];
    let anon = &["system:unauthenticated"][..];
    assert!(path(authn, "get", "/api"));
    assert!(path(authn, "get", "/api/v1"));
    assert!(path(authn, "get", "/apis/apps/v1"));
    assert!(path(authn, "get", "/openapi/v3"));
    assert!(path(authn, "get", "/version"));
    assert!(!path(authn, "post", "/api"));
    assert!(!path(authn, "get", "/metrics"));
    assert!(!path(authn, "get", "/logs"));
    assert!(path(anon, "get", "/healthz"));
    assert!(path(anon, "get", "/version"));
    assert!(!path(anon, "get", "/api"));
    assert!(!path(&[], "get", "/healthz"));
    // system:basic-user: anyone signed in may ask what they may do.
    let ssar = Attributes::resource(
        user("someone", authn),
        "create",
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
    );
    assert!(index.allows(&ssar));
    let pods =
        Attributes::resource(user("someone", authn), "list", "", "pods").namespace("default");
    assert!(!index.allows(&pods));
}

#[test]
fn a_new_aggregate_to_view_role_reaches_view_edit_and_admin() {
    let mut w = World::bootstrap();
    w.cluster_roles.push(json!({
        "metadata": {
            "name": "widgets-view",
            "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
        },
        "rules": [rule("get,list,watch", "example.com", "widgets", "")],
    }));
    w.role_bindings = vec![
        rb("dev", "v", "ClusterRole", "view", &["User:viewer"]),
        rb("dev", "e", "ClusterRole", "edit", &["User:editor"]),
        rb("dev", "a", "ClusterRole", "admin", &["User:boss"]),
    ];
    expect(
        &w.index(),
        &[
            (
                "viewer",
                &[],
                "list",
                "example.com",
                "widgets",
                "",
                "",
                "dev",
            ),
            (
                "editor",
                &[],
                "list",
                "example.com",
                "widgets",
                "",
                "",
                "dev",
            ),
            (
                "boss",
                &[],
                "watch",
                "example.com",
                "widgets",
                "",
                "",
                "dev",
            ),
        ],
        &[(
            "viewer",
            &[],
            "delete",
            "example.com",
            "widgets",
            "",
            "w",
            "dev",
        )],
    );
}

#[test]
fn the_shpod_binding_to_cluster_admin_and_its_removal() {
    let mut w = World::bootstrap();
    let shpod = test_service_account("shpod", "shpod");
    let get_svc = Attributes::resource(shpod, "get", "", "services")
        .name("httpenv")
        .namespace("default");
    let index = w.index();
    let err = index.check(&get_svc).unwrap_err();
    assert_eq!(
        err.message,
        r#"services "httpenv" is forbidden: User "system:serviceaccount:shpod:shpod" cannot get resource "services" in API group "" in the namespace "default""#
    );
    w.cluster_role_bindings.push(crb(
        "shpod",
        "cluster-admin",
        &["ServiceAccount:shpod/shpod"],
    ));
    assert!(w.index().check(&get_svc).is_ok());
}

#[test]
fn rules_for_lists_what_self_subject_rules_review_shows() {
    let mut w = World::bootstrap();
    w.roles = vec![role("dev", "cm", &[rule("get", "", "configmaps", "")])];
    w.role_bindings = vec![
        rb("dev", "cm", "Role", "cm", &["User:u"]),
        rb("dev", "gone", "Role", "gone", &["User:u"]),
    ];
    let index = w.index();
    let u = user("u", &[crate::authn::AUTHENTICATED]);
    let status = index.rules_for(&u, "dev").to_status();
    let resource_rules = status["resourceRules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // system:basic-user's rule first (cluster bindings are visited first),
    // then the namespace's Role.
    assert_eq!(
        resource_rules.first(),
        Some(&json!({
            "verbs": ["create"],
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        }))
    );
    assert_eq!(
        resource_rules.last(),
        Some(&json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}))
    );
    let urls = status["nonResourceRules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        urls.iter().any(|r| r["nonResourceURLs"][0] == "/livez"),
        "{urls:?}"
    );
    assert_eq!(status["incomplete"], false);
    assert_eq!(
        status["evaluationError"],
        r#"role.rbac.authorization.k8s.io "gone" not found"#
    );
    // Cluster-wide only: the namespace's RoleBindings do not count.
    let cluster = index.rules_for(&u, "").to_status();
    assert!(!cluster.to_string().contains("configmaps"));
    assert!(cluster.get("evaluationError").is_none());
    // system:masters sees cluster-admin's rules through its binding.
    let admin = index.rules_for(&User::admin(), "").to_status();
    assert!(admin["resourceRules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r == &json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})));
}

#[test]
fn attributes_from_a_parsed_target() {
    let deployments =
        skiff_api::registry::lookup("apps", "v1", "deployments").expect("deployments");
    let t = Target {
        resource: deployments,
        namespace: Some("ns".into()),
        name: Some("web".into()),
        subresource: Some("scale".into()),
    };
    let a = Attributes::for_target(user("u", &[]), "update", &t);
    assert_eq!(
        a.request,
        Request::Resource(ResourceAttributes {
            api_group: "apps".into(),
            resource: "deployments".into(),
            subresource: "scale".into(),
            name: "web".into(),
            namespace: "ns".into(),
        })
    );
    assert_eq!(a.namespace_str(), "ns");
    // One namespace is in itself, as upstream's RequestInfo has it.
    let namespaces = skiff_api::registry::lookup("", "v1", "namespaces").expect("namespaces");
    let one = Target {
        resource: namespaces,
        namespace: None,
        name: Some("dev".into()),
        subresource: None,
    };
    let get_ns = Attributes::for_target(user("viewer", &[]), "get", &one);
    assert_eq!(get_ns.namespace_str(), "dev");
    let mut w = World::bootstrap();
    w.role_bindings = vec![rb("dev", "v", "ClusterRole", "view", &["User:viewer"])];
    assert!(w.index().allows(&get_ns));
    let all = Target { name: None, ..one };
    assert_eq!(
        Attributes::for_target(user("viewer", &[]), "list", &all).namespace_str(),
        ""
    );
    assert_eq!(
        Attributes::non_resource(user("u", &[]), "get", "/x")
            .namespace("ns")
            .namespace_str(),
        ""
    );
}

#[test]
fn many_bindings_of_others_are_not_scanned() {
    // A check reads only the user's and its groups' entries: with many
    // bindings naming others it still answers from the one that matters.
    let mut w = World {
        cluster_roles: vec![cluster_role("reader", &[rule("get", "", "pods", "")])],
        ..Default::default()
    };
    for i in 0..20_000 {
        w.role_bindings.push(rb(
            "ns",
            &format!("b{i}"),
            "ClusterRole",
            "gone",
            &[&format!("User:u{i}")],
        ));
    }
    w.role_bindings
        .push(rb("ns", "mine", "ClusterRole", "reader", &["User:me"]));
    let index = w.index();
    let a = Attributes::resource(user("me", &[]), "get", "", "pods")
        .name("p")
        .namespace("ns");
    let start = std::time::Instant::now();
    for _ in 0..1000 {
        assert!(index.allows(&a));
    }
    // Generous: a scan of 20,000 bindings a check would take far longer.
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(
        index.rules_for(&user("me", &[]), "ns").resource_rules.len(),
        1
    );
}

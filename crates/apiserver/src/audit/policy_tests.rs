//! Policy reading and matching, case by case as upstream's checker decides.

use super::*;
use crate::authz::ResourceAttributes;

fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.to_string(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        uid: String::new(),
        extra: Default::default(),
    }
}

fn res(group: &str, resource: &str, sub: &str, name: &str, ns: &str) -> Request {
    Request::Resource(ResourceAttributes {
        api_group: group.into(),
        resource: resource.into(),
        subresource: sub.into(),
        name: name.into(),
        namespace: ns.into(),
    })
}

fn path(p: &str) -> Request {
    Request::NonResource { path: p.into() }
}

/// One rule per case, in the order they are tried.
const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  # 0: health checks are not logged
  - level: None
    nonResourceURLs: ["/healthz*", "/version"]
  # 1: jane's reads of anything
  - level: RequestResponse
    users: ["jane"]
    verbs: ["get", "list"]
  # 2: the ops group, in kube-system only
  - level: Request
    userGroups: ["ops"]
    namespaces: ["kube-system"]
  # 3: secrets and configmaps' bodies never
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps/*"]
  # 4: pods/log and every scale subresource
  - level: Request
    resources:
      - group: ""
        resources: ["pods/log"]
      - group: "apps"
        resources: ["*/scale"]
    omitStages: ["ResponseStarted"]
  # 5: one named deployment
  - level: RequestResponse
    resources:
      - group: "apps"
        resources: ["deployments"]
        resourceNames: ["web"]
  # 6: anything in the rbac group
  - level: Request
    resources:
      - group: "rbac.authorization.k8s.io"
    omitManagedFields: false
  # 7: cluster-scoped requests (namespace "")
  - level: Metadata
    namespaces: [""]
  # 8: the rest of /apis paths
  - level: Metadata
    nonResourceURLs: ["/apis/*"]
omitManagedFields: true
"#;

#[test]
fn the_first_rule_that_matches_decides() {
    let policy = Policy::parse(POLICY).expect("policy");
    let jane = user("jane", &["system:authenticated"]);
    let ops = user("bob", &["ops", "system:authenticated"]);
    let anyone = user("sam", &["system:authenticated"]);
    let cases: &[(&str, Option<&User>, &str, Request, Level)] = &[
        (
            "path: health prefix",
            Some(&anyone),
            "get",
            path("/healthz/etcd"),
            Level::None,
        ),
        (
            "path: exact",
            Some(&anyone),
            "get",
            path("/version"),
            Level::None,
        ),
        (
            "path: not a prefix of /version",
            Some(&anyone),
            "get",
            path("/versions"),
            Level::None,
        ),
        (
            "path: /apis/*",
            Some(&anyone),
            "get",
            path("/apis/apps/v1"),
            Level::Metadata,
        ),
        (
            "path: /api is no rule's",
            Some(&anyone),
            "get",
            path("/api"),
            Level::None,
        ),
        (
            "user and verb",
            Some(&jane),
            "list",
            res("", "secrets", "", "", "default"),
            Level::RequestResponse,
        ),
        (
            "user, other verb",
            Some(&jane),
            "delete",
            res("", "secrets", "", "s", "default"),
            Level::Metadata,
        ),
        (
            "group in its namespace",
            Some(&ops),
            "create",
            res("", "configmaps", "", "", "kube-system"),
            Level::Request,
        ),
        (
            "group elsewhere",
            Some(&ops),
            "create",
            res("", "secrets", "", "", "default"),
            Level::Metadata,
        ),
        (
            "no user (401): user rules skip",
            None,
            "list",
            res("", "secrets", "", "", "default"),
            Level::Metadata,
        ),
        (
            "resource exact",
            Some(&anyone),
            "get",
            res("", "secrets", "", "s", "default"),
            Level::Metadata,
        ),
        (
            "secrets/status is not secrets",
            Some(&anyone),
            "get",
            res("", "secrets", "status", "s", "default"),
            Level::None,
        ),
        (
            "resource/*: a subresource",
            Some(&anyone),
            "get",
            res("", "configmaps", "status", "c", "default"),
            Level::Metadata,
        ),
        (
            "resource/*: the resource itself too",
            Some(&anyone),
            "get",
            res("", "configmaps", "", "c", "default"),
            Level::Metadata,
        ),
        (
            "subresource form",
            Some(&anyone),
            "get",
            res("", "pods", "log", "p", "default"),
            Level::Request,
        ),
        (
            "pods is not pods/log",
            Some(&anyone),
            "get",
            res("", "pods", "", "p", "default"),
            Level::None,
        ),
        (
            "*/scale",
            Some(&anyone),
            "update",
            res("apps", "deployments", "scale", "d", "default"),
            Level::Request,
        ),
        (
            "*/scale in another group",
            Some(&anyone),
            "update",
            res("", "replicationcontrollers", "scale", "r", "default"),
            Level::None,
        ),
        (
            "resourceNames match",
            Some(&anyone),
            "get",
            res("apps", "deployments", "", "web", "default"),
            Level::RequestResponse,
        ),
        (
            "resourceNames miss",
            Some(&anyone),
            "get",
            res("apps", "deployments", "", "api", "default"),
            Level::None,
        ),
        (
            "whole group",
            Some(&anyone),
            "create",
            res("rbac.authorization.k8s.io", "roles", "", "", "default"),
            Level::Request,
        ),
        (
            "cluster scope",
            Some(&anyone),
            "get",
            res("", "nodes", "", "n1", ""),
            Level::Metadata,
        ),
        (
            "nothing matches",
            Some(&anyone),
            "get",
            res("apps", "replicasets", "", "r", "default"),
            Level::None,
        ),
    ];
    for (what, who, verb, request, want) in cases {
        let got = policy.evaluate(Subject {
            user: *who,
            verb,
            request,
        });
        assert_eq!(got.level, *want, "{what}");
    }
}

#[test]
fn stages_and_managed_fields_combine_rule_and_policy() {
    let policy = Policy::parse(POLICY).expect("policy");
    let anyone = user("sam", &[]);
    let eval = |request: Request| {
        policy.evaluate(Subject {
            user: Some(&anyone),
            verb: "get",
            request: &request,
        })
    };
    // Rule 4 adds ResponseStarted to the policy's RequestReceived.
    let v = eval(res("", "pods", "log", "p", "default"));
    assert!(v.omits(Stage::RequestReceived) && v.omits(Stage::ResponseStarted));
    assert!(!v.omits(Stage::ResponseComplete));
    assert!(v.omit_managed_fields, "the policy's default");
    // Rule 6 overrides omitManagedFields.
    let v = eval(res(
        "rbac.authorization.k8s.io",
        "roles",
        "",
        "r",
        "default",
    ));
    assert!(!v.omit_managed_fields);
    assert!(v.omits(Stage::RequestReceived) && !v.omits(Stage::ResponseStarted));
    // No rule: None, with the policy's stages.
    let v = eval(res("apps", "replicasets", "", "r", "default"));
    assert_eq!(v.level, Level::None);
    assert_eq!(v.omit_stages, vec![Stage::RequestReceived]);
}

#[test]
fn bad_policies_are_refused_naming_the_field() {
    let head = "apiVersion: audit.k8s.io/v1\nkind: Policy\n";
    let cases: &[(&str, &str)] = &[
        ("rules:\n- level: Loud\n", r#"rules[0].level: Unsupported value: "Loud": supported values: "None", "Metadata", "Request", "RequestResponse""#),
        ("rules:\n- verbs: [get]\n", "rules[0].level: Required value"),
        ("rules:\n- level: None\n- level: Metadata\n  omitStages: [Later]\n", r#"rules[1].omitStages[0]: Invalid value: "Later": allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic"#),
        ("omitStages: [Never]\nrules:\n- level: None\n", r#"omitStages[0]: Invalid value: "Never""#),
        ("rules:\n- level: None\n  nonResourceURLs: [healthz]\n", r#"rules[0].nonResourceURLs[0]: Invalid value: "healthz": non-resource URL rules must begin with a '/' character"#),
        ("rules:\n- level: None\n  nonResourceURLs: [\"/a*/b\"]\n", "rules[0].nonResourceURLs[0]: Invalid value: \"/a*/b\": non-resource URL wildcards '*' must be the final character of the rule"),
        ("rules:\n- level: None\n  nonResourceURLs: [/x]\n  namespaces: [a]\n", "rules[0].nonResourceURLs: Invalid value: rules cannot apply to both regular resources and non-resource URLs"),
        ("rules:\n- level: None\n  resources:\n  - group: rbac.authorization.k8s.io/v1\n", r#"rules[0].resources[0].group: Invalid value: "rbac.authorization.k8s.io/v1""#),
        ("rules:\n- level: None\n  resources:\n  - resourceNames: [a]\n", "rules[0].resources[0].resourceNames: Invalid value: using resourceNames requires at least one resource"),
        ("rules:\n- level: None\n  users: jane\n", "rules[0].users: must be a list of strings"),
        ("rules: []\n", "loaded illegal policy with 0 rules"),
    ];
    for (body, want) in cases {
        let e = Policy::parse(&format!("{head}{body}"))
            .expect_err(body)
            .to_string();
        assert!(e.starts_with(want), "{body}: {e}");
    }
    let e = Policy::parse("apiVersion: v1\nkind: ConfigMap\n")
        .expect_err("kind")
        .to_string();
    assert_eq!(
        e,
        r#"unknown group version field "v1, Kind=ConfigMap" in policy"#
    );
    let e = Policy::parse("kind: Policy\nrules: []\n")
        .expect_err("apiVersion")
        .to_string();
    assert!(e.starts_with("failed decoding: "), "{e}");
    // JSON is YAML too; the deprecated v1beta1 is still read.
    let p = Policy::parse(
        r#"{"apiVersion":"audit.k8s.io/v1beta1","kind":"Policy","rules":[{"level":"Request"}]}"#,
    )
    .expect("json");
    assert_eq!(p.rules[0].level, Level::Request);
}

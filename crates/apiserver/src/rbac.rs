//! The default ClusterRoles and ClusterRoleBindings upstream's RBAC
//! bootstrap policy creates at start (`cluster-admin`, `admin`, `edit`,
//! `view`, the discovery roles and the `aggregate-to-*` roles), so clients,
//! charts and `kubectl create rolebinding --clusterrole=view` find them,
//! and RBAC grants what upstream's defaults grant. Missing ones are
//! created; existing ones that still say
//! `rbac.authorization.kubernetes.io/autoupdate: "true"` get the rules (or
//! subjects) a newer default adds, as upstream's reconciliation adds them,
//! and keep whatever an operator added; one set to `"false"` is left alone.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use skiff_api::registry;

use crate::body::FieldValidation;
use crate::request::Target;
use crate::rest::{self, WriteOptions};
use crate::server::Api;

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

const TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

/// One default role: name, the aggregation label it carries (if any), the
/// label its aggregationRule selects (if aggregated), and its own rules.
struct Role {
    name: &'static str,
    label: Option<&'static str>,
    aggregates: Option<&'static str>,
    rules: Vec<Value>,
}

fn roles() -> Vec<Role> {
    let plain = |name, rules| Role {
        name,
        label: None,
        aggregates: None,
        rules,
    };
    let aggregated = |name, label, aggregates| Role {
        name,
        label,
        aggregates: Some(aggregates),
        rules: Vec::new(),
    };
    let health = ["/livez", "/readyz", "/healthz", "/version", "/version/"];
    vec![
        plain(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])],
        ),
        plain(
            "system:discovery",
            vec![url_rule(
                &["get"],
                &[
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/version",
                    "/version/",
                    "/openapi",
                    "/openapi/*",
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                ],
            )],
        ),
        plain(
            "system:basic-user",
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        // What a workload needs to verify service-account tokens itself.
        plain(
            "system:service-account-issuer-discovery",
            vec![url_rule(
                &["get"],
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
            )],
        ),
        plain(
            "system:public-info-viewer",
            vec![url_rule(&["get"], &health)],
        ),
        aggregated("admin", None, TO_ADMIN),
        aggregated("edit", Some(TO_ADMIN), TO_EDIT),
        aggregated("view", Some(TO_EDIT), TO_VIEW),
        Role {
            name: "system:aggregate-to-admin",
            label: Some(TO_ADMIN),
            aggregates: None,
            rules: vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                ),
                rule(
                    READ_WRITE,
                    &["rbac.authorization.k8s.io"],
                    &["roles", "rolebindings"],
                ),
            ],
        },
        Role {
            name: "system:aggregate-to-edit",
            label: Some(TO_EDIT),
            aggregates: None,
            rules: aggregate_to_edit(),
        },
        Role {
            name: "system:aggregate-to-view",
            label: Some(TO_VIEW),
            aggregates: None,
            rules: aggregate_to_view(),
        },
    ]
}

/// What `edit` adds to `view`: writes to the namespace's workloads and
/// configuration (not quotas, limits or status), reads of escalating ones.
fn aggregate_to_edit() -> Vec<Value> {
    let pod_subs = ["pods/attach", "pods/proxy", "pods/exec", "pods/portforward"];
    let mut read_escalating: Vec<&str> = pod_subs.to_vec();
    read_escalating.extend(["secrets", "services/proxy"]);
    let mut write_pods = vec!["pods"];
    write_pods.extend(pod_subs);
    vec![
        rule(READ, &[""], &read_escalating),
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(WRITE, &[""], &write_pods),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            WRITE,
            &[""],
            &[
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ],
        ),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(
            WRITE,
            &["apps"],
            &[
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ],
        ),
        rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(WRITE, &["batch"], &["jobs", "cronjobs"]),
        rule(
            WRITE,
            &["extensions"],
            &[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "ingresses",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
        rule(
            WRITE,
            &["networking.k8s.io"],
            &["networkpolicies", "ingresses"],
        ),
    ]
}

/// `view`: reads of what is in a namespace, without secrets or anything
/// that would let a reader escalate.
fn aggregate_to_view() -> Vec<Value> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ],
        ),
        rule(
            READ,
            &[""],
            &[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ],
        ),
        // Reading namespaces at namespace scope shows which ones a user may use.
        rule(READ, &[""], &["namespaces"]),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/status",
                "statefulsets/scale",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
            ],
        ),
        rule(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &["batch"],
            &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
        ),
        rule(
            READ,
            &["extensions"],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        rule(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            &["networking.k8s.io"],
            &["networkpolicies", "ingresses", "ingresses/status"],
        ),
    ]
}

/// The rules an aggregated role ends up with once upstream's aggregation
/// controller has run: those of every role carrying the selected label,
/// themselves aggregated (view feeds edit, which feeds admin).
fn aggregated_rules(all: &[Role], label: &str, depth: usize) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for r in all.iter().filter(|r| r.label == Some(label)) {
        let rules = match r.aggregates {
            Some(inner) if depth < 4 => aggregated_rules(all, inner, depth + 1),
            _ => r.rules.clone(),
        };
        for rule in rules {
            if !out.contains(&rule) {
                out.push(rule);
            }
        }
    }
    out
}

pub(crate) fn default_metadata(name: &str, extra_label: Option<&str>) -> Value {
    let mut labels = BTreeMap::from([("kubernetes.io/bootstrapping", "rbac-defaults")]);
    if let Some(l) = extra_label {
        labels.insert(l, "true");
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

/// The default ClusterRoles, as objects (the components' own included, see
/// [`crate::rbac_components`]).
pub fn cluster_roles() -> Vec<Value> {
    let all = roles();
    let mut out: Vec<Value> = all
        .iter()
        .map(|r| {
            let mut obj = json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": default_metadata(r.name, r.label),
            });
            match r.aggregates {
                Some(sel) => {
                    obj["aggregationRule"] =
                        json!({"clusterRoleSelectors": [{"matchLabels": {sel: "true"}}]});
                    obj["rules"] = Value::Array(aggregated_rules(&all, sel, 0));
                }
                None => obj["rules"] = Value::Array(r.rules.clone()),
            }
            obj
        })
        .collect();
    out.extend(crate::rbac_components::cluster_roles());
    out
}

/// The default ClusterRoleBindings, as objects (the components' included).
pub fn cluster_role_bindings() -> Vec<Value> {
    let bindings: [(&str, &[&str]); 5] = [
        ("cluster-admin", &["system:masters"]),
        ("system:discovery", &["system:authenticated"]),
        ("system:basic-user", &["system:authenticated"]),
        (
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
        (
            "system:service-account-issuer-discovery",
            &["system:serviceaccounts"],
        ),
    ];
    let mut out: Vec<Value> = bindings
        .iter()
        .map(|(name, groups)| {
            let subjects: Vec<Value> = groups
                .iter()
                .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
                .collect();
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": default_metadata(name, None),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": subjects,
            })
        })
        .collect();
    out.extend(crate::rbac_components::cluster_role_bindings());
    out
}

/// Creates the default roles and bindings that do not exist yet.
pub async fn ensure(api: &Api) -> anyhow::Result<()> {
    let opts = WriteOptions {
        dry_run: false,
        validation: FieldValidation::Ignore,
        field_manager: None,
    };
    for (plural, objects) in [
        ("clusterroles", cluster_roles()),
        ("clusterrolebindings", cluster_role_bindings()),
        ("roles", crate::rbac_components::roles()),
        ("rolebindings", crate::rbac_components::role_bindings()),
    ] {
        let resource = registry::lookup("rbac.authorization.k8s.io", "v1", plural)
            .ok_or_else(|| anyhow::anyhow!("no {plural} resource"))?;
        for obj in objects {
            let name = rest::name_of(&obj).unwrap_or_default().to_string();
            let namespace = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            let t = Target {
                resource,
                namespace: namespace.clone(),
                name: None,
                subresource: None,
            };
            let existing = api
                .objects
                .get_opt(resource, namespace.as_deref(), &name)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            if let Some(existing) = existing {
                if reconciled(&existing, &obj).is_some() {
                    let one = Target {
                        name: Some(name.clone()),
                        ..t.clone()
                    };
                    rest::patch_with(api, &one, &opts, |cur| {
                        Ok(reconciled(cur, &obj).unwrap_or_else(|| cur.clone()))
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("updating {plural} {name}: {e}"))?;
                }
                continue;
            }
            match rest::create(api, &t, obj, &opts).await {
                Ok(_) => {}
                // Another API server of the cluster made it first.
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => return Err(anyhow::anyhow!("creating {plural} {name}: {e}")),
            }
        }
    }
    Ok(())
}

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// `existing` with what the default `wanted` has and it lacks (rules of a
/// role that is not aggregated, subjects of a binding); `None` when nothing
/// is missing or the object opted out of updates.
fn reconciled(existing: &Value, wanted: &Value) -> Option<Value> {
    let annotation = existing
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(AUTOUPDATE))
        .and_then(Value::as_str);
    if annotation != Some("true")
        || existing
            .get("aggregationRule")
            .is_some_and(|a| !a.is_null())
    {
        return None;
    }
    let field = if wanted.get("roleRef").is_some() {
        "subjects"
    } else {
        "rules"
    };
    let have = existing
        .get(field)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let missing: Vec<Value> = wanted
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|w| !have.contains(w))
        .cloned()
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut out = existing.clone();
    let mut all = have;
    all.extend(missing);
    out[field] = Value::Array(all);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_gain_what_newer_defaults_add_unless_opted_out() {
        let wanted = role("system:basic-user");
        let mut old = wanted.clone();
        old["rules"] =
            json!([wanted["rules"][0].clone(), {"verbs": ["get"], "nonResourceURLs": ["/x"]}]);
        let new = reconciled(&old, &wanted).expect("a missing rule");
        assert_eq!(new["rules"].as_array().map(Vec::len), Some(3));
        assert_eq!(new["rules"][1]["nonResourceURLs"][0], "/x");
        assert!(reconciled(&new, &wanted).is_none());
        old["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert!(reconciled(&old, &wanted).is_none());
    }

    fn role(name: &str) -> Value {
        cluster_roles()
            .into_iter()
            .find(|r| r["metadata"]["name"] == name)
            .unwrap_or_default()
    }

    #[test]
    fn aggregated_roles_carry_the_rules_of_what_they_select() {
        let view = role("view");
        assert_eq!(
            view["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"][TO_VIEW],
            "true"
        );
        assert_eq!(view["rules"], role("system:aggregate-to-view")["rules"]);
        let edit = role("edit")["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let admin = role("admin")["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for r in view["rules"].as_array().into_iter().flatten() {
            assert!(edit.contains(r) && admin.contains(r), "{r}");
        }
        for r in role("system:aggregate-to-admin")["rules"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(admin.contains(r) && !edit.contains(r), "{r}");
        }
        assert_eq!(role("edit")["metadata"]["labels"][TO_ADMIN], "true");
    }

    #[test]
    fn every_default_is_labelled_for_bootstrapping() {
        for obj in cluster_roles().iter().chain(&cluster_role_bindings()) {
            let m = &obj["metadata"];
            assert_eq!(m["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults");
            assert_eq!(
                m["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
                "true"
            );
        }
        let admin = cluster_role_bindings()
            .into_iter()
            .find(|b| b["metadata"]["name"] == "cluster-admin")
            .unwrap_or_default();
        assert_eq!(admin["subjects"][0]["name"], "system:masters");
        assert_eq!(role("cluster-admin")["rules"][0]["verbs"][0], "*");
    }
}

//! apiregistration.k8s.io/v1 APIServices for the group versions this server
//! serves itself, as upstream's aggregator registers them (its
//! `autoregister` controller, label `kube-aggregator.kubernetes.io/automanaged:
//! onstart`): `spec.service` unset (Local), the priorities upstream gives each
//! built-in group, and the Available condition `Local`. Clients that walk
//! discovery through APIServices find every group; the objects are
//! read-only (the resource serves get, list and watch only).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::registry::{self, Resource};

use crate::body;
use crate::request::Target;
use crate::rest::{self, WriteOptions};
use crate::server::Api;

const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";
const PERIOD: Duration = Duration::from_secs(10);

/// Upstream's `apiVersionPriorities` (group priority minimum, version
/// priority); a group it does not list gets what upstream gives a CRD's.
fn priority(group: &str) -> (i64, i64) {
    match group {
        "" => (18000, 1),
        "apiregistration.k8s.io" => (18000, 15),
        "apps" => (17800, 15),
        "events.k8s.io" => (17750, 15),
        "authentication.k8s.io" => (17700, 15),
        "authorization.k8s.io" => (17600, 15),
        "autoscaling" => (17500, 30),
        "batch" => (17400, 15),
        "certificates.k8s.io" => (17300, 15),
        "networking.k8s.io" => (17200, 15),
        "policy" => (17100, 15),
        "rbac.authorization.k8s.io" => (17000, 15),
        "storage.k8s.io" => (16800, 15),
        "apiextensions.k8s.io" => (16700, 15),
        "admissionregistration.k8s.io" => (16700, 15),
        "scheduling.k8s.io" => (16600, 15),
        "coordination.k8s.io" => (16500, 15),
        "node.k8s.io" => (16300, 15),
        "discovery.k8s.io" => (16200, 15),
        "flowcontrol.apiserver.k8s.io" => (16100, 21),
        _ => (1000, 100),
    }
}

/// `v1.apps`, and `v1.` for the core group.
pub fn name(group: &str, version: &str) -> String {
    format!("{version}.{group}")
}

/// The APIService of a local group version.
pub fn local(group: &str, version: &str, now: &str) -> Value {
    let (group_priority, version_priority) = priority(group);
    let mut spec = json!({
        "version": version,
        "groupPriorityMinimum": group_priority,
        "versionPriority": version_priority,
    });
    if !group.is_empty() {
        spec["group"] = json!(group);
    }
    json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": name(group, version), "labels": {AUTOMANAGED: "onstart"}},
        "spec": spec,
        "status": {"conditions": [{
            "type": "Available",
            "status": "True",
            "lastTransitionTime": now,
            "reason": "Local",
            "message": "Local APIServices are always available",
        }]},
    })
}

/// Every group version served here, stored or not.
fn served() -> BTreeSet<(&'static str, &'static str)> {
    registry::RESOURCES
        .iter()
        .chain(crate::serviceaccount::discovery::RESOURCES.iter().copied())
        .chain(crate::authz::access_review::RESOURCES.iter().copied())
        .map(|r: &Resource| (r.group, r.version))
        .collect()
}

/// Creates the missing APIServices now and every [`PERIOD`].
pub async fn run(api: Arc<Api>) {
    let Some(resource) = registry::lookup("apiregistration.k8s.io", "v1", "apiservices") else {
        return;
    };
    let opts = WriteOptions {
        dry_run: false,
        validation: body::FieldValidation::Ignore,
        field_manager: None,
    };
    loop {
        for (group, version) in served() {
            let n = name(group, version);
            match api.objects.get_opt(resource, None, &n).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading APIServices");
                    break;
                }
            }
            let t = Target {
                resource,
                namespace: None,
                name: None,
                subresource: None,
            };
            let obj = local(group, version, &crate::strategy::now_rfc3339());
            match rest::create(&api, &t, obj, &opts).await {
                Ok(_) => {}
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => tracing::warn!(apiservice = %n, error = %e, "creating an APIService"),
            }
        }
        tokio::time::sleep(PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_apiservices_as_upstream_names_them() {
        let core = local("", "v1", "t");
        assert_eq!(core["metadata"]["name"], "v1.");
        assert!(core["spec"].get("group").is_none());
        let apps = local("apps", "v1", "t");
        assert_eq!(apps["metadata"]["name"], "v1.apps");
        assert_eq!(apps["spec"]["groupPriorityMinimum"], 17800);
        assert_eq!(apps["status"]["conditions"][0]["reason"], "Local");
        let all = served();
        assert!(all.contains(&("policy", "v1")));
        assert!(all.contains(&("authentication.k8s.io", "v1")));
        assert!(all.contains(&("apiregistration.k8s.io", "v1")));
    }
}

//! A DaemonSet's ControllerRevisions, as upstream's daemon controller keeps
//! them: one per template (`<name>-<hash>`, data a strategic merge patch that
//! replaces `spec.template`), the current one holding the highest `revision`,
//! and at most `revisionHistoryLimit` others that no pod still runs. This is
//! what `kubectl rollout history ds/NAME` lists and `rollout undo` applies.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use crate::daemonset::{template_hash, REVISION_HASH};
use crate::pods;
use crate::runtime::Ctx;
use crate::Result;

/// What to write to the DaemonSet's history.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// A revision for the current template.
    pub create: Option<ControllerRevision>,
    /// The current template's existing revision, renumbered to be the newest.
    pub renumber: Option<(String, i64)>,
    /// Old revisions beyond the limit.
    pub delete: Vec<String>,
}

fn owned_by(r: &ControllerRevision, uid: &str) -> bool {
    r.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Upstream's `getPatch`: `{"spec":{"template":{...,"$patch":"replace"}}}`.
fn patch_data(ds: &DaemonSet) -> serde_json::Value {
    let template = ds.spec.as_ref().map(|s| &s.template);
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pure part: `revisions` are those of the DaemonSet's namespace, `pods`
/// the DaemonSet's live pods.
pub fn desired(ds: &DaemonSet, revisions: &[Arc<ControllerRevision>], pods: &[&Pod]) -> Plan {
    let uid = ds.metadata.uid.as_deref().unwrap_or("");
    let Some(spec) = ds.spec.as_ref() else {
        return Plan::default();
    };
    let hash = template_hash(&spec.template);
    let mine: Vec<&Arc<ControllerRevision>> =
        revisions.iter().filter(|r| owned_by(r, uid)).collect();
    let max = mine.iter().map(|r| r.revision).max().unwrap_or(0);
    let current = mine
        .iter()
        .find(|r| r.labels().get(REVISION_HASH) == Some(&hash));
    let mut plan = Plan::default();
    match current {
        Some(r) if r.revision < max => plan.renumber = Some((r.name_any(), max + 1)),
        Some(_) => {}
        None => {
            let mut labels = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(REVISION_HASH.into(), hash.clone());
            plan.create = Some(ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(format!("{}-{hash}", ds.name_any())),
                    namespace: ds.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: ds.metadata.annotations.clone(),
                    owner_references: Some(vec![pods::controller_ref(
                        "apps/v1",
                        "DaemonSet",
                        &ds.metadata,
                    )]),
                    ..Default::default()
                },
                data: Some(RawExtension(patch_data(ds))),
                revision: max + 1,
            });
        }
    }
    // History: old revisions no pod runs, oldest first, beyond the limit.
    let in_use: BTreeSet<&String> = pods
        .iter()
        .filter_map(|p| p.labels().get(REVISION_HASH))
        .collect();
    let mut old: Vec<&&Arc<ControllerRevision>> = mine
        .iter()
        .filter(|r| {
            r.labels()
                .get(REVISION_HASH)
                .is_none_or(|h| *h != hash && !in_use.contains(h))
        })
        .collect();
    old.sort_by_key(|r| r.revision);
    let limit = usize::try_from(spec.revision_history_limit.unwrap_or(10).max(0)).unwrap_or(0);
    let extra = old.len().saturating_sub(limit);
    plan.delete = old.iter().take(extra).map(|r| r.name_any()).collect();
    plan
}

/// Writes the history of `ds` (as the daemon-set-controller).
pub async fn sync(ctx: &Ctx, ds: &DaemonSet, ns: &str, pods: &[&Pod]) -> Result<()> {
    let revisions = ctx
        .cache
        .workloads
        .revisions
        .state_filter(|r| r.metadata.namespace.as_deref() == Some(ns));
    let plan = desired(ds, &revisions, pods);
    let api: Api<ControllerRevision> = Api::namespaced(ctx.clients.of("daemonset"), ns);
    if let Some(r) = &plan.create {
        match api.create(&PostParams::default(), r).await {
            Ok(_) => {}
            // Made already, and the cache has not seen it yet.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some((name, revision)) = &plan.renumber {
        let patch = json!({"revision": revision});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn ds(image: &str) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("default".into()),
                uid: Some("ds-uid".into()),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                revision_history_limit: Some(1),
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            image: Some(image.into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn stored(plan: Plan) -> Arc<ControllerRevision> {
        let mut r = plan.create.expect("a new revision");
        r.metadata.owner_references = Some(vec![OwnerReference {
            uid: "ds-uid".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        Arc::new(r)
    }

    #[test]
    fn one_revision_per_template_and_a_bounded_history() {
        let v1 = stored(desired(&ds("busybox:1"), &[], &[]));
        assert_eq!(v1.revision, 1);
        assert_eq!(
            v1.data
                .as_ref()
                .map(|d| d.0["spec"]["template"]["$patch"].clone()),
            Some(json!("replace"))
        );
        // Unchanged template: nothing to write.
        assert_eq!(
            desired(&ds("busybox:1"), std::slice::from_ref(&v1), &[]),
            Plan::default()
        );
        let v2 = stored(desired(&ds("busybox:2"), std::slice::from_ref(&v1), &[]));
        assert_eq!(v2.revision, 2);
        // Back to the first template (rollout undo): it becomes revision 3.
        let back = desired(&ds("busybox:1"), &[v1.clone(), v2.clone()], &[]);
        assert_eq!(back.renumber, Some((v1.name_any(), 3)));
        // A third template with a limit of one: the oldest unused one goes.
        let v3 = stored(desired(&ds("busybox:3"), &[v1.clone(), v2.clone()], &[]));
        let p = desired(&ds("busybox:3"), &[v1.clone(), v2, v3], &[]);
        assert_eq!(p.delete, vec![v1.name_any()]);
    }
}

//! The Deployment controller: one ReplicaSet per pod template, named
//! `<deployment>-<pod-template-hash>`, rolled by RollingUpdate (maxSurge,
//! maxUnavailable) or Recreate, with revisions in the
//! `deployment.kubernetes.io/revision` annotation and the status `kubectl
//! rollout status` reads (upstream `deployment` controller).
//!
//! The arithmetic is pure: [`new_rs_replicas`] and [`old_scale_down`] for
//! rolling updates, [`status`] for the status; [`reconcile`] applies one step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use crate::runtime::{Cache, Ctx, Key};
use crate::{pods, Result};

pub const LABEL_HASH: &str = "pod-template-hash";
pub const ANN_REVISION: &str = "deployment.kubernetes.io/revision";
pub const ANN_REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const ANN_DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
pub const ANN_MAX: &str = "deployment.kubernetes.io/max-replicas";
const COMPONENT: &str = "deployment-controller";

/// Annotations of a Deployment not copied to its ReplicaSets (upstream
/// `skipCopyAnnotation`).
fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        "kubectl.kubernetes.io/last-applied-configuration"
            | ANN_REVISION
            | ANN_REVISION_HISTORY
            | ANN_DESIRED
            | ANN_MAX
            | "deprecated.deployment.rollback.to"
    )
}

/// The `pod-template-hash` of a template: FNV-1a over its JSON form and the
/// collision count, spelled with upstream's `SafeEncodeString` alphabet.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// Whether two templates are equal once `pod-template-hash` is ignored.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.remove(LABEL_HASH);
        }
        let mut v = serde_json::to_value(&t).unwrap_or_default();
        // An empty label map and no labels are the same template.
        if v.pointer("/metadata/labels")
            .is_some_and(|l| l.as_object().is_some_and(|o| o.is_empty()))
        {
            if let Some(m) = v.pointer_mut("/metadata").and_then(|m| m.as_object_mut()) {
                m.remove("labels");
            }
        }
        if v.get("metadata")
            .is_some_and(|m| m.as_object().is_some_and(|o| o.is_empty()))
        {
            if let Some(o) = v.as_object_mut() {
                o.remove("metadata");
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// Resolves an int-or-percent against `total` (upstream
/// `GetScaledValueFromIntOrPercent`).
pub fn resolve(v: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let v = v
        .cloned()
        .unwrap_or_else(|| IntOrString::String(default.into()));
    match v {
        IntOrString::Int(n) => n,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = i64::from(total) * pct;
            let r = if round_up { (x + 99) / 100 } else { x / 100 };
            i32::try_from(r).unwrap_or(0)
        }
    }
}

/// (maxSurge, maxUnavailable) for a Deployment; both zero means one unavailable.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let ru = spec
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    if is_recreate(d) {
        return (0, 0);
    }
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), replicas, true, "25%");
    let unavailable = resolve(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas,
        false,
        "25%",
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable.min(replicas))
    }
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// Upstream `NewRSNewReplicas`: how far the new ReplicaSet may grow now.
/// `total` is the sum of `spec.replicas` over all the Deployment's ReplicaSets.
pub fn new_rs_replicas(replicas: i32, max_surge: i32, new_current: i32, total: i32) -> i32 {
    let max_total = replicas + max_surge;
    if total >= max_total {
        return new_current;
    }
    new_current + (max_total - total).min((replicas - new_current).max(0))
}

/// Upstream `reconcileOldReplicaSets` for RollingUpdate: the new `spec.replicas`
/// of each old ReplicaSet, given (spec replicas, available) of each (oldest
/// first) and of the new one. Unhealthy old replicas go first, then available
/// ones as far as `maxUnavailable` allows.
pub fn old_scale_down(
    replicas: i32,
    max_unavailable: i32,
    old: &[(i32, i32)],
    new: (i32, i32),
) -> Vec<i32> {
    let mut out: Vec<i32> = old.iter().map(|(r, _)| *r).collect();
    let old_total: i32 = out.iter().sum();
    if old_total == 0 {
        return out;
    }
    let all_total = old_total + new.0;
    let min_available = replicas - max_unavailable;
    let new_unavailable = (new.0 - new.1).max(0);
    let mut budget = all_total - min_available - new_unavailable;
    if budget <= 0 {
        return out;
    }
    // Unhealthy replicas first: they serve nothing.
    for (i, (r, avail)) in old.iter().enumerate() {
        if budget <= 0 {
            break;
        }
        let unhealthy = (r - avail).max(0).min(budget);
        out[i] -= unhealthy;
        budget -= unhealthy;
    }
    // Then available ones, keeping minAvailable.
    let available_total: i32 = old.iter().map(|(_, a)| *a).sum::<i32>() + new.1;
    let mut can_remove = (available_total - min_available).max(0);
    for o in out.iter_mut() {
        if can_remove <= 0 {
            break;
        }
        let n = (*o).min(can_remove);
        *o -= n;
        can_remove -= n;
    }
    out
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    prev: Option<&DeploymentCondition>,
    now: &Time,
) -> DeploymentCondition {
    let same = prev.is_some_and(|p| {
        p.status == status
            && p.reason.as_deref() == Some(reason)
            && p.message.as_deref() == Some(message.as_str())
    });
    let transition = match prev {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: if same {
            prev.and_then(|p| p.last_update_time.clone())
        } else {
            Some(now.clone())
        },
        last_transition_time: transition,
    }
}

/// The Deployment's status over its ReplicaSets (upstream `calculateStatus` and
/// the Progressing/Available conditions).
pub fn status(
    d: &Deployment,
    all: &[Arc<ReplicaSet>],
    new_rs: Option<&ReplicaSet>,
    now: &Time,
) -> DeploymentStatus {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let available_total: i32 = all.iter().map(|r| available(r)).sum();
    let spec_total: i32 = all.iter().map(|r| spec_replicas(r)).sum();
    let actual: i32 = all.iter().map(|r| st(r).replicas).sum();
    let updated = new_rs.map(|r| st(r).replicas).unwrap_or(0);
    let ready: i32 = all.iter().map(|r| st(r).ready_replicas.unwrap_or(0)).sum();
    let prev = d.status.clone().unwrap_or_default();
    let prev_cond = |t: &str| prev.conditions.iter().flatten().find(|c| c.type_ == t);
    let (_, max_unavailable) = surge_and_unavailable(d);
    let avail = if available_total >= replicas - max_unavailable {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            prev_cond("Available"),
            now,
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            prev_cond("Available"),
            now,
        )
    };
    let rs_name = new_rs.map(|r| r.name_any()).unwrap_or_default();
    let complete = new_rs.is_some()
        && updated == replicas
        && available_total >= replicas
        && actual == replicas;
    let progressing = if complete {
        condition(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            prev_cond("Progressing"),
            now,
        )
    } else if prev_cond("Progressing").is_none() {
        condition(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set \"{rs_name}\""),
            None,
            now,
        )
    } else {
        condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs_name}\" is progressing."),
            prev_cond("Progressing"),
            now,
        )
    };
    let nz = |n: i32| (n != 0).then_some(n);
    DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nz(actual),
        updated_replicas: nz(updated),
        ready_replicas: nz(ready),
        available_replicas: nz(available_total),
        unavailable_replicas: nz((spec_total - available_total).max(0)),
        collision_count: prev.collision_count,
        conditions: Some(vec![avail, progressing]),
        terminating_replicas: None,
    }
}

/// Deployments in the ReplicaSet's namespace whose selector matches it.
pub fn selecting(cache: &Cache, rs: &ReplicaSet) -> Vec<Key> {
    let ns = rs.metadata.namespace.as_deref();
    let labels = rs.labels();
    cache
        .deployments
        .state_filter(|d| {
            d.metadata.namespace.as_deref() == ns
                && crate::selector::matches(d.spec.as_ref().map(|s| &s.selector), labels)
        })
        .iter()
        .map(|d| Key::of(&**d))
        .collect()
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(ANN_REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn oldest_first(rss: &mut [Arc<ReplicaSet>]) {
    rss.sort_by(|a, b| {
        let t = |r: &ReplicaSet| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (t(a), a.name_any()).cmp(&(t(b), b.name_any()))
    });
}

/// The annotations a ReplicaSet of `d` carries (upstream `SetNewReplicaSetAnnotations`
/// and `SetReplicasAnnotations`).
fn rs_annotations(
    d: &Deployment,
    rs_annotations: &BTreeMap<String, String>,
    revision: i64,
) -> BTreeMap<String, String> {
    let mut a = rs_annotations.clone();
    for (k, v) in d.annotations() {
        if !skip_copy(k) {
            a.insert(k.clone(), v.clone());
        }
    }
    let old_rev = a.get(ANN_REVISION).cloned();
    let rev = revision.to_string();
    if let Some(old) = old_rev.filter(|o| *o != rev && !o.is_empty()) {
        let history = match a.get(ANN_REVISION_HISTORY) {
            Some(h) if !h.is_empty() => format!("{h},{old}"),
            _ => old,
        };
        a.insert(ANN_REVISION_HISTORY.into(), history);
    }
    a.insert(ANN_REVISION.into(), rev);
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let (surge, _) = surge_and_unavailable(d);
    a.insert(ANN_DESIRED.into(), replicas.to_string());
    a.insert(ANN_MAX.into(), (replicas + surge).to_string());
    a
}

/// One step of the rollout: ReplicaSet writes, then the status.
pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let Some(d) = ctx
        .cache
        .deployments
        .get(&ObjectRef::new(&key.name).within(&key.ns))
    else {
        return Ok(None);
    };
    if d.metadata.deletion_timestamp.is_some() || ctx.rs_writes.pending(&key) {
        return Ok(ctx
            .rs_writes
            .pending(&key)
            .then_some(crate::endpointslice::STALE_RETRY));
    }
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.clients.of("deployment"), &key.ns);
    let mut all: Vec<Arc<ReplicaSet>> = ctx.cache.replicasets.state_filter(|r| {
        r.metadata.namespace.as_deref() == Some(key.ns.as_str())
            && r.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
    });
    // Adopt orphaned ReplicaSets the selector matches (upstream
    // `ClaimReplicaSets`); they show up as owned on the next sync.
    let orphans = ctx.cache.replicasets.state_filter(|r| {
        r.metadata.namespace.as_deref() == Some(key.ns.as_str())
            && r.metadata.deletion_timestamp.is_none()
            && !r
                .owner_references()
                .iter()
                .any(|o| o.controller == Some(true))
            && crate::selector::matches(Some(&spec.selector), r.labels())
    });
    for r in &orphans {
        let owner = pods::controller_ref("apps/v1", "Deployment", &d.metadata);
        let patch = serde_json::json!({"metadata": {"ownerReferences": [owner]}});
        api.patch(
            &r.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    }
    if !orphans.is_empty() {
        return Ok(None);
    }
    oldest_first(&mut all);
    let template = spec.template.clone();
    let replicas = spec.replicas.unwrap_or(1);
    let (surge, max_unavailable) = surge_and_unavailable(&d);
    let max_revision = all.iter().map(|r| revision(r)).max().unwrap_or(0);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let rs_template = |r: &ReplicaSet| {
        r.spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default()
    };
    let new_rs = all
        .iter()
        .find(|r| equal_ignore_hash(&rs_template(r), &template))
        .cloned();
    let olds: Vec<Arc<ReplicaSet>> = all
        .iter()
        .filter(|r| {
            new_rs
                .as_ref()
                .is_none_or(|n| n.metadata.uid != r.metadata.uid)
        })
        .cloned()
        .collect();

    let scale = |rs: &ReplicaSet, to: i32| {
        let mut r = rs.clone();
        let from = spec_replicas(rs);
        if let Some(s) = r.spec.as_mut() {
            s.replicas = Some(to);
        }
        let rev = revision(rs);
        r.metadata.annotations = Some(rs_annotations(&d, rs.annotations(), rev));
        (r, from, to)
    };
    let mut writes: Vec<(ReplicaSet, i32, i32)> = Vec::new();

    // Make sure the new ReplicaSet exists and carries the latest revision.
    // A paused Deployment starts no rollout: without a ReplicaSet for the
    // current template it only reports status (upstream `sync` when paused).
    if spec.paused.unwrap_or(false) && new_rs.is_none() {
        let want = status(&d, &all, None, &now);
        if d.status.as_ref() != Some(&want) {
            let mut dd = (*d).clone();
            dd.status = Some(want);
            let dapi: Api<Deployment> = Api::namespaced(ctx.clients.of("deployment"), &key.ns);
            dapi.replace_status(&key.name, &PostParams::default(), &dd)
                .await?;
        }
        return Ok(None);
    }
    let new_rs: Arc<ReplicaSet> = match new_rs {
        Some(n) => {
            if revision(&n) < max_revision || (revision(&n) == 0) {
                let mut r = (*n).clone();
                r.metadata.annotations = Some(rs_annotations(
                    &d,
                    n.annotations(),
                    max_revision.max(revision(&n)) + 1,
                ));
                let made = api
                    .replace(&r.name_any(), &PostParams::default(), &r)
                    .await?;
                ctx.rs_writes.expect_write_from(
                    &key,
                    Key::of(&made),
                    made.metadata.resource_version.clone(),
                    r.metadata.resource_version.as_deref(),
                );
                Arc::new(made)
            } else {
                n
            }
        }
        None => {
            let collision = d.status.as_ref().and_then(|s| s.collision_count);
            let hash = template_hash(&template, collision);
            let mut t = template.clone();
            t.metadata
                .get_or_insert_with(Default::default)
                .labels
                .get_or_insert_with(Default::default)
                .insert(LABEL_HASH.into(), hash.clone());
            let mut selector: LabelSelector = spec.selector.clone();
            selector
                .match_labels
                .get_or_insert_with(Default::default)
                .insert(LABEL_HASH.into(), hash.clone());
            let mut labels = t
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(LABEL_HASH.into(), hash.clone());
            let initial = if is_recreate(&d) {
                0
            } else {
                let total: i32 = olds.iter().map(|r| spec_replicas(r)).sum();
                new_rs_replicas(replicas, surge, 0, total)
            };
            let name = format!("{}-{hash}", key.name);
            let rs = ReplicaSet {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(key.ns.clone()),
                    labels: Some(labels),
                    annotations: Some(rs_annotations(&d, &BTreeMap::new(), max_revision + 1)),
                    owner_references: Some(vec![pods::controller_ref(
                        "apps/v1",
                        "Deployment",
                        &d.metadata,
                    )]),
                    ..Default::default()
                },
                spec: Some(ReplicaSetSpec {
                    replicas: Some(initial),
                    min_ready_seconds: spec.min_ready_seconds,
                    selector,
                    template: Some(t),
                }),
                status: None,
            };
            match api.create(&PostParams::default(), &rs).await {
                Ok(made) => {
                    ctx.rs_writes.expect_write(
                        &key,
                        Key::of(&made),
                        made.metadata.resource_version.clone(),
                    );
                    if initial > 0 {
                        ctx.events.record(
                            &*d,
                            COMPONENT,
                            false,
                            "ScalingReplicaSet",
                            format!("Scaled up replica set {name} from 0 to {initial}"),
                        );
                    }
                    Arc::new(made)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // A ReplicaSet of that name with another template: bump the
                    // collision count so the next hash differs (upstream).
                    let mut dd = (*d).clone();
                    let st = dd.status.get_or_insert_with(Default::default);
                    st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
                    let dapi: Api<Deployment> =
                        Api::namespaced(ctx.clients.of("deployment"), &key.ns);
                    dapi.replace_status(&key.name, &PostParams::default(), &dd)
                        .await?;
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
    };

    if !spec.paused.unwrap_or(false) {
        if is_recreate(&d) {
            // Recreate: every old pod gone before the new ones start.
            for r in &olds {
                if spec_replicas(r) > 0 {
                    writes.push(scale(r, 0));
                }
            }
            let old_pods_running = olds
                .iter()
                .any(|r| r.status.as_ref().is_some_and(|s| s.replicas > 0));
            if writes.is_empty() && !old_pods_running && spec_replicas(&new_rs) != replicas {
                writes.push(scale(&new_rs, replicas));
            }
        } else {
            let new_cur = spec_replicas(&new_rs);
            let total: i32 = all
                .iter()
                .filter(|r| r.metadata.uid != new_rs.metadata.uid)
                .map(|r| spec_replicas(r))
                .sum::<i32>()
                + new_cur;
            let want_new = if new_cur > replicas {
                replicas
            } else {
                new_rs_replicas(replicas, surge, new_cur, total)
            };
            if want_new != new_cur {
                writes.push(scale(&new_rs, want_new));
            }
            let old_state: Vec<(i32, i32)> = olds
                .iter()
                .map(|r| (spec_replicas(r), available(r)))
                .collect();
            let down = old_scale_down(
                replicas,
                max_unavailable,
                &old_state,
                (new_cur, available(&new_rs)),
            );
            for (r, to) in olds.iter().zip(down) {
                if to != spec_replicas(r) {
                    writes.push(scale(r, to));
                }
            }
        }
    }
    // Keep the annotations of the new ReplicaSet current (kubectl reads them).
    if writes.is_empty() {
        let want = rs_annotations(&d, new_rs.annotations(), revision(&new_rs));
        if &want != new_rs.annotations() {
            writes.push(scale(&new_rs, spec_replicas(&new_rs)));
        }
    }
    for (r, from, to) in writes {
        let made = api
            .replace(&r.name_any(), &PostParams::default(), &r)
            .await?;
        ctx.rs_writes.expect_write_from(
            &key,
            Key::of(&made),
            made.metadata.resource_version.clone(),
            r.metadata.resource_version.as_deref(),
        );
        if from != to {
            let verb = if to > from { "up" } else { "down" };
            ctx.events.record(
                &*d,
                COMPONENT,
                false,
                "ScalingReplicaSet",
                format!(
                    "Scaled {verb} replica set {} from {from} to {to}",
                    r.name_any()
                ),
            );
        }
    }

    // Old ReplicaSets beyond revisionHistoryLimit, scaled to zero, go.
    let limit = usize::try_from(spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
    let idle: Vec<&Arc<ReplicaSet>> = olds
        .iter()
        .filter(|r| {
            spec_replicas(r) == 0
                && r.status.as_ref().is_none_or(|s| s.replicas == 0)
                && r.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if idle.len() > limit {
        for r in &idle[..idle.len() - limit] {
            match api.delete(&r.name_any(), &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    // The Deployment carries its current revision too (kubectl rollout undo
    // replaces /metadata/annotations and needs it there).
    let rev = revision(&new_rs).to_string();
    if d.annotations().get(ANN_REVISION) != Some(&rev) {
        let dapi: Api<Deployment> = Api::namespaced(ctx.clients.of("deployment"), &key.ns);
        let patch = serde_json::json!({"metadata": {"annotations": {ANN_REVISION: rev}}});
        dapi.patch(
            &key.name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
        // The status write below would conflict with the new resourceVersion;
        // the watch event of this patch brings us back.
        return Ok(None);
    }
    let mut all_now = all.clone();
    if !all_now
        .iter()
        .any(|r| r.metadata.uid == new_rs.metadata.uid)
    {
        all_now.push(new_rs.clone());
    }
    let want = status(&d, &all_now, Some(&new_rs), &now);
    let cur = d.status.clone().unwrap_or_default();
    if cur != want {
        let mut dd = (*d).clone();
        dd.status = Some(want);
        let dapi: Api<Deployment> = Api::namespaced(ctx.clients.of("deployment"), &key.ns);
        dapi.replace_status(&key.name, &PostParams::default(), &dd)
            .await?;
    }
    Ok(None)
}

#[cfg(test)]
#[path = "deployment_tests.rs"]
mod tests;

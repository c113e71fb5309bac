//! The garbage collector (background propagation): an object whose owners are
//! all gone is deleted; one that lost only some owners has those references
//! removed. Owners are looked up in the caches by uid and confirmed absent with
//! a live GET before anything is deleted, as upstream's `attemptToDeleteItem`.
//!
//! Dependents watched: Pods, ReplicaSets, EndpointSlices, Jobs and
//! ControllerRevisions; owners known:
//! Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs,
//! ReplicationControllers, Services, Endpoints, Pods and Nodes.
//! Owners of other kinds are assumed present.
//!
//! Owners that are being deleted with the `orphan` or `foregroundDeletion`
//! finalizer (what upstream's API server adds for `propagationPolicy=Orphan` /
//! `Foreground`) are finalized here: orphaning removes the owner reference from
//! every dependent, foreground deletes the dependents and waits for them to be
//! gone; then the finalizer is removed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::runtime::{Cache, Ctx, Key};
use crate::Result;

fn at<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> ObjectRef<K> {
    ObjectRef::new(name).within(ns)
}

/// Whether the owner is in the cache: `None` when its kind is not cached.
fn cached(cache: &Cache, ns: &str, r: &OwnerReference) -> Option<bool> {
    let uid = r.uid.as_str();
    let same = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.uid.as_deref() == Some(uid)
    };
    Some(match (r.api_version.as_str(), r.kind.as_str()) {
        ("apps/v1", "Deployment") => cache
            .deployments
            .get(&at(ns, &r.name))
            .is_some_and(|o| same(&o.metadata)),
        ("apps/v1", "ReplicaSet") => cache
            .replicasets
            .get(&at(ns, &r.name))
            .is_some_and(|o| same(&o.metadata)),
        ("apps/v1", "StatefulSet") => cache
            .statefulsets
            .get(&at(ns, &r.name))
            .is_some_and(|o| same(&o.metadata)),
        ("v1", "Service") => cache
            .services
            .get(&at(ns, &r.name))
            .is_some_and(|o| same(&o.metadata)),
        ("v1", "Endpoints") => cache
            .endpoints
            .get(&at(ns, &r.name))
            .is_some_and(|o| same(&o.metadata)),
        ("v1", "Pod") => cache
            .pods
            .get(&at(ns, &r.name))
            .is_some_and(|o| same(&o.metadata)),
        ("v1", "Node") => cache
            .nodes
            .get(&ObjectRef::new(&r.name))
            .is_some_and(|o| same(&o.metadata)),
        ("batch/v1", "Job") => cache
            .workloads
            .jobs
            .get(&at(ns, &r.name))
            .is_some_and(|o| same(&o.metadata)),
        ("batch/v1", "CronJob") => cache
            .workloads
            .cronjobs
            .get(&at(ns, &r.name))
            .is_some_and(|o| same(&o.metadata)),
        ("apps/v1", "DaemonSet") => cache
            .workloads
            .daemonsets
            .get(&at(ns, &r.name))
            .is_some_and(|o| same(&o.metadata)),
        ("v1", "ReplicationController") => cache
            .workloads
            .rcs
            .get(&at(ns, &r.name))
            .is_some_and(|o| same(&o.metadata)),
        _ => return None,
    })
}

async fn live_exists<K>(api: Api<K>, name: &str, uid: &str) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await? {
        Some(o) => Ok(o.meta().uid.as_deref() == Some(uid)),
        None => Ok(false),
    }
}

/// Whether the owner exists, asking the API server (the cache may lag).
async fn owner_exists(ctx: &Ctx, ns: &str, r: &OwnerReference) -> Result<bool> {
    let c = ctx.clients.of("garbagecollector");
    let (name, uid) = (r.name.as_str(), r.uid.as_str());
    match r.kind.as_str() {
        "Deployment" => live_exists(Api::<Deployment>::namespaced(c, ns), name, uid).await,
        "ReplicaSet" => live_exists(Api::<ReplicaSet>::namespaced(c, ns), name, uid).await,
        "StatefulSet" => live_exists(Api::<StatefulSet>::namespaced(c, ns), name, uid).await,
        "Service" => live_exists(Api::<Service>::namespaced(c, ns), name, uid).await,
        "Endpoints" => live_exists(Api::<Endpoints>::namespaced(c, ns), name, uid).await,
        "Pod" => live_exists(Api::<Pod>::namespaced(c, ns), name, uid).await,
        "Node" => live_exists(Api::<Node>::all(c), name, uid).await,
        "Job" => live_exists(Api::<Job>::namespaced(c, ns), name, uid).await,
        "CronJob" => live_exists(Api::<CronJob>::namespaced(c, ns), name, uid).await,
        "DaemonSet" => live_exists(Api::<DaemonSet>::namespaced(c, ns), name, uid).await,
        "ReplicationController" => {
            live_exists(Api::<ReplicationController>::namespaced(c, ns), name, uid).await
        }
        _ => Ok(true),
    }
}

async fn collect<K>(ctx: &Ctx, api: Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let refs = obj.meta().owner_references.clone().unwrap_or_default();
    let mut gone = Vec::new();
    for r in &refs {
        if cached(&ctx.cache, &ns, r) == Some(false) && !owner_exists(ctx, &ns, r).await? {
            gone.push(r.uid.clone());
        }
    }
    if gone.is_empty() {
        return Ok(());
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    let uid = obj.meta().uid.clone();
    if gone.len() == refs.len() {
        tracing::debug!(%ns, %name, "deleting an object whose owners are gone");
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    } else {
        let keep: Vec<&OwnerReference> = refs.iter().filter(|r| !gone.contains(&r.uid)).collect();
        let patch = json!({"metadata": {"uid": uid, "ownerReferences": keep}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

pub const FINALIZER_ORPHAN: &str = "orphan";
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Whether an object is being deleted and waits for this collector.
pub fn needs_finalizing(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
        && meta
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER_ORPHAN || f == FINALIZER_FOREGROUND)
}

/// The owner's metadata from the cache, for the kinds that can own dependents here.
fn owner_meta(
    cache: &Cache,
    kind: &str,
    ns: &str,
    name: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta> {
    Some(match kind {
        "Deployment" => cache.deployments.get(&at(ns, name))?.metadata.clone(),
        "ReplicaSet" => cache.replicasets.get(&at(ns, name))?.metadata.clone(),
        "StatefulSet" => cache.statefulsets.get(&at(ns, name))?.metadata.clone(),
        "Service" => cache.services.get(&at(ns, name))?.metadata.clone(),
        "Pod" => cache.pods.get(&at(ns, name))?.metadata.clone(),
        "Job" => cache.workloads.jobs.get(&at(ns, name))?.metadata.clone(),
        "CronJob" => cache
            .workloads
            .cronjobs
            .get(&at(ns, name))?
            .metadata
            .clone(),
        "DaemonSet" => cache
            .workloads
            .daemonsets
            .get(&at(ns, name))?
            .metadata
            .clone(),
        "ReplicationController" => cache.workloads.rcs.get(&at(ns, name))?.metadata.clone(),
        _ => return None,
    })
}

/// Orphans or deletes the dependents of a finalizing owner, then removes the finalizer.
async fn finalize_owner(ctx: &Ctx, kind: &str, ns: &str, name: &str) -> Result<Option<Duration>> {
    let Some(meta) = owner_meta(&ctx.cache, kind, ns, name) else {
        return Ok(None);
    };
    if !needs_finalizing(&meta) {
        return Ok(None);
    }
    let uid = meta.uid.clone().unwrap_or_default();
    let finalizers = meta.finalizers.clone().unwrap_or_default();
    let orphan = finalizers.iter().any(|f| f == FINALIZER_ORPHAN);
    let refers = |refs: &[OwnerReference]| refs.iter().any(|r| r.uid == uid);
    let in_ns = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.namespace.as_deref() == Some(ns)
    };
    let pods = ctx.cache.pods.state_filter(|o| {
        in_ns(&o.metadata) && refers(o.metadata.owner_references.as_deref().unwrap_or_default())
    });
    let rss = ctx.cache.replicasets.state_filter(|o| {
        in_ns(&o.metadata) && refers(o.metadata.owner_references.as_deref().unwrap_or_default())
    });
    let slices = ctx.cache.slices.state_filter(|o| {
        in_ns(&o.metadata) && refers(o.metadata.owner_references.as_deref().unwrap_or_default())
    });
    let jobs = ctx.cache.workloads.jobs.state_filter(|o| {
        in_ns(&o.metadata) && refers(o.metadata.owner_references.as_deref().unwrap_or_default())
    });
    let revisions = ctx.cache.workloads.revisions.state_filter(|o| {
        in_ns(&o.metadata) && refers(o.metadata.owner_references.as_deref().unwrap_or_default())
    });
    let c = ctx.clients.of("garbagecollector");
    let mut waiting = false;
    macro_rules! each {
        ($list:expr, $k:ty) => {
            for o in &$list {
                let api: Api<$k> = Api::namespaced(c.clone(), ns);
                let dep_name = o.metadata.name.clone().unwrap_or_default();
                if orphan {
                    let keep: Vec<&OwnerReference> = o.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).collect();
                    let patch = json!({"metadata": {"ownerReferences": keep}});
                    api.patch(&dep_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                } else {
                    waiting = true;
                    if o.metadata.deletion_timestamp.is_none() {
                        let dp = DeleteParams { preconditions: Some(Preconditions { uid: o.metadata.uid.clone(), resource_version: None }), ..DeleteParams::foreground() };
                        match api.delete(&dep_name, &dp).await {
                            Ok(_) => {}
                            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
        };
    }
    each!(pods, Pod);
    each!(rss, ReplicaSet);
    each!(slices, EndpointSlice);
    each!(jobs, Job);
    each!(revisions, ControllerRevision);
    if waiting {
        // Dependents still exist: look again once they are gone.
        return Ok(Some(Duration::from_millis(500)));
    }
    let rest: Vec<&String> = finalizers
        .iter()
        .filter(|f| *f != FINALIZER_ORPHAN && *f != FINALIZER_FOREGROUND)
        .collect();
    let patch = json!({"metadata": {"uid": uid, "finalizers": rest}});
    let pp = PatchParams::default();
    let p = Patch::Merge(&patch);
    let r = match kind {
        "Deployment" => Api::<Deployment>::namespaced(c, ns)
            .patch(name, &pp, &p)
            .await
            .map(|_| ()),
        "ReplicaSet" => Api::<ReplicaSet>::namespaced(c, ns)
            .patch(name, &pp, &p)
            .await
            .map(|_| ()),
        "StatefulSet" => Api::<StatefulSet>::namespaced(c, ns)
            .patch(name, &pp, &p)
            .await
            .map(|_| ()),
        "Service" => Api::<Service>::namespaced(c, ns)
            .patch(name, &pp, &p)
            .await
            .map(|_| ()),
        "Job" => Api::<Job>::namespaced(c, ns)
            .patch(name, &pp, &p)
            .await
            .map(|_| ()),
        "CronJob" => Api::<CronJob>::namespaced(c, ns)
            .patch(name, &pp, &p)
            .await
            .map(|_| ()),
        "DaemonSet" => Api::<DaemonSet>::namespaced(c, ns)
            .patch(name, &pp, &p)
            .await
            .map(|_| ()),
        "ReplicationController" => Api::<ReplicationController>::namespaced(c, ns)
            .patch(name, &pp, &p)
            .await
            .map(|_| ()),
        _ => Api::<Pod>::namespaced(c, ns)
            .patch(name, &pp, &p)
            .await
            .map(|_| ()),
    };
    match r {
        Ok(()) => Ok(None),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `key.ns` is `Kind/namespace` for a dependent to check (see
/// [`crate::runtime::gc_key`]), or `Owner:Kind/namespace` for an owner to finalize.
pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    if let Some((kind, ns)) = key
        .ns
        .strip_prefix("Owner:")
        .and_then(|k| k.split_once('/'))
    {
        return finalize_owner(&ctx, kind, ns, &key.name).await;
    }
    let Some((kind, ns)) = key.ns.split_once('/') else {
        return Ok(None);
    };
    let c = ctx.clients.of("garbagecollector");
    match kind {
        "Pod" => {
            if let Some(o) = ctx.cache.pods.get(&at(ns, &key.name)) {
                collect(&ctx, Api::<Pod>::namespaced(c, ns), &*o).await?;
            }
        }
        "ReplicaSet" => {
            if let Some(o) = ctx.cache.replicasets.get(&at(ns, &key.name)) {
                collect(&ctx, Api::<ReplicaSet>::namespaced(c, ns), &*o).await?;
            }
        }
        "EndpointSlice" => {
            if let Some(o) = ctx.cache.slices.get(&at(ns, &key.name)) {
                collect(&ctx, Api::<EndpointSlice>::namespaced(c, ns), &*o).await?;
            }
        }
        "Job" => {
            if let Some(o) = ctx.cache.workloads.jobs.get(&at(ns, &key.name)) {
                collect(&ctx, Api::<Job>::namespaced(c, ns), &*o).await?;
            }
        }
        "ControllerRevision" => {
            if let Some(o) = ctx.cache.workloads.revisions.get(&at(ns, &key.name)) {
                collect(&ctx, Api::<ControllerRevision>::namespaced(c, ns), &*o).await?;
            }
        }
        _ => {}
    }
    Ok(None)
}

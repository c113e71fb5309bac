//! The garbage collector (background propagation): an object whose owners are
//! all gone is deleted; one that lost only some owners has those references
//! removed. Owners are looked up in the caches by uid and confirmed absent with
//! a live GET before anything is deleted, as upstream's `attemptToDeleteItem`.
//!
//! Dependents watched: Pods, ReplicaSets and EndpointSlices; owners known:
//! Deployments, ReplicaSets, StatefulSets, Services, Endpoints, Pods and Nodes.
//! Owners of other kinds are assumed present.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
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
    let c = ctx.client.clone();
    let (name, uid) = (r.name.as_str(), r.uid.as_str());
    match r.kind.as_str() {
        "Deployment" => live_exists(Api::<Deployment>::namespaced(c, ns), name, uid).await,
        "ReplicaSet" => live_exists(Api::<ReplicaSet>::namespaced(c, ns), name, uid).await,
        "StatefulSet" => live_exists(Api::<StatefulSet>::namespaced(c, ns), name, uid).await,
        "Service" => live_exists(Api::<Service>::namespaced(c, ns), name, uid).await,
        "Endpoints" => live_exists(Api::<Endpoints>::namespaced(c, ns), name, uid).await,
        "Pod" => live_exists(Api::<Pod>::namespaced(c, ns), name, uid).await,
        "Node" => live_exists(Api::<Node>::all(c), name, uid).await,
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

/// `key.ns` is `Kind/namespace` (see [`crate::runtime::gc_key`]).
pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let Some((kind, ns)) = key.ns.split_once('/') else {
        return Ok(None);
    };
    let c = ctx.client.clone();
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
        _ => {}
    }
    Ok(None)
}

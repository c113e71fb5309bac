//! The dispatcher: from each observed change to the keys of every object that
//! must be reconciled because of it, garbage-collector keys included. Apart
//! because it is the one place that knows which controller cares about what.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Resource, ResourceExt};

use super::{Ctx, Key};

/// One observed change, as the dispatcher sees it.
pub enum Change {
    Pod(Arc<Pod>, bool),
    Service(Arc<Service>, bool),
    Slice(Arc<EndpointSlice>, bool),
    Endpoints(Arc<Endpoints>, bool),
    ReplicaSet(Arc<ReplicaSet>, bool),
    Deployment(Arc<Deployment>, bool),
    StatefulSet(Arc<StatefulSet>, bool),
    Node(Arc<Node>, bool),
    Lease(Arc<Lease>, bool),
    Workload(crate::workloads::Change),
    /// An informer (re)listed: every owner is reconciled again, since deletions
    /// during a disconnect are not reported one by one.
    Resynced,
}

pub(super) fn enqueue_all(ctx: &Ctx) {
    let q = &ctx.queues;
    for s in ctx.cache.services.state() {
        q.endpointslice.add(Key::of(&*s));
        q.endpoints.add(Key::of(&*s));
        q.mirroring.add(Key::of(&*s));
    }
    for e in ctx.cache.endpoints.state() {
        q.endpoints.add(Key::of(&*e));
    }
    for o in ctx.cache.replicasets.state() {
        q.replicaset.add(Key::of(&*o));
        q.gc.add(gc_key("ReplicaSet", &*o));
    }
    for o in ctx.cache.deployments.state() {
        q.deployment.add(Key::of(&*o));
    }
    for o in ctx.cache.statefulsets.state() {
        q.statefulset.add(Key::of(&*o));
    }
    for p in ctx.cache.pods.state() {
        if crate::scheduler::needs_scheduling(&p) {
            q.scheduler.add(Key::of(&*p));
        }
        if !p.owner_references().is_empty() {
            q.gc.add(gc_key("Pod", &*p));
        }
    }
    for s in ctx.cache.slices.state() {
        if !s.owner_references().is_empty() {
            q.gc.add(gc_key("EndpointSlice", &*s));
        }
    }
    for n in ctx.cache.nodes.state() {
        q.nodeipam.add(Key::of(&*n));
        q.nodelifecycle.add(Key::of(&*n));
        crate::taint_eviction::on_node(ctx, &n);
    }
    for p in ctx.cache.pods.state() {
        crate::podgc::on_pod(ctx, &p);
    }
    crate::workloads::enqueue_all(ctx);
}

/// GC keys carry the kind in the namespace field: `Kind/namespace`.
pub fn gc_key<K: Resource>(kind: &str, o: &K) -> Key {
    let k = Key::of(o);
    Key::new(&format!("{kind}/{}", k.ns), &k.name)
}

/// An owner being deleted with an `orphan`/`foregroundDeletion` finalizer.
pub(crate) fn gc_finalize<K: Resource>(ctx: &Ctx, kind: &str, o: &K) {
    if crate::gc::needs_finalizing(o.meta()) {
        let k = Key::of(o);
        ctx.queues
            .gc
            .add(Key::new(&format!("Owner:{kind}/{}", k.ns), &k.name));
    }
}

/// Owners of `o` that are gone: enqueue the dependents of a deleted object.
pub(crate) fn gc_dependents(ctx: &Ctx, uid: &str) {
    let refers = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter().any(|r| r.uid == uid)
    };
    for p in ctx
        .cache
        .pods
        .state_filter(|p| refers(p.owner_references()))
    {
        ctx.queues.gc.add(gc_key("Pod", &*p));
    }
    for r in ctx
        .cache
        .replicasets
        .state_filter(|r| refers(r.owner_references()))
    {
        ctx.queues.gc.add(gc_key("ReplicaSet", &*r));
    }
    for s in ctx
        .cache
        .slices
        .state_filter(|s| refers(s.owner_references()))
    {
        ctx.queues.gc.add(gc_key("EndpointSlice", &*s));
    }
    crate::workloads::gc_dependents(ctx, uid);
}

fn controller_of<K: Resource>(o: &K, kind: &str) -> Option<Key> {
    o.owner_references()
        .iter()
        .find(|r| r.controller == Some(true) && r.kind == kind)
        .map(|r| Key::new(o.meta().namespace.as_deref().unwrap_or(""), &r.name))
}

pub(super) fn dispatch(ctx: &Ctx, change: Change) {
    let q = &ctx.queues;
    match change {
        Change::Resynced => enqueue_all(ctx),
        Change::Pod(pod, deleted) => {
            let key = Key::of(&*pod);
            gc_finalize(ctx, "Pod", &*pod);
            ctx.pod_writes.observe(
                &key,
                if deleted {
                    None
                } else {
                    pod.metadata.resource_version.as_deref()
                },
            );
            for svc in crate::endpointslice::services_for_pod(&ctx.cache, &pod) {
                q.endpointslice.add(svc.clone());
                q.endpoints.add(svc);
            }
            match controller_of(&*pod, "ReplicaSet") {
                Some(rs) => q.replicaset.add(rs),
                None => {
                    for rs in crate::replicaset::selecting(&ctx.cache, &pod) {
                        q.replicaset.add(rs);
                    }
                }
            }
            if let Some(sts) = controller_of(&*pod, "StatefulSet") {
                q.statefulset.add(sts);
            }
            crate::workloads::on_pod(ctx, &pod);
            if !deleted && crate::scheduler::needs_scheduling(&pod) {
                q.scheduler.add(key);
            }
            crate::taint_eviction::on_pod(ctx, &pod);
            if !deleted {
                crate::podgc::on_pod(ctx, &pod);
                crate::nodelifecycle::on_pod(ctx, &pod);
            }
            if deleted {
                if let Some(uid) = &pod.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            } else if !pod.owner_references().is_empty() {
                q.gc.add(gc_key("Pod", &*pod));
            }
        }
        Change::Service(svc, deleted) => {
            let key = Key::of(&*svc);
            gc_finalize(ctx, "Service", &*svc);
            if deleted {
                if let Some(uid) = &svc.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            }
            q.endpointslice.add(key.clone());
            q.endpoints.add(key.clone());
            q.mirroring.add(key);
        }
        Change::Slice(slice, deleted) => {
            let key = Key::of(&*slice);
            ctx.slice_writes.observe(
                &key,
                if deleted {
                    None
                } else {
                    slice.metadata.resource_version.as_deref()
                },
            );
            let labels = slice.labels();
            if let Some(svc) = labels.get(crate::endpointslice::LABEL_SERVICE_NAME) {
                let svc = Key::new(&key.ns, svc);
                match labels
                    .get(crate::endpointslice::LABEL_MANAGED_BY)
                    .map(String::as_str)
                {
                    Some(crate::endpointslice::MANAGED_BY) => q.endpointslice.add(svc),
                    Some(crate::mirroring::MANAGED_BY) => q.mirroring.add(svc),
                    _ => {}
                }
            }
            if !deleted && !slice.owner_references().is_empty() {
                q.gc.add(gc_key("EndpointSlice", &*slice));
            }
        }
        Change::Endpoints(ep, deleted) => {
            let key = Key::of(&*ep);
            q.endpoints.add(key.clone());
            q.mirroring.add(key);
            if deleted {
                if let Some(uid) = &ep.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            }
        }
        Change::ReplicaSet(rs, deleted) => {
            let key = Key::of(&*rs);
            gc_finalize(ctx, "ReplicaSet", &*rs);
            ctx.rs_writes.observe(
                &key,
                if deleted {
                    None
                } else {
                    rs.metadata.resource_version.as_deref()
                },
            );
            q.replicaset.add(key);
            if let Some(d) = controller_of(&*rs, "Deployment") {
                q.deployment.add(d);
            } else {
                for d in crate::deployment::selecting(&ctx.cache, &rs) {
                    q.deployment.add(d);
                }
            }
            if deleted {
                if let Some(uid) = &rs.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            } else if !rs.owner_references().is_empty() {
                q.gc.add(gc_key("ReplicaSet", &*rs));
            }
        }
        Change::Deployment(d, deleted) => {
            gc_finalize(ctx, "Deployment", &*d);
            q.deployment.add(Key::of(&*d));
            if deleted {
                if let Some(uid) = &d.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            }
        }
        Change::StatefulSet(s, deleted) => {
            gc_finalize(ctx, "StatefulSet", &*s);
            q.statefulset.add(Key::of(&*s));
            if deleted {
                if let Some(uid) = &s.metadata.uid {
                    gc_dependents(ctx, uid);
                }
            }
        }
        Change::Node(node, deleted) => {
            for p in ctx
                .cache
                .pods
                .state_filter(crate::scheduler::needs_scheduling)
            {
                q.scheduler.add(Key::of(&*p));
            }
            q.nodeipam.add(Key::of(&*node));
            if deleted {
                // Its range is free again for Nodes still waiting for one.
                for n in ctx.cache.nodes.state_filter(crate::nodeipam::waiting) {
                    q.nodeipam.add(Key::of(&*n));
                }
            }
            q.nodelifecycle.add(Key::of(&*node));
            crate::taint_eviction::on_node(ctx, &node);
            crate::podgc::on_node(ctx, &node, deleted);
            crate::workloads::on_node(ctx);
        }
        Change::Lease(lease, _) => crate::nodelifecycle::on_lease(ctx, &lease),
        Change::Workload(w) => crate::workloads::dispatch(ctx, w),
    }
}

//! The caches, queues and routing of the Job, CronJob, DaemonSet and
//! ReplicationController controllers, kept here so [`crate::runtime`] only
//! hands them their changes: a pod wakes the Job, DaemonSet or
//! ReplicationController that controls it (or, an orphan, the
//! ReplicationControllers that select it), a Job wakes its CronJob, and any
//! Node change wakes every DaemonSet.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use crate::runtime::{self, gc_key, Ctx, Key, Queue};

/// The informer caches of these kinds.
#[derive(Clone)]
pub struct Stores {
    pub jobs: Store<Job>,
    pub cronjobs: Store<CronJob>,
    pub daemonsets: Store<DaemonSet>,
    pub rcs: Store<ReplicationController>,
    /// DaemonSets' template history.
    pub revisions: Store<ControllerRevision>,
}

impl Stores {
    pub fn start(client: &Client, tx: &mpsc::UnboundedSender<runtime::Change>) -> Self {
        use runtime::Change::Workload as W;
        Stores {
            jobs: runtime::informer(client, tx.clone(), |o, d| W(Change::Job(o, d))),
            cronjobs: runtime::informer(client, tx.clone(), |o, d| W(Change::CronJob(o, d))),
            daemonsets: runtime::informer(client, tx.clone(), |o, d| W(Change::DaemonSet(o, d))),
            rcs: runtime::informer(client, tx.clone(), |o, d| W(Change::Rc(o, d))),
            revisions: runtime::informer(client, tx.clone(), |o, _| W(Change::Revision(o))),
        }
    }

    pub async fn wait_ready(&self) {
        let _ = self.jobs.wait_until_ready().await;
        let _ = self.cronjobs.wait_until_ready().await;
        let _ = self.daemonsets.wait_until_ready().await;
        let _ = self.rcs.wait_until_ready().await;
        let _ = self.revisions.wait_until_ready().await;
    }
}

/// One observed change of these kinds (`true`: deleted).
pub enum Change {
    Job(Arc<Job>, bool),
    CronJob(Arc<CronJob>, bool),
    DaemonSet(Arc<DaemonSet>, bool),
    Rc(Arc<ReplicationController>, bool),
    Revision(Arc<ControllerRevision>),
}

#[derive(Default)]
pub struct Queues {
    pub job: Arc<Queue>,
    pub cronjob: Arc<Queue>,
    pub daemonset: Arc<Queue>,
    pub rc: Arc<Queue>,
}

fn controller_of<K: Resource>(o: &K, kind: &str) -> Option<Key> {
    o.owner_references()
        .iter()
        .find(|r| r.controller == Some(true) && r.kind == kind)
        .map(|r| Key::new(o.meta().namespace.as_deref().unwrap_or(""), &r.name))
}

/// An owner deleted with `Orphan`/`Foreground` propagation waits for the
/// collector; one that is gone leaves its dependents to it.
fn deleted_owner<K: Resource>(ctx: &Ctx, kind: &str, o: &K, deleted: bool) {
    runtime::gc_finalize(ctx, kind, o);
    if deleted {
        if let Some(uid) = &o.meta().uid {
            runtime::gc_dependents(ctx, uid);
        }
    }
}

pub fn dispatch(ctx: &Ctx, change: Change) {
    let q = &ctx.queues.workloads;
    match change {
        Change::Job(job, deleted) => {
            q.job.add(Key::of(&*job));
            if let Some(cj) = controller_of(&*job, "CronJob") {
                q.cronjob.add(cj);
            }
            if !deleted && !job.owner_references().is_empty() {
                ctx.queues.gc.add(gc_key("Job", &*job));
            }
            deleted_owner(ctx, "Job", &*job, deleted);
        }
        Change::CronJob(cj, deleted) => {
            q.cronjob.add(Key::of(&*cj));
            deleted_owner(ctx, "CronJob", &*cj, deleted);
        }
        Change::DaemonSet(ds, deleted) => {
            q.daemonset.add(Key::of(&*ds));
            deleted_owner(ctx, "DaemonSet", &*ds, deleted);
        }
        Change::Rc(rc, deleted) => {
            q.rc.add(Key::of(&*rc));
            deleted_owner(ctx, "ReplicationController", &*rc, deleted);
        }
        Change::Revision(r) => {
            if let Some(ds) = controller_of(&*r, "DaemonSet") {
                q.daemonset.add(ds);
            }
        }
    }
}

pub fn on_pod(ctx: &Ctx, pod: &Pod) {
    let q = &ctx.queues.workloads;
    if let Some(j) = controller_of(pod, "Job") {
        q.job.add(j);
    }
    if let Some(ds) = controller_of(pod, "DaemonSet") {
        q.daemonset.add(ds);
    }
    match controller_of(pod, "ReplicationController") {
        Some(rc) => q.rc.add(rc),
        None => {
            for rc in crate::replicationcontroller::selecting(ctx, pod) {
                q.rc.add(rc);
            }
        }
    }
}

pub fn on_node(ctx: &Ctx) {
    for ds in ctx.cache.workloads.daemonsets.state() {
        ctx.queues.workloads.daemonset.add(Key::of(&*ds));
    }
}

pub fn enqueue_all(ctx: &Ctx) {
    let (s, q) = (&ctx.cache.workloads, &ctx.queues.workloads);
    for o in s.jobs.state() {
        q.job.add(Key::of(&*o));
        if !o.owner_references().is_empty() {
            ctx.queues.gc.add(gc_key("Job", &*o));
        }
    }
    for o in s.cronjobs.state() {
        q.cronjob.add(Key::of(&*o));
    }
    for o in s.daemonsets.state() {
        q.daemonset.add(Key::of(&*o));
    }
    for o in s.rcs.state() {
        q.rc.add(Key::of(&*o));
    }
    for o in s.revisions.state() {
        if !o.owner_references().is_empty() {
            ctx.queues.gc.add(gc_key("ControllerRevision", &*o));
        }
    }
}

/// The Jobs and ControllerRevisions that `uid` owns, for the collector.
pub fn gc_dependents(ctx: &Ctx, uid: &str) {
    let owns = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter().any(|r| r.uid == uid)
    };
    let s = &ctx.cache.workloads;
    for j in s.jobs.state_filter(|j| owns(j.owner_references())) {
        ctx.queues.gc.add(gc_key("Job", &*j));
    }
    for r in s.revisions.state_filter(|r| owns(r.owner_references())) {
        ctx.queues.gc.add(gc_key("ControllerRevision", &*r));
    }
}

/// The Jobs `cj` controls.
pub fn jobs_of(ctx: &Ctx, ns: &str, uid: &str) -> Vec<Arc<Job>> {
    ctx.cache.workloads.jobs.state_filter(|j| {
        j.metadata.namespace.as_deref() == Some(ns)
            && j.owner_references()
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == uid)
    })
}

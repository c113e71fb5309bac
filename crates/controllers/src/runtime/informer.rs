//! The shared informers: one kube-rs reflector per kind, each feeding its
//! changes to the dispatcher. Apart from the dispatcher, which only reads the
//! stores and the changes they send.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::Change;

/// The informer caches every controller reads from.
#[derive(Clone)]
pub struct Cache {
    pub pods: Store<Pod>,
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub endpoints: Store<Endpoints>,
    pub replicasets: Store<ReplicaSet>,
    pub deployments: Store<Deployment>,
    pub statefulsets: Store<StatefulSet>,
    pub nodes: Store<Node>,
    /// Node heartbeats: the Leases in `kube-node-lease` only.
    pub leases: Store<Lease>,
    /// Jobs, CronJobs, DaemonSets, ReplicationControllers.
    pub workloads: crate::workloads::Stores,
}

impl Cache {
    pub fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state_filter(|p| p.metadata.namespace.as_deref() == Some(ns))
    }

    pub(super) async fn wait_ready(&self) {
        let _ = self.pods.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
        let _ = self.endpoints.wait_until_ready().await;
        let _ = self.replicasets.wait_until_ready().await;
        let _ = self.deployments.wait_until_ready().await;
        let _ = self.statefulsets.wait_until_ready().await;
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.leases.wait_until_ready().await;
        self.workloads.wait_ready().await;
    }
}

pub(crate) fn informer<K>(
    client: &Client,
    tx: mpsc::UnboundedSender<Change>,
    wrap: fn(Arc<K>, bool) -> Change,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    informer_on(Api::all(client.clone()), tx, wrap)
}

pub(super) fn informer_on<K>(
    api: Api<K>,
    tx: mpsc::UnboundedSender<Change>,
    wrap: fn(Arc<K>, bool) -> Change,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        loop {
            // A dropped `run` (a leader that lost its Lease) closes the channel:
            // the watch stops then, not at its next event.
            let ev = tokio::select! {
                ev = stream.next() => ev,
                () = tx.closed() => return,
            };
            let Some(ev) = ev else { return };
            let change = match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    wrap(Arc::new(o), false)
                }
                Ok(watcher::Event::Delete(o)) => wrap(Arc::new(o), true),
                Ok(watcher::Event::InitDone) => Change::Resynced,
                Ok(watcher::Event::Init) => continue,
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                    continue;
                }
            };
            if tx.send(change).is_err() {
                return;
            }
        }
    });
    reader
}

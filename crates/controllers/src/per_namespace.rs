//! The shape shared by controllers that keep one named object in every live
//! namespace (upstream's serviceaccounts-controller and
//! root-ca-cert-publisher): a namespace that appears or changes, or the
//! object being changed or deleted, queues the namespace; its reconcile
//! creates the object if missing and rewrites it if it differs from what it
//! should be. Terminating namespaces are left alone (the API server refuses
//! new objects in them anyway).
//!
//! Each such controller watches only its own object (a `metadata.name` field
//! selector), so it costs one small watch per kind, not a cache of every
//! ConfigMap in the cluster.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::runtime::{Key, Queue};

/// One object every namespace should hold.
pub struct Ensure<K> {
    /// The controller's name, for logs.
    pub controller: &'static str,
    /// The object's name in every namespace.
    pub name: &'static str,
    /// The object as it should be in `namespace` (name and namespace set here).
    pub desired: Box<dyn Fn(&str) -> K + Send + Sync>,
    /// Whether an existing object already is as it should be; if not it is
    /// replaced by `desired` (keeping its metadata otherwise).
    pub up_to_date: fn(have: &K, want: &K) -> bool,
    /// Copies what `desired` decides into an existing object.
    pub merge: fn(have: &mut K, want: K),
}

fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

/// Feeds the queue from a watch, mapping each object to the namespace to look at.
fn informer<K>(
    api: Api<K>,
    cfg: watcher::Config,
    queue: Arc<Queue>,
    key: fn(&K) -> Option<Key>,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, cfg).default_backoff());
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(
                    watcher::Event::Apply(o)
                    | watcher::Event::InitApply(o)
                    | watcher::Event::Delete(o),
                ) => {
                    if let Some(k) = key(&o) {
                        queue.add(k);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying")
                }
            }
        }
    });
    reader
}

/// Runs the controller until dropped: the caller's task owns the watches
/// (they stop with the runtime when a leader steps down).
pub async fn run<K>(informers: Client, writer: Client, ensure: Ensure<K>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static,
{
    let queue = Arc::new(Queue::default());
    let namespaces = informer(
        Api::<Namespace>::all(informers.clone()),
        watcher::Config::default(),
        queue.clone(),
        |ns| Some(Key::new("", &ns.name_any())),
    );
    let objects = informer(
        Api::<K>::all(informers),
        watcher::Config::default().fields(&format!("metadata.name={}", ensure.name)),
        queue.clone(),
        |o| o.namespace().map(|ns| Key::new("", &ns)),
    );
    let _ = namespaces.wait_until_ready().await;
    let _ = objects.wait_until_ready().await;
    for ns in namespaces.state() {
        queue.add(Key::new("", &ns.name_any()));
    }
    let mut failures: HashMap<Key, u32> = HashMap::new();
    loop {
        let key = queue.next().await;
        match reconcile(&writer, &ensure, &namespaces, &objects, &key.name).await {
            Ok(()) => {
                failures.remove(&key);
            }
            Err(e) => {
                // Backoff per namespace, as the other controllers' queues.
                let n = failures.entry(key.clone()).or_insert(0);
                *n = (*n + 1).min(13);
                let delay = Duration::from_millis(5u64 << *n).min(Duration::from_secs(30));
                tracing::debug!(controller = ensure.controller, namespace = %key.name, error = %e, ?delay, "reconcile failed; retrying");
                queue.add_after(key, delay);
            }
        }
    }
}

async fn reconcile<K>(
    client: &Client,
    ensure: &Ensure<K>,
    namespaces: &Store<Namespace>,
    objects: &Store<K>,
    ns: &str,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let Some(namespace) = namespaces.get(&ObjectRef::new(ns)) else {
        return Ok(());
    };
    if terminating(&namespace) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let want = (ensure.desired)(ns);
    let result = match objects.get(&ObjectRef::new(ensure.name).within(ns)) {
        None => {
            tracing::info!(
                controller = ensure.controller,
                namespace = ns,
                name = ensure.name,
                "creating"
            );
            api.create(&PostParams::default(), &want).await.map(|_| ())
        }
        Some(have) if (ensure.up_to_date)(&have, &want) => Ok(()),
        Some(have) => {
            let mut next = (*have).clone();
            (ensure.merge)(&mut next, want);
            api.replace(ensure.name, &PostParams::default(), &next)
                .await
                .map(|_| ())
        }
    };
    match result {
        // The cache was behind (the watch event follows), or the namespace
        // began terminating meanwhile: nothing to do.
        Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => Ok(()),
        other => other,
    }
}

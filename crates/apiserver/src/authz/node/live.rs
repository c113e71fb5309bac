//! The node graph the API server decides with, kept current from the store
//! as upstream's graph populator keeps it from informers: pods (and
//! PersistentVolumes, once the registry serves them) are listed once into a
//! fresh [`Graph`], then every watch event updates it in place under a write
//! lock held for that one change. A decision takes the read lock for a map
//! lookup or two: it never waits on the store. A watch that falls behind or
//! fails starts over from a fresh listing.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde_json::Value;
use skiff_api::registry::{self, Resource};
use skiff_api::StatusError;
use skiff_store::{Event, Revision, Watch};
use tokio::sync::watch;

use super::Graph;
use crate::objects;
use crate::server::Api;

/// After a failed listing (store unreachable), before the next try.
const RETRY: Duration = Duration::from_secs(1);

/// The graph shared by every request, and whether it was listed yet.
pub struct NodeGraph {
    graph: RwLock<Graph>,
    /// Counts listings, so a waiter can tell when the first one is in.
    listed: watch::Sender<u64>,
    /// Woken by every change, for a refusal that may only be the graph lagging
    /// behind the store ([`NodeGraph::changed`]).
    change: tokio::sync::Notify,
}

impl Default for NodeGraph {
    fn default() -> Self {
        Self::from_graph(Graph::default())
    }
}

impl NodeGraph {
    /// A graph that starts as `graph` (tests build one by hand).
    pub fn from_graph(graph: Graph) -> Self {
        Self {
            graph: RwLock::new(graph),
            listed: watch::channel(0).0,
            change: tokio::sync::Notify::new(),
        }
    }

    /// The graph as it is now. A poisoned lock only means a writer panicked
    /// between two map updates of one change; the maps are still whole.
    pub fn read(&self) -> RwLockReadGuard<'_, Graph> {
        self.graph.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The graph to change (the populator; tests).
    pub fn write(&self) -> RwLockWriteGuard<'_, Graph> {
        self.graph.write().unwrap_or_else(|p| p.into_inner())
    }

    fn replace(&self, graph: Graph) {
        *self.write() = graph;
        self.listed.send_modify(|n| *n += 1);
        self.change.notify_waiters();
    }

    /// Waits until the graph next changes, at most `timeout`.
    ///
    /// The graph follows the store's watch, as any client of the API does, so a
    /// node can learn of a pod bound to it (and ask for its Secret) a moment
    /// before the graph has the pod. Upstream's kubelet then gets a 403 and
    /// retries; here a node's refusal waits for the graph's next change (or the
    /// timeout, should the change have come just before the wait) and is decided
    /// again.
    pub async fn changed(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.change.notified()).await;
    }

    /// Waits until the first listing is in, at most `timeout`; whether it is.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.listed.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// How many listings were made (tests wait for a relist with it).
    pub fn listings(&self) -> u64 {
        *self.listed.borrow()
    }
}

/// The kinds the graph is built from.
#[derive(Clone, Copy)]
enum Source {
    Pods,
    PersistentVolumes,
}

impl Source {
    /// Applies one watch event; the object is decoded before the lock is taken.
    fn apply(self, graph: &NodeGraph, event: &Event, resource: &Resource) {
        let (kv, deleted) = match event {
            Event::Put { kv, .. } => (kv, false),
            Event::Delete { kv } => (kv, true),
        };
        let obj = match objects::decode_as(resource, kv) {
            Ok(obj) => obj,
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "node graph: object unreadable");
                return;
            }
        };
        let meta = |f: &str| {
            obj.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        {
            let mut g = graph.write();
            match (self, deleted) {
                (Source::Pods, false) => g.put_pod(&obj),
                (Source::Pods, true) => g.remove_pod(&meta("namespace"), &meta("name")),
                (Source::PersistentVolumes, false) => g.put_pv(&obj),
                (Source::PersistentVolumes, true) => g.remove_pv(&meta("name")),
            }
        }
        graph.change.notify_waiters();
    }
}

/// The resources the graph follows: pods, and PVs where the registry has them.
fn sources() -> Vec<(Source, &'static Resource)> {
    let mut out = Vec::new();
    if let Some(r) = registry::lookup("", "v1", "pods") {
        out.push((Source::Pods, r));
    }
    if let Some(r) = registry::lookup("", "v1", "persistentvolumes") {
        out.push((Source::PersistentVolumes, r));
    }
    out
}

/// A fresh graph from a listing of every source, and each one's revision.
async fn list_all(
    api: &Api,
    sources: &[(Source, &'static Resource)],
) -> Result<(Graph, Vec<Revision>), StatusError> {
    let mut graph = Graph::default();
    let mut revs = Vec::new();
    for (source, r) in sources {
        let page = api.objects.list(r, None, None, None).await?;
        revs.push(page.revision);
        for obj in &page.items {
            match source {
                Source::Pods => graph.put_pod(obj),
                Source::PersistentVolumes => graph.put_pv(obj),
            }
        }
    }
    Ok((graph, revs))
}

/// The next event of any watch, with the index of the watch it came from.
async fn next_event(watches: &mut [Watch]) -> (usize, Option<skiff_store::Result<Event>>) {
    let nexts = watches.iter_mut().map(|w| Box::pin(w.next()));
    let (event, i, _) = futures::future::select_all(nexts).await;
    (i, event)
}

/// Keeps `api.node_graph` current for as long as the server runs.
pub async fn run(api: std::sync::Arc<Api>) {
    let sources = sources();
    if sources.is_empty() {
        tracing::error!("pods missing from the registry; nodes reach no secrets");
        return;
    }
    loop {
        let (graph, revs) = match list_all(&api, &sources).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "listing pods for the node graph failed; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        tracing::debug!(pods = graph.pod_count(), "node graph listed");
        api.node_graph.replace(graph);
        let opened: Result<Vec<Watch>, StatusError> = sources
            .iter()
            .zip(revs)
            .map(|((_, r), rev)| api.objects.watch(r, None, rev))
            .collect();
        let Ok(mut watches) = opened else {
            tracing::debug!("node graph watch could not start; listing again");
            tokio::time::sleep(RETRY).await;
            continue;
        };
        loop {
            let (i, event) = next_event(&mut watches).await;
            let Some(Ok(event)) = event else {
                break;
            };
            let (source, resource) = sources[i];
            source.apply(&api.node_graph, &event, resource);
        }
        tracing::debug!("node graph watch ended (compacted or lagged); listing again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_for_the_graph_ends_at_its_next_change_or_the_timeout() {
        let graph = std::sync::Arc::new(NodeGraph::default());
        let changer = graph.clone();
        let started = tokio::time::Instant::now();
        let change = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            changer.replace(Graph::default());
        });
        graph.changed(Duration::from_secs(30)).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "woken by the change"
        );
        change.await.expect("changer");
        let started = tokio::time::Instant::now();
        graph.changed(Duration::from_millis(50)).await;
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "no change: the timeout"
        );
    }
}

//! The ConfigMaps and Secrets the node's pods show in volumes, each watched on
//! its own, as kubelet's `Watch` change-detection strategy does
//! (`pkg/kubelet/util/manager/watch_based_manager.go`): one single-object watch
//! (`fieldSelector=metadata.name=<name>` in its namespace) per referenced
//! (kind, namespace, name), shared by every pod of the node that references it,
//! started with the first such pod and stopped when the last one goes.
//!
//! Watching only these is also all a node may do: the Node authorizer refuses a
//! node any cluster-wide or namespace-wide read of Secrets and ConfigMaps, and a
//! single-object one of an object no pod bound to it references.
//!
//! Only volumes are followed: environment variables (`env`, `envFrom`) are read
//! once when a container starts (as kubelet's), with a GET the Node authorizer
//! allows, and never re-read on a change, so they need no watch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;

use crate::pod::{lock, Msg};
use crate::volumes::Source;
use crate::Agent;

/// The kinds of object a volume's content is read from that can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    ConfigMap,
    Secret,
}

/// One object a pod's volumes read: what a watch is shared by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl SourceRef {
    /// What the pod workers are told changed.
    pub fn source(&self) -> Source {
        match self.kind {
            Kind::ConfigMap => Source::ConfigMap(self.name.clone()),
            Kind::Secret => Source::Secret(self.name.clone()),
        }
    }
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
        };
        write!(f, "{kind} {}/{}", self.namespace, self.name)
    }
}

/// The ConfigMaps and Secrets whose content `pod`'s volumes show: `configMap`
/// and `secret` volumes and the `configMap` and `secret` sources of `projected`
/// ones. (A pod's volumes are immutable, so this is fixed for the pod's life.)
pub fn referenced(pod: &Pod) -> BTreeSet<SourceRef> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let reference = |kind, name: &str| {
        (!name.is_empty()).then(|| SourceRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    };
    let mut out = BTreeSet::new();
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    for v in volumes {
        if let Some(c) = &v.config_map {
            out.extend(reference(Kind::ConfigMap, &c.name));
        }
        if let Some(s) = &v.secret {
            let name = s.secret_name.as_deref().unwrap_or_default();
            out.extend(reference(Kind::Secret, name));
        }
        let projected = v.projected.iter().flat_map(|p| p.sources.iter().flatten());
        for s in projected {
            if let Some(c) = &s.config_map {
                out.extend(reference(Kind::ConfigMap, &c.name));
            }
            if let Some(c) = &s.secret {
                out.extend(reference(Kind::Secret, &c.name));
            }
        }
    }
    out
}

/// What a reconcile does: the watches to start and those to stop.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub start: Vec<SourceRef>,
    pub stop: Vec<SourceRef>,
}

/// The difference between the watches running and those the pods want.
pub fn plan<'a>(
    running: impl IntoIterator<Item = &'a SourceRef>,
    wanted: &BTreeSet<SourceRef>,
) -> Plan {
    let running: BTreeSet<&SourceRef> = running.into_iter().collect();
    Plan {
        start: wanted
            .iter()
            .filter(|r| !running.contains(r))
            .cloned()
            .collect(),
        stop: running
            .into_iter()
            .filter(|r| !wanted.contains(*r))
            .cloned()
            .collect(),
    }
}

/// The running watches, one per referenced object.
#[derive(Default)]
pub struct SourceWatches {
    running: Mutex<BTreeMap<SourceRef, tokio::task::AbortHandle>>,
}

impl SourceWatches {
    /// Starts a watch for each object a pod of the agent references that has
    /// none, and stops those no pod references any more. Called when a pod is
    /// added and when one is removed.
    pub fn reconcile(&self, agent: &Arc<Agent>) {
        // The running set is held while the pods are read, so two reconciles
        // never apply snapshots of the pods out of order.
        let mut running = lock(&self.running);
        let wanted: BTreeSet<SourceRef> = lock(&agent.pods)
            .values()
            .flat_map(|h| h.sources.iter().cloned())
            .collect();
        let Plan { start, stop } = plan(running.keys(), &wanted);
        for r in stop {
            if let Some(task) = running.remove(&r) {
                tracing::info!(source = %r, "stopped watching a volume source: no pod references it");
                task.abort();
            }
        }
        for r in start {
            let client = agent.client.clone();
            let weak = Arc::downgrade(agent);
            let task = match r.kind {
                Kind::ConfigMap => tokio::spawn(watch_one::<ConfigMap>(client, weak, r.clone())),
                Kind::Secret => tokio::spawn(watch_one::<Secret>(client, weak, r.clone())),
            };
            tracing::info!(source = %r, "watching a volume source for the pods that reference it");
            running.insert(r, task.abort_handle());
        }
    }

    /// The objects watched now.
    pub fn watched(&self) -> Vec<SourceRef> {
        lock(&self.running).keys().cloned().collect()
    }
}

/// Watches one object's metadata (each pod reads what it uses, and only if it
/// does) and tells the pods that reference it when it changes.
async fn watch_one<K>(client: kube::Client, agent: Weak<Agent>, source: SourceRef)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::namespaced(client, &source.namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", source.name));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    // The first list is what the pods read when their volumes were made; a
    // relist after a lost watch may hide a change (a deletion shows as nothing
    // at all), so its end counts as a change. So does the first list that
    // follows a failed start (a 403 while the server's node graph has not yet
    // seen the pod): the object may have changed since the pods read it.
    let mut first_list = true;
    while let Some(ev) = stream.next().await {
        let changed = match ev {
            Ok(Event::Apply(_) | Event::Delete(_)) => true,
            Ok(Event::InitDone) => !std::mem::replace(&mut first_list, false),
            Ok(Event::Init | Event::InitApply(_)) => false,
            Err(e) => {
                tracing::warn!(source = %source, error = %e, "a volume source watch failed");
                first_list = false;
                false
            }
        };
        if !changed {
            continue;
        }
        let Some(agent) = agent.upgrade() else {
            return;
        };
        for h in lock(&agent.pods)
            .values()
            .filter(|h| h.sources.contains(&source))
        {
            let _ = h.tx.send(Msg::SourceChanged(source.source()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns1"},
            "spec": spec,
        }))
        .expect("pod")
    }

    fn r(kind: Kind, namespace: &str, name: &str) -> SourceRef {
        SourceRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn references_of_volumes_and_projected_sources_only() {
        let p = pod(json!({
            "containers": [{
                "name": "c",
                // Read at container start only: not followed, not watched.
                "env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}}],
                "envFrom": [{"secretRef": {"name": "env-secret"}}],
            }],
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [
                {"name": "a", "configMap": {"name": "cm-a"}},
                {"name": "b", "secret": {"secretName": "secret-b"}},
                {"name": "c", "projected": {"sources": [
                    {"configMap": {"name": "cm-c"}},
                    {"secret": {"name": "secret-c"}},
                    {"downwardAPI": {"items": [{"path": "l", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                    {"serviceAccountToken": {"path": "token"}},
                ]}},
                // The same ConfigMap twice is one reference.
                {"name": "d", "configMap": {"name": "cm-a", "optional": true}},
                {"name": "e", "emptyDir": {}},
                {"name": "f", "downwardAPI": {"items": []}},
                // A secret volume without a name references nothing.
                {"name": "g", "secret": {}},
            ],
        }));
        let got: Vec<SourceRef> = referenced(&p).into_iter().collect();
        assert_eq!(
            got,
            vec![
                r(Kind::ConfigMap, "ns1", "cm-a"),
                r(Kind::ConfigMap, "ns1", "cm-c"),
                r(Kind::Secret, "ns1", "secret-b"),
                r(Kind::Secret, "ns1", "secret-c"),
            ]
        );
    }

    #[test]
    fn a_pod_without_volumes_references_nothing() {
        assert!(referenced(&pod(json!({"containers": [{"name": "c"}]}))).is_empty());
        assert!(referenced(&Pod::default()).is_empty());
    }

    #[test]
    fn the_change_told_is_the_one_volumes_read() {
        assert_eq!(
            r(Kind::ConfigMap, "ns1", "x").source(),
            Source::ConfigMap("x".into())
        );
        assert_eq!(
            r(Kind::Secret, "ns1", "x").source(),
            Source::Secret("x".into())
        );
    }

    #[test]
    fn plan_starts_the_new_and_stops_the_gone() {
        let shared = r(Kind::ConfigMap, "ns1", "shared");
        let gone = r(Kind::Secret, "ns1", "gone");
        let new = r(Kind::Secret, "ns1", "new");
        // Same name, other namespace or kind: other objects, other watches.
        let other_ns = r(Kind::ConfigMap, "ns2", "shared");
        let other_kind = r(Kind::Secret, "ns1", "shared");
        let running = [shared.clone(), gone.clone()];
        let wanted: BTreeSet<SourceRef> =
            [shared, new.clone(), other_ns.clone(), other_kind.clone()]
                .into_iter()
                .collect();
        let p = plan(&running, &wanted);
        assert_eq!(p.start, vec![other_ns, new, other_kind]);
        assert_eq!(p.stop, vec![gone]);
    }

    #[test]
    fn plan_of_nothing_changed_is_empty() {
        let a = r(Kind::ConfigMap, "ns1", "a");
        let wanted: BTreeSet<SourceRef> = [a.clone()].into_iter().collect();
        assert_eq!(plan(&[a], &wanted), Plan::default());
        assert_eq!(plan(&[], &BTreeSet::new()), Plan::default());
        // The last pod gone: every watch stops.
        let b = r(Kind::Secret, "ns1", "b");
        assert_eq!(
            plan(std::slice::from_ref(&b), &BTreeSet::new()),
            Plan {
                start: vec![],
                stop: vec![b]
            }
        );
    }
}

//! Events about pods, as kubelet records them: queued while a pod's worker acts,
//! and posted after its status update, so the few writes that make a pod Running
//! and Ready do not wait behind Event writes in the API server's store.

use std::sync::Mutex;

use k8s_openapi::api::core::v1::Event;
use kube::Api;
use serde_json::{json, Value};

use crate::pod::lock;

/// Who the events are about, and where they go.
pub struct Subject<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub node_name: &'a str,
}

/// Events recorded but not posted yet.
#[derive(Default)]
pub struct Pending {
    events: Mutex<Vec<Value>>,
}

impl Pending {
    /// Queues an Event about the pod (or one of its containers, by field path).
    pub fn record(
        &self,
        subject: &Subject<'_>,
        warning: bool,
        reason: &str,
        message: String,
        field_path: Option<String>,
    ) {
        let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let suffix: u64 = rand::random();
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{}.{suffix:016x}", subject.name),
                         "namespace": subject.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": subject.name,
                               "namespace": subject.namespace, "uid": subject.uid,
                               "fieldPath": field_path},
            "reason": reason,
            "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": "kubelet", "host": subject.node_name},
            "reportingComponent": "kubelet",
            "reportingInstance": subject.node_name,
            "firstTimestamp": t,
            "lastTimestamp": t,
            "count": 1,
        });
        lock(&self.events).push(ev);
    }

    /// Posts what is queued, in order, from a task of its own: fire and forget, so
    /// a slow API never stalls the pod.
    pub fn post(&self, client: &kube::Client, namespace: &str) {
        let events = std::mem::take(&mut *lock(&self.events));
        if events.is_empty() {
            return;
        }
        let api: Api<Event> = Api::namespaced(client.clone(), namespace);
        tokio::spawn(async move {
            for ev in events {
                let Ok(ev) = serde_json::from_value::<Event>(ev) else {
                    continue;
                };
                if let Err(e) = api.create(&Default::default(), &ev).await {
                    tracing::debug!(error = %e, "posting an event");
                }
            }
        });
    }
}

//! core/v1 Events, which `kubectl describe` shows (it reads `events` in v1 with a
//! field selector on `involvedObject`).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use crate::clients::Clients;

/// Writes Events in the background: a failed Event write never fails a reconcile.
#[derive(Clone)]
pub struct Recorder {
    clients: Clients,
}

impl Recorder {
    /// Each Event is written by the controller that reports it (its
    /// `component`), as upstream's per-controller recorders.
    pub fn new(clients: Clients) -> Self {
        Recorder { clients }
    }

    /// Records `reason`/`message` about `obj` from `component` (e.g.
    /// `deployment-controller`); `warning` selects type Warning over Normal.
    pub fn record<K>(&self, obj: &K, component: &str, warning: bool, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let ns = obj.namespace().unwrap_or_else(|| "default".into());
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let name = obj.name_any();
        let involved = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(name.clone()),
            namespace: obj.namespace(),
            uid: obj.uid(),
            resource_version: obj.resource_version(),
            ..Default::default()
        };
        let event = Event {
            metadata: ObjectMeta {
                // Upstream names events `<object>.<unique hex>`.
                name: Some(format!("{name}.{:x}", rand::random::<u64>())),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            source: Some(EventSource {
                component: Some(component.into()),
                host: None,
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(component.into()),
            reporting_instance: Some(component.into()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.clients.for_event_component(component), &ns);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, "writing an event");
            }
        });
    }
}

//! Events on served Ingresses, each told once per Ingress generation (as
//! ingress-nginx does): a Normal `Sync` when a generation is first served, and
//! each [`Problem`] the route table or the certificates found.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PostParams};
use kube::ResourceExt;
use serde_json::json;

use crate::routes::Problem;

/// The component events are reported as.
pub const COMPONENT: &str = "skiff-ingress";

pub struct Recorder {
    client: kube::Client,
    node: String,
    /// `(uid, generation, reason, message)` already told.
    told: HashSet<(String, i64, &'static str, String)>,
}

impl Recorder {
    pub fn new(client: kube::Client, node: &str) -> Self {
        Recorder {
            client,
            node: node.into(),
            told: HashSet::new(),
        }
    }

    /// Tells what is new in `problems` (plus `Sync` for new generations of
    /// `served`); `find` gives the Ingress a problem is about.
    pub fn tell<'a>(
        &mut self,
        served: impl IntoIterator<Item = &'a Ingress>,
        problems: &[Problem],
        find: impl Fn(&str, &str) -> Option<&'a Ingress>,
    ) {
        for ing in served {
            self.once(ing, false, "Sync", "Scheduled for sync".to_string());
        }
        for p in problems {
            if let Some(ing) = find(&p.ingress.namespace, &p.ingress.name) {
                self.once(ing, p.warning, p.reason, p.message.clone());
            }
        }
    }

    fn once(&mut self, ing: &Ingress, warning: bool, reason: &'static str, message: String) {
        let uid = ing.uid().unwrap_or_default();
        let generation = ing.metadata.generation.unwrap_or(0);
        let key = (uid.clone(), generation, reason, message.clone());
        if !self.told.insert(key) {
            return;
        }
        if warning {
            tracing::warn!(ingress = %format!("{}/{}", ing.namespace().unwrap_or_default(), ing.name_any()), reason, "{message}");
        }
        let ns = ing.namespace().unwrap_or_else(|| "default".into());
        let name = ing.name_any();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{name}.{:016x}", rand::random::<u64>()), "namespace": ns},
            "involvedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                               "name": name, "namespace": ns, "uid": uid,
                               "resourceVersion": ing.resource_version()},
            "reason": reason,
            "message": message,
            "type": if warning { "Warning" } else { "Normal" },
            "source": {"component": COMPONENT, "host": self.node},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.node,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let Ok(event) = serde_json::from_value::<Event>(event) else {
            return;
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, "writing an ingress event");
            }
        });
    }
}

//! `status.loadBalancer.ingress` of every served Ingress: the addresses of
//! the `kube-system/skiff-ingress` Service, as ingress-nginx publishes its
//! own Service's (`--publish-service`).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::routes::IngressRef;

/// The Service's load-balancer entries (`ip` or `hostname`), as JSON.
pub fn addresses(svc: Option<&Service>) -> Vec<Value> {
    let entries = svc
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    entries
        .into_iter()
        .flatten()
        .filter_map(|e| match (&e.ip, &e.hostname) {
            (Some(ip), _) => Some(json!({"ip": ip})),
            (None, Some(h)) => Some(json!({"hostname": h})),
            _ => None,
        })
        .collect()
}

/// Whether `ing`'s status already says `want`.
pub fn current(ing: &Ingress, want: &[Value]) -> bool {
    let have = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|v| {
            v.iter()
                .map(|e| match (&e.ip, &e.hostname) {
                    (Some(ip), _) => json!({"ip": ip}),
                    (None, Some(h)) => json!({"hostname": h}),
                    _ => json!({}),
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    have == want
}

/// What the writer is asked: these Ingresses should say these addresses.
pub type Wanted = (Vec<IngressRef>, Vec<Value>);

/// Writes the statuses the latest [`Wanted`] asks for.
pub async fn write(client: kube::Client, mut rx: watch::Receiver<Wanted>) {
    while rx.changed().await.is_ok() {
        let (ingresses, want) = rx.borrow_and_update().clone();
        for i in ingresses {
            let api: Api<Ingress> = Api::namespaced(client.clone(), &i.namespace);
            let patch = json!({"status": {"loadBalancer": {"ingress": want}}});
            if let Err(e) = api
                .patch_status(&i.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(ingress = %format!("{}/{}", i.namespace, i.name), error = %e, "writing ingress status");
            }
        }
    }
}

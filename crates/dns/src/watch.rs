//! Reflectors on Services and EndpointSlices feeding the index, and the
//! kube-dns EndpointSlice that leads the `kube-dns` ClusterIP to this node.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::index::{Index, Zone};
use crate::metrics::Metrics;

/// Keeps `current` equal to the index of what the API server holds: `None`
/// until both reflectors have listed once, then rebuilt and swapped after
/// every change. Changes that arrive during a rebuild are folded into the
/// next one, so a burst costs one rebuild, not one per event.
pub async fn keep_current(
    client: Client,
    zone: Zone,
    current: Arc<ArcSwapOption<Index>>,
    metrics: Arc<Metrics>,
) {
    let changed = Arc::new(Changed::default());
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let svc_stream = reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    let slice_stream = reflector(
        slice_writer,
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    tokio::spawn(svc_stream.for_each(notify(changed.clone())));
    tokio::spawn(slice_stream.for_each(notify(changed.clone())));

    if services.wait_until_ready().await.is_err() || slices.wait_until_ready().await.is_err() {
        return;
    }
    let mut serial: u32 = 1;
    // The listing's own events are not changes to time.
    let _ = changed.first_pending.lock().map(|mut p| p.take());
    let index = Index::build(zone.clone(), &services.state(), &slices.state(), serial);
    metrics.set_services(index.services.len());
    current.store(Some(Arc::new(index)));
    metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    serial = serial.wrapping_add(1);
    loop {
        changed.notify.notified().await;
        // Programming latency, our share: from the first event not yet in an
        // index to the swap of the index that has it. The reflector updates
        // its store before it hands the event on, so this build includes it.
        let since = changed.first_pending.lock().ok().and_then(|mut p| p.take());
        let start = Instant::now();
        let index = Index::build(zone.clone(), &services.state(), &slices.state(), serial);
        metrics.set_services(index.services.len());
        current.store(Some(Arc::new(index)));
        if let Some(t) = since {
            metrics.programmed(t.elapsed());
        }
        tracing::debug!(took = ?start.elapsed(), serial, "dns index rebuilt");
        serial = serial.wrapping_add(1);
    }
}

/// Wakes the rebuild loop, remembering when the oldest unapplied change came.
#[derive(Default)]
struct Changed {
    notify: Notify,
    first_pending: std::sync::Mutex<Option<Instant>>,
}

/// A stream consumer that wakes the rebuild loop on every event.
fn notify<K>(
    changed: Arc<Changed>,
) -> impl FnMut(Result<watcher::Event<K>, watcher::Error>) -> std::future::Ready<()> {
    move |ev| {
        match ev {
            Ok(_) => {
                if let Ok(mut p) = changed.first_pending.lock() {
                    p.get_or_insert_with(Instant::now);
                }
                changed.notify.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "dns watch"),
        }
        std::future::ready(())
    }
}

/// Publishes (and keeps re-asserting) this node's EndpointSlice for the
/// `kube-system/kube-dns` service, pointing at `ip`, where the server listens.
pub async fn publish_kube_dns(client: Client, node: String, ip: IpAddr) {
    let api: Api<EndpointSlice> = Api::namespaced(client, "kube-system");
    let name = format!("kube-dns-{}", sanitize(&node));
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let slice = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {
                "kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "skiff-dns",
            },
        },
        "addressType": family,
        "endpoints": [{
            "addresses": [ip.to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": node,
        }],
        "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            {"name": "metrics", "port": 9153, "protocol": "TCP"},
        ],
    });
    let params = PatchParams::apply("skiff-dns").force();
    let mut delay = Duration::from_millis(200);
    loop {
        match api.patch(&name, &params, &Patch::Apply(&slice)).await {
            Ok(_) => {
                tracing::info!(slice = %name, address = %ip, "kube-dns endpoint published");
                // Re-assert now and then, in case someone deleted or edited it.
                delay = Duration::from_secs(60);
            }
            Err(e) => {
                tracing::warn!(slice = %name, error = %e, "cannot publish the kube-dns endpoint");
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// A node name as an object-name suffix (DNS-1123 subdomain characters).
fn sanitize(node: &str) -> String {
    let s: String = node
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches(|c| c == '-' || c == '.')
        .chars()
        .take(200)
        .collect()
}

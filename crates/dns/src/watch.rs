//! Watches on Services and EndpointSlices feeding the index, and the
//! kube-dns EndpointSlice that leads the `kube-dns` ClusterIP to this node.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::index::{Index, Zone};
use crate::metrics::Metrics;
use crate::sources::Sources;
use skiff_watch::{follow_burst, Burst, Coalesce};

/// Keeps `current` equal to the index of what the API server holds: `None`
/// until both kinds have been listed once, then updated after every change.
/// Events that are already waiting when one arrives go into the same update,
/// so a burst costs one new index, not one per event; an update re-reads only
/// the services that changed (a list rebuilds everything).
pub async fn keep_current(
    client: Client,
    zone: Zone,
    current: Arc<ArcSwapOption<Index>>,
    metrics: Arc<Metrics>,
) {
    let services = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(Watched::Service);
    let slices = watcher(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(Watched::Slice);
    let mut events = std::pin::pin!(futures::stream::select(services, slices));
    let mut sources = Sources::default();
    let mut serial: u32 = 1;
    while let Some(first) = events.next().await {
        // Programming latency, our share: from the first event not yet in an
        // index to the swap of the index that has it.
        let since = Instant::now();
        let mut listed = apply(&mut sources, first);
        // Only what is already here: an index swap is cheaper than any wait.
        let burst = follow_burst(&mut events, Coalesce::READY_ONLY, |ev| {
            listed |= apply(&mut sources, ev);
        })
        .await;
        if burst == Burst::Ended {
            return;
        }
        if !sources.synced() || !sources.changed() {
            continue;
        }
        let first_sync = current.load().is_none();
        let index = sources.index(current.load().as_deref(), &zone, serial);
        metrics.set_services(index.services.len());
        current.store(Some(Arc::new(index)));
        if first_sync {
            metrics
                .ready
                .store(true, std::sync::atomic::Ordering::Release);
        } else if !listed {
            // A list's own events are not changes to time.
            metrics.programmed(since.elapsed());
        }
        tracing::debug!(took = ?since.elapsed(), serial, "dns index updated");
        serial = serial.wrapping_add(1);
    }
}

/// An event from either watch.
// Each event is moved once, from the stream into `apply`: boxing the larger
// variant would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Watched {
    Service(Result<watcher::Event<Service>, watcher::Error>),
    Slice(Result<watcher::Event<EndpointSlice>, watcher::Error>),
}

/// Whether `e` is part of a (re)list rather than a change.
fn is_listing<K>(e: &watcher::Event<K>) -> bool {
    !matches!(e, watcher::Event::Apply(_) | watcher::Event::Delete(_))
}

/// Applies one event; returns whether it was part of a (re)list.
fn apply(sources: &mut Sources, ev: Watched) -> bool {
    match ev {
        Watched::Service(Ok(e)) => {
            let l = is_listing(&e);
            sources.service_event(e);
            l
        }
        Watched::Slice(Ok(e)) => {
            let l = is_listing(&e);
            sources.slice_event(e);
            l
        }
        Watched::Service(Err(e)) | Watched::Slice(Err(e)) => {
            tracing::warn!(error = %e, "dns watch");
            false
        }
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

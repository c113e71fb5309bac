//! The feed: one store watch on every key, applied to every loaded resource cache in
//! revision order. When the watch ends (store outage, a lag, compaction) the caches are
//! dropped and their watchers ended; they load again once the feed is back.

use std::sync::atomic::Ordering;
use std::time::Duration;

use skiff_store::Event;

use super::{Caches, Slot};

/// Waits between attempts to (re)start the feed.
const RETRY: Duration = Duration::from_millis(200);

pub(super) async fn run(caches: Caches) {
    loop {
        let backend = caches.inner.backend.clone();
        let from = match tokio::task::spawn_blocking(move || backend.current_revision()).await {
            Ok(Ok(r)) => r,
            _ => {
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Every key: events of resources nobody reads still move the revision.
        let mut watch = match caches.inner.backend.watch("", from) {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "watch cache: feed cannot watch yet");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        {
            let mut s = caches.slots();
            s.epoch += 1;
            s.running = true;
            caches.inner.global.store(from, Ordering::Release);
            caches.inner.seen.send_replace(from);
        }
        while let Some(item) = watch.next().await {
            match item {
                Ok(ev) => dispatch(&caches, ev),
                Err(e) => {
                    tracing::info!(error = %e, "watch cache: feed ended; caches reload");
                    break;
                }
            }
        }
        stop(&caches);
        tokio::time::sleep(RETRY).await;
    }
}

fn dispatch(caches: &Caches, ev: Event) {
    let rev = ev.revision();
    let mut s = caches.slots();
    for slot in s.by_resource.values_mut() {
        match slot {
            Slot::Ready(c) if ev.key().starts_with(&c.prefix) => c.apply(&ev),
            Slot::Loading { prefix, events } if ev.key().starts_with(prefix.as_str()) => {
                events.push(ev.clone())
            }
            _ => {}
        }
    }
    // Only after the caches hold the event: a reader that sees this revision finds it.
    caches.inner.global.store(rev, Ordering::Release);
    caches.inner.seen.send_replace(rev);
}

fn stop(caches: &Caches) {
    let mut s = caches.slots();
    s.running = false;
    s.epoch += 1;
    for slot in s.by_resource.drain().map(|(_, v)| v) {
        if let Slot::Ready(c) = slot {
            c.close();
        }
    }
}

//! Keeps the pools true to the store: a watch on services gives back what a
//! deleted service held (whichever path deleted it: a DELETE, a collection delete,
//! a namespace being emptied, a last finalizer) and brings the built-in services
//! back; a periodic repair, like upstream's ClusterIP and NodePort repair
//! controllers, adopts stored values the pools miss and frees values no stored
//! service holds once they were seen leaked twice in a row (so a create between
//! its allocation and its store write is never robbed).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::StatusError;
use skiff_store::{Event, Revision};

use super::claims::{self, Kind};
use super::{builtin, forget, services_resource};
use crate::objects;
use crate::server::Api;

const REPAIR_EVERY: Duration = Duration::from_secs(60);
const BUILTIN_EVERY: Duration = Duration::from_secs(10);

type Leaks = HashMap<(Kind, u32), Arc<str>>;

pub async fn run(api: Arc<Api>, mut from: Revision) {
    let mut leaks = Leaks::new();
    let mut repair_tick = tokio::time::interval(REPAIR_EVERY);
    let mut builtin_tick = tokio::time::interval(BUILTIN_EVERY);
    // Both fire at once; the start-up load and bootstrap just did their work.
    repair_tick.tick().await;
    builtin_tick.tick().await;
    loop {
        let Some(res) = services_resource() else {
            return;
        };
        let mut watch = match api.objects.watch(res, None, from) {
            Ok(w) => w,
            Err(e) => {
                // Too far behind (compacted): start again from a fresh listing.
                tracing::debug!(error = %e, "service watch restarts from a repair");
                match repair(&api, &mut leaks).await {
                    Ok(rev) => from = rev,
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                ev = watch.next() => match ev {
                    Some(Ok(Event::Delete { kv })) => {
                        from = kv.mod_revision;
                        if let Ok(obj) = objects::decode(&kv) {
                            forget(&api, &obj);
                            if claims::owner_of(&obj).is_some_and(|o| builtin::is_builtin(&o.key)) {
                                builtin::ensure(&api).await;
                            }
                        }
                    }
                    Some(Ok(ev)) => from = ev.revision(),
                    Some(Err(_)) | None => {
                        // Lagged: events were lost, so the listing decides.
                        if let Ok(rev) = repair(&api, &mut leaks).await {
                            from = rev;
                        }
                        break;
                    }
                },
                _ = repair_tick.tick() => {
                    if let Err(e) = repair(&api, &mut leaks).await {
                        tracing::debug!(error = %e, "service allocation repair failed");
                    }
                }
                _ = builtin_tick.tick() => builtin::ensure(&api).await,
            }
        }
    }
}

/// One repair pass; returns the revision of the listing it used.
async fn repair(api: &Api, leaks: &mut Leaks) -> Result<Revision, StatusError> {
    let res = services_resource().ok_or_else(StatusError::no_such_resource)?;
    let page = api.objects.list(res, None, None, None).await?;
    let state = &api.services;
    let mut held_by: HashMap<Arc<str>, Vec<(Kind, u32)>> = HashMap::new();
    let mut pools = state.pools();
    for obj in &page.items {
        let Some(owner) = claims::owner_of(obj) else {
            continue;
        };
        for (kind, idx, other) in pools.adopt(&state.settings, obj, &owner) {
            tracing::warn!(service = %owner.key, holder = %other.key, ?kind, slot = idx,
                "a stored service claims a value another service holds");
        }
        held_by.insert(owner.uid.clone(), claims::claims(&state.settings, obj));
    }
    let mut suspects = Leaks::new();
    for kind in [Kind::ClusterIp, Kind::NodePort, Kind::LoadBalancer] {
        for (idx, owner) in pools.pool(kind).held() {
            let stored = held_by
                .get(&owner.uid)
                .is_some_and(|c| c.contains(&(kind, idx)));
            if !stored && !state.in_flight(&owner.uid) {
                suspects.insert((kind, idx), owner.uid.clone());
            }
        }
    }
    let mut freed = 0;
    let mut still: HashSet<(Kind, u32)> = HashSet::new();
    for (slot, uid) in suspects {
        if leaks.get(&slot) == Some(&uid) {
            if pools.pool(slot.0).release(slot.1, &uid) {
                freed += 1;
            }
        } else {
            still.insert(slot);
            leaks.insert(slot, uid);
        }
    }
    leaks.retain(|slot, _| still.contains(slot));
    drop(pools);
    if freed > 0 {
        tracing::info!(freed, "repair released values no stored service holds");
        state.lb_wake.notify_one();
    }
    Ok(page.revision)
}

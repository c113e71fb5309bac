//! Keeps the pools and the claims true to the stored services: a watch on
//! services gives back what a deleted service held (whichever path deleted it,
//! on whichever server: a DELETE, a collection delete, a namespace being
//! emptied, a last finalizer), learns what services written through other
//! servers hold, and brings the built-in services back; a periodic repair, like
//! upstream's ClusterIP and NodePort repair controllers, adopts claims and stored
//! values the pools miss, claims stored values that lack a claim, and frees
//! values and claims no stored service holds once they were seen leaked twice in
//! a row (so a create between its allocation and its store write is never
//! robbed; this is how a crash between claim and service write converges).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::StatusError;
use skiff_store::{Event, KeyValue, Revision};

use super::claims::{self, Kind};
use super::{builtin, forget, services_resource, shared, store, IN_FLIGHT};
use crate::objects;
use crate::server::Api;

const BUILTIN_EVERY: Duration = Duration::from_secs(10);

pub async fn run(api: Arc<Api>, mut from: Revision) {
    let mut leaks = Leaks::default();
    let mut repair_tick = tokio::time::interval(api.services.settings.repair_every);
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
                            forget(&api, &obj).await;
                            if claims::owner_of(&obj).is_some_and(|o| builtin::is_builtin(&o.key)) {
                                builtin::ensure(&api).await;
                            }
                        }
                    }
                    Some(Ok(Event::Put { kv, prev })) => {
                        from = kv.mod_revision;
                        adopt_write(&api, &kv, prev.as_ref());
                    }
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

/// A service written through any server: what it holds now is held here too,
/// and what its previous version held that it dropped is free again.
fn adopt_write(api: &Api, kv: &KeyValue, prev: Option<&KeyValue>) {
    let Ok(obj) = objects::decode(kv) else {
        return;
    };
    let Some(owner) = claims::owner_of(&obj) else {
        return;
    };
    let state = &api.services;
    let s = &state.settings;
    let mut pools = state.pools();
    if let Some(before) = prev.and_then(|p| objects::decode(p).ok()) {
        claims::release_difference(&mut pools, s, &before, Some(&obj), &owner.uid);
    }
    // A value held here for someone else is sorted out by repair.
    let _ = pools.adopt(s, &obj, &owner);
}

/// What the previous pass suspected: local slots by holder, claims by revision.
/// Only what is suspected twice in a row (unchanged) is freed.
#[derive(Default)]
pub(super) struct Leaks {
    slots: HashMap<(Kind, u32), Arc<str>>,
    claims: HashMap<String, Revision>,
}

/// One repair pass; returns the revision of the service listing it used.
///
/// Claims are listed before services, so a service deleted in between is not
/// claimed again; a claim younger than the in-flight window, or of a create in
/// flight here, is never a leak (its service may be on its way to the store).
pub(super) async fn repair(api: &Api, leaks: &mut Leaks) -> Result<Revision, StatusError> {
    let res = services_resource().ok_or_else(StatusError::no_such_resource)?;
    let state = &api.services;
    let backend = api.objects.backend();
    let (held, _) = store::list(backend, &state.settings)
        .await
        .map_err(|e| StatusError::internal(e.to_string()))?;
    let page = api.objects.list(res, None, None, None).await?;
    let mut held_by: HashMap<Arc<str>, Vec<(Kind, u32)>> = HashMap::new();
    let claimed: HashSet<(Kind, u32)> = held.iter().map(|h| (h.kind, h.idx)).collect();
    let mut lacking = Vec::new();
    let mut freed = 0;
    {
        let mut pools = state.pools();
        shared::learn_all(&mut pools, &held);
        for obj in &page.items {
            let Some(owner) = claims::owner_of(obj) else {
                continue;
            };
            for (kind, idx, other) in pools.adopt(&state.settings, obj, &owner) {
                tracing::warn!(service = %owner.key, holder = %other.key, ?kind, slot = idx,
                    "a stored service claims a value another service holds");
            }
            let values = claims::claims(&state.settings, obj);
            let missing: Vec<_> = values
                .iter()
                .copied()
                .filter(|c| !claimed.contains(c))
                .collect();
            if !missing.is_empty() {
                lacking.push((owner.clone(), missing));
            }
            held_by.insert(owner.uid.clone(), values);
        }
        let mut suspects = HashMap::new();
        for kind in [Kind::ClusterIp, Kind::NodePort, Kind::LoadBalancer] {
            for (idx, owner) in pools.pool(kind).held() {
                let stored = held_by
                    .get(&owner.uid)
                    .is_some_and(|c| c.contains(&(kind, idx)));
                if !stored && !claimed.contains(&(kind, idx)) && !state.in_flight(&owner.uid) {
                    suspects.insert((kind, idx), owner.uid.clone());
                }
            }
        }
        let mut still = HashMap::new();
        for (slot, uid) in suspects {
            if leaks.slots.get(&slot) == Some(&uid) {
                if pools.pool(slot.0).release(slot.1, &uid) {
                    freed += 1;
                }
            } else {
                still.insert(slot, uid);
            }
        }
        leaks.slots = still;
    }
    let grace = i64::try_from(IN_FLIGHT.as_secs()).unwrap_or(i64::MAX);
    let mut still = HashMap::new();
    let mut removed = 0;
    for h in &held {
        let owner = shared::owner_of(h);
        let stored = held_by
            .get(&owner.uid)
            .is_some_and(|c| c.contains(&(h.kind, h.idx)));
        if stored || state.in_flight(&owner.uid) || h.age_secs() < grace {
            continue;
        }
        if leaks.claims.get(&h.key) != Some(&h.revision) {
            still.insert(h.key.clone(), h.revision);
            continue;
        }
        match store::remove(backend, h).await {
            Ok(true) => {
                removed += 1;
                if state.pools().pool(h.kind).release(h.idx, &owner.uid) {
                    freed += 1;
                }
                tracing::info!(key = %h.key, holder = %owner.key, "repair removed a leaked allocation claim");
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, key = %h.key, "cannot remove a leaked claim"),
        }
    }
    leaks.claims = still;
    let mut made = 0;
    for (owner, slots) in lacking {
        made += shared::ensure_claims(api, &owner, &slots).await;
    }
    if made > 0 {
        tracing::info!(
            claims = made,
            "repair claimed values stored services held unclaimed"
        );
    }
    if freed > 0 || removed > 0 {
        tracing::info!(
            freed,
            removed,
            "repair released values no stored service holds"
        );
        state.lb_wake.notify_one();
    }
    Ok(page.revision)
}

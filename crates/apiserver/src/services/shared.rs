//! Keeping this server's pools and the store's claims ([`super::store`]) in
//! agreement: claiming what a write took, learning who holds a value another
//! server claimed, and giving claims back. Store calls run off the async
//! runtime (inside `store`); the pool lock is never held across an await.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use skiff_api::StatusError;

use super::claims::{self, Kind, Owner, Pools};
use super::store::{self, ClaimError, Held};
use super::{services_resource, IN_FLIGHT};
use crate::server::Api;

/// Who holds a value whose claim cannot be read: nobody a write could reclaim
/// from; repair removes the claim.
pub(super) fn unreadable() -> Owner {
    Owner {
        uid: "".into(),
        key: "<unreadable allocation claim>".into(),
    }
}

/// The owner a claim names.
pub(super) fn owner_of(held: &Held) -> Owner {
    held.record
        .as_ref()
        .map_or_else(unreadable, store::Record::owner)
}

/// Records every claim in the pools (start-up and repair): the store is the
/// truth about who holds a value.
pub(super) fn learn_all(pools: &mut Pools, held: &[Held]) {
    for h in held {
        learn(pools, h);
    }
}

fn learn(pools: &mut Pools, h: &Held) {
    let owner = owner_of(h);
    let pool = pools.pool(h.kind);
    if pool.owner(h.idx).is_none_or(|o| o.uid != owner.uid) {
        pool.set_owner(h.idx, &owner);
    }
}

/// Claims in the store what a write took in the pools. `Ok(false)`: a value was
/// claimed by someone else; it is now recorded as theirs (and their uid added to
/// `from_store`), everything this write took is given back, and the caller
/// allocates again.
pub(super) async fn claim_taken(
    api: &Api,
    taken: &[(Kind, u32)],
    owner: &Owner,
    from_store: &mut HashSet<Arc<str>>,
) -> Result<bool, StatusError> {
    let state = &api.services;
    match store::claim(api.objects.backend(), &state.settings, taken, owner).await {
        Ok(_) => Ok(true),
        Err(ClaimError::Taken(held)) => {
            claims::release_slots(&mut state.pools(), taken, &owner.uid);
            if reclaim_if_leaked(api, &held).await {
                return Ok(false);
            }
            tracing::debug!(key = %held.key, service = %owner.key,
                "value claimed through another server; picking again");
            from_store.insert(owner_of(&held).uid);
            learn(&mut state.pools(), &held);
            Ok(false)
        }
        Err(e) => {
            claims::release_slots(&mut state.pools(), taken, &owner.uid);
            Err(match e {
                // An unreachable store is 503, as for any other write.
                ClaimError::Store(e) => crate::objects::store_failure(e),
                e => StatusError::internal(e.to_string()),
            })
        }
    }
}

/// Claims the load-balancer addresses a status write named and the pool had
/// free; one another server claimed meanwhile stays theirs.
pub(super) async fn claim_adopted(api: &Api, taken: &[(Kind, u32)], owner: &Owner) {
    let state = &api.services;
    for slot in taken {
        match store::claim(api.objects.backend(), &state.settings, &[*slot], owner).await {
            Ok(_) => {}
            Err(ClaimError::Taken(held)) => {
                claims::release_slots(&mut state.pools(), &[*slot], &owner.uid);
                learn(&mut state.pools(), &held);
            }
            Err(e) => {
                // The write goes on; repair claims the value if it is stored.
                claims::release_slots(&mut state.pools(), &[*slot], &owner.uid);
                tracing::warn!(error = %e, service = %owner.key, "cannot claim a load-balancer address");
            }
        }
    }
}

/// Whether the service `owner` names is stored (same uid) holding the slot;
/// `None` when the store cannot say.
async fn stored_holds(api: &Api, owner: &Owner, slot: (Kind, u32)) -> Option<bool> {
    let res = services_resource()?;
    let (ns, name) = owner.key.split_once('/').unwrap_or(("", &owner.key));
    let obj = api.objects.get_opt(res, Some(ns), name).await.ok()?;
    Some(obj.is_some_and(|o| holds(api, &o, owner, slot)))
}

fn holds(api: &Api, obj: &Value, owner: &Owner, slot: (Kind, u32)) -> bool {
    obj.pointer("/metadata/uid").and_then(Value::as_str) == Some(&*owner.uid)
        && claims::claims(&api.services.settings, obj).contains(&slot)
}

/// A claim older than any create in flight whose owner does not hold the value
/// (a crash between claim and service write, or a release lost with its server)
/// is deleted on the spot, at the revision read, so a write asking for the
/// value need not wait for repair. True if it went.
pub(super) async fn reclaim_if_leaked(api: &Api, held: &Held) -> bool {
    let grace = i64::try_from(IN_FLIGHT.as_secs()).unwrap_or(i64::MAX);
    if held.age_secs() < grace {
        return false;
    }
    let owner = owner_of(held);
    if api.services.in_flight(&owner.uid) {
        return false;
    }
    if held.record.is_some()
        && stored_holds(api, &owner, (held.kind, held.idx)).await != Some(false)
    {
        return false;
    }
    match store::remove(api.objects.backend(), held).await {
        Ok(true) => {
            tracing::info!(key = %held.key, holder = %owner.key, "removed a leaked allocation claim");
            let mut pools = api.services.pools();
            pools.pool(held.kind).release(held.idx, &owner.uid);
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::debug!(error = %e, key = %held.key, "cannot remove a leaked claim");
            false
        }
    }
}

/// Deletes the claims of `slots` that still name `uid`.
pub(super) async fn release_claims(api: &Api, slots: &[(Kind, u32)], uid: &str) {
    let s = &api.services.settings;
    if let Err(e) = store::release(api.objects.backend(), s, slots, uid).await {
        // Left for repair: a leaked claim only makes its value unavailable.
        tracing::warn!(error = %e, "cannot release allocation claims; repair will");
    }
}

/// After a write that did not reach the store: its new claims go, except any
/// value the stored service (same uid) holds after all — a concurrent write of
/// the same service through another server may have stored it.
pub(super) async fn release_unless_stored(api: &Api, slots: &[(Kind, u32)], owner: &Owner) {
    if slots.is_empty() {
        return;
    }
    let Some(res) = services_resource() else {
        return;
    };
    let (ns, name) = owner.key.split_once('/').unwrap_or(("", &owner.key));
    let stored = match api.objects.get_opt(res, Some(ns), name).await {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the service back; repair releases its claims");
            return;
        }
    };
    let gone: Vec<_> = slots
        .iter()
        .copied()
        .filter(|&slot| !stored.as_ref().is_some_and(|o| holds(api, o, owner, slot)))
        .collect();
    release_claims(api, &gone, &owner.uid).await;
}

/// Claims what a stored service holds without a claim, one value at a time (a
/// value another service claimed stays theirs). Returns how many were made.
pub(super) async fn ensure_claims(api: &Api, owner: &Owner, slots: &[(Kind, u32)]) -> usize {
    let state = &api.services;
    let mut made = 0;
    for slot in slots {
        match store::claim(api.objects.backend(), &state.settings, &[*slot], owner).await {
            Ok(c) => made += c.len(),
            Err(ClaimError::Taken(held)) => {
                tracing::warn!(service = %owner.key, holder = %owner_of(&held).key, key = %held.key,
                    "a stored service holds a value claimed for another");
                learn(&mut state.pools(), &held);
            }
            Err(e) => {
                tracing::warn!(error = %e, service = %owner.key, "cannot claim a stored value")
            }
        }
    }
    made
}

//! The built-in load balancer (in the manner of k3s ServiceLB or MetalLB): every
//! LoadBalancer service without a `loadBalancerClass` gets an address from
//! `--lb-pool` in `status.loadBalancer.ingress`. Writes usually get one on the
//! spot (see [`super::claims`]); this task serves the ones left pending when the
//! pool had none, once an address comes free, and says why in a Warning event
//! while they wait (kubectl shows `<pending>`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::registry;
use skiff_api::StatusError;

use super::claims::{self, Kind, Owner};
use super::{services_resource, shared};
use crate::body::FieldValidation;
use crate::request::Target;
use crate::rest::{self, WriteOptions};
use crate::server::Api;

/// How often waiting services are looked at again without being woken.
const RESYNC: Duration = Duration::from_secs(5);
/// The safety net when nothing waits (every release and every pending write wakes
/// the task anyway).
const IDLE_RESYNC: Duration = Duration::from_secs(60);
/// The event source, as `kubectl describe` shows it under "From".
const COMPONENT: &str = "skiff-loadbalancer";

pub async fn run(api: Arc<Api>) {
    // The last reason each waiting service was told, so it is told once.
    let mut told: HashMap<Arc<str>, String> = HashMap::new();
    loop {
        let resync = match pass(&api, &mut told).await {
            Ok(0) => IDLE_RESYNC,
            Ok(_) => RESYNC,
            Err(e) => {
                tracing::debug!(error = %e, "load-balancer pass failed; will retry");
                RESYNC
            }
        };
        tokio::select! {
            _ = api.services.lb_wake.notified() => {}
            _ = tokio::time::sleep(resync) => {}
        }
    }
}

fn opts() -> WriteOptions {
    WriteOptions {
        dry_run: false,
        validation: FieldValidation::Ignore,
        field_manager: None,
    }
}

/// A managed LoadBalancer service that holds no address from the pool.
fn waiting(api: &Api, obj: &Value, owner: &Owner) -> bool {
    let state = &api.services;
    claims::managed_lb(obj)
        && !claims::lb_slots(&state.settings, obj).into_iter().any(|i| {
            state
                .pools()
                .lb
                .owner(i)
                .is_some_and(|o| o.uid == owner.uid)
        })
}

/// Serves the waiting services it can; returns how many still wait.
async fn pass(api: &Api, told: &mut HashMap<Arc<str>, String>) -> Result<usize, StatusError> {
    let res = services_resource().ok_or_else(StatusError::no_such_resource)?;
    let items = api.objects.list(res, None, None, None).await?.items;
    let mut still_waiting = Vec::new();
    for obj in items {
        let Some(owner) = claims::owner_of(&obj) else {
            continue;
        };
        if !waiting(api, &obj, &owner) {
            continue;
        }
        let state = &api.services;
        let picked = claims::pick_lb(&mut state.pools(), &state.settings, &obj, &owner);
        match picked {
            Ok(idx) => {
                let slot = [(Kind::LoadBalancer, idx)];
                let mut from_store = HashSet::new();
                match shared::claim_taken(api, &slot, &owner, &mut from_store).await {
                    Ok(true) => {}
                    // Claimed through another server: another pick next pass.
                    Ok(false) | Err(_) => {
                        still_waiting.push(owner.uid.clone());
                        continue;
                    }
                }
                let ip = state.settings.lb_pool.addr(idx).to_string();
                if !assign(api, &obj, &ip).await {
                    state.pools().lb.release(idx, &owner.uid);
                    shared::release_claims(api, &slot, &owner.uid).await;
                }
            }
            Err(why) => {
                still_waiting.push(owner.uid.clone());
                if told.get(&owner.uid) != Some(&why) {
                    warn(api, &obj, &owner, &why).await;
                    told.insert(owner.uid.clone(), why);
                }
            }
        }
    }
    told.retain(|uid, _| still_waiting.contains(uid));
    Ok(still_waiting.len())
}

/// Writes the address into the service's status; false if it did not stick.
async fn assign(api: &Api, obj: &Value, ip: &str) -> bool {
    let (Some(ns), Some(name)) = (
        obj.pointer("/metadata/namespace").and_then(Value::as_str),
        rest::name_of(obj),
    ) else {
        return false;
    };
    let Some(res) = services_resource() else {
        return false;
    };
    let t = Target {
        resource: res,
        namespace: Some(ns.to_string()),
        name: Some(name.to_string()),
        subresource: Some("status".into()),
    };
    let uid = obj.pointer("/metadata/uid").cloned();
    let result = rest::patch_with(api, &t, &opts(), |cur| {
        let mut next = cur.clone();
        // Only the same, still waiting service gets it.
        if cur.pointer("/metadata/uid").cloned() == uid && claims::managed_lb(cur) {
            next["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}});
        }
        Ok(next)
    })
    .await;
    match result {
        Ok(stored) => {
            let got = claims::lb_slots(&api.services.settings, &stored)
                .into_iter()
                .any(|i| api.services.settings.lb_pool.addr(i).to_string() == ip);
            if got {
                tracing::info!(service = %format!("{ns}/{name}"), %ip, "load balancer address assigned");
            }
            got
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot write a load balancer address");
            false
        }
    }
}

/// Records a Warning event on the service, as a load-balancer controller does.
async fn warn(api: &Api, obj: &Value, owner: &Owner, why: &str) {
    let Some(events) = registry::lookup("", "v1", "events") else {
        return;
    };
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = rest::name_of(obj).unwrap_or_default();
    let now = crate::strategy::now_rfc3339();
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let message = format!("Failed to allocate IP for {:?}: {why}", &*owner.key);
    let event = json!({
        "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": ns},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Service",
            "namespace": ns,
            "name": name,
            "uid": &*owner.uid,
            "resourceVersion": obj.pointer("/metadata/resourceVersion"),
        },
        "reason": "AllocationFailed",
        "message": message,
        "type": "Warning",
        "source": {"component": COMPONENT},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": COMPONENT,
        "reportingInstance": "skiff",
    });
    let t = Target {
        resource: events,
        namespace: Some(ns.to_string()),
        name: None,
        subresource: None,
    };
    match rest::create(api, &t, event, &opts()).await {
        Ok(_) => tracing::info!(service = %owner.key, %why, "load balancer address pending"),
        Err(e) => tracing::debug!(error = %e, "cannot record a load balancer event"),
    }
}

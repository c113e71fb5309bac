//! EndpointSlice mirroring: for Services without a selector, the v1 Endpoints a
//! user writes are mirrored into EndpointSlices managed by
//! `endpointslicemirroring-controller.k8s.io` and owned by the Endpoints
//! (upstream `endpointslicemirroring` controller). Endpoints labelled
//! `endpointslice.kubernetes.io/skip-mirror: "true"` are not mirrored.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use crate::endpointslice::{self, Changes, Inputs, LABEL_MANAGED_BY, LABEL_SERVICE_NAME};
use crate::runtime::{Ctx, Key};
use crate::{pods, Result};

pub const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

/// An address that is not an IP is skipped, as upstream's mirroring does;
/// IPv6 ones go to IPv6 slices (see `endpointslice::desired`).
fn endpoint(a: &EndpointAddress, ready: bool) -> Option<Endpoint> {
    a.ip.parse::<std::net::IpAddr>().ok()?;
    Some(Endpoint {
        addresses: vec![a.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: None,
            terminating: None,
        }),
        hostname: a.hostname.clone(),
        node_name: a.node_name.clone(),
        target_ref: a.target_ref.clone(),
        ..Default::default()
    })
}

/// The slices mirroring `ep`, given those that exist.
pub fn desired(ep: &Endpoints, existing: &[Arc<EndpointSlice>], max: usize) -> Changes {
    let mut endpoints = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let ready = subset
            .addresses
            .iter()
            .flatten()
            .filter_map(|a| endpoint(a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .filter_map(|a| endpoint(a, false));
        for e in ready.chain(not_ready) {
            endpoints.push((ports.clone(), e));
        }
    }
    let mut labels = ep.labels().clone();
    labels.remove(LABEL_SKIP_MIRROR);
    labels.insert(LABEL_SERVICE_NAME.into(), ep.name_any());
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    let mut changes = endpointslice::desired(Inputs {
        endpoints,
        existing,
        max_per_slice: max,
        trigger_time: None,
        managed_by: MANAGED_BY,
        owner: pods::controller_ref("v1", "Endpoints", &ep.metadata),
        labels,
        prefix: format!("{}-", ep.name_any()),
        namespace: ep.namespace().unwrap_or_default(),
    });
    // Mirroring writes no placeholder for empty Endpoints.
    changes.create.retain(|s| !s.endpoints.is_empty());
    changes
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    if ctx.slice_writes.pending(&key) {
        return Ok(Some(endpointslice::STALE_RETRY));
    }
    let existing = endpointslice::managed_slices(&ctx.cache, &key, MANAGED_BY);
    let svc = ctx
        .cache
        .services
        .get(&ObjectRef::new(&key.name).within(&key.ns));
    let ep = ctx
        .cache
        .endpoints
        .get(&ObjectRef::new(&key.name).within(&key.ns));
    let selectorless = svc.as_ref().is_some_and(|s| {
        s.spec
            .as_ref()
            .and_then(|sp| sp.selector.as_ref())
            .is_none_or(|m| m.is_empty())
    });
    let mirror = ep.filter(|e| {
        selectorless && e.labels().get(LABEL_SKIP_MIRROR).map(String::as_str) != Some("true")
    });
    let changes = match mirror {
        Some(ep) => desired(&ep, &existing, ctx.settings.max_endpoints_per_slice),
        None => Changes {
            delete: existing.iter().map(|s| (**s).clone()).collect(),
            ..Default::default()
        },
    };
    if changes != Changes::default() {
        endpointslice::apply(&ctx, "endpointslicemirroring", &key, changes).await?;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointPort as V1Port, EndpointSubset};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn mirrors_subsets() {
        let addr = |ip: &str| EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        };
        let ep = Endpoints {
            metadata: ObjectMeta {
                name: Some("ext".into()),
                namespace: Some("default".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![addr("192.0.2.42"), addr("2001:db8::1"), addr("nope")]),
                not_ready_addresses: Some(vec![addr("192.0.2.43")]),
                ports: Some(vec![V1Port {
                    name: Some("http".into()),
                    port: 9376,
                    protocol: Some("TCP".into()),
                    app_protocol: None,
                }]),
            }]),
        };
        let ch = desired(&ep, &[], 100);
        // One slice per address family; the one that is not an address is left out.
        assert_eq!(ch.create.len(), 2);
        let v6 = ch
            .create
            .iter()
            .find(|s| s.address_type == "IPv6")
            .expect("an IPv6 slice");
        assert_eq!(v6.endpoints.len(), 1);
        assert_eq!(v6.endpoints[0].addresses, vec!["2001:db8::1".to_string()]);
        assert_eq!(v6.ports.as_ref().and_then(|p| p[0].port), Some(9376));
        // Mirrored again with the slices in place: nothing to write.
        let existing: Vec<Arc<EndpointSlice>> = ch
            .create
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut s = s.clone();
                s.metadata.name = Some(format!("ext-{i}"));
                Arc::new(s)
            })
            .collect();
        assert_eq!(desired(&ep, &existing, 100), Changes::default());
        let s = ch
            .create
            .iter()
            .find(|s| s.address_type == "IPv4")
            .expect("an IPv4 slice");
        let labels = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(LABEL_MANAGED_BY).map(String::as_str),
            Some(MANAGED_BY)
        );
        assert_eq!(
            labels.get(LABEL_SERVICE_NAME).map(String::as_str),
            Some("ext")
        );
        assert_eq!(
            s.metadata.owner_references.clone().unwrap_or_default()[0].kind,
            "Endpoints"
        );
        let got: Vec<(String, Option<bool>)> = s
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.addresses[0].clone(),
                    e.conditions.as_ref().and_then(|c| c.ready),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("192.0.2.42".into(), Some(true)),
                ("192.0.2.43".into(), Some(false))
            ]
        );
        assert_eq!(s.ports.as_ref().and_then(|p| p[0].port), Some(9376));
        // Empty Endpoints: no slice at all.
        let empty = Endpoints {
            subsets: None,
            ..ep.clone()
        };
        assert_eq!(desired(&empty, &[], 100), Changes::default());
    }
}

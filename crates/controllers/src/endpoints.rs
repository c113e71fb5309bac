//! The legacy v1 Endpoints controller: for every Service with a selector, an
//! Endpoints object of the same name whose subsets list the selected pods —
//! ready ones in `addresses`, others in `notReadyAddresses` — grouped by port set
//! (upstream `endpoint` controller and `endpoints.RepackSubsets`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use crate::endpointslice::{should_set_hostname, ANNOTATION_TRIGGER_TIME, LABEL_HEADLESS};
use crate::pods;
use crate::runtime::{Ctx, Key};
use crate::Result;

/// A port set's (ports, ready addresses, not-ready addresses).
type Group = (
    Vec<EndpointPort>,
    Vec<EndpointAddress>,
    Vec<EndpointAddress>,
);

/// The subsets of a Service over its pods (sorted as upstream's `SortSubsets`:
/// addresses by IP, ports by name).
pub fn subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    // Port set (as JSON) -> (ports, ready, not ready).
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        // Upstream `ShouldPodBeInEndpoints(pod, includeTerminating=publish)`.
        if pods::is_terminal(pod) || (!publish && pods::is_terminating(pod)) {
            continue;
        }
        let Some(ip) = pods::ipv4(pod) else { continue };
        let spec = pod.spec.as_ref();
        let addr = EndpointAddress {
            ip,
            hostname: should_set_hostname(pod, svc)
                .then(|| spec.and_then(|s| s.hostname.clone()))
                .flatten(),
            node_name: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let mut ports: Vec<EndpointPort> = svc
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port: pods::find_port(pod, sp)?,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let g = groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish || pods::is_ready(pod) {
            g.1.push(addr);
        } else {
            g.2.push(addr);
        }
    }
    let by_ip = |a: &EndpointAddress, b: &EndpointAddress| {
        let ip = |x: &EndpointAddress| x.ip.parse::<std::net::Ipv4Addr>().ok();
        (ip(a), &a.ip).cmp(&(ip(b), &b.ip))
    };
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// The Endpoints object to write, or `None` when `current` already matches.
pub fn desired(svc: &Service, pods: &[Arc<Pod>], current: Option<&Endpoints>) -> Option<Endpoints> {
    let subsets = subsets(svc, pods);
    let mut labels = svc.labels().clone();
    labels.remove(LABEL_HEADLESS);
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    let subsets = (!subsets.is_empty()).then_some(subsets);
    if let Some(cur) = current {
        if cur.subsets == subsets && cur.labels() == &labels {
            return None;
        }
    }
    let mut trigger: Option<Time> = svc.metadata.creation_timestamp.clone();
    for p in pods {
        let t = pods::trigger_time(p);
        if t.as_ref().map(|t| t.0) > trigger.as_ref().map(|t| t.0) {
            trigger = t;
        }
    }
    let mut ep = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            ..Default::default()
        },
        subsets: None,
    });
    ep.metadata.labels = Some(labels);
    if let Some(t) = trigger {
        ep.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANNOTATION_TRIGGER_TIME.into(), t.0.to_string());
    }
    ep.subsets = subsets;
    Some(ep)
}

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    let api: Api<Endpoints> = Api::namespaced(ctx.clients.of("endpoints"), &key.ns);
    let current = ctx
        .cache
        .endpoints
        .get(&ObjectRef::new(&key.name).within(&key.ns));
    let svc = ctx
        .cache
        .services
        .get(&ObjectRef::new(&key.name).within(&key.ns));
    let Some(svc) = svc else {
        // Upstream deletes the Endpoints of a deleted Service.
        if current.is_some() {
            match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(None);
    };
    let Some(pods) = crate::endpointslice::selected_pods(&ctx.cache, &svc) else {
        return Ok(None);
    };
    let Some(want) = desired(&svc, &pods, current.as_deref()) else {
        return Ok(None);
    };
    if current.is_some() {
        // The cached resourceVersion makes a stale write fail with a conflict
        // (retried once the cache caught up).
        api.replace(&key.name, &PostParams::default(), &want)
            .await?;
    } else {
        match api.create(&PostParams::default(), &want).await {
            Ok(_) => {}
            // Created meanwhile (our cache lags): the watch event requeues us.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

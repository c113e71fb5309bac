//! The EndpointSlice controller: for every Service with a selector, the pods it
//! selects become endpoints in EndpointSlices of at most 100 endpoints, grouped
//! by their resolved ports, as upstream's `endpointslice` reconciler does.
//!
//! [`desired`] is the pure part: from the Service, its pods and the slices that
//! exist, the slices to create, update and delete — touching as few as it can
//! (an unchanged slice is never rewritten; new endpoints go first into slices
//! already being updated, then into one existing slice that can take them all,
//! then into new slices).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use crate::pods;
use crate::runtime::{Cache, Ctx, Key};
use crate::Result;

pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
pub const ANNOTATION_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// What to write so that the slices match the pods.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

/// Whether upstream would let a pod's hostname into a Service's records
/// (`endpointutil.ShouldSetHostname`).
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let spec = pod.spec.as_ref();
    let hostname = spec.and_then(|s| s.hostname.as_deref()).unwrap_or("");
    !hostname.is_empty()
        && spec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace
}

/// The endpoint of one pod (upstream `podToEndpoint`); `None` for pods that are
/// not in endpoints at all (terminal, or without an IPv4 address yet).
pub fn pod_endpoint(pod: &Pod, svc: &Service, zone: Option<String>) -> Option<Endpoint> {
    if pods::is_terminal(pod) {
        return None;
    }
    let ip = pods::ipv4(pod)?;
    let serving = pods::is_ready(pod);
    let terminating = pods::is_terminating(pod);
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    // For compatibility, "ready" is never true for a terminating pod unless
    // the Service publishes not-ready addresses.
    let ready = publish || (serving && !terminating);
    let spec = pod.spec.as_ref();
    let node = spec
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    Some(Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: should_set_hostname(pod, svc)
            .then(|| spec.and_then(|s| s.hostname.clone()))
            .flatten(),
        node_name: node,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        zone,
        ..Default::default()
    })
}

/// The ports of a Service as they resolve on one pod (upstream
/// `getEndpointPorts`): ports whose named targetPort the pod lacks are left out.
pub fn pod_ports(pod: &Pod, svc: &Service) -> Vec<EndpointPort> {
    svc.spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|sp| {
            let port = pods::find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Labels of the Service's slices (upstream `setEndpointSliceLabels`).
fn slice_labels(svc: &Service, managed_by: &str) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    labels.remove(LABEL_HEADLESS);
    labels.insert(LABEL_SERVICE_NAME.into(), svc.name_any());
    labels.insert(LABEL_MANAGED_BY.into(), managed_by.into());
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels
}

/// An endpoint's identity across slices: its target pod, else its addresses.
fn endpoint_id(ep: &Endpoint) -> String {
    match ep.target_ref.as_ref().and_then(|t| t.name.as_ref()) {
        Some(name) => format!("pod/{name}"),
        None => ep.addresses.join(","),
    }
}

fn ports_key(ports: Option<&Vec<EndpointPort>>) -> String {
    serde_json::to_string(&ports.cloned().unwrap_or_default()).unwrap_or_default()
}

/// The addressType of a slice that lists `ep`: a slice holds one address
/// family, so IPv6 endpoints (mirrored from manual Endpoints) get slices of
/// their own, as upstream's mirroring controller writes them.
fn address_type(ep: &Endpoint) -> &'static str {
    match ep.addresses.first().map(|a| a.parse::<std::net::IpAddr>()) {
        Some(Ok(std::net::IpAddr::V6(_))) => "IPv6",
        _ => "IPv4",
    }
}

/// Slices are grouped by address family and ports: one group, one set of slices.
fn group_key(address_type: &str, ports: Option<&Vec<EndpointPort>>) -> String {
    format!("{address_type} {}", ports_key(ports))
}

/// Inputs of [`desired`] beyond the Service.
pub struct Inputs<'a> {
    /// The endpoints wanted, each with its ports, in the order new slices list them.
    pub endpoints: Vec<(Vec<EndpointPort>, Endpoint)>,
    /// The slices this controller manages for the Service.
    pub existing: &'a [Arc<EndpointSlice>],
    pub max_per_slice: usize,
    /// Set on every slice written (upstream: the latest pod/service change).
    pub trigger_time: Option<Time>,
    /// The controller's `managed-by` value.
    pub managed_by: &'a str,
    /// The owner of new slices and the source of their labels.
    pub owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    pub labels: BTreeMap<String, String>,
    /// `generateName` prefix of new slices.
    pub prefix: String,
    pub namespace: String,
}

/// The slices to write for a selector-based Service (see the module docs).
pub fn desired_for_service(
    svc: &Service,
    pods: &[Arc<Pod>],
    existing: &[Arc<EndpointSlice>],
    max: usize,
    zone_of: &dyn Fn(&str) -> Option<String>,
) -> Changes {
    let mut endpoints: Vec<(Vec<EndpointPort>, Endpoint)> = Vec::new();
    let mut sorted: Vec<&Arc<Pod>> = pods.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut trigger: Option<Time> = svc.metadata.creation_timestamp.clone();
    for pod in sorted {
        let zone = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(zone_of);
        if let Some(ep) = pod_endpoint(pod, svc, zone) {
            endpoints.push((pod_ports(pod, svc), ep));
            let t = pods::trigger_time(pod);
            if t.as_ref().map(|t| t.0) > trigger.as_ref().map(|t| t.0) {
                trigger = t;
            }
        }
    }
    desired(Inputs {
        endpoints,
        existing,
        max_per_slice: max,
        trigger_time: trigger,
        managed_by: MANAGED_BY,
        owner: pods::controller_ref("v1", "Service", &svc.metadata),
        labels: slice_labels(svc, MANAGED_BY),
        prefix: format!("{}-", svc.name_any()),
        namespace: svc.namespace().unwrap_or_default(),
    })
}

/// The general reconciler, shared with the mirroring controller.
pub fn desired(inputs: Inputs<'_>) -> Changes {
    let max = inputs.max_per_slice.max(1);
    // Wanted endpoints grouped by their ports, in input order.
    let mut groups: BTreeMap<String, (&'static str, Vec<EndpointPort>, Vec<Endpoint>)> =
        BTreeMap::new();
    for (ports, ep) in inputs.endpoints {
        let family = address_type(&ep);
        groups
            .entry(group_key(family, Some(&ports)))
            .or_insert_with(|| (family, ports, Vec::new()))
            .2
            .push(ep);
    }
    let mut wanted: HashMap<String, (String, Endpoint)> = HashMap::new();
    for (key, (_, _, eps)) in &groups {
        for ep in eps {
            wanted
                .entry(endpoint_id(ep))
                .or_insert_with(|| (key.clone(), ep.clone()));
        }
    }

    let stamp = |mut s: EndpointSlice| {
        s.metadata.labels = Some(inputs.labels.clone());
        s.metadata.owner_references = Some(vec![inputs.owner.clone()]);
        if let Some(t) = &inputs.trigger_time {
            let ts = t.0.to_string();
            s.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(ANNOTATION_TRIGGER_TIME.into(), ts);
        }
        s
    };

    let mut changes = Changes::default();
    // Per group: (slice, changed) kept.
    let mut kept: BTreeMap<String, Vec<(EndpointSlice, bool)>> = BTreeMap::new();
    let mut placeholder: Option<EndpointSlice> = None;
    for slice in inputs.existing {
        let key = group_key(&slice.address_type, slice.ports.as_ref());
        if slice.endpoints.is_empty()
            && slice.ports.as_ref().is_none_or(Vec::is_empty)
            && placeholder.is_none()
        {
            // A placeholder from when the Service had no endpoints; kept only
            // while it still has none.
            placeholder = Some((**slice).clone());
            continue;
        }
        // Also drops slices of a type never written here (FQDN).
        if !groups.contains_key(&key) {
            changes.delete.push((**slice).clone());
            continue;
        }
        let mut s = (**slice).clone();
        let mut changed = false;
        let mut eps = Vec::with_capacity(s.endpoints.len());
        for ep in std::mem::take(&mut s.endpoints) {
            match wanted.get(&endpoint_id(&ep)) {
                Some((k, want)) if *k == key => {
                    if *want != ep {
                        changed = true;
                    }
                    eps.push(want.clone());
                    wanted.remove(&endpoint_id(&ep));
                }
                _ => changed = true,
            }
        }
        s.endpoints = eps;
        if s.endpoints.is_empty() {
            changes.delete.push(s);
            continue;
        }
        let meta_ok = s.metadata.labels.as_ref() == Some(&inputs.labels)
            && s.metadata.owner_references.as_deref() == Some(std::slice::from_ref(&inputs.owner));
        kept.entry(key).or_default().push((s, changed || !meta_ok));
    }

    for (key, (family, ports, eps)) in &groups {
        let mut remaining: Vec<Endpoint> = eps
            .iter()
            .filter(|ep| wanted.get(&endpoint_id(ep)).is_some_and(|(k, _)| k == key))
            .cloned()
            .collect();
        for ep in &remaining {
            wanted.remove(&endpoint_id(ep));
        }
        let slices = kept.entry(key.clone()).or_default();
        // First into slices that are written anyway.
        for (s, changed) in slices.iter_mut().filter(|(_, c)| *c) {
            let _ = changed;
            while s.endpoints.len() < max && !remaining.is_empty() {
                s.endpoints.push(remaining.remove(0));
            }
        }
        // Then into one unchanged slice that can take all the rest.
        if !remaining.is_empty() {
            if let Some((s, changed)) = slices
                .iter_mut()
                .filter(|(s, c)| !*c && max - s.endpoints.len().min(max) >= remaining.len())
                .max_by_key(|(s, _)| max - s.endpoints.len().min(max))
            {
                s.endpoints.append(&mut remaining);
                *changed = true;
            }
        }
        for chunk in remaining.chunks(max) {
            changes.create.push(stamp(EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(inputs.prefix.clone()),
                    namespace: Some(inputs.namespace.clone()),
                    ..Default::default()
                },
                address_type: (*family).into(),
                endpoints: chunk.to_vec(),
                ports: Some(ports.clone()),
            }));
        }
    }
    let mut total = changes.create.len();
    for (s, changed) in kept.into_values().flatten() {
        total += 1;
        if changed {
            changes.update.push(stamp(s));
        }
    }
    match placeholder {
        Some(p) if total > 0 => changes.delete.push(p),
        Some(p) => {
            let meta_ok = p.metadata.labels.as_ref() == Some(&inputs.labels)
                && p.metadata.owner_references.as_deref()
                    == Some(std::slice::from_ref(&inputs.owner));
            if !meta_ok {
                changes.update.push(stamp(p));
            }
        }
        None if total == 0 => changes.create.push(stamp(EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(inputs.prefix.clone()),
                namespace: Some(inputs.namespace.clone()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: Vec::new(),
            ports: None,
        })),
        None => {}
    }
    changes
}

/// The services in the pod's namespace whose endpoints may change with it: those
/// selecting it now, and those whose slices still list it (its labels changed).
pub fn services_for_pod(cache: &Cache, pod: &Pod) -> Vec<Key> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let labels = pod.labels();
    let mut out: Vec<Key> = cache
        .services
        .state_filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns)
                && s.spec
                    .as_ref()
                    .and_then(|sp| sp.selector.as_ref())
                    .is_some_and(|sel| crate::selector::map_matches(sel, labels))
        })
        .iter()
        .map(|s| Key::of(&**s))
        .collect();
    let name = pod.metadata.name.as_deref();
    for slice in cache.slices.state_filter(|s| {
        s.metadata.namespace.as_deref() == Some(ns)
            && s.endpoints
                .iter()
                .any(|e| e.target_ref.as_ref().and_then(|t| t.name.as_deref()) == name)
    }) {
        if let Some(svc) = slice.labels().get(LABEL_SERVICE_NAME) {
            let k = Key::new(ns, svc);
            if !out.contains(&k) {
                out.push(k);
            }
        }
    }
    out
}

/// The pods a Service selects; `None` for Services without a selector.
pub fn selected_pods(cache: &Cache, svc: &Service) -> Option<Vec<Arc<Pod>>> {
    let sel = svc
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())?;
    let ns = svc.metadata.namespace.as_deref();
    Some(cache.pods.state_filter(|p| {
        p.metadata.namespace.as_deref() == ns && crate::selector::map_matches(sel, p.labels())
    }))
}

/// Slices in `key.ns` for Service `key.name` carrying `managed_by`.
pub fn managed_slices(cache: &Cache, key: &Key, managed_by: &str) -> Vec<Arc<EndpointSlice>> {
    cache.slices.state_filter(|s| {
        s.metadata.namespace.as_deref() == Some(key.ns.as_str())
            && s.labels().get(LABEL_SERVICE_NAME) == Some(&key.name)
            && s.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(managed_by)
    })
}

/// Writes `changes`: creates first, then updates, then deletes, so endpoints
/// never disappear in between (as upstream). Each write is remembered until the
/// cache shows it. `controller` (`endpointslice` or `endpointslicemirroring`)
/// is whose identity writes.
pub async fn apply(ctx: &Ctx, controller: &str, owner: &Key, changes: Changes) -> Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.clients.of(controller), &owner.ns);
    for s in changes.create {
        let made = api.create(&PostParams::default(), &s).await?;
        ctx.slice_writes.expect_write(
            owner,
            Key::of(&made),
            made.metadata.resource_version.clone(),
        );
    }
    for s in changes.update {
        let made = api
            .replace(&s.name_any(), &PostParams::default(), &s)
            .await?;
        ctx.slice_writes.expect_write_from(
            owner,
            Key::of(&made),
            made.metadata.resource_version.clone(),
            s.metadata.resource_version.as_deref(),
        );
    }
    for s in changes.delete {
        let dp = DeleteParams {
            preconditions: s.metadata.uid.clone().map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&s.name_any(), &dp).await {
            Ok(_) => ctx.slice_writes.expect_delete(owner, Key::of(&s)),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How soon to look again when the cache has not caught up with our writes.
pub const STALE_RETRY: Duration = Duration::from_millis(200);

pub async fn reconcile(ctx: Arc<Ctx>, key: Key) -> Result<Option<Duration>> {
    if ctx.slice_writes.pending(&key) {
        return Ok(Some(STALE_RETRY));
    }
    let existing = managed_slices(&ctx.cache, &key, MANAGED_BY);
    let svc = ctx
        .cache
        .services
        .get(&ObjectRef::new(&key.name).within(&key.ns));
    let changes = match svc {
        None => Changes {
            delete: existing.iter().map(|s| (**s).clone()).collect(),
            ..Default::default()
        },
        Some(svc) => {
            // Services without a selector are left to whoever writes their
            // endpoints (the mirroring controller, the DNS server, users).
            let Some(pods) = selected_pods(&ctx.cache, &svc) else {
                return Ok(None);
            };
            let nodes = &ctx.cache.nodes;
            let zone_of = |node: &str| {
                nodes
                    .get(&ObjectRef::new(node))
                    .and_then(|n| n.labels().get(LABEL_ZONE).cloned())
            };
            desired_for_service(
                &svc,
                &pods,
                &existing,
                ctx.settings.max_endpoints_per_slice,
                &zone_of,
            )
        }
    };
    if changes != Changes::default() {
        tracing::debug!(service = %key, create = changes.create.len(), update = changes.update.len(), delete = changes.delete.len(), "syncing endpoint slices");
        apply(&ctx, "endpointslice", &key, changes).await?;
    }
    Ok(None)
}

#[cfg(test)]
#[path = "endpointslice_tests.rs"]
mod tests;

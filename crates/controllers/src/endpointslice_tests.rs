//! Table tests of the EndpointSlice reconciler.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn svc(name: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some("svc-uid".into()),
            labels: Some(BTreeMap::from([("team".into(), "a".into())])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".into(), name.into())])),
            ports: Some(ports),
            cluster_ip: Some("10.96.0.20".into()),
            ..Default::default()
        }),
        status: None,
    }
}

fn port(name: &str, target: IntOrString) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: 80,
        target_port: Some(target),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

#[derive(Clone, Copy)]
enum State {
    Ready,
    NotReady,
    Terminating,
    Failed,
    NoIp,
}

fn pod(name: &str, ip: &str, state: State) -> Arc<Pod> {
    let ready = matches!(state, State::Ready | State::Terminating);
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            deletion_timestamp: matches!(state, State::Terminating)
                .then(|| Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-1".into()),
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(
                if matches!(state, State::Failed) {
                    "Failed"
                } else {
                    "Running"
                }
                .into(),
            ),
            pod_ip: (!matches!(state, State::NoIp)).then(|| ip.to_string()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

fn no_zone(_: &str) -> Option<String> {
    None
}

fn run(s: &Service, pods: &[Arc<Pod>], existing: &[Arc<EndpointSlice>], max: usize) -> Changes {
    desired_for_service(s, pods, existing, max, &no_zone)
}

/// The endpoints' (address, ready, serving, terminating) of a slice.
fn conds(s: &EndpointSlice) -> Vec<(String, bool, bool, bool)> {
    s.endpoints
        .iter()
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            (
                e.addresses[0].clone(),
                c.ready == Some(true),
                c.serving == Some(true),
                c.terminating == Some(true),
            )
        })
        .collect()
}

/// Creates become existing slices, as the API server would return them.
fn created(changes: Changes) -> Vec<Arc<EndpointSlice>> {
    changes
        .create
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            s.metadata.name = Some(format!("web-{i}"));
            Arc::new(s)
        })
        .collect()
}

#[test]
fn conditions_per_pod_state() {
    let s = svc("web", vec![port("http", IntOrString::Int(8080))]);
    let pods = vec![
        pod("a", "10.244.0.2", State::Ready),
        pod("b", "10.244.0.3", State::NotReady),
        pod("c", "10.244.0.4", State::Terminating),
        pod("d", "10.244.0.5", State::Failed),
        pod("e", "", State::NoIp),
    ];
    let ch = run(&s, &pods, &[], 100);
    assert_eq!(ch.create.len(), 1);
    let slice = &ch.create[0];
    assert_eq!(
        conds(slice),
        vec![
            ("10.244.0.2".into(), true, true, false),
            ("10.244.0.3".into(), false, false, false),
            // Terminating but still ready: serving, not ready.
            ("10.244.0.4".into(), false, true, true),
        ]
    );
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(LABEL_SERVICE_NAME).map(String::as_str),
        Some("web")
    );
    assert_eq!(
        labels.get(LABEL_MANAGED_BY).map(String::as_str),
        Some(MANAGED_BY)
    );
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(slice.address_type, "IPv4");
    let owner = &slice.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Service", Some(true))
    );
    let ep = &slice.endpoints[0];
    assert_eq!(ep.node_name.as_deref(), Some("node-1"));
    assert_eq!(
        ep.target_ref.as_ref().and_then(|t| t.name.as_deref()),
        Some("a")
    );
    assert_eq!(ep.hostname, None);

    // publishNotReadyAddresses: everything with an IP is ready.
    let mut p = s.clone();
    if let Some(spec) = p.spec.as_mut() {
        spec.publish_not_ready_addresses = Some(true);
    }
    let ch = run(&p, &pods, &[], 100);
    assert!(conds(&ch.create[0]).iter().all(|c| c.1));
}

#[test]
fn named_ports_resolve_per_pod() {
    let s = svc(
        "web",
        vec![port("http", IntOrString::String("http".into()))],
    );
    let mut other = (*pod("b", "10.244.0.3", State::Ready)).clone();
    if let Some(spec) = other.spec.as_mut() {
        spec.containers[0].ports = Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: 9090,
            ..Default::default()
        }]);
    }
    let mut none = (*pod("c", "10.244.0.4", State::Ready)).clone();
    if let Some(spec) = none.spec.as_mut() {
        spec.containers[0].ports = None;
    }
    let pods = vec![
        pod("a", "10.244.0.2", State::Ready),
        Arc::new(other),
        Arc::new(none),
    ];
    let ch = run(&s, &pods, &[], 100);
    let mut got: Vec<(Option<i32>, Vec<String>)> = ch
        .create
        .iter()
        .map(|sl| {
            let p = sl.ports.clone().unwrap_or_default();
            (
                p.first().and_then(|p| p.port),
                sl.endpoints
                    .iter()
                    .map(|e| e.addresses[0].clone())
                    .collect(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            // A pod without the named port still gets an endpoint, with no ports.
            (None, vec!["10.244.0.4".to_string()]),
            (Some(8080), vec!["10.244.0.2".to_string()]),
            (Some(9090), vec!["10.244.0.3".to_string()]),
        ]
    );
    let port = &ch
        .create
        .iter()
        .find_map(|s| s.ports.clone().filter(|p| !p.is_empty()))
        .unwrap_or_default()[0];
    assert_eq!(
        (port.name.as_deref(), port.protocol.as_deref()),
        (Some("http"), Some("TCP"))
    );
}

#[test]
fn hostname_only_when_subdomain_is_the_service() {
    let s = svc("web", vec![port("", IntOrString::Int(80))]);
    let with = |hostname: Option<&str>, subdomain: Option<&str>| {
        let mut p = (*pod("a", "10.244.0.2", State::Ready)).clone();
        if let Some(spec) = p.spec.as_mut() {
            spec.hostname = hostname.map(Into::into);
            spec.subdomain = subdomain.map(Into::into);
        }
        let ch = run(&s, &[Arc::new(p)], &[], 100);
        ch.create[0].endpoints[0].hostname.clone()
    };
    assert_eq!(with(Some("web-0"), Some("web")), Some("web-0".into()));
    assert_eq!(with(Some("web-0"), Some("other")), None);
    assert_eq!(with(Some("web-0"), None), None);
    assert_eq!(with(None, Some("web")), None);
}

#[test]
fn splits_at_max_and_refills_with_little_churn() {
    let s = svc("web", vec![port("http", IntOrString::Int(8080))]);
    let pods: Vec<Arc<Pod>> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i:03}"),
                &format!("10.244.{}.{}", i / 200, i % 200 + 2),
                State::Ready,
            )
        })
        .collect();
    let ch = run(&s, &pods, &[], 100);
    let sizes: Vec<usize> = ch.create.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    let existing = created(ch);

    // Nothing changed: nothing is written.
    assert_eq!(run(&s, &pods, &existing, 100), Changes::default());

    // One pod gone: only its slice is updated.
    let fewer: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| p.metadata.name.as_deref() != Some("p000"))
        .cloned()
        .collect();
    let ch = run(&s, &fewer, &existing, 100);
    assert_eq!(
        (ch.create.len(), ch.update.len(), ch.delete.len()),
        (0, 1, 0)
    );
    assert_eq!(ch.update[0].endpoints.len(), 99);

    // Ten new pods go into the one slice with room, not a new slice.
    let mut more = pods.clone();
    more.extend((0..10).map(|i| pod(&format!("q{i}"), &format!("10.244.9.{i}"), State::Ready)));
    let ch = run(&s, &more, &existing, 100);
    assert_eq!(
        (ch.create.len(), ch.update.len(), ch.delete.len()),
        (0, 1, 0)
    );
    assert_eq!(ch.update[0].endpoints.len(), 60);

    // A readiness flip updates one slice.
    let mut flipped = pods.clone();
    flipped[150] = pod("p150", "10.244.0.152", State::NotReady);
    let ch = run(&s, &flipped, &existing, 100);
    assert_eq!(
        (ch.create.len(), ch.update.len(), ch.delete.len()),
        (0, 1, 0)
    );

    // All pods gone: slices deleted and a placeholder created.
    let ch = run(&s, &[], &existing, 100);
    assert_eq!(
        (ch.create.len(), ch.update.len(), ch.delete.len()),
        (1, 0, 3)
    );
    assert!(ch.create[0].endpoints.is_empty());
    let placeholder = created(ch);
    assert_eq!(run(&s, &[], &placeholder, 100), Changes::default());
    // Pods back: a real slice, and the placeholder goes.
    let ch = run(&s, &pods[..1], &placeholder, 100);
    assert_eq!(
        (ch.create.len(), ch.update.len(), ch.delete.len()),
        (1, 0, 1)
    );
}

#[test]
fn changed_ports_replace_slices() {
    let s = svc("web", vec![port("http", IntOrString::Int(8080))]);
    let pods = vec![pod("a", "10.244.0.2", State::Ready)];
    let existing = created(run(&s, &pods, &[], 100));
    let s2 = svc("web", vec![port("http", IntOrString::Int(9000))]);
    let ch = run(&s2, &pods, &existing, 100);
    assert_eq!(
        (ch.create.len(), ch.update.len(), ch.delete.len()),
        (1, 0, 1)
    );
    assert_eq!(
        ch.create[0].ports.as_ref().and_then(|p| p[0].port),
        Some(9000)
    );
}

#[test]
fn legacy_endpoints_subsets() {
    let s = svc("web", vec![port("http", IntOrString::Int(8080))]);
    let pods = vec![
        pod("b", "10.244.0.10", State::Ready),
        pod("a", "10.244.0.9", State::Ready),
        pod("c", "10.244.0.4", State::NotReady),
        pod("d", "10.244.0.5", State::Terminating),
    ];
    let ep = crate::endpoints::desired(&s, &pods, None).unwrap_or_default();
    let subsets = ep.subsets.clone().unwrap_or_default();
    assert_eq!(subsets.len(), 1);
    let ips = |a: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        a.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
    };
    // Sorted by IP numerically; terminating pods are left out.
    assert_eq!(
        ips(&subsets[0].addresses),
        vec!["10.244.0.9", "10.244.0.10"]
    );
    assert_eq!(ips(&subsets[0].not_ready_addresses), vec!["10.244.0.4"]);
    assert_eq!(subsets[0].ports.as_ref().map(|p| p[0].port), Some(8080));
    // Unchanged: nothing to write.
    assert!(crate::endpoints::desired(&s, &pods, Some(&ep)).is_none());
    // No pods: no subsets.
    let empty = crate::endpoints::desired(&s, &[], Some(&ep)).unwrap_or_default();
    assert_eq!(empty.subsets, None);
}

//! Pod helpers shared by the controllers (upstream `podutil`).

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The alphabet of upstream's `utilrand.String`: no vowels (no words) and no
/// look-alikes such as 0/o or 1/l.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `n` random characters as upstream's `generateName` suffix.
pub fn random_suffix(n: usize) -> String {
    (0..n)
        .map(|_| ALPHANUMS[rand::random_range(0..ALPHANUMS.len())] as char)
        .collect()
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// When the pod last changed in a way that matters to its endpoints: its Ready
/// transition, else its creation (upstream `getPodTriggerTime`).
pub fn trigger_time(pod: &Pod) -> Option<Time> {
    ready_condition(pod)
        .and_then(|c| c.last_transition_time.clone())
        .or_else(|| pod.metadata.creation_timestamp.clone())
}

/// Succeeded or Failed: the pod will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Running and Ready: what `readyReplicas` counts. `min_ready_seconds` is not
/// tracked separately, so available == ready.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && !is_terminating(pod)
}

/// The pod's IPv4 address, if it has one.
pub fn ipv4(pod: &Pod) -> Option<String> {
    let st = pod.status.as_ref()?;
    let ips = st.pod_ips.iter().flatten().map(|i| i.ip.as_str());
    st.pod_ip
        .as_deref()
        .into_iter()
        .chain(ips)
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
}

/// The container port a service port reaches on this pod (upstream
/// `podutil.FindPort`): a named targetPort is looked up in the containers'
/// ports with the same protocol; `None` when the pod has no such port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let proto = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| {
                p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == proto
            })
            .map(|p| p.container_port),
        Some(IntOrString::Int(0)) | None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
    }
}

/// A controller owner reference (`controller: true`, `blockOwnerDeletion: true`).
pub fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod from a workload's template (upstream `GetPodFromTemplate`).
pub fn from_template(
    template: &PodTemplateSpec,
    ns: &str,
    name: &str,
    owner: OwnerReference,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};

    #[test]
    fn find_port_table() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![
                        ContainerPort {
                            name: Some("http".into()),
                            container_port: 8080,
                            ..Default::default()
                        },
                        ContainerPort {
                            name: Some("dns".into()),
                            container_port: 5353,
                            protocol: Some("UDP".into()),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let sp = |target: Option<IntOrString>, proto: &str| ServicePort {
            port: 80,
            target_port: target,
            protocol: Some(proto.into()),
            ..Default::default()
        };
        let cases = [
            (
                sp(Some(IntOrString::String("http".into())), "TCP"),
                Some(8080),
            ),
            (sp(Some(IntOrString::String("http".into())), "UDP"), None),
            (
                sp(Some(IntOrString::String("dns".into())), "UDP"),
                Some(5353),
            ),
            (sp(Some(IntOrString::String("nope".into())), "TCP"), None),
            (sp(Some(IntOrString::Int(9376)), "TCP"), Some(9376)),
            (sp(None, "TCP"), Some(80)),
        ];
        for (port, want) in cases {
            assert_eq!(find_port(&pod, &port), want, "{port:?}");
        }
        assert_eq!(random_suffix(5).len(), 5);
    }
}

//! Decoding through the typed k8s-openapi structs, as upstream decodes through Go
//! structs: wrong types are errors, unknown fields are reported (for
//! `fieldValidation`) and pruned from what gets stored.

use k8s_openapi::api::{apps, batch, coordination, core, discovery, events, networking, rbac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::registry::Resource;

/// The object after a round trip through its typed struct, and the paths of the
/// fields that struct does not have (`spec.ports[0].foo`).
#[derive(Debug)]
pub struct Decoded {
    pub object: Value,
    pub unknown_fields: Vec<String>,
}

fn render_path(path: &serde_ignored::Path<'_>, out: &mut String) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            render_path(parent, out);
            out.push_str(&format!("[{index}]"));
        }
        Path::Map { parent, key } => {
            render_path(parent, out);
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => render_path(parent, out),
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(value: Value) -> Result<Decoded, String> {
    let mut unknown_fields = Vec::new();
    let typed: T = serde_ignored::deserialize(value, |path| {
        let mut s = String::new();
        render_path(&path, &mut s);
        unknown_fields.push(s);
    })
    .map_err(|e| e.to_string())?;
    let object = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    Ok(Decoded {
        object,
        unknown_fields,
    })
}

/// Decodes `value` as the kind `resource` serves. `Err` carries the decoder's
/// message for a value of the wrong type; callers wrap it in upstream's
/// "cannot be handled as a Kind" form.
pub fn decode(resource: &Resource, value: Value) -> Result<Decoded, String> {
    match (resource.group, resource.kind) {
        ("", "Namespace") => roundtrip::<core::v1::Namespace>(value),
        ("", "Node") => roundtrip::<core::v1::Node>(value),
        ("", "Pod") => roundtrip::<core::v1::Pod>(value),
        ("", "Service") => roundtrip::<core::v1::Service>(value),
        ("", "Endpoints") => roundtrip::<core::v1::Endpoints>(value),
        ("", "Event") => roundtrip::<core::v1::Event>(value),
        ("", "ConfigMap") => roundtrip::<core::v1::ConfigMap>(value),
        ("", "Secret") => roundtrip::<core::v1::Secret>(value),
        ("", "ServiceAccount") => roundtrip::<core::v1::ServiceAccount>(value),
        ("apps", "Deployment") => roundtrip::<apps::v1::Deployment>(value),
        ("apps", "ReplicaSet") => roundtrip::<apps::v1::ReplicaSet>(value),
        ("apps", "StatefulSet") => roundtrip::<apps::v1::StatefulSet>(value),
        ("apps", "DaemonSet") => roundtrip::<apps::v1::DaemonSet>(value),
        ("apps", "ControllerRevision") => roundtrip::<apps::v1::ControllerRevision>(value),
        ("", "ReplicationController") => roundtrip::<core::v1::ReplicationController>(value),
        ("batch", "Job") => roundtrip::<batch::v1::Job>(value),
        ("batch", "CronJob") => roundtrip::<batch::v1::CronJob>(value),
        ("discovery.k8s.io", "EndpointSlice") => roundtrip::<discovery::v1::EndpointSlice>(value),
        ("networking.k8s.io", "NetworkPolicy") => roundtrip::<networking::v1::NetworkPolicy>(value),
        ("networking.k8s.io", "Ingress") => roundtrip::<networking::v1::Ingress>(value),
        ("networking.k8s.io", "IngressClass") => roundtrip::<networking::v1::IngressClass>(value),
        ("coordination.k8s.io", "Lease") => roundtrip::<coordination::v1::Lease>(value),
        ("events.k8s.io", "Event") => roundtrip::<events::v1::Event>(value),
        ("rbac.authorization.k8s.io", "Role") => roundtrip::<rbac::v1::Role>(value),
        ("rbac.authorization.k8s.io", "RoleBinding") => roundtrip::<rbac::v1::RoleBinding>(value),
        ("rbac.authorization.k8s.io", "ClusterRole") => roundtrip::<rbac::v1::ClusterRole>(value),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            roundtrip::<rbac::v1::ClusterRoleBinding>(value)
        }
        (crate::crd::GROUP, "CustomResourceDefinition") => roundtrip::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(value),
        // A custom resource: its schema says which fields are unknown.
        _ => Ok(Decoded {
            unknown_fields: crate::crd::unknown_fields(resource, &value).unwrap_or_default(),
            object: value,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_with_paths_and_pruned() {
        let svc = lookup("", "v1", "services").unwrap();
        let d = decode(
            svc,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                   "spec": {"bogus": 1, "ports": [{"port": 80, "extra": true}]}}),
        )
        .unwrap();
        assert_eq!(d.unknown_fields, vec!["spec.bogus", "spec.ports[0].extra"]);
        assert!(d.object["spec"].get("bogus").is_none());
        assert_eq!(d.object["spec"]["ports"][0]["port"], 80);
    }

    #[test]
    fn wrong_types_are_errors() {
        let svc = lookup("", "v1", "services").unwrap();
        let err = decode(svc, json!({"spec": {"ports": [{"port": "eighty"}]}})).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
    }
}

//! Upstream's root-ca-cert-publisher: a ConfigMap `kube-root-ca.crt` with the
//! cluster CA (`ca.crt`) in every namespace that is not terminating, kept as
//! it should be. Pods' token volumes project it, so in-cluster clients can
//! verify the API server they reach at the `kubernetes` ClusterIP.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;

use crate::per_namespace::{self, Ensure};

/// The ConfigMap's name (upstream's `RootCACertConfigMapName`).
pub const NAME: &str = "kube-root-ca.crt";
/// Its key (upstream's `DataKey`).
pub const KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's description of the ConfigMap.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

pub fn desired(namespace: &str, ca_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(namespace.into()),
            annotations: Some(BTreeMap::from([(
                DESCRIPTION_ANNOTATION.to_string(),
                DESCRIPTION.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(KEY.to_string(), ca_pem.to_string())])),
        ..Default::default()
    }
}

fn description(cm: &ConfigMap) -> Option<&String> {
    cm.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
}

/// Its data exactly, and the description annotation, as upstream checks.
pub fn up_to_date(have: &ConfigMap, want: &ConfigMap) -> bool {
    have.data == want.data && have.binary_data.is_none() && description(have) == description(want)
}

fn merge(have: &mut ConfigMap, want: ConfigMap) {
    have.data = want.data;
    have.binary_data = None;
    let annotations = have.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in want.metadata.annotations.unwrap_or_default() {
        annotations.insert(k, v);
    }
}

/// Runs until dropped: `informers` watches the namespaces and the
/// ConfigMaps, `writer` writes.
pub async fn run(informers: Client, writer: Client, ca_pem: String) {
    per_namespace::run(
        informers,
        writer,
        Ensure {
            controller: "root-ca-cert-publisher",
            name: NAME,
            desired: Box::new(move |ns| desired(ns, &ca_pem)),
            up_to_date,
            merge,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_or_edited_copies_are_rewritten() {
        let want = desired("a", "PEM");
        assert!(up_to_date(&want, &want));
        let mut edited = want.clone();
        edited.data = Some(BTreeMap::from([(KEY.to_string(), "other".to_string())]));
        assert!(!up_to_date(&edited, &want));
        let mut extra = want.clone();
        extra.metadata.labels = Some(BTreeMap::from([("x".to_string(), "y".to_string())]));
        assert!(up_to_date(&extra, &want), "labels are the user's");
        let mut bare = edited.clone();
        bare.metadata.annotations = None;
        merge(&mut bare, want.clone());
        assert!(up_to_date(&bare, &want));
    }
}

//! Which Ingresses are ours: those of an IngressClass whose controller is
//! [`CONTROLLER`] (by `spec.ingressClassName` or the legacy
//! `kubernetes.io/ingress.class` annotation), and those naming no class when
//! one of our classes is the cluster's default.

use std::collections::HashSet;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, PostParams};

/// The controller our IngressClasses name.
pub const CONTROLLER: &str = "skiff.dev/ingress";
/// The IngressClass created at start.
pub const CLASS_NAME: &str = "skiff";
/// The annotation marking the default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation Ingresses used before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The classes we serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classes {
    pub names: HashSet<String>,
    /// One of them is the cluster's default class.
    pub default: bool,
}

impl Classes {
    pub fn from_classes<'a>(classes: impl IntoIterator<Item = &'a IngressClass>) -> Self {
        let mut out = Classes::default();
        for c in classes {
            let ours = c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER);
            let Some(name) = c.metadata.name.clone().filter(|_| ours) else {
                continue;
            };
            out.default |= c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
            out.names.insert(name);
        }
        out
    }

    pub fn serves(&self, ing: &Ingress) -> bool {
        let named = ing
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref());
        let legacy = ing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
            .map(String::as_str);
        match named.or(legacy) {
            Some(n) => self.names.contains(n),
            None => self.default,
        }
    }
}

/// Creates the IngressClass [`CLASS_NAME`], marked default, unless it exists
/// (an admin's edits to it, such as dropping the default mark, are kept).
pub async fn ensure(client: kube::Client) -> Result<(), kube::Error> {
    let api: Api<IngressClass> = Api::all(client);
    if api.get_opt(CLASS_NAME).await?.is_some() {
        return Ok(());
    }
    let class: IngressClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {
            "name": CLASS_NAME,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
            "labels": {"app.kubernetes.io/managed-by": "skiff"},
        },
        "spec": {"controller": CONTROLLER},
    }))
    .map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => {
            tracing::info!(class = CLASS_NAME, "ingress class created");
            Ok(())
        }
        // Another node's ingress made it first.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, controller: &str, default: bool) -> IngressClass {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": {DEFAULT_CLASS_ANNOTATION: default.to_string()}},
            "spec": {"controller": controller},
        }))
        .expect("class")
    }

    fn ingress(class: Option<&str>, legacy: Option<&str>) -> Ingress {
        let mut v = serde_json::json!({"metadata": {"name": "i"}, "spec": {}});
        if let Some(c) = class {
            v["spec"]["ingressClassName"] = c.into();
        }
        if let Some(l) = legacy {
            v["metadata"]["annotations"] = serde_json::json!({LEGACY_CLASS_ANNOTATION: l});
        }
        serde_json::from_value(v).expect("ingress")
    }

    #[test]
    fn which_ingresses_are_served() {
        let ours = Classes::from_classes(&[
            class("skiff", CONTROLLER, true),
            class("nginx", "k8s.io/ingress-nginx", false),
        ]);
        assert!(ours.serves(&ingress(Some("skiff"), None)));
        assert!(ours.serves(&ingress(None, Some("skiff"))));
        assert!(ours.serves(&ingress(None, None)), "default class");
        assert!(!ours.serves(&ingress(Some("nginx"), None)));
        assert!(!ours.serves(&ingress(None, Some("nginx"))));
        let not_default = Classes::from_classes(&[class("skiff", CONTROLLER, false)]);
        assert!(!not_default.serves(&ingress(None, None)));
        assert!(not_default.serves(&ingress(Some("skiff"), None)));
        assert!(!Classes::default().serves(&ingress(Some("skiff"), None)));
    }
}

//! The built-in signers (upstream's csrsigning controller): an approved
//! request for [`KUBE_APISERVER_CLIENT`] gets a client certificate for its
//! subject's CN and O's (client auth); one for [`KUBELET_SERVING`] a serving
//! certificate for `system:node:<name>` in `system:nodes` with its IP SANs
//! (and the node name). A request a signer may not issue gets the Failed
//! condition (`SignerValidationFailure`) instead. `spec.expirationSeconds`
//! shortens a client certificate, capped at [`MAX_DURATION_SECONDS`].
//!
//! It runs in the API server, which holds the cluster CA, and looks at the
//! requests every [`PERIOD`].

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use skiff_api::registry;

use super::request::{self, Requested};
use super::{KUBELET_SERVING, KUBE_APISERVER_CLIENT, MAX_DURATION_SECONDS};
use crate::body;
use crate::request::Target;
use crate::rest::{self, WriteOptions};
use crate::server::Api;

const PERIOD: Duration = Duration::from_secs(1);

/// Runs until the server stops.
pub async fn run(api: Arc<Api>) {
    let Some(resource) =
        registry::lookup("certificates.k8s.io", "v1", "certificatesigningrequests")
    else {
        return;
    };
    loop {
        tokio::time::sleep(PERIOD).await;
        let page = match api.objects.list(resource, None, None, None).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "listing certificate signing requests");
                continue;
            }
        };
        for csr in page.items {
            if !wants_signing(&csr) {
                continue;
            }
            let outcome = sign(&api, &csr);
            if let Err(e) = record(&api, resource, &csr, outcome).await {
                tracing::warn!(error = %e, "writing a certificate signing request's status");
            }
        }
    }
}

fn wants_signing(csr: &Value) -> bool {
    let signer = csr.pointer("/spec/signerName").and_then(Value::as_str);
    let issued = csr
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty());
    matches!(signer, Some(KUBE_APISERVER_CLIENT | KUBELET_SERVING))
        && super::approved(csr)
        && !issued
}

fn usages(csr: &Value) -> Vec<String> {
    csr.pointer("/spec/usages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect()
}

/// Upstream `ValidateKubeAPIServerClientCSR`.
pub fn check_client(req: &Requested, usages: &[String]) -> Result<(), String> {
    if req.common_name.is_empty() {
        return Err("subject CN must not be empty".into());
    }
    if !req.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !req.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if req.other_names > 0 {
        return Err("email and URI subjectAltNames are not allowed".into());
    }
    let allowed = ["digital signature", "key encipherment", "client auth"];
    if !usages.iter().any(|u| u == "client auth")
        || usages.iter().any(|u| !allowed.contains(&u.as_str()))
    {
        return Err(format!(
            "usages did not match [client auth digital signature key encipherment]: {usages:?}"
        ));
    }
    Ok(())
}

/// Upstream `ValidateKubeletServingCSR`; the node's name.
pub fn check_serving(req: &Requested, usages: &[String]) -> Result<String, String> {
    if req.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    let Some(node) = req.common_name.strip_prefix("system:node:") else {
        return Err("subject common name does not begin with system:node:".into());
    };
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if req.other_names > 0 {
        return Err("email and URI subjectAltNames are not allowed".into());
    }
    let allowed = ["digital signature", "key encipherment", "server auth"];
    if !usages.iter().any(|u| u == "server auth")
        || usages.iter().any(|u| !allowed.contains(&u.as_str()))
    {
        return Err(format!(
            "usages did not match [digital signature key encipherment server auth]: {usages:?}"
        ));
    }
    Ok(node.to_string())
}

/// The certificate (PEM), or why the signer refuses.
fn sign(api: &Api, csr: &Value) -> Result<String, String> {
    let pem = super::request_pem(csr).ok_or(request::NOT_A_CSR)?;
    let req = request::parse(&pem)?;
    let pem = String::from_utf8_lossy(&pem).into_owned();
    let usages = usages(csr);
    match csr.pointer("/spec/signerName").and_then(Value::as_str) {
        Some(KUBE_APISERVER_CLIENT) => {
            check_client(&req, &usages)?;
            let secs = csr
                .pointer("/spec/expirationSeconds")
                .and_then(Value::as_i64)
                .map_or(MAX_DURATION_SECONDS, |s| s.min(MAX_DURATION_SECONDS));
            let groups: Vec<&str> = req.organizations.iter().map(String::as_str).collect();
            api.ca
                .sign_client(
                    &pem,
                    &req.common_name,
                    &groups,
                    Duration::from_secs(secs.max(0) as u64),
                )
                .map_err(|e| e.to_string())
        }
        _ => {
            let node = check_serving(&req, &usages)?;
            api.ca
                .sign_node_serving(&pem, &node, &req.ip_addresses)
                .map_err(|e| e.to_string())
        }
    }
}

/// Writes the certificate, or the Failed condition, unless another signer
/// got there first.
async fn record(
    api: &Api,
    resource: &'static registry::Resource,
    csr: &Value,
    outcome: Result<String, String>,
) -> Result<(), skiff_api::StatusError> {
    let name = csr
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let t = Target {
        resource,
        namespace: None,
        name: Some(name.to_string()),
        subresource: Some("status".into()),
    };
    let opts = WriteOptions {
        dry_run: false,
        validation: body::FieldValidation::Ignore,
        field_manager: None,
    };
    let now = crate::strategy::now_rfc3339();
    rest::patch_with(api, &t, &opts, |cur| {
        let mut out = cur.clone();
        if !wants_signing(cur) {
            return Ok(out);
        }
        if !out["status"].is_object() {
            out["status"] = json!({});
        }
        match &outcome {
            Ok(cert) => {
                out["status"]["certificate"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(cert));
            }
            Err(why) => {
                let mut conditions = out["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                conditions.push(json!({
                    "type": "Failed", "status": "True",
                    "reason": "SignerValidationFailure", "message": why,
                    "lastUpdateTime": now, "lastTransitionTime": now,
                }));
                out["status"]["conditions"] = Value::Array(conditions);
            }
        }
        Ok(out)
    })
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_signer_issues_only_its_kind() {
        let client = Requested {
            common_name: "jane".into(),
            organizations: vec!["dev".into()],
            ..Default::default()
        };
        let u = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_client(&client, &u(&["client auth"])).is_ok());
        assert!(check_client(&client, &u(&["server auth"])).is_err());
        assert!(check_serving(&client, &u(&["server auth"])).is_err());
        let node = Requested {
            common_name: "system:node:n1".into(),
            organizations: vec!["system:nodes".into()],
            ip_addresses: vec!["10.0.0.1".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(
            check_serving(&node, &u(&["digital signature", "server auth"])),
            Ok("n1".into())
        );
        assert!(
            check_client(&node, &u(&["client auth"])).is_err(),
            "no IP SANs"
        );
    }
}

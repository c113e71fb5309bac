//! The API server's half of the `ServiceAccount` admission plugin
//! ([`skiff_api::admission::service_account`]): it looks the pod's account up
//! in the store, as upstream's plugin does through its informer and then the
//! API, waiting a little for `default`, which the serviceaccount controller
//! may not have made yet in a namespace created a moment ago.

use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use skiff_api::admission::service_account as sa;
use skiff_api::registry::{self, Resource};
use skiff_api::StatusError;

use crate::server::Api;

/// Upstream looks `default` up 10 times, others once, 100-200 ms apart.
const DEFAULT_ATTEMPTS: usize = 10;

fn serviceaccounts() -> Result<&'static Resource, StatusError> {
    registry::lookup("", "v1", "serviceaccounts")
        .ok_or_else(|| StatusError::internal("serviceaccounts are not registered"))
}

async fn get(api: &Api, ns: &str, name: &str) -> Result<Option<Value>, StatusError> {
    match api.objects.get(serviceaccounts()?, Some(ns), name).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether this cluster runs the serviceaccount controller: it keeps
/// `default/default`. Without it (`skiff server --disable controllers`) no
/// namespace ever gets an account, and refusing every pod (upstream's answer)
/// would leave such a server unable to run any; its pods run without a token.
async fn accounts_are_made(api: &Api) -> Result<bool, StatusError> {
    Ok(get(api, "default", sa::DEFAULT_SERVICE_ACCOUNT)
        .await?
        .is_some())
}

/// Admits a new pod in `ns`: defaults its account, refuses it (403, upstream's
/// message) when the account does not exist, and mounts the token volume
/// unless automounting is off.
pub async fn admit(
    api: &Api,
    resource: &Resource,
    ns: &str,
    pod: &mut Value,
) -> Result<(), StatusError> {
    if sa::skips(pod) {
        return Ok(());
    }
    let name = sa::default_service_account_name(pod);
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut account = get(api, ns, &name).await?;
    if account.is_none() {
        if !accounts_are_made(api).await? {
            tracing::debug!(namespace = ns, account = %name, "no service accounts in this cluster; pod admitted without a token");
            return Ok(());
        }
        let attempts = if name == sa::DEFAULT_SERVICE_ACCOUNT {
            DEFAULT_ATTEMPTS
        } else {
            1
        };
        let interval = Duration::from_millis(rand::rng().random_range(100..200));
        for _ in 1..attempts {
            tokio::time::sleep(interval).await;
            account = get(api, ns, &name).await?;
            if account.is_some() {
                break;
            }
        }
    }
    let Some(account) = account else {
        // Upstream's NotFound names the resource in the singular here.
        let why = sa::lookup_failed(ns, &name, &format!("serviceaccount \"{name}\" not found"));
        return Err(StatusError::forbidden(resource, &pod_name, &why));
    };
    if sa::should_automount(pod, &account) {
        let volume = crate::rest::generated_name(sa::TOKEN_VOLUME_PREFIX);
        sa::mount_service_account_token(pod, &volume);
    }
    Ok(())
}

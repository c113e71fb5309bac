//! Namespace lifecycle: a terminating namespace is emptied, then removed, as
//! upstream's namespace controller does. It runs inside the API server because it
//! must see every resource kind, including ones no controller watches.

use std::sync::Arc;
use std::time::Duration;

use skiff_api::registry;

use crate::delete::{self, DeleteOptions};
use crate::request::Target;
use crate::rest;
use crate::server::Api;

const RESYNC: Duration = Duration::from_secs(2);

pub async fn lifecycle(api: Arc<Api>) {
    loop {
        tokio::select! {
            _ = api.namespaces_changed.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
        if let Err(e) = sweep(&api).await {
            tracing::warn!(error = %e, "namespace cleanup failed; will retry");
        }
    }
}

async fn sweep(api: &Api) -> Result<(), skiff_api::StatusError> {
    let Some(ns_res) = registry::lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    let page = api.objects.list(ns_res, None, None, None).await?;
    for ns in page
        .items
        .iter()
        .filter(|n| n.pointer("/metadata/deletionTimestamp").is_some())
    {
        let Some(name) = rest::name_of(ns) else {
            continue;
        };
        let mut left = 0usize;
        // Two versions of one resource share storage: visit each storage once.
        let mut seen = Vec::new();
        // Custom resources too: a namespace takes its custom objects with it.
        for r in registry::all().into_iter().filter(|r| r.namespaced) {
            if seen.contains(&r.storage) {
                continue;
            }
            seen.push(r.storage);
            let items = api.objects.list(r, Some(name), None, None).await?.items;
            for obj in items {
                left += 1;
                if obj.pointer("/metadata/deletionTimestamp").is_some() {
                    continue;
                }
                let t = Target {
                    resource: r,
                    namespace: Some(name.to_string()),
                    name: rest::name_of(&obj).map(str::to_string),
                    subresource: None,
                };
                if let Err(e) = delete::delete(api, &t, &DeleteOptions::default()).await {
                    if e.code != 404 {
                        tracing::debug!(error = %e, "deleting namespace content");
                    }
                }
            }
        }
        if left == 0 {
            let rv = crate::objects::revision_of(ns);
            match api.objects.delete(ns_res, None, name, rv).await {
                Ok(_) => tracing::info!(namespace = name, "namespace removed"),
                Err(e) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e),
            }
        } else {
            api.namespaces_changed.notify_one();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

//! Which API servers are alive, for `default/kubernetes`'s endpoints: upstream's
//! lease endpoint reconciler. Every server renews a Lease of its own,
//! `kube-system/skiff-apiserver-<host>-<port>` (holder `host:port`), each time
//! the built-in objects are checked; the endpoints name every server whose
//! Lease has not expired. So servers sharing a store agree on the endpoints
//! instead of each overwriting them with itself, a dead server leaves them
//! within [`LEASE_SECONDS`], and clients of the ClusterIP (pods, agents) reach
//! any live server.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use skiff_api::registry::{self, Resource};
use skiff_api::StatusError;

use crate::request::Target;
use crate::server::Api;

/// Where the Leases live, and the prefix of their names.
const NAMESPACE: &str = "kube-system";
const NAME_PREFIX: &str = "skiff-apiserver-";
/// A server that has not renewed for this long is gone (upstream's master
/// lease TTL); renewed every [`super::repair`] built-in pass (10 s).
pub const LEASE_SECONDS: i64 = 15;

fn leases() -> Option<&'static Resource> {
    registry::lookup("coordination.k8s.io", "v1", "leases")
}

/// The Lease name of the server at `host:port` (a DNS subdomain: IPv6 colons
/// become dashes).
fn lease_name(host: &str, port: i64) -> String {
    format!("{NAME_PREFIX}{}-{port}", host.replace(':', "-"))
}

fn micro_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Renews this server's Lease, making it the first time.
pub async fn renew(api: &Api, host: &str, port: i64) -> Result<(), StatusError> {
    let Some(resource) = leases() else {
        return Ok(());
    };
    let name = lease_name(host, port);
    let now = micro_time(Utc::now());
    let spec = json!({
        "holderIdentity": format!("{host}:{port}"),
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": now,
    });
    match api
        .objects
        .get_opt(resource, Some(NAMESPACE), &name)
        .await?
    {
        None => {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": spec,
            });
            let t = Target {
                resource,
                namespace: Some(NAMESPACE.into()),
                name: None,
                subresource: None,
            };
            match crate::rest::create(api, &t, lease, &super::builtin::opts()).await {
                Err(e) if e.reason != "AlreadyExists" => Err(e),
                _ => Ok(()),
            }
        }
        Some(_) => {
            let t = Target {
                resource,
                namespace: Some(NAMESPACE.into()),
                name: Some(name),
                subresource: None,
            };
            crate::rest::patch_with(api, &t, &super::builtin::opts(), |cur| {
                let mut next = cur.clone();
                next["spec"] = spec.clone();
                Ok(next)
            })
            .await
            .map(|_| ())
        }
    }
}

/// The live servers' `(host, port)`, sorted, `own` always among them (it is
/// serving this very pass, whatever its Lease says).
pub async fn live(api: &Api, own: (&str, i64)) -> Vec<(String, i64)> {
    let mut out = vec![(own.0.to_string(), own.1)];
    if let Some(resource) = leases() {
        match api
            .objects
            .list(resource, Some(NAMESPACE), None, None)
            .await
        {
            Ok(page) => out.extend(alive(&page.items, Utc::now())),
            Err(e) => tracing::warn!(error = %e, "cannot list the API servers' Leases"),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The holders of the unexpired server Leases among `items`.
fn alive(items: &[Value], now: DateTime<Utc>) -> Vec<(String, i64)> {
    items
        .iter()
        .filter(|l| {
            l.pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.starts_with(NAME_PREFIX))
        })
        .filter_map(|l| {
            let renewed = l.pointer("/spec/renewTime").and_then(Value::as_str)?;
            let renewed = DateTime::parse_from_rfc3339(renewed).ok()?;
            let secs = l
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(LEASE_SECONDS);
            if renewed.with_timezone(&Utc) + chrono::Duration::seconds(secs) < now {
                return None;
            }
            let holder = l.pointer("/spec/holderIdentity").and_then(Value::as_str)?;
            let (host, port) = holder.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str, holder: &str, renewed: &str) -> Value {
        json!({
            "metadata": {"name": name},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed},
        })
    }

    #[test]
    fn only_unexpired_server_leases_count() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:30Z")
            .expect("time")
            .with_timezone(&Utc);
        let items = [
            lease(
                "skiff-apiserver-10.0.0.1-6443",
                "10.0.0.1:6443",
                "2026-01-01T00:00:20.000000Z",
            ),
            lease(
                "skiff-apiserver-10.0.0.2-6443",
                "10.0.0.2:6443",
                "2026-01-01T00:00:10.000000Z",
            ),
            lease(
                "kube-controller-manager",
                "node1_abc",
                "2026-01-01T00:00:29.000000Z",
            ),
            lease(
                "skiff-apiserver-bad",
                "no-port",
                "2026-01-01T00:00:29.000000Z",
            ),
        ];
        assert_eq!(alive(&items, now), vec![("10.0.0.1".to_string(), 6443)]);
    }

    #[test]
    fn lease_names_are_subdomains() {
        assert_eq!(
            lease_name("10.0.0.1", 6443),
            "skiff-apiserver-10.0.0.1-6443"
        );
        assert_eq!(lease_name("fd00::1", 6443), "skiff-apiserver-fd00--1-6443");
    }
}

//! The RBAC index the API server decides with, kept current from the store:
//! the four RBAC resources are listed once, then watched; every change is
//! applied to a copy of the objects and a new [`RbacIndex`] is built from it
//! (a burst of changes, e.g. `kubectl apply` of a chart's roles, makes one
//! rebuild) and swapped in. A request only clones an `Arc`: authorization
//! never waits on the store. A watch that falls behind (history compacted,
//! events lost) or fails starts over from a fresh listing.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use skiff_api::registry::{self, Resource};
use skiff_api::StatusError;
use skiff_store::{Event, Revision, Watch};
use tokio::sync::watch;

use super::{RbacIndex, RbacObjects};
use crate::objects;
use crate::server::Api;

const GROUP: &str = "rbac.authorization.k8s.io";
/// In [`RbacObjects`]' order: roles, role bindings, cluster roles, cluster role bindings.
const PLURALS: [&str; 4] = [
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
];
/// How long changes are gathered into one rebuild after the first: well
/// under the second a revoked binding may keep working.
const COALESCE: Duration = Duration::from_millis(50);
/// After a failed listing (store unreachable), before the next try.
const RETRY: Duration = Duration::from_secs(1);

/// The current index; `None` until the first one is built.
#[derive(Default)]
pub struct LiveIndex {
    current: RwLock<Option<Arc<RbacIndex>>>,
    /// Counts builds, so a waiter can tell when the first one is in.
    built: BuildCounter,
}

struct BuildCounter(watch::Sender<u64>);

impl Default for BuildCounter {
    fn default() -> Self {
        Self(watch::channel(0).0)
    }
}

impl LiveIndex {
    /// The index requests are decided with now; `None` before the first build.
    pub fn get(&self) -> Option<Arc<RbacIndex>> {
        // A poisoned lock only means a writer panicked mid-swap of an `Arc`,
        // which leaves the old value whole.
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn publish(&self, index: RbacIndex) {
        let index = Some(Arc::new(index));
        match self.current.write() {
            Ok(mut g) => *g = index,
            Err(p) => *p.into_inner() = index,
        }
        self.built.0.send_modify(|n| *n += 1);
    }

    /// Waits until an index has been built, at most `timeout`; whether one is in.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.built.0.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// How many indexes have been built (for tests that wait for a change).
    pub fn builds(&self) -> u64 {
        *self.built.0.borrow()
    }
}

fn resources() -> Option<[&'static Resource; 4]> {
    let r = |p| registry::lookup(GROUP, "v1", p);
    Some([
        r(PLURALS[0])?,
        r(PLURALS[1])?,
        r(PLURALS[2])?,
        r(PLURALS[3])?,
    ])
}

/// The objects the index is built from, by store key per resource.
#[derive(Default)]
struct Mirror {
    objects: [BTreeMap<String, Value>; 4],
}

impl Mirror {
    fn build(&self) -> RbacIndex {
        let lists: Vec<Vec<Value>> = self
            .objects
            .iter()
            .map(|m| m.values().cloned().collect())
            .collect();
        RbacIndex::build(&RbacObjects {
            roles: &lists[0],
            role_bindings: &lists[1],
            cluster_roles: &lists[2],
            cluster_role_bindings: &lists[3],
        })
    }

    fn apply(&mut self, which: usize, resource: &Resource, event: &Event) {
        let Some(map) = self.objects.get_mut(which) else {
            return;
        };
        match event {
            Event::Put { kv, .. } => match objects::decode_as(resource, kv) {
                Ok(obj) => {
                    map.insert(kv.key.clone(), obj);
                }
                Err(e) => tracing::warn!(key = %kv.key, error = %e, "RBAC object unreadable"),
            },
            Event::Delete { kv } => {
                map.remove(&kv.key);
            }
        }
    }
}

/// Lists the four resources; the objects and the revision each was read at.
async fn list_all(
    api: &Api,
    res: &[&'static Resource; 4],
) -> Result<(Mirror, [Revision; 4]), StatusError> {
    let mut mirror = Mirror::default();
    let mut revs = [0; 4];
    for (i, r) in res.iter().enumerate() {
        let page = api.objects.list(r, None, None, None).await?;
        revs[i] = page.revision;
        for obj in page.items {
            let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
            mirror.objects[i].insert(r.key(ns, name), obj);
        }
    }
    Ok((mirror, revs))
}

/// The next event of any of the four watches, with the watch it came from.
async fn next_event(watches: &mut [Watch; 4]) -> (usize, Option<skiff_store::Result<Event>>) {
    let [a, b, c, d] = watches;
    tokio::select! {
        e = a.next() => (0, e),
        e = b.next() => (1, e),
        e = c.next() => (2, e),
        e = d.next() => (3, e),
    }
}

/// Keeps `api.rbac` current for as long as the server runs.
pub async fn run(api: Arc<Api>) {
    let Some(res) = resources() else {
        tracing::error!("RBAC resources missing from the registry; only system:masters is allowed");
        return;
    };
    loop {
        let (mut mirror, revs) = match list_all(&api, &res).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "listing RBAC objects failed; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        api.rbac.publish(mirror.build());
        let opened: Result<Vec<Watch>, StatusError> = res
            .iter()
            .zip(revs)
            .map(|(r, rev)| api.objects.watch(r, None, rev))
            .collect();
        let Ok(Ok(mut watches)) = opened.map(<[Watch; 4]>::try_from) else {
            tracing::debug!("RBAC watch could not start; listing again");
            tokio::time::sleep(RETRY).await;
            continue;
        };
        // Applies events until a watch breaks, rebuilding once per burst.
        'watching: loop {
            let (i, first) = next_event(&mut watches).await;
            let Some(Ok(ev)) = first else {
                break 'watching;
            };
            mirror.apply(i, res[i], &ev);
            let deadline = tokio::time::Instant::now() + COALESCE;
            loop {
                tokio::select! {
                    (i, more) = next_event(&mut watches) => match more {
                        Some(Ok(ev)) => mirror.apply(i, res[i], &ev),
                        _ => break 'watching,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            api.rbac.publish(mirror.build());
        }
        tracing::debug!("RBAC watch ended (compacted or lagged); listing again");
    }
}

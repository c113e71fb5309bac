//! What [`super::bound`] checks of the objects a token is bound to (uid and
//! deletionTimestamp of its ServiceAccount, Pod, Secret or Node), kept in
//! memory and forgotten the moment the store reports any change to them.
//!
//! Reading them from the store on every request was most of what a
//! service-account request cost beyond an admin one (bench/api `--rbac`: two
//! more store reads per request). Upstream reads them from informers instead.
//!
//! Revocation stays exact: the store's watches of the four resources are
//! drained, without waiting, under the same lock as every lookup, and any event
//! on a key drops it. Every backend publishes a write's event before the write
//! returns (SQLite and memory under their write lock; etcd once its feed has
//! the event), so once a delete has been answered no later request can find
//! the deleted object here. A delete through another API server on the same
//! etcd arrives when etcd delivers it to this one's feed, as upstream's
//! informers see it. A read from the store is kept only if no event was
//! drained while it ran (one that arrives later drops it at the next lookup).
//! [`MAX_AGE`] bounds how long any entry is trusted should a watch ever fall
//! silent; a watch that lags or ends forgets everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_api::registry::{self, Resource};
use skiff_api::StatusError;
use skiff_store::Watch;

use crate::objects::Objects;

/// The resources tokens are bound to, all in the core group.
const BOUND: [&str; 4] = ["serviceaccounts", "pods", "secrets", "nodes"];

/// How long a remembered object is trusted without being read again.
pub const MAX_AGE: Duration = Duration::from_secs(10);

/// How many objects are remembered; past it, all are forgotten.
pub const CAPACITY: usize = 16_384;

/// The part of a stored object that decides whether its tokens still work.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Meta {
    pub uid: Option<String>,
    #[serde(rename = "deletionTimestamp")]
    pub deletion_timestamp: Option<String>,
}

/// A stored object with everything but its metadata skipped, not parsed.
#[derive(Debug, Default, serde::Deserialize)]
struct Stored {
    #[serde(default)]
    metadata: Meta,
}

impl Meta {
    pub fn parse(value: &[u8]) -> Result<Self, serde_json::Error> {
        Ok(serde_json::from_slice::<Stored>(value)?.metadata)
    }
}

struct Entry {
    /// `None`: there is no such object.
    meta: Option<Arc<Meta>>,
    read_at: Instant,
}

#[derive(Default)]
struct State {
    /// The store's events for [`BOUND`]; `None` until subscribed, and after a
    /// watch ended (then nothing is remembered until subscribed again).
    watches: Option<Vec<Watch>>,
    objects: HashMap<String, Entry>,
    /// Counts drained events and resets: a read that saw it change is stale.
    epoch: u64,
}

impl State {
    /// Applies every event the watches hold right now, without waiting.
    fn drain(&mut self) {
        let Some(watches) = self.watches.as_mut() else {
            return;
        };
        let mut ended = false;
        for w in watches.iter_mut() {
            loop {
                match w.try_next() {
                    None => break,
                    Some(Some(Ok(event))) => {
                        self.objects.remove(event.key());
                        self.epoch += 1;
                    }
                    // Lagged, failed or closed: what it missed is unknown.
                    Some(Some(Err(_)) | None) => {
                        ended = true;
                        break;
                    }
                }
            }
        }
        if ended {
            self.forget_all();
        }
    }

    fn forget_all(&mut self) {
        self.watches = None;
        self.objects.clear();
        self.epoch += 1;
    }
}

/// What [`BoundObjects::remembered_now`] found: per key, the metadata if
/// remembered (`Some(None)`: remembered as absent); the keys to read; the epoch.
type Looked<'k> = (Vec<Option<Option<Arc<Meta>>>>, Vec<(usize, &'k str)>, u64);

/// The bound objects' metadata, by store key.
#[derive(Default)]
pub struct BoundObjects {
    state: Mutex<State>,
}

impl std::fmt::Debug for BoundObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundObjects")
            .field("remembered", &self.lock().objects.len())
            .finish()
    }
}

fn resources() -> Result<[&'static Resource; 4], StatusError> {
    let mut out = Vec::with_capacity(BOUND.len());
    for plural in BOUND {
        out.push(registry::lookup("", "v1", plural).ok_or_else(StatusError::no_such_resource)?);
    }
    out.try_into()
        .map_err(|_| StatusError::internal("bound resources"))
}

impl BoundObjects {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state consistent; a panic elsewhere cannot
        // leave a half-applied one.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches the bound resources from the store's current revision, unless
    /// already watching.
    async fn subscribe(&self, objects: &Objects) -> Result<(), StatusError> {
        if self.lock().watches.is_some() {
            return Ok(());
        }
        let from = objects.current_revision().await?;
        let mut watches = Vec::with_capacity(BOUND.len());
        for resource in resources()? {
            watches.push(objects.watch(resource, None, from)?);
        }
        let mut state = self.lock();
        if state.watches.is_none() {
            // Whatever was remembered predates these watches.
            state.objects.clear();
            state.epoch += 1;
            state.watches = Some(watches);
        }
        Ok(())
    }

    /// What is remembered of `keys` after applying the events pending now,
    /// and the keys (with their index) to read from the store; `None` when
    /// not watching (then nothing is remembered). One lock per request: what
    /// a request with a known token waits for beyond the admin path.
    fn remembered_now<'k>(&self, keys: &[&'k str]) -> Option<Looked<'k>> {
        let mut state = self.lock();
        state.drain();
        state.watches.as_ref()?;
        let mut found = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match state.objects.get(*key) {
                Some(e) if e.read_at.elapsed() < MAX_AGE => found.push(Some(e.meta.clone())),
                _ => {
                    found.push(None);
                    missing.push((i, *key));
                }
            }
        }
        Some((found, missing, state.epoch))
    }

    /// The metadata of the objects at `keys` (`None`: no such object): from
    /// memory where no event has touched them since they were read, else read
    /// from the store, all misses in one trip.
    pub async fn get<'k>(
        &self,
        objects: &Objects,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<Vec<Option<Arc<Meta>>>, StatusError> {
        let keys: Vec<&str> = keys.into_iter().collect();
        let looked = match self.remembered_now(&keys) {
            Some(looked) => looked,
            None => {
                if let Err(e) = self.subscribe(objects).await {
                    // Not watching: every lookup reads the store, which is always right.
                    tracing::debug!(error = %e, "cannot watch bound objects; reading the store");
                }
                self.remembered_now(&keys).unwrap_or_else(|| {
                    // An epoch no state has: what is read now is not kept.
                    let missing = keys.iter().copied().enumerate().collect();
                    (vec![None; keys.len()], missing, u64::MAX)
                })
            }
        };
        let (mut found, missing, epoch) = looked;
        if missing.is_empty() {
            return Ok(found.into_iter().map(Option::flatten).collect());
        }
        let backend = objects.backend().clone();
        let to_read: Vec<String> = missing.iter().map(|(_, k)| k.to_string()).collect();
        let read_at = Instant::now();
        let values = tokio::task::spawn_blocking(move || {
            to_read
                .iter()
                .map(|k| backend.get(k).map(|kv| kv.map(|kv| kv.value)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| StatusError::internal(format!("store task failed: {e}")))?
        .map_err(|e| StatusError::internal(format!("reading a token's bound objects: {e}")))?;
        let mut read = Vec::with_capacity(values.len());
        for ((i, key), value) in missing.into_iter().zip(values) {
            let meta = match value {
                None => None,
                Some(v) => Some(Arc::new(Meta::parse(&v).map_err(|e| {
                    StatusError::internal(format!("corrupt object at {key}: {e}"))
                })?)),
            };
            found[i] = Some(meta.clone());
            read.push((key, meta));
        }
        let mut state = self.lock();
        // Kept only if watching and nothing was drained meanwhile: an event
        // drained while the read ran may be about one of these keys.
        if state.watches.is_some() && state.epoch == epoch {
            if state.objects.len() + read.len() > CAPACITY {
                state.objects.clear();
            }
            for (key, meta) in read {
                state
                    .objects
                    .insert(key.to_string(), Entry { meta, read_at });
            }
        }
        Ok(found.into_iter().map(Option::flatten).collect())
    }

    /// How many objects are remembered (for tests).
    pub fn remembered(&self) -> usize {
        self.lock().objects.len()
    }
}

/// The store keys of the bound resource `plural` named `name`.
pub fn key(plural: &str, namespace: Option<&str>, name: &str) -> Result<String, StatusError> {
    let resource = registry::lookup("", "v1", plural).ok_or_else(StatusError::no_such_resource)?;
    Ok(resource.key(namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::{Backend, MemoryBackend};

    fn objects() -> (Objects, Arc<dyn Backend>) {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        (Objects::new(backend.clone()), backend)
    }

    fn pod(uid: &str) -> Vec<u8> {
        serde_json::json!({"metadata": {"name": "p", "uid": uid}, "spec": {"containers": []}})
            .to_string()
            .into_bytes()
    }

    #[tokio::test]
    async fn remembers_until_the_store_reports_a_change() {
        let (objects, backend) = objects();
        let cache = BoundObjects::default();
        let k = key("pods", Some("ns"), "p").unwrap();
        let created = backend.create(&k, &pod("u1")).unwrap();
        let uid = |m: &[Option<Arc<Meta>>]| m[0].as_ref().and_then(|m| m.uid.clone());

        let got = cache.get(&objects, [k.as_str()]).await.unwrap();
        assert_eq!(uid(&got).as_deref(), Some("u1"));
        assert_eq!(cache.remembered(), 1);

        // Deleted: the very next lookup no longer finds it.
        backend.delete(&k, Some(created.mod_revision)).unwrap();
        let got = cache.get(&objects, [k.as_str()]).await.unwrap();
        assert_eq!(got, vec![None]);

        // Recreated with another uid: seen at once too.
        backend.create(&k, &pod("u2")).unwrap();
        let got = cache.get(&objects, [k.as_str()]).await.unwrap();
        assert_eq!(uid(&got).as_deref(), Some("u2"));
    }

    #[test]
    fn only_the_metadata_is_read() {
        let m = Meta::parse(
            br#"{"metadata":{"uid":"u","deletionTimestamp":"2026-01-01T00:00:00Z","name":"x"},"spec":{"a":[1,2]}}"#,
        )
        .unwrap();
        assert_eq!(m.uid.as_deref(), Some("u"));
        assert_eq!(
            m.deletion_timestamp.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(Meta::parse(b"{}").unwrap(), Meta::default());
    }
}

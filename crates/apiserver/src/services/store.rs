//! Allocation claims in the store (issue 16): every ClusterIP, node port and
//! load-balancer address a service holds is a key of its own, created with the
//! store's atomic create, so API servers sharing one store never hand out one
//! value twice (as upstream's `IPAddress` objects do for ClusterIPs). The
//! in-memory pools stay the fast path: they pick a value, the claim makes it
//! ours, and a claim met in the store teaches the pool who holds the value.
//!
//! The keys live outside `/registry/` (nothing the REST API serves or lists):
//! `/skiff/allocations/{clusterips,nodeports,loadbalancerips}/<value>`. The value
//! names the owning service; releases delete a claim only while it still names
//! the releasing owner, at the revision read (compare-and-swap).

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use skiff_store::{Backend, Error as StoreError, KeyValue, Revision};

use super::claims::{Kind, Owner};
use super::Settings;

/// Where every claim lives.
pub const PREFIX: &str = "/skiff/allocations/";

fn folder(kind: Kind) -> &'static str {
    match kind {
        Kind::ClusterIp => "clusterips",
        Kind::NodePort => "nodeports",
        Kind::LoadBalancer => "loadbalancerips",
    }
}

/// The claim key of one slot: the value itself, readable in the store.
pub fn key(s: &Settings, kind: Kind, idx: u32) -> String {
    let value = match kind {
        Kind::ClusterIp => s.service_cidr.addr(idx).to_string(),
        Kind::NodePort => s.node_ports.port(idx).to_string(),
        Kind::LoadBalancer => s.lb_pool.addr(idx).to_string(),
    };
    format!("{PREFIX}{}/{value}", folder(kind))
}

/// The slot a claim key names; `None` for a value outside today's ranges (a
/// claim made before a range flag changed), which no pool can hold.
pub fn parse_key(s: &Settings, key: &str) -> Option<(Kind, u32)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (dir, value) = rest.split_once('/')?;
    let ip = || value.parse::<Ipv4Addr>().ok();
    match dir {
        "clusterips" => Some((Kind::ClusterIp, s.service_cidr.index_of(ip()?)?)),
        "nodeports" => Some((Kind::NodePort, s.node_ports.index_of(value.parse().ok()?)?)),
        "loadbalancerips" => Some((Kind::LoadBalancer, s.lb_pool.index_of(ip()?)?)),
        _ => None,
    }
}

/// What a claim key holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub uid: String,
    /// `namespace/name` of the owning service.
    pub service: String,
    /// Unix seconds; a claim younger than the in-flight window may belong to a
    /// create still on its way to the store on another server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<i64>,
}

impl Record {
    pub fn new(owner: &Owner) -> Self {
        Self {
            uid: owner.uid.to_string(),
            service: owner.key.to_string(),
            claimed_at: Some(chrono::Utc::now().timestamp()),
        }
    }

    pub fn owner(&self) -> Owner {
        Owner {
            uid: self.uid.as_str().into(),
            key: self.service.as_str().into(),
        }
    }

    /// Seconds since the claim was made; a claim that does not say is old.
    pub fn age_secs(&self) -> i64 {
        self.claimed_at.map_or(i64::MAX, |t| {
            chrono::Utc::now().timestamp().saturating_sub(t)
        })
    }
}

/// One claim as read from the store.
#[derive(Debug, Clone)]
pub struct Held {
    pub kind: Kind,
    pub idx: u32,
    pub key: String,
    /// `None` when the value is unreadable: nobody owns it, repair removes it.
    pub record: Option<Record>,
    pub revision: Revision,
}

impl Held {
    fn from_kv(kind: Kind, idx: u32, kv: &KeyValue) -> Self {
        Self {
            kind,
            idx,
            key: kv.key.clone(),
            record: serde_json::from_slice(&kv.value).ok(),
            revision: kv.mod_revision,
        }
    }

    pub fn uid(&self) -> Option<&str> {
        self.record.as_ref().map(|r| r.uid.as_str())
    }

    pub fn age_secs(&self) -> i64 {
        self.record.as_ref().map_or(i64::MAX, Record::age_secs)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another owner (or a leaked claim) has the value.
    #[error("{} is claimed by {}", .0.key, .0.record.as_ref().map_or("an unreadable claim", |r| r.service.as_str()))]
    Taken(Box<Held>),
    #[error("allocation store: {0}")]
    Store(#[from] StoreError),
    #[error("allocation store task failed: {0}")]
    Task(String),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ClaimError> + Send + 'static,
) -> Result<T, ClaimError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ClaimError::Task(e.to_string()))?
}

/// A claim this call created, to undo it at exactly that revision.
#[derive(Debug, Clone)]
pub struct Created {
    pub key: String,
    pub revision: Revision,
}

/// Claims `slots` for `owner`, all or nothing: on the first value someone else
/// holds, the claims made here are deleted again and `Taken` says who has it.
/// A claim already naming `owner` counts as made (a retried write, or repair).
pub async fn claim(
    backend: &Arc<dyn Backend>,
    s: &Settings,
    slots: &[(Kind, u32)],
    owner: &Owner,
) -> Result<Vec<Created>, ClaimError> {
    if slots.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<(Kind, u32, String)> = slots
        .iter()
        .map(|&(kind, idx)| (kind, idx, key(s, kind, idx)))
        .collect();
    let bytes = serde_json::to_vec(&Record::new(owner))
        .map_err(|e| ClaimError::Task(format!("encoding a claim: {e}")))?;
    let uid = owner.uid.clone();
    let b = backend.clone();
    blocking(move || {
        let mut created = Vec::new();
        for (kind, idx, key) in keys {
            match create_one(&*b, kind, idx, &key, &bytes, &uid) {
                Ok(Some(c)) => created.push(c),
                Ok(None) => {}
                Err(e) => {
                    undo(&*b, &created);
                    return Err(e);
                }
            }
        }
        Ok(created)
    })
    .await
}

/// Creates one claim; `None` when it already names `uid`.
fn create_one(
    b: &dyn Backend,
    kind: Kind,
    idx: u32,
    key: &str,
    bytes: &[u8],
    uid: &str,
) -> Result<Option<Created>, ClaimError> {
    // A claim deleted between our create and our read is simply tried again.
    for _ in 0..3 {
        match b.create(key, bytes) {
            Ok(kv) => {
                return Ok(Some(Created {
                    key: kv.key,
                    revision: kv.mod_revision,
                }))
            }
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(kv) = b.get(key)? {
            let held = Held::from_kv(kind, idx, &kv);
            if held.uid() == Some(uid) {
                return Ok(None);
            }
            return Err(ClaimError::Taken(Box::new(held)));
        }
    }
    Err(ClaimError::Task(format!("claim {key} kept changing")))
}

fn undo(b: &dyn Backend, created: &[Created]) {
    for c in created {
        if let Err(e) = b.delete(&c.key, Some(c.revision)) {
            tracing::debug!(key = %c.key, error = %e, "cannot undo an allocation claim");
        }
    }
}

/// Deletes the claims of `slots` that still name `uid`; returns how many went.
pub async fn release(
    backend: &Arc<dyn Backend>,
    s: &Settings,
    slots: &[(Kind, u32)],
    uid: &str,
) -> Result<usize, ClaimError> {
    if slots.is_empty() {
        return Ok(0);
    }
    let keys: Vec<String> = slots.iter().map(|&(k, i)| key(s, k, i)).collect();
    let uid = uid.to_string();
    let b = backend.clone();
    blocking(move || {
        let mut n = 0;
        for key in keys {
            let Some(kv) = b.get(&key)? else { continue };
            let ours = serde_json::from_slice::<Record>(&kv.value).is_ok_and(|r| r.uid == uid);
            if !ours {
                continue;
            }
            match b.delete(&key, Some(kv.mod_revision)) {
                Ok(_) => n += 1,
                // Gone or rewritten meanwhile: no longer ours to delete.
                Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    })
    .await
}

/// Deletes one claim if it is still at `revision` (repair of a leaked claim).
pub async fn remove(backend: &Arc<dyn Backend>, held: &Held) -> Result<bool, ClaimError> {
    let (key, rev) = (held.key.clone(), held.revision);
    let b = backend.clone();
    blocking(move || match b.delete(&key, Some(rev)) {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    })
    .await
}

/// Every claim of a value in today's ranges, and the revision of the listing.
pub async fn list(
    backend: &Arc<dyn Backend>,
    s: &Settings,
) -> Result<(Vec<Held>, Revision), ClaimError> {
    let b = backend.clone();
    let page = blocking(move || Ok(b.list(PREFIX, None, None)?)).await?;
    let held = page
        .items
        .iter()
        .filter_map(|kv| {
            let (kind, idx) = parse_key(s, &kv.key)?;
            Some(Held::from_kv(kind, idx, kv))
        })
        .collect();
    Ok((held, page.revision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::MemoryBackend;

    fn settings() -> Settings {
        Settings::parse("10.96.0.0/28", "30000-30009", "198.51.100.0/30").unwrap()
    }

    fn owner(n: &str) -> Owner {
        Owner {
            uid: n.into(),
            key: format!("default/{n}").into(),
        }
    }

    #[test]
    fn keys_name_the_value_and_parse_back() {
        let s = settings();
        let cases = [
            (
                Kind::ClusterIp,
                4,
                "/skiff/allocations/clusterips/10.96.0.5",
            ),
            (Kind::NodePort, 3, "/skiff/allocations/nodeports/30003"),
            (
                Kind::LoadBalancer,
                0,
                "/skiff/allocations/loadbalancerips/198.51.100.1",
            ),
        ];
        for (kind, idx, want) in cases {
            assert_eq!(key(&s, kind, idx), want);
            assert_eq!(parse_key(&s, want), Some((kind, idx)));
        }
        for bad in [
            "/skiff/allocations/nodeports/40000",
            "/skiff/allocations/clusterips/10.97.0.1",
            "/skiff/allocations/other/1",
            "/skiff/allocations/nodeports",
            "/registry/services/default/a",
        ] {
            assert_eq!(parse_key(&s, bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn claims_are_all_or_nothing_and_released_only_by_their_owner() {
        let s = settings();
        let b: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let (a, o) = (owner("a"), owner("b"));
        let made = claim(&b, &s, &[(Kind::NodePort, 1)], &a).await.unwrap();
        assert_eq!(made.len(), 1);
        // Again for the same owner: already made, nothing new.
        assert!(claim(&b, &s, &[(Kind::NodePort, 1)], &a)
            .await
            .unwrap()
            .is_empty());
        // Another owner: the first free slot is undone when the second is taken.
        let slots = [(Kind::ClusterIp, 2), (Kind::NodePort, 1)];
        match claim(&b, &s, &slots, &o).await {
            Err(ClaimError::Taken(h)) => {
                assert_eq!((h.kind, h.idx, h.uid()), (Kind::NodePort, 1, Some("a")));
                assert!(h.age_secs() < 5);
            }
            other => panic!("{other:?}"),
        }
        let (held, _) = list(&b, &s).await.unwrap();
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(
            release(&b, &s, &[(Kind::NodePort, 1)], "b").await.unwrap(),
            0
        );
        assert_eq!(
            release(&b, &s, &[(Kind::NodePort, 1)], "a").await.unwrap(),
            1
        );
        assert!(list(&b, &s).await.unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn remove_is_compare_and_swap() {
        let s = settings();
        let b: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        b.create(&key(&s, Kind::ClusterIp, 3), b"not json").unwrap();
        let (held, _) = list(&b, &s).await.unwrap();
        let h = held.into_iter().next().unwrap();
        assert!(h.record.is_none());
        assert_eq!(h.age_secs(), i64::MAX);
        let k = h.key.clone();
        b.update(&k, b"{}", h.revision).unwrap();
        assert!(!remove(&b, &h).await.unwrap(), "a rewritten claim stays");
        let (held, _) = list(&b, &s).await.unwrap();
        assert!(remove(&b, &held[0]).await.unwrap());
    }
}

//! `EtcdBackend`: the store on an etcd v3 cluster, so that a cluster outlives any one
//! machine and several API servers can share one store.
//!
//! The store's revision *is* etcd's revision: a key's `mod_revision` is etcd's, so
//! `resourceVersion` means the same on every API server. Writes are etcd transactions
//! that compare `create_revision`/`mod_revision`, which is where optimistic concurrency
//! comes from; `compact` is etcd's compaction, and a start older than it is
//! `Compacted` (410). Lists are one etcd range read: its `count` is the remaining-item
//! count for free. Watches: see `feed.rs`. Key layout and the cluster marker that stops
//! two clusters sharing a prefix: see `layout.rs`.
//!
//! The trait is synchronous, so the store runs the async etcd client on a small runtime
//! of its own; callers (threads, `spawn_blocking`, even async code) just wait for it
//! (`client.rs`, which also decides which failed requests are safe to send again).
//!
//! An etcd that is down, cut off or without a leader never makes a caller wait without
//! bound: every request has a deadline, and its failure is `Unavailable` (the API server's
//! 503), as is `ready` while etcd does not answer; what watches do is in `feed.rs`.

mod client;
mod feed;
mod layout;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::proto::{PbRangeResponse, PbResponseOp, PbTxnOpResponse, PbTxnResponse};
use etcd_client::{Client, Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp, WatchClient};

use crate::{Backend, Error, KeyValue, ListResult, Result, Revision, Watch};
use client::{
    claim, connect_options, describe, unavailable, wait, with_retries, OwnRuntime, Retry,
};
use feed::Feed;
use layout::Layout;

/// Every request to etcd gets an answer or an error (`Unavailable`) within this: long
/// enough for a large list, short enough that a client of an etcd that stopped
/// answering hears 503 well before its own timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Opening the store (connecting and checking the prefix) gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `ready` answers within this (upstream's etcd health check waits 2s too): a readiness
/// probe must not wait as long as a request may.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A write waits at most this for its own event to reach the watchers; past it (etcd's
/// watch is broken, and is being opened again) it returns anyway: it has committed.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// Largest etcd response accepted (kube-apiserver's limit too): a full list or a batch
/// of watch events can be far larger than gRPC's 4 MiB default.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// How to reach etcd and where in it this cluster's data lives.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Client URLs (`http://host:2379` or, with `tls`, `https://...`).
    pub endpoints: Vec<String>,
    /// Absolute, without a trailing slash: every key of the store is `prefix + key`.
    pub prefix: String,
    /// Who owns the data under `prefix`: recorded at the first start, and a store with
    /// another identity is refused the prefix.
    pub cluster: String,
    pub tls: Option<EtcdTls>,
    /// How many live events a watcher may fall behind before `WatchLagged`.
    pub watch_capacity: usize,
}

/// PEM files for TLS to etcd (upstream's `--etcd-cafile`, `--etcd-certfile`,
/// `--etcd-keyfile`). A client certificate needs both its certificate and its key.
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

pub struct EtcdBackend {
    shared: Arc<Shared>,
    /// Dropped (in the background) with the store: that ends the pump and every watch.
    _runtime: OwnRuntime,
}

/// What the store's calls and its background tasks share.
struct Shared {
    layout: Layout,
    kv: KvClient,
    watch: WatchClient,
    feed: Feed,
    /// The highest revision known to be compacted (by this store or another on etcd).
    compacted: AtomicI64,
    runtime: tokio::runtime::Handle,
    /// For messages: the endpoints, comma-separated.
    endpoints: String,
}

impl EtcdBackend {
    /// Connects, then checks the prefix: empty (claimed for `config.cluster`) or already
    /// this cluster's; anything else, or no answer within a few seconds, is an error.
    pub fn connect(config: EtcdConfig) -> Result<Self> {
        let layout = Layout::new(&config.prefix)?;
        let endpoints = config.endpoints.join(",");
        if config.endpoints.is_empty() {
            return Err(storage("no etcd endpoints given".into()));
        }
        let runtime = OwnRuntime::new()?;
        let handle = runtime.handle()?;
        let options = connect_options(config.tls.as_ref())?;
        let urls = config.endpoints.clone();
        let client = wait(&handle, CONNECT_TIMEOUT, &endpoints, async move {
            Client::connect(urls, Some(options)).await
        })?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        let watch = client
            .watch_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        let (claim_layout, cluster) = (layout.clone(), config.cluster.clone());
        // The claim is a conditional put: sending it twice changes nothing.
        let claim = with_retries(Retry::Unsent, move || {
            let (mut kv, layout, cluster) = (kv.clone(), claim_layout.clone(), cluster.clone());
            async move { claim(&mut kv, &layout, &cluster).await }
        });
        let claimed = wait(&handle, CONNECT_TIMEOUT, &endpoints, claim)??;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        // The feed starts with what the ring can hold of the recent past, so that a
        // watch from just before this start is still served from memory.
        let ring = Revision::try_from(feed::RING_EVENTS).unwrap_or(Revision::MAX);
        let from = claimed.saturating_sub(ring).max(1);
        let shared = Arc::new(Shared {
            layout,
            kv,
            watch,
            feed: Feed::new(config.watch_capacity, from),
            compacted: AtomicI64::new(0),
            runtime: handle.clone(),
            endpoints,
        });
        handle.spawn(feed::pump(shared.clone(), from));
        tracing::info!(
            endpoints = %shared.endpoints,
            prefix = shared.layout.prefix(),
            revision = claimed,
            "opened etcd store"
        );
        Ok(EtcdBackend {
            shared,
            _runtime: runtime,
        })
    }

    /// Runs one etcd request on the store's runtime and waits for it, trying again
    /// (within `REQUEST_TIMEOUT`) while `retry` allows: the client balances over every
    /// endpoint, a dead member's included, so a request may land on one that is gone.
    fn call<T, F>(&self, retry: Retry, attempt: impl FnMut() -> F + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        wait(
            &self.shared.runtime,
            REQUEST_TIMEOUT,
            &self.shared.endpoints,
            with_retries(retry, attempt),
        )
    }

    /// A range read (linearizable).
    fn range(&self, key: Vec<u8>, options: Option<GetOptions>) -> Result<PbRangeResponse> {
        let kv = self.shared.kv.clone();
        self.call(Retry::Read, move || {
            let (mut kv, key, options) = (kv.clone(), key.clone(), options.clone());
            async move { kv.get(key, options).await }
        })
        .map(|r| r.0)
    }

    fn txn(&self, txn: Txn) -> Result<PbTxnResponse> {
        let kv = self.shared.kv.clone();
        self.call(Retry::Unsent, move || {
            let (mut kv, txn) = (kv.clone(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .map(|r| r.0)
    }

    /// After a write: lets its event reach the watchers first (see `feed.rs`).
    fn published(&self, revision: Revision) {
        if !self.shared.feed.wait_published(revision, PUBLISH_WAIT) {
            tracing::debug!(
                revision,
                "write returned before the store feed published it"
            );
        }
    }

    /// The key-value a failed conditional write read back in its `else` branch.
    fn read_back(&self, resp: PbTxnResponse) -> Result<Option<KeyValue>> {
        let kv = resp
            .responses
            .into_iter()
            .find_map(range_kvs)
            .and_then(|kvs| kvs.into_iter().next());
        kv.map(|kv| self.shared.layout.kv(kv)).transpose()
    }

    /// The outcome of a write that found the key absent or at another revision.
    fn refused(&self, key: &str, resp: PbTxnResponse) -> Error {
        match self.read_back(resp) {
            Ok(None) => Error::NotFound {
                key: key.to_owned(),
            },
            Ok(Some(kv)) => Error::Conflict {
                key: key.to_owned(),
                current: kv.mod_revision,
            },
            Err(err) => err,
        }
    }

    fn compacted(&self) -> Revision {
        self.shared.compacted.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("endpoints", &self.shared.endpoints)
            .field("prefix", &self.shared.layout.prefix())
            .field("compacted", &self.compacted())
            .finish_non_exhaustive()
    }
}

impl Backend for EtcdBackend {
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let Some(etcd_key) = self.shared.layout.key(key) else {
            return Ok(None);
        };
        let found = self.range(etcd_key, None)?.kvs.into_iter().next();
        found.map(|kv| self.shared.layout.kv(kv)).transpose()
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListResult> {
        let Some((mut start, end)) = self.shared.layout.range(prefix) else {
            // No store key is relative: nothing to list, as of now.
            return Ok(ListResult {
                items: Vec::new(),
                revision: self.current_revision()?,
                more: false,
                remaining: Some(0),
            });
        };
        if let Some(after) = start_after.filter(|after| *after >= prefix) {
            // The first key strictly after `after`.
            if let Some(key) = self.shared.layout.key(after) {
                start = key;
                start.push(0);
            }
        }
        let mut options = GetOptions::new().with_range(end);
        options = match limit {
            // etcd reads a limit of 0 as "no limit".
            Some(0) => options.with_count_only(),
            Some(n) => options.with_limit(i64::try_from(n).unwrap_or(i64::MAX)),
            None => options,
        };
        let resp = self.range(start, Some(options))?;
        let revision = header_revision(resp.header.as_ref())?;
        let items = resp
            .kvs
            .into_iter()
            .map(|kv| self.shared.layout.kv(kv))
            .collect::<Result<Vec<_>>>()?;
        // `count` is every key in the range, whatever the limit: etcd counts it anyway.
        let count = usize::try_from(resp.count).unwrap_or(0);
        let remaining = count.saturating_sub(items.len());
        Ok(ListResult {
            more: remaining > 0,
            remaining: Some(remaining),
            items,
            revision,
        })
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<KeyValue> {
        let etcd_key = self.shared.layout.write_key(key)?;
        let txn = Txn::new()
            .when([Compare::create_revision(
                etcd_key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(etcd_key, value, None)]);
        let resp = self.txn(txn)?;
        if !resp.succeeded {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = header_revision(resp.header.as_ref())?;
        self.published(revision);
        Ok(KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(value),
            create_revision: revision,
            mod_revision: revision,
        })
    }

    fn update(&self, key: &str, value: &[u8], expected: Revision) -> Result<KeyValue> {
        let etcd_key = self.shared.layout.write_key(key)?;
        // The put's own read-back (keys only) supplies `create_revision`.
        let txn = Txn::new()
            .when(live_at(&etcd_key, Some(expected)))
            .and_then([
                TxnOp::put(etcd_key.clone(), value, None),
                TxnOp::get(etcd_key.clone(), Some(GetOptions::new().with_keys_only())),
            ])
            .or_else([TxnOp::get(etcd_key, None)]);
        let resp = self.txn(txn)?;
        if !resp.succeeded {
            return Err(self.refused(key, resp));
        }
        let revision = header_revision(resp.header.as_ref())?;
        let create_revision = self
            .read_back(resp)?
            .map(|kv| kv.create_revision)
            .ok_or_else(|| storage(format!("etcd lost {key:?} inside its own transaction")))?;
        self.published(revision);
        Ok(KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(value),
            create_revision,
            mod_revision: revision,
        })
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let etcd_key = self.shared.layout.write_key(key)?;
        let txn = Txn::new()
            .when(live_at(&etcd_key, expected))
            .and_then([TxnOp::delete(
                etcd_key.clone(),
                Some(etcd_client::DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(etcd_key, None)]);
        let resp = self.txn(txn)?;
        if !resp.succeeded {
            return Err(self.refused(key, resp));
        }
        let revision = header_revision(resp.header.as_ref())?;
        let last = resp.responses.into_iter().find_map(|op| match op.response {
            Some(PbTxnOpResponse::ResponseDeleteRange(d)) => d.prev_kvs.into_iter().next(),
            _ => None,
        });
        let Some(last) = last else {
            return Err(storage(format!(
                "etcd deleted {key:?} without returning its last value"
            )));
        };
        let mut kv = self.shared.layout.kv(last)?;
        kv.mod_revision = revision;
        self.published(revision);
        Ok(kv)
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        // Served from memory, it would wait in silence on an etcd that is gone.
        if let Some(why) = self.shared.feed.unavailable() {
            return Err(unavailable(&self.shared.endpoints, &why));
        }
        let compacted = self.compacted();
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        let Some(range) = self.shared.layout.range(prefix) else {
            // A relative prefix matches no store key, ever: a watch that stays quiet.
            return Ok(self.shared.feed.live(prefix, after));
        };
        Ok(match self.shared.feed.watch(prefix, after) {
            Some(watch) => watch,
            None => feed::replay(&self.shared, prefix, range, after),
        })
    }

    fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= self.compacted() {
            return Ok(());
        }
        let kv = self.shared.kv.clone();
        // Compacting twice is harmless (the second is "already compacted"), so it is
        // retried like a read.
        let compacted = self.call(Retry::Read, move || {
            let mut kv = kv.clone();
            async move { kv.compact(revision, None).await }
        });
        match compacted {
            Ok(_) => {}
            // Another API server on the same etcd got there first.
            Err(err) if err.to_string().contains(ETCD_COMPACTED) => {}
            Err(err) if err.to_string().contains(ETCD_FUTURE) => {
                return Err(Error::FutureRevision {
                    requested: revision,
                    current: self.current_revision()?,
                })
            }
            Err(err) => return Err(err),
        }
        self.shared.compacted.fetch_max(revision, Ordering::SeqCst);
        self.shared.feed.forget_through(revision);
        tracing::debug!(revision, "compacted etcd");
        Ok(())
    }

    fn current_revision(&self) -> Result<Revision> {
        // A linearizable count of one key: the cheapest read that returns the revision.
        let marker = self.shared.layout.marker_key();
        let resp = self.range(marker, Some(GetOptions::new().with_count_only()))?;
        header_revision(resp.header.as_ref())
    }

    fn compacted_revision(&self) -> Revision {
        self.compacted()
    }

    /// A linearizable read (as `current_revision`, within `READY_TIMEOUT`), and a feed
    /// that follows etcd: with watches refused the server is not ready either.
    fn ready(&self) -> Result<()> {
        if let Some(why) = self.shared.feed.unavailable() {
            return Err(unavailable(&self.shared.endpoints, &why));
        }
        let (kv, marker) = (self.shared.kv.clone(), self.shared.layout.marker_key());
        let read = with_retries(Retry::Read, move || {
            let (mut kv, marker) = (kv.clone(), marker.clone());
            async move {
                kv.get(marker, Some(GetOptions::new().with_count_only()))
                    .await
            }
        });
        wait(
            &self.shared.runtime,
            READY_TIMEOUT,
            &self.shared.endpoints,
            read,
        )
        .map(|_| ())
    }
}

/// etcd's answers to compacting at or above what it has (gRPC messages, stable since
/// etcd 3.0).
const ETCD_COMPACTED: &str = "required revision has been compacted";
const ETCD_FUTURE: &str = "required revision is a future revision";

/// The conditions for writing to a live key, at `expected` if given.
fn live_at(key: &[u8], expected: Option<Revision>) -> Vec<Compare> {
    let mut when = vec![Compare::create_revision(
        key.to_vec(),
        CompareOp::Greater,
        0,
    )];
    if let Some(expected) = expected {
        when.push(Compare::mod_revision(
            key.to_vec(),
            CompareOp::Equal,
            expected,
        ));
    }
    when
}

fn range_kvs(op: PbResponseOp) -> Option<Vec<etcd_client::proto::PbKeyValue>> {
    match op.response {
        Some(PbTxnOpResponse::ResponseRange(range)) => Some(range.kvs),
        _ => None,
    }
}

fn header_revision(header: Option<&etcd_client::proto::PbResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision)
        .ok_or_else(|| storage("etcd answered without a revision".into()))
}

fn storage(message: String) -> Error {
    Error::Storage(message.into())
}

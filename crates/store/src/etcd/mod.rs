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
//! of its own; callers (threads, `spawn_blocking`, even async code) just wait for it.

mod feed;
mod layout;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::proto::{PbRangeResponse, PbResponseOp, PbTxnOpResponse, PbTxnResponse};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KvClient,
    TlsOptions, Txn, TxnOp, WatchClient,
};

use crate::{Backend, Error, KeyValue, ListResult, Result, Revision, Watch};
use feed::Feed;
use layout::Layout;

/// Every request to etcd gets an answer or an error within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Opening the store (connecting and checking the prefix) gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 pings find a dead connection (a member that vanished) within about this.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A write waits at most this for its own event to reach the watchers; past it (etcd's
/// watch is broken, and is being opened again) it returns anyway: it has committed.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// The client's threads: it only moves bytes between sockets and waiting callers.
const RUNTIME_THREADS: usize = 2;

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
                remaining: 0,
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
        Ok(ListResult {
            remaining: count.saturating_sub(items.len()),
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
}

/// Which failed requests may be sent again.
#[derive(Clone, Copy)]
enum Retry {
    /// A read: any failure to reach a serving member.
    Read,
    /// A write: only when it cannot have reached etcd (no connection, or refused up
    /// front for want of a leader), so it is never applied twice.
    Unsent,
}

impl Retry {
    fn allows(self, err: &etcd_client::Error) -> bool {
        let etcd_client::Error::GRpcStatus(status) = err else {
            return false;
        };
        if status.code() as i32 != GRPC_UNAVAILABLE {
            return false;
        }
        match self {
            Retry::Read => true,
            Retry::Unsent => NOT_SENT.iter().any(|m| status.message().contains(m)),
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `retry` runs out.
async fn with_retries<T, F>(
    retry: Retry,
    mut attempt: impl FnMut() -> F,
) -> Result<T, etcd_client::Error>
where
    F: Future<Output = Result<T, etcd_client::Error>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(err) if tries < MAX_RETRIES && retry.allows(&err) => {
                tries += 1;
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            out => return out,
        }
    }
}

/// gRPC's `UNAVAILABLE` status code.
const GRPC_UNAVAILABLE: i32 = 14;

/// `UNAVAILABLE` messages that mean a request was never handled: tonic's for a
/// connection that could not be made, etcd's for a member without a leader (checked
/// before anything is proposed, as the store connects with `require_leader`).
const NOT_SENT: [&str; 3] = ["tcp connect error", "error trying to connect", "no leader"];

/// Attempts at one request before its error is returned, and the pause between them.
const MAX_RETRIES: u32 = 20;
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

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

/// Claims the prefix for `cluster`, or finds it already claimed by it; returns etcd's
/// revision at that moment. Anything else under the prefix is refused: another
/// cluster's data must never be mixed with this one's. The outer error is etcd's.
async fn claim(
    kv: &mut KvClient,
    layout: &Layout,
    cluster: &str,
) -> Result<Result<Revision>, etcd_client::Error> {
    let marker = layout.marker_key();
    let (start, end) = layout.data_range();
    // A compare over a range holds for every key in it, so it holds for no keys at all.
    let txn = Txn::new()
        .when([
            Compare::create_revision(marker.clone(), CompareOp::Equal, 0),
            Compare::create_revision(start.clone(), CompareOp::Equal, 0).with_range(end.clone()),
        ])
        .and_then([TxnOp::put(
            marker.clone(),
            Layout::marker_value(cluster),
            None,
        )])
        .or_else([
            TxnOp::get(marker, None),
            TxnOp::get(
                start,
                Some(
                    GetOptions::new()
                        .with_range(end)
                        .with_limit(1)
                        .with_keys_only(),
                ),
            ),
        ]);
    let resp = kv.txn(txn).await?.0;
    Ok(claimed(resp, layout, cluster))
}

/// What the claim transaction found.
fn claimed(resp: PbTxnResponse, layout: &Layout, cluster: &str) -> Result<Revision> {
    let revision = header_revision(resp.header.as_ref())?;
    let prefix = layout.prefix();
    if resp.succeeded {
        tracing::info!(
            prefix,
            cluster,
            "claimed an empty etcd prefix for this cluster"
        );
        return Ok(revision);
    }
    let mut found = resp.responses.into_iter().filter_map(range_kvs);
    let marker = found.next().and_then(|kvs| kvs.into_iter().next());
    let first = found.next().and_then(|kvs| kvs.into_iter().next());
    match (marker, first) {
        (Some(m), _) => match Layout::marker_cluster(&m.value) {
            Some(owner) if owner == cluster => Ok(revision),
            Some(owner) => Err(storage(format!(
                "etcd prefix {prefix} holds another cluster's data (cluster {owner}; \
                 this store's is {cluster})"
            ))),
            None => Err(storage(format!(
                "etcd key {prefix} holds something other than a skiff cluster marker"
            ))),
        },
        (None, Some(kv)) => Err(storage(format!(
            "etcd prefix {prefix} already holds data that is not a skiff cluster's (e.g. {})",
            String::from_utf8_lossy(&kv.key)
        ))),
        (None, None) => Err(storage(format!(
            "etcd refused to claim prefix {prefix}, yet it holds nothing"
        ))),
    }
}

fn connect_options(tls: Option<&EtcdTls>) -> Result<ConnectOptions> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
        .with_keep_alive_while_idle(true)
        // A member cut off from the others must not serve stale reads or silent watches.
        .with_require_leader(true);
    if let Some(tls) = tls {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| storage(format!("cannot read {}: {e}", path.display())))
        };
        let mut config = TlsOptions::new();
        if let Some(ca) = &tls.ca_file {
            config = config.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => {
                return Err(storage(
                    "an etcd client certificate needs both its certificate and its key file".into(),
                ))
            }
        }
        options = options.with_tls(config);
    }
    Ok(options)
}

/// Runs `fut` on the store's runtime and blocks until it finishes or `timeout` passes.
/// Works from any thread, inside another runtime too (where `block_on` would panic).
fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    timeout: Duration,
    endpoints: &str,
    fut: impl Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(tokio::time::timeout(timeout, fut).await);
    });
    match rx.recv() {
        Ok(Ok(Ok(out))) => Ok(out),
        Ok(Ok(Err(err))) => Err(storage(format!("etcd at {endpoints}: {}", describe(&err)))),
        Ok(Err(_)) => Err(storage(format!(
            "etcd at {endpoints} did not answer within {}s",
            timeout.as_secs()
        ))),
        Err(_) => Err(storage("the etcd client stopped".into())),
    }
}

/// An etcd client error on one line: gRPC status and message, or the causes in order.
fn describe(err: &etcd_client::Error) -> String {
    let (mut out, mut source) = match err {
        etcd_client::Error::GRpcStatus(status) => (
            format!("{:?}: {}", status.code(), status.message()),
            std::error::Error::source(status),
        ),
        other => (other.to_string(), std::error::Error::source(other)),
    };
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        source = cause.source();
    }
    out.replace('\n', " ")
}

fn storage(message: String) -> Error {
    Error::Storage(message.into())
}

/// The store's own runtime. Shut down in the background on drop: a store may well be
/// dropped inside another runtime, where waiting for threads is not allowed.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn new() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("skiff-etcd")
            .enable_all()
            .build()
            .map_err(|e| storage(format!("cannot start the etcd client's runtime: {e}")))?;
        Ok(OwnRuntime(Some(rt)))
    }

    fn handle(&self) -> Result<tokio::runtime::Handle> {
        self.0
            .as_ref()
            .map(|rt| rt.handle().clone())
            .ok_or_else(|| storage("the etcd client's runtime is gone".into()))
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

//! Talking to etcd: connecting (TLS), claiming the prefix, retrying what is safe to
//! retry, waiting for the async client from synchronous code, errors on one line.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::proto::PbTxnResponse;
use etcd_client::{
    Certificate, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KvClient, TlsOptions,
    Txn, TxnOp,
};

use super::layout::Layout;
use super::{header_revision, range_kvs, storage, EtcdTls, CONNECT_TIMEOUT};
use crate::{Error, Result, Revision};

/// HTTP/2 pings find a dead connection (a member that vanished) within about this.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The client's threads: it only moves bytes between sockets and waiting callers.
const RUNTIME_THREADS: usize = 2;

/// Which failed requests may be sent again.
#[derive(Clone, Copy)]
pub(super) enum Retry {
    /// A read: any failure to reach a serving member.
    Read,
    /// A write: only when it cannot have reached etcd (no connection, or refused up
    /// front for want of a leader), so it is never applied twice.
    Unsent,
}

impl Retry {
    pub(super) fn allows(self, err: &etcd_client::Error) -> bool {
        let etcd_client::Error::GRpcStatus(status) = err else {
            return false;
        };
        // The status's message, and the transport's cause below it.
        let text = describe(err);
        let unsent = NOT_SENT.iter().any(|m| text.contains(m));
        match self {
            Retry::Read => unsent || TRANSIENT.contains(&(status.code() as i32)),
            Retry::Unsent => unsent,
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `retry` runs out.
pub(super) async fn with_retries<T, F>(
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

/// gRPC status codes worth another try for a read: `CANCELLED` (tonic's, for a
/// connection that closed under the request) and `UNAVAILABLE`.
const TRANSIENT: [i32; 2] = [1, 14];

/// Failures that mean a request was never handled: the transport's for a connection
/// that could not be made or was gone before the request went out, etcd's for a member
/// without a leader (checked before anything is proposed, as the store connects with
/// `require_leader`). Anything else may have been applied (a leader that died with the
/// proposal in flight): a write then fails, and its client decides.
const NOT_SENT: [&str; 4] = [
    "tcp connect error",
    "error trying to connect",
    "connection was not ready",
    "etcdserver: no leader",
];

/// Attempts at one request before its error is returned, and the pause between them.
const MAX_RETRIES: u32 = 20;
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// Claims the prefix for `cluster`, or finds it already claimed by it; returns etcd's
/// revision at that moment. Anything else under the prefix is refused: another
/// cluster's data must never be mixed with this one's. The outer error is etcd's.
pub(super) async fn claim(
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

pub(super) fn connect_options(tls: Option<&EtcdTls>) -> Result<ConnectOptions> {
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
pub(super) fn wait<T: Send + 'static>(
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
        Ok(Ok(Err(err))) if unreachable(&err) => Err(unavailable(endpoints, &describe(&err))),
        Ok(Ok(Err(err))) => Err(storage(format!("etcd at {endpoints}: {}", describe(&err)))),
        Ok(Err(_)) => Err(unavailable(
            endpoints,
            &format!("no answer within {}s", timeout.as_secs()),
        )),
        Err(_) => Err(storage("the etcd client stopped".into())),
    }
}

/// The error for an etcd that cannot serve: named, since the API server passes the
/// message on to clients as is.
pub(super) fn unavailable(endpoints: &str, why: &str) -> Error {
    Error::Unavailable(format!("etcd is unreachable ({endpoints}): {why}").into())
}

/// Whether `err` says etcd could not be reached or could not serve right now (no
/// connection, a connection lost under the request, no leader, etcd's own timeout)
/// rather than refusing this request: such a failure is `Unavailable`, and passes.
pub(super) fn unreachable(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            // etcd's "no leader", "request timed out" and "leader changed" are all
            // UNAVAILABLE; the transport's failures may come as UNKNOWN, hence the text.
            UNREACHABLE.contains(&(status.code() as i32)) || {
                let text = describe(err);
                NOT_SENT.iter().any(|m| text.contains(m))
            }
        }
        _ => false,
    }
}

/// gRPC codes that mean etcd did not serve the request: `CANCELLED` (tonic's, for a
/// connection that closed under it), `DEADLINE_EXCEEDED` and `UNAVAILABLE`.
const UNREACHABLE: [i32; 3] = [1, 4, 14];

/// An etcd client error on one line: gRPC status and message, or the causes in order.
pub(super) fn describe(err: &etcd_client::Error) -> String {
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

/// The store's own runtime. Shut down in the background on drop: a store may well be
/// dropped inside another runtime, where waiting for threads is not allowed.
pub(super) struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    pub(super) fn new() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("skiff-etcd")
            .enable_all()
            .build()
            .map_err(|e| storage(format!("cannot start the etcd client's runtime: {e}")))?;
        Ok(OwnRuntime(Some(rt)))
    }

    pub(super) fn handle(&self) -> Result<tokio::runtime::Handle> {
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

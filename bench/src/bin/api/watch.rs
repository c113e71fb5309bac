//! Watch fan-out: W watchers on the Services of one namespace, one writer making C
//! changes one after another. Each change carries its sequence number in an annotation;
//! the writer notes when it started each change, every watcher notes when it parsed it.
//!
//! What is compared is the fan-out, the same writes on both sides: one writer thread
//! makes each change straight on a store backend (get, set the annotation, update with
//! the read revision as precondition), on the server's own store for skiff (whose
//! watch cache picks it up from the store's watch, as it picks up any server's writes)
//! and on a second fresh store for the floor. skiff's watchers watch through the API
//! server (HTTPS, HTTP/2, one connection each); the floor's are `Backend::watch`
//! receivers in-process. Delivery latency is "writer starts the change -> watcher has
//! the event", which includes the durable write on both sides.
//!
//! `rbac.rs` compares two identities through the API, so its writer patches through
//! the API (`write_changes`) for both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use skiff_bench::client::{Conn, Lines, Proto, Server};
use skiff_bench::stats::Samples;
use skiff_store::{Backend, SqliteBackend};

use crate::{key, name, PREFIX};

/// The collection every watcher watches and the writer patches (`NAMESPACE`'s Services).
const BASE: &str = "/api/v1/namespaces/bench/services";

const SEQ_ANNOTATION: &str = "bench.skiff.dev/seq";
/// How the annotation appears in compact JSON, just before its value.
const SEQ_MARK: &[u8] = b"\"bench.skiff.dev/seq\":\"";

/// How long the watchers may take after the last change before the run fails.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Fanout {
    /// From the start of the first change until the last watcher has the last event.
    pub all_delivered: Duration,
    pub deliveries: usize,
    pub latency: Samples,
}

impl Fanout {
    pub fn events_per_sec(&self) -> f64 {
        self.deliveries as f64 / self.all_delivered.as_secs_f64()
    }
}

/// When each change was started, in nanoseconds since `base`; shared with the watchers.
pub struct Clock {
    base: Instant,
    sent: Vec<AtomicU64>,
}

impl Clock {
    pub fn new(changes: usize) -> Arc<Self> {
        Arc::new(Clock {
            base: Instant::now(),
            sent: (0..changes).map(|_| AtomicU64::new(u64::MAX)).collect(),
        })
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn mark_sent(&self, seq: usize) {
        self.sent[seq].store(self.now(), Ordering::SeqCst);
    }
}

/// What one watcher saw: `(seq, received at)` for each distinct change, in arrival order.
pub type Seen = Vec<(usize, u64)>;

/// Finds the sequence annotation in an event or stored value without parsing it: the
/// watchers share the cores with the server, so they must be cheap.
fn seq_of(bytes: &[u8]) -> Option<usize> {
    let at = find(bytes, SEQ_MARK)? + SEQ_MARK.len();
    let digits = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&bytes[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Where `needle` first occurs in `haystack`: a byte scan for one of its rarer bytes
/// (`/`, if it has one: JSON is full of quotes and letters), then one comparison per
/// candidate.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let pivot = needle.iter().position(|&b| b == b'/').unwrap_or(0);
    let &rare = needle.get(pivot)?;
    let mut from = pivot;
    while let Some(i) = haystack.get(from..)?.iter().position(|&b| b == rare) {
        let at = from + i - pivot;
        if haystack.get(at..at + needle.len()) == Some(needle) {
            return Some(at);
        }
        from += i + 1;
    }
    None
}

/// Records `seq` once; returns true when all `changes` have been seen.
fn record(seen: &mut Seen, got: &mut [bool], seq: usize, at: u64) -> Result<bool> {
    match got.get_mut(seq) {
        Some(true) => bail!("change {seq} was delivered twice"),
        Some(slot) => {
            *slot = true;
            seen.push((seq, at));
        }
        None => bail!("unexpected change {seq}"),
    }
    Ok(seen.len() == got.len())
}

fn summarise(
    clock: &Clock,
    per_watcher: Vec<Seen>,
    watchers: usize,
    changes: usize,
) -> Result<Fanout> {
    let first = clock.sent.first().map_or(0, |s| s.load(Ordering::SeqCst));
    let mut latency = Samples::with_capacity(watchers * changes);
    let mut last = first;
    let mut deliveries = 0;
    for seen in per_watcher {
        ensure!(
            seen.len() == changes,
            "a watcher saw {} of {changes} changes",
            seen.len()
        );
        for (seq, at) in seen {
            let sent = clock.sent[seq].load(Ordering::SeqCst);
            // An event cannot arrive before its write started; saturate just in case.
            latency.push(Duration::from_nanos(at.saturating_sub(sent)));
            last = last.max(at);
            deliveries += 1;
        }
    }
    Ok(Fanout {
        all_delivered: Duration::from_nanos(last - first),
        deliveries,
        latency,
    })
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<Result<Seen>>>) -> Result<Vec<Seen>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.context("watcher panicked")??);
    }
    Ok(out)
}

/// skiff's side: `watchers` watch streams through the API server, the changes written
/// straight to the server's store (`store`) by [`write_direct`].
pub async fn api(
    server: &Server,
    proto: Proto,
    store: Arc<SqliteBackend>,
    n: usize,
    watchers: usize,
    changes: usize,
) -> Result<Fanout> {
    let mut conn = server.connect(proto).await?;
    let rv = current_rv(&mut conn).await?;
    drop(conn);
    let clock = Clock::new(changes);
    let tasks = open(server, proto, watchers, &rv, &clock).await?;
    settle().await;
    write_direct(store, n, &clock).await?;
    finish(&clock, tasks, watchers).await
}

/// The writer of both sides: for each change, one thread reads the Service's stored
/// value, sets the sequence annotation and updates it with the read revision as
/// precondition (what a merge patch does at the store), one change after another.
pub async fn write_direct(store: Arc<SqliteBackend>, n: usize, clock: &Arc<Clock>) -> Result<()> {
    let clock = clock.clone();
    tokio::task::spawn_blocking(move || {
        for seq in 0..clock.sent.len() {
            let k = key(seq % n);
            clock.mark_sent(seq);
            let current = store.get(&k)?.with_context(|| format!("{k} is missing"))?;
            let mut value: Value = serde_json::from_slice(&current.value)?;
            value["metadata"]["annotations"] = json!({SEQ_ANNOTATION: seq.to_string()});
            store.update(&k, &serde_json::to_vec(&value)?, current.mod_revision)?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await?
}

/// The watchers of one side, reading their streams in tasks until every change is in.
pub type Watchers = Vec<tokio::task::JoinHandle<Result<Seen>>>;

/// The resourceVersion of the namespace's Services right now, to watch from.
pub async fn current_rv(conn: &mut Conn) -> Result<String> {
    let head = conn
        .expect(
            StatusCode::OK,
            Method::GET,
            &format!("{BASE}?limit=1"),
            None,
            Bytes::new(),
        )
        .await?;
    let head: Value = serde_json::from_slice(&head)?;
    Ok(head["metadata"]["resourceVersion"]
        .as_str()
        .context("list without resourceVersion")?
        .to_string())
}

/// The server subscribes when it first polls the response body; the explicit
/// resourceVersion already guarantees no change is missed, this only keeps replayed
/// history from inflating the first latencies.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// `watchers` watch streams of the namespace's Services from `rv`, each on its own
/// connection (as separate controllers would have), authenticated as `server` says.
pub async fn open(
    server: &Server,
    proto: Proto,
    watchers: usize,
    rv: &str,
    clock: &Arc<Clock>,
) -> Result<Watchers> {
    let changes = clock.sent.len();
    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut conn = server.connect(proto).await?;
        let resp = conn
            .send(
                Method::GET,
                &format!("{BASE}?watch=true&resourceVersion={rv}"),
                None,
                Bytes::new(),
            )
            .await?;
        ensure!(resp.status() == StatusCode::OK, "watch: {}", resp.status());
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            let _conn = conn;
            let mut body = resp.into_body();
            let mut lines = Lines::default();
            let (mut seen, mut got) = (Seen::with_capacity(changes), vec![false; changes]);
            let mut failed = None;
            while seen.len() < changes {
                let Some(frame) = body.frame().await else {
                    bail!("watch ended after {} of {changes} changes", seen.len())
                };
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                let at = clock.now();
                lines.feed(&data, |line| {
                    if failed.is_some() {
                        return;
                    }
                    if let Some(seq) = seq_of(line) {
                        if let Err(e) = record(&mut seen, &mut got, seq, at) {
                            failed = Some(e);
                        }
                    } else if line.starts_with(br#"{"type":"ERROR""#) {
                        failed = Some(anyhow::anyhow!(
                            "watch error: {}",
                            String::from_utf8_lossy(line)
                        ));
                    }
                });
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            Ok(seen)
        }));
    }
    Ok(tasks)
}

/// One writer merge-patches Services `svc-0..n` in turn, one change per clock slot.
pub async fn write_changes(writer: &mut Conn, n: usize, clock: &Clock) -> Result<()> {
    for seq in 0..clock.sent.len() {
        let patch = json!({"metadata": {"annotations": {SEQ_ANNOTATION: seq.to_string()}}});
        clock.mark_sent(seq);
        writer
            .expect(
                StatusCode::OK,
                Method::PATCH,
                &format!("{BASE}/{}", name(seq % n)),
                Some("application/merge-patch+json"),
                Bytes::from(patch.to_string()),
            )
            .await?;
    }
    Ok(())
}

/// Waits for every watcher to have every change and sums up what they saw.
pub async fn finish(clock: &Clock, tasks: Watchers, watchers: usize) -> Result<Fanout> {
    let seen = tokio::time::timeout(DRAIN_TIMEOUT, join_all(tasks))
        .await
        .context("watchers did not receive every change in time")??;
    summarise(clock, seen, watchers, clock.sent.len())
}

/// The floor: `watchers` `Backend::watch` receivers in-process on `store`, written to
/// by the same [`write_direct`].
pub async fn raw(
    store: Arc<SqliteBackend>,
    n: usize,
    watchers: usize,
    changes: usize,
) -> Result<Fanout> {
    let rv = store.current_revision()?;
    let clock = Clock::new(changes);
    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut w = store.watch(PREFIX, rv)?;
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            let (mut seen, mut got) = (Seen::with_capacity(changes), vec![false; changes]);
            while seen.len() < changes {
                let Some(ev) = w.next().await else {
                    bail!("raw watch ended after {} of {changes} changes", seen.len())
                };
                let ev = ev?;
                let at = clock.now();
                let seq = seq_of(&ev.kv().value).context("raw event without a sequence number")?;
                record(&mut seen, &mut got, seq, at)?;
            }
            Ok(seen)
        }));
    }
    write_direct(store, n, &clock).await?;
    finish(&clock, tasks, watchers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_the_bench_namespace() {
        assert_eq!(
            BASE,
            format!("/api/v1/namespaces/{}/services", crate::NAMESPACE)
        );
    }

    #[test]
    fn finds_the_sequence_number() {
        let line = br#"{"type":"MODIFIED","object":{"metadata":{"annotations":{"bench.skiff.dev/seq":"417"}}}}"#;
        assert_eq!(seq_of(line), Some(417));
        assert_eq!(seq_of(br#"{"type":"BOOKMARK"}"#), None);
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"a", b"ab"), None);
        assert_eq!(find(b"x/y a/b a/bc", b"a/bc"), Some(8));
        assert_eq!(find(b"/bc", b"a/bc"), None);
    }

    #[test]
    fn duplicates_are_errors() {
        let (mut seen, mut got) = (Seen::new(), vec![false; 2]);
        assert!(!record(&mut seen, &mut got, 1, 5).unwrap());
        assert!(record(&mut seen, &mut got, 1, 6).is_err());
        assert!(record(&mut seen, &mut got, 0, 7).unwrap());
        assert!(record(&mut seen, &mut got, 2, 8).is_err());
    }
}

//! The watch side of the etcd store.
//!
//! One etcd watch over the cluster's whole range (the *pump*) feeds a `Hub`, as a SQLite
//! writer does, and keeps the most recent events in memory (the *ring*): a watch that
//! starts inside the ring is served like the memory backend's, with no request to etcd,
//! so any number of watchers cost etcd one stream. A watch that starts further back gets
//! an etcd watch of its own (`replay`), which etcd orders and keeps gap-free.
//!
//! A write returns only once the pump has published it, so a watcher started before a
//! write sees it as soon as the write returns, as with the other backends. Events come
//! from etcd, so writes through other API servers on the same etcd reach every watcher
//! too, in revision order. (The store writes one key per revision, as the trait's
//! watchers assume; a foreign multi-key transaction under the prefix would show them
//! only its first key.)
//!
//! etcd's progress notifications (asked for on every watch) move the feed's published
//! revision on when nothing changes; the trait has no bookmarks to pass them on as.
//!
//! When etcd goes away: a watch that stays quiet is asked for a sign of life (a progress
//! request), so a stopped etcd is noticed within seconds, not only when TCP gives up. A
//! broken etcd watch is opened again from the next revision, so a short break (a leader
//! election, a member restarting) loses nothing and its watchers never notice. If it is
//! not back within `OUTAGE_GRACE`, its watchers are ended (cleanly: their clients watch
//! again from the last revision they saw) and new watches are refused as `Unavailable`
//! until it is back, so that no watch waits silently on an etcd that is gone.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::proto::PbEvent;
use etcd_client::{WatchClient, WatchOptions, WatchStream};
use tokio::sync::mpsc;

use super::layout::BadEvent;
use super::{describe, unavailable, Shared};
use crate::watch::Hub;
use crate::{Error, Event, Revision, Watch};

/// Most recent events kept in memory for watches that start a little in the past (a
/// client reconnecting with the resourceVersion it last saw). Older starts cost an etcd
/// watch of their own, nothing more.
pub(super) const RING_EVENTS: usize = 1024;

/// How long a broken etcd watch waits before it is opened again.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Opening an etcd watch gives up after this: a stopped (not dead) etcd accepts the
/// connection and then answers nothing.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// An etcd watch quiet for this long is asked for a progress report...
const PROBE_AFTER: Duration = Duration::from_secs(2);
/// ...and counts as broken if nothing at all comes back within this after asking.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// etcd's watch ID on the answer to a progress request: it is for the whole stream.
/// etcd 3.4 sends it ahead of events still queued for the watch, so it only says etcd
/// is alive, never how far the watch has got.
const PROBE_ANSWER: i64 = -1;

/// How long watchers wait for a broken etcd watch to come back before they are ended:
/// a leader election or a member's restart passes well within it, an outage does not.
pub(super) const OUTAGE_GRACE: Duration = Duration::from_secs(5);

/// Events a watch of its own may have in hand before it stops reading from etcd (which
/// then buffers for it, as it does for any slow watcher).
const REPLAY_BUFFER: usize = 256;

pub(super) struct Feed {
    state: Mutex<FeedState>,
    /// Signalled whenever `published` moves; writers wait on it.
    moved: Condvar,
    capacity: usize,
}

struct FeedState {
    hub: Hub,
    /// Every event of the cluster in `(ring_start, published]`, in revision order.
    ring: VecDeque<Event>,
    ring_start: Revision,
    /// Everything through this revision has reached the hub.
    published: Revision,
    /// Set while the pump's etcd watch is broken.
    outage: Option<Outage>,
}

struct Outage {
    why: String,
    /// Past `OUTAGE_GRACE`: the watchers were ended and new watches are refused.
    ended: bool,
}

impl Feed {
    /// `from`: the first revision the pump will read.
    pub(super) fn new(capacity: usize, from: Revision) -> Self {
        Feed {
            state: Mutex::new(FeedState {
                hub: Hub::new(capacity),
                ring: VecDeque::new(),
                ring_start: from - 1,
                published: from - 1,
                outage: None,
            }),
            moved: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, FeedState> {
        // Each critical section is a few infallible steps; a panic cannot leave the
        // state half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A watch served from memory, or `None` if `after` is older than the ring.
    pub(super) fn watch(&self, prefix: &str, after: Revision) -> Option<Watch> {
        let state = self.lock();
        if after < state.ring_start {
            return None;
        }
        // Subscribing and copying the ring under the lock the pump publishes under makes
        // the hand-over from history to live events gap-free (see `watch.rs`).
        let rx = state.hub.subscribe();
        let start = state.ring.partition_point(|e| e.revision() <= after);
        let history = state
            .ring
            .range(start..)
            .filter(|e| e.key().starts_with(prefix))
            .cloned()
            .collect::<Vec<_>>();
        Some(Watch::new(prefix, after, history, rx, state.published))
    }

    /// A watch of live events only (for a prefix with no history).
    pub(super) fn live(&self, prefix: &str, after: Revision) -> Watch {
        let state = self.lock();
        Watch::new(
            prefix,
            after,
            Vec::new(),
            state.hub.subscribe(),
            state.published,
        )
    }

    /// Publishes `events` (in revision order) and records that everything through
    /// `through` has been read.
    fn publish(&self, events: Vec<Event>, through: Revision) {
        let mut state = self.lock();
        for event in events {
            state.ring.push_back(event.clone());
            if state.ring.len() > RING_EVENTS {
                if let Some(old) = state.ring.pop_front() {
                    state.ring_start = old.revision();
                }
            }
            state.hub.publish(event);
        }
        state.published = state.published.max(through);
        drop(state);
        self.moved.notify_all();
    }

    /// History through `revision` can no longer be delivered: every live watcher ends
    /// (its client starts again from a revision, and gets 410 if that is gone) and the
    /// ring starts over after `revision`.
    fn reset(&self, revision: Revision) {
        let mut state = self.lock();
        state.hub = Hub::new(self.capacity);
        state.ring.clear();
        state.ring_start = revision;
        state.published = state.published.max(revision);
        drop(state);
        self.moved.notify_all();
    }

    /// The pump's etcd watch broke: why, for `unavailable`.
    fn broken(&self, why: String) {
        self.lock()
            .outage
            .get_or_insert(Outage { why, ended: false });
    }

    /// The pump's etcd watch works (again).
    fn working(&self) {
        if self.lock().outage.take().is_some_and(|o| o.ended) {
            tracing::info!("the store feed follows etcd again; watches are served again");
        }
    }

    /// The outage outlasted `OUTAGE_GRACE`: every live watcher ends (its client watches
    /// again from the last revision it saw, which the ring still holds once etcd is back)
    /// and new watches are refused until the pump follows etcd again.
    fn end_watchers(&self) {
        let mut state = self.lock();
        let Some(outage) = state.outage.as_mut() else {
            return;
        };
        outage.ended = true;
        tracing::warn!(
            why = %outage.why,
            "etcd's watch has been broken for {}s; ending watches until it is back",
            OUTAGE_GRACE.as_secs()
        );
        state.hub = Hub::new(self.capacity);
    }

    /// Why watches are refused right now, if they are.
    pub(super) fn unavailable(&self) -> Option<String> {
        let state = self.lock();
        let outage = state.outage.as_ref().filter(|o| o.ended)?;
        Some(format!(
            "its watch has been broken for more than {}s: {}",
            OUTAGE_GRACE.as_secs(),
            outage.why
        ))
    }

    /// Compaction at `revision`: the ring no longer needs what it superseded.
    pub(super) fn forget_through(&self, revision: Revision) {
        let mut state = self.lock();
        let drop = state.ring.partition_point(|e| e.revision() <= revision);
        state.ring.drain(..drop);
        state.ring_start = state.ring_start.max(revision);
    }

    /// Waits until the pump has published `revision`; `false` if `wait` ran out first.
    pub(super) fn wait_published(&self, revision: Revision, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut state = self.lock();
        while state.published < revision {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            state = self
                .moved
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// What an etcd watch produced next.
enum Batch {
    /// Events, in revision order.
    Events(Vec<PbEvent>),
    /// etcd's progress notification: nothing through this revision is still to come.
    Progress(Revision),
    /// History from the requested revision on was compacted at this revision.
    Compacted(Revision),
    /// The etcd watch broke (the first failure of a run of them): it is being opened
    /// again, and the caller decides how long its own watchers wait for that.
    Broken(String),
    /// The etcd watch works again, with nothing to deliver yet.
    Resumed,
}

/// One etcd watch on a key range that survives broken streams: it is opened again from
/// the first revision not yet received, so nothing is lost or repeated.
struct Follower {
    client: WatchClient,
    start: Vec<u8>,
    end: Vec<u8>,
    next: Revision,
    stream: Option<WatchStream>,
    /// For the logs: what this watch is for, and whether it is failing right now.
    what: &'static str,
    failing: bool,
    /// A progress request is out, unanswered.
    probed: bool,
}

impl Follower {
    fn new(client: WatchClient, (start, end): (Vec<u8>, Vec<u8>), next: Revision) -> Self {
        Follower {
            client,
            start,
            end,
            next,
            stream: None,
            what: "watch",
            failing: false,
            probed: false,
        }
    }

    async fn next(&mut self) -> Batch {
        loop {
            let stream = match self.stream.as_mut() {
                Some(stream) => stream,
                None => {
                    if self.failing {
                        tokio::time::sleep(RETRY_DELAY).await;
                    }
                    let options = WatchOptions::new()
                        .with_range(self.end.clone())
                        .with_start_revision(self.next)
                        .with_prev_key()
                        .with_progress_notify();
                    let open = self.client.watch(self.start.clone(), Some(options));
                    let why = match tokio::time::timeout(OPEN_TIMEOUT, open).await {
                        Ok(Ok(stream)) => {
                            self.probed = false;
                            self.stream = Some(stream);
                            continue;
                        }
                        Ok(Err(err)) => describe(&err),
                        Err(_) => format!("no answer within {}s", OPEN_TIMEOUT.as_secs()),
                    };
                    if let Some(batch) = self.failed(&why) {
                        return batch;
                    }
                    continue;
                }
            };
            let wait = if self.probed {
                PROBE_TIMEOUT
            } else {
                PROBE_AFTER
            };
            let why = match tokio::time::timeout(wait, stream.message()).await {
                Ok(Ok(Some(resp))) => match self.received(resp) {
                    Some(batch) => return batch,
                    None => continue,
                },
                Ok(Ok(None)) => "the stream ended".to_owned(),
                Ok(Err(err)) => describe(&err),
                Err(_) if !self.probed => {
                    // Quiet for a while: ask for a sign of life.
                    self.probed = true;
                    match stream.request_progress().await {
                        Ok(()) => continue,
                        Err(err) => describe(&err),
                    }
                }
                Err(_) => format!(
                    "no answer to a progress request within {}s",
                    PROBE_TIMEOUT.as_secs()
                ),
            };
            if let Some(batch) = self.failed(&why) {
                return batch;
            }
        }
    }

    /// What one message from etcd means, if it means anything to the caller.
    fn received(&mut self, mut resp: etcd_client::WatchResponse) -> Option<Batch> {
        self.probed = false;
        if resp.0.compact_revision > 0 {
            self.stream = None;
            return Some(Batch::Compacted(resp.0.compact_revision));
        }
        if resp.0.canceled {
            let reason = format!("etcd cancelled the watch: {}", resp.0.cancel_reason);
            return self.failed(&reason);
        }
        let resumed = std::mem::replace(&mut self.failing, false);
        if resumed {
            tracing::info!(what = self.what, revision = self.next, "etcd watch resumed");
        }
        let events = std::mem::take(&mut resp.0.events);
        if let Some(kv) = events.last().and_then(|e| e.kv.as_ref()) {
            self.next = kv.mod_revision + 1;
            return Some(Batch::Events(events));
        }
        let revision = resp.0.header.as_ref().map_or(0, |h| h.revision);
        if !resp.0.created && resp.0.watch_id != PROBE_ANSWER && revision >= self.next {
            self.next = revision + 1;
            return Some(Batch::Progress(revision));
        }
        resumed.then_some(Batch::Resumed)
    }

    /// Drops the stream (it is opened again after `RETRY_DELAY`); the first failure of
    /// an outage is logged as a warning and returned as `Broken`, the rest quietly.
    fn failed(&mut self, why: &str) -> Option<Batch> {
        self.stream = None;
        if self.failing {
            tracing::debug!(what = self.what, revision = self.next, "etcd watch: {why}");
            return None;
        }
        self.failing = true;
        tracing::warn!(
            what = self.what,
            revision = self.next,
            "etcd watch broke, retrying: {why}"
        );
        Some(Batch::Broken(why.to_owned()))
    }
}

/// The pump: follows the cluster's whole range from `from` into the feed, for as long
/// as the store lives.
pub(super) async fn pump(shared: Arc<Shared>, from: Revision) {
    let mut follower = Follower::new(shared.watch.clone(), shared.layout.data_range(), from);
    follower.what = "store feed";
    // Until the first batch, a compaction only says where etcd's history begins.
    let mut started = false;
    // While etcd's watch is broken: when the feed's watchers are ended if it is not back.
    let mut give_up: Option<tokio::time::Instant> = None;
    let mut broken = false;
    loop {
        // `next` keeps its state in `follower`, so it may be dropped half-way here.
        let batch = tokio::select! {
            batch = follower.next() => batch,
            () = sleep_until(give_up), if give_up.is_some() => {
                give_up = None;
                shared.feed.end_watchers();
                continue;
            }
        };
        let batch = match batch {
            Batch::Broken(why) => {
                broken = true;
                shared.feed.broken(why);
                give_up = Some(tokio::time::Instant::now() + OUTAGE_GRACE);
                continue;
            }
            batch => {
                if std::mem::take(&mut broken) {
                    give_up = None;
                    shared.feed.working();
                }
                batch
            }
        };
        if matches!(batch, Batch::Resumed) {
            continue;
        }
        let first = !std::mem::replace(&mut started, true);
        match batch {
            Batch::Events(raw) => {
                let mut events = Vec::with_capacity(raw.len());
                let mut through = 0;
                for pb in raw {
                    let revision = pb.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                    through = through.max(revision);
                    match shared.layout.event(pb) {
                        Ok(event) => events.push(event),
                        Err(BadEvent::NoPrevious { revision }) => {
                            tracing::warn!(
                                revision,
                                "etcd compacted a value before the store feed read its \
                                 change; watchers start again"
                            );
                            shared
                                .feed
                                .publish(std::mem::take(&mut events), revision - 1);
                            shared.feed.reset(revision);
                        }
                        Err(BadEvent::Malformed(why)) => {
                            tracing::warn!(revision, "skipping an etcd event: {why}");
                        }
                    }
                }
                shared.feed.publish(events, through);
            }
            Batch::Progress(revision) => shared.feed.publish(Vec::new(), revision),
            Batch::Compacted(revision) if first => {
                tracing::debug!(revision, "etcd's history starts after its compaction");
                shared.compacted.fetch_max(revision, Ordering::SeqCst);
                shared.feed.reset(revision);
                follower.next = revision + 1;
                started = false;
            }
            Batch::Compacted(revision) => {
                tracing::warn!(
                    revision,
                    "the store feed fell behind etcd's compaction; watchers start again"
                );
                shared.compacted.fetch_max(revision, Ordering::SeqCst);
                shared.feed.reset(revision);
                follower.next = revision + 1;
            }
            Batch::Broken(_) | Batch::Resumed => {}
        }
    }
}

/// Waits until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A watch with an etcd watch of its own, for a start older than the ring: the events
/// under `range` after `after`, ending with `Compacted` if etcd no longer has them.
pub(super) fn replay(
    shared: &Arc<Shared>,
    prefix: &str,
    range: (Vec<u8>, Vec<u8>),
    after: Revision,
) -> Watch {
    let (tx, rx) = mpsc::channel(REPLAY_BUFFER);
    let follower = Follower::new(shared.watch.clone(), range, after + 1);
    let task_shared = shared.clone();
    shared.runtime.spawn(async move {
        tokio::select! {
            () = tx.closed() => {}
            () = forward(&task_shared, follower, &tx, after) => {}
        }
    });
    Watch::from_stream(prefix, after, rx)
}

async fn forward(
    shared: &Shared,
    mut follower: Follower,
    tx: &mpsc::Sender<crate::Result<Event>>,
    after: Revision,
) {
    let compacted = |revision: Revision| -> crate::Result<Event> {
        let known = shared.compacted.fetch_max(revision, Ordering::SeqCst);
        Err(Error::Compacted {
            requested: after,
            compacted: known.max(revision),
        })
    };
    // As for the pump's watchers: a broken etcd watch has `OUTAGE_GRACE` to come back.
    let mut give_up: Option<tokio::time::Instant> = None;
    loop {
        let batch = tokio::select! {
            batch = follower.next() => batch,
            () = sleep_until(give_up), if give_up.is_some() => {
                let why = format!(
                    "a watch has been broken for more than {}s",
                    OUTAGE_GRACE.as_secs()
                );
                let _ = tx.send(Err(unavailable(&shared.endpoints, &why))).await;
                return;
            }
        };
        if !matches!(batch, Batch::Broken(_)) {
            give_up = None;
        }
        match batch {
            Batch::Broken(_) => {
                give_up = Some(tokio::time::Instant::now() + OUTAGE_GRACE);
            }
            Batch::Progress(_) | Batch::Resumed => {}
            Batch::Events(raw) => {
                for pb in raw {
                    let event = match shared.layout.event(pb) {
                        Ok(event) => Ok(event),
                        Err(BadEvent::NoPrevious { revision }) => compacted(revision - 1),
                        Err(BadEvent::Malformed(why)) => {
                            tracing::warn!("skipping an etcd event: {why}");
                            continue;
                        }
                    };
                    let last = event.is_err();
                    if tx.send(event).await.is_err() || last {
                        return;
                    }
                }
            }
            Batch::Compacted(revision) => {
                let _ = tx.send(compacted(revision)).await;
                return;
            }
        }
    }
}

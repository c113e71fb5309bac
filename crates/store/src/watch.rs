//! Live event fan-out (`Hub`) and the watcher handle (`Watch`).
//!
//! How a watch avoids gaps: a backend subscribes to the hub *before* it reads history,
//! and writers publish *after* their commit, in commit order, while holding the write
//! lock. So every event is either in the history snapshot, on the receiver, or both;
//! `Watch` drops live events at or below the newest revision the history covered.
//!
//! A backend may also hand a watcher a stream of its own (`Watch::from_stream`): etcd
//! does for a watch that starts further back than the history it keeps in memory, and
//! etcd itself then guarantees the order and the absence of gaps.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

use crate::{Error, Event, Result, Revision};

/// How many live events a watcher may fall behind before it is cut off with
/// `WatchLagged`. Writers never wait for watchers.
pub const DEFAULT_WATCH_CAPACITY: usize = 8192;

/// The broadcast side, owned by a backend.
pub(crate) struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Hub {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Hub { tx }
    }

    /// Must be called in commit order (i.e. under the backend's write lock).
    pub(crate) fn publish(&self, event: Event) {
        if self.tx.receiver_count() > 0 {
            // An error only means every receiver went away in the meantime.
            let _ = self.tx.send(Arc::new(event));
        }
    }

    pub(crate) fn subscribe(&self) -> Receiver {
        Receiver(self.tx.subscribe())
    }
}

/// A subscription taken before the history read; see the module docs.
pub(crate) struct Receiver(broadcast::Receiver<Arc<Event>>);

/// A stream of events under one prefix: replayed history, then live events.
///
/// Ends with `None` when the backend is dropped, or after one `Err(WatchLagged)` if the
/// consumer fell too far behind. Dropping it releases its place in the broadcast.
pub struct Watch {
    prefix: String,
    history: VecDeque<Event>,
    live: Option<Live>,
    /// Live events at or below this revision were already covered by `history`.
    seen: Revision,
}

/// Where a watch's events come from once its history is used up.
enum Live {
    /// The backend's fan-out of every event (filtered by prefix here).
    Hub(broadcast::Receiver<Arc<Event>>),
    /// A stream of this watch's own, already filtered, ordered and gap-free; an `Err`
    /// is its last item.
    Stream(mpsc::Receiver<Result<Event>>),
}

impl Watch {
    /// `history` must hold, in revision order, every matching event after `after` up to
    /// `covered` (the snapshot's revision), read after `rx` was subscribed.
    pub(crate) fn new(
        prefix: &str,
        after: Revision,
        history: impl IntoIterator<Item = Event>,
        rx: Receiver,
        covered: Revision,
    ) -> Self {
        Watch {
            prefix: prefix.to_owned(),
            history: history.into_iter().collect(),
            live: Some(Live::Hub(rx.0)),
            seen: covered.max(after),
        }
    }

    /// A watch fed by a backend's own stream of the events after `after` under `prefix`.
    pub(crate) fn from_stream(
        prefix: &str,
        after: Revision,
        rx: mpsc::Receiver<Result<Event>>,
    ) -> Self {
        Watch {
            prefix: prefix.to_owned(),
            history: VecDeque::new(),
            live: Some(Live::Stream(rx)),
            seen: after,
        }
    }

    /// The next event, waiting for one if necessary. Cancel-safe: dropping the future
    /// (e.g. a losing `tokio::select!` branch) loses no event.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        if let Some(event) = self.history.pop_front() {
            return Some(Ok(event));
        }
        loop {
            let received = match self.live.as_mut()? {
                Live::Hub(rx) => Received::Hub(rx.recv().await),
                Live::Stream(rx) => Received::Stream(rx.recv().await),
            };
            if let Some(out) = self.accept(received) {
                return out;
            }
        }
    }

    /// Like `next`, for plain threads. Panics if called from inside an async context
    /// (tokio's rule for `blocking_recv`).
    pub fn blocking_next(&mut self) -> Option<Result<Event>> {
        if let Some(event) = self.history.pop_front() {
            return Some(Ok(event));
        }
        loop {
            let received = match self.live.as_mut()? {
                Live::Hub(rx) => Received::Hub(rx.blocking_recv()),
                Live::Stream(rx) => Received::Stream(rx.blocking_recv()),
            };
            if let Some(out) = self.accept(received) {
                return out;
            }
        }
    }

    /// The next event if one is ready now, without waiting: `None` when none is,
    /// `Some` with what [`Watch::next`] would have returned otherwise. For a caller
    /// that only wants to catch up on a hot path: it neither registers a waker nor
    /// builds a future.
    pub fn try_next(&mut self) -> Option<Option<Result<Event>>> {
        if let Some(event) = self.history.pop_front() {
            return Some(Some(Ok(event)));
        }
        loop {
            let received = match self.live.as_mut() {
                None => return Some(None),
                Some(Live::Hub(rx)) => match rx.try_recv() {
                    Ok(event) => Received::Hub(Ok(event)),
                    Err(broadcast::error::TryRecvError::Empty) => return None,
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Received::Hub(Err(RecvError::Lagged(n)))
                    }
                    Err(broadcast::error::TryRecvError::Closed) => {
                        Received::Hub(Err(RecvError::Closed))
                    }
                },
                Some(Live::Stream(rx)) => match rx.try_recv() {
                    Ok(item) => Received::Stream(Some(item)),
                    Err(mpsc::error::TryRecvError::Empty) => return None,
                    Err(mpsc::error::TryRecvError::Disconnected) => Received::Stream(None),
                },
            };
            if let Some(out) = self.accept(received) {
                return Some(out);
            }
        }
    }

    /// `None` means "not for this watcher, keep reading".
    fn accept(&mut self, received: Received) -> Option<Option<Result<Event>>> {
        match received {
            Received::Hub(Ok(event)) => {
                let rev = event.revision();
                if rev <= self.seen || !event.key().starts_with(&self.prefix) {
                    return None;
                }
                self.seen = rev;
                Some(Some(Ok(Event::clone(&event))))
            }
            Received::Hub(Err(RecvError::Lagged(_))) => {
                self.live = None;
                Some(Some(Err(Error::WatchLagged)))
            }
            Received::Stream(Some(Ok(event))) => {
                // The stream's source already filtered and ordered; this only guards
                // the promise of strictly increasing revisions.
                let rev = event.revision();
                if rev <= self.seen {
                    return None;
                }
                self.seen = rev;
                Some(Some(Ok(event)))
            }
            Received::Stream(Some(Err(err))) => {
                self.live = None;
                Some(Some(Err(err)))
            }
            Received::Hub(Err(RecvError::Closed)) | Received::Stream(None) => {
                self.live = None;
                Some(None)
            }
        }
    }
}

/// What one wait on a `Live` source produced.
enum Received {
    Hub(Result<Arc<Event>, RecvError>),
    Stream(Option<Result<Event>>),
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("prefix", &self.prefix)
            .field("pending_history", &self.history.len())
            .field("seen", &self.seen)
            .field("ended", &self.live.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A put of `key` at revision `rev`.
    fn put(rev: Revision, key: &str) -> Event {
        Event::Put {
            kv: crate::KeyValue {
                key: key.to_owned(),
                value: bytes::Bytes::new(),
                create_revision: rev,
                mod_revision: rev,
            },
            prev: None,
        }
    }

    #[test]
    fn watch_can_move_into_a_task() {
        fn assert_send<T: Send + Sync + 'static>() {}
        assert_send::<Watch>();
    }

    #[test]
    fn history_then_live_without_duplicates() {
        let hub = Hub::new(16);
        let rx = hub.subscribe();
        // Revision 3 was committed before the snapshot but published after subscribing.
        hub.publish(put(3, "/a"));
        hub.publish(put(4, "/b"));
        hub.publish(put(5, "/a"));
        let mut watch = Watch::new("/a", 1, vec![put(2, "/a"), put(3, "/a")], rx, 3);
        drop(hub);
        let revs: Vec<_> = std::iter::from_fn(|| watch.blocking_next())
            .map(|e| e.map(|e| e.revision()).ok())
            .collect();
        assert_eq!(revs, [Some(2), Some(3), Some(5)]);
    }

    #[test]
    fn a_stream_of_its_own_ends_after_its_error() {
        let (tx, rx) = mpsc::channel(4);
        let put = |rev| put(rev, "/a");
        for item in [Ok(put(3)), Ok(put(3)), Ok(put(4)), Err(Error::WatchLagged)] {
            tx.try_send(item).expect("room");
        }
        let mut watch = Watch::from_stream("/a", 2, rx);
        assert_eq!(watch.blocking_next().map(|e| e.ok()), Some(Some(put(3))));
        // A repeated revision is dropped: revisions only ever increase.
        assert_eq!(watch.blocking_next().map(|e| e.ok()), Some(Some(put(4))));
        assert!(matches!(
            watch.blocking_next(),
            Some(Err(Error::WatchLagged))
        ));
        drop(tx);
        assert!(watch.blocking_next().is_none());
    }

    #[test]
    fn try_next_returns_what_is_ready_and_never_waits() {
        let hub = Hub::new(16);
        let rx = hub.subscribe();
        let mut watch = Watch::new("/a", 1, vec![put(2, "/a")], rx, 2);
        let rev = |w: &mut Watch| {
            w.try_next()
                .map(|e| e.and_then(|e| e.ok()).map(|e| e.revision()))
        };
        assert_eq!(rev(&mut watch), Some(Some(2)));
        assert_eq!(rev(&mut watch), None, "nothing ready: no wait");
        // Another prefix's event is skipped, not returned as "nothing".
        hub.publish(put(3, "/b"));
        hub.publish(put(4, "/a"));
        assert_eq!(rev(&mut watch), Some(Some(4)));
        assert_eq!(rev(&mut watch), None);
        drop(hub);
        assert!(matches!(watch.try_next(), Some(None)), "closed: the end");
        assert!(matches!(watch.try_next(), Some(None)));
    }
}

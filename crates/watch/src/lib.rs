//! Watch-event plumbing shared by skiff's node components (the service proxy,
//! the NetworkPolicy enforcer, DNS). Start at [`follow_burst`].
//!
//! Each of them keeps an in-memory copy fed by watches and reprograms something
//! (an nft table, a DNS index) after a change. Reprogramming once per event makes
//! a burst of writes cost one sync each. Taking only the events already "ready"
//! is not always enough either: a watch body over HTTP/1.1 reads its next chunk
//! only when polled, so events the server has already sent are not ready yet;
//! waiting a moment for each next one is what gathers a burst.

use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};

/// How long to keep taking events after the one that woke the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalesce {
    /// Wait this long for each next event; zero: take only what is ready.
    pub gap: Duration,
    /// Stop after this long in all, so a steady stream of changes still gets
    /// synced; zero: no limit (only sensible with a zero `gap`).
    pub max: Duration,
}

impl Coalesce {
    /// Only the events already ready: for a consumer whose sync is so cheap
    /// that waiting would cost more than it saves (DNS swaps an index).
    pub const READY_ONLY: Coalesce = Coalesce {
        gap: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// For consumers whose sync is a transaction (`nft -f`): wait up to 1 ms
    /// for each next event, 20 ms in all.
    pub const TRANSACTION: Coalesce = Coalesce {
        gap: Duration::from_millis(1),
        max: Duration::from_millis(20),
    };
}

/// How a burst ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Burst {
    /// No event came within the gap.
    Quiet,
    /// The time limit came first; more events may be waiting.
    Capped,
    /// The stream ended: the caller's watches are gone.
    Ended,
}

/// Hands `handle` the events that follow the one the caller just took, as
/// `coalesce` says, and tells how the burst ended.
pub async fn follow_burst<S>(
    events: &mut S,
    coalesce: Coalesce,
    mut handle: impl FnMut(S::Item),
) -> Burst
where
    S: Stream + Unpin,
{
    let deadline = tokio::time::Instant::now() + coalesce.max;
    loop {
        if !coalesce.max.is_zero() && tokio::time::Instant::now() >= deadline {
            return Burst::Capped;
        }
        let next = match events.next().now_or_never() {
            Some(next) => next,
            None if coalesce.gap.is_zero() => return Burst::Quiet,
            None => match tokio::time::timeout(coalesce.gap, events.next()).await {
                Ok(next) => next,
                Err(_) => return Burst::Quiet,
            },
        };
        match next {
            Some(ev) => handle(ev),
            None => return Burst::Ended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;

    /// Sends `n` events (`None`: without end), one every `every`.
    fn sender(tx: mpsc::UnboundedSender<u32>, n: Option<u32>, every: Duration) {
        tokio::spawn(async move {
            let mut i = 0;
            while n.is_none_or(|n| i < n) {
                tokio::time::sleep(every).await;
                if tx.unbounded_send(i).is_err() {
                    return;
                }
                i += 1;
            }
        });
    }

    #[tokio::test]
    async fn ready_only_takes_what_is_ready_and_nothing_more() {
        let (tx, mut rx) = mpsc::unbounded();
        for i in 0..3 {
            tx.unbounded_send(i).expect("send");
        }
        let mut got = Vec::new();
        let end = follow_burst(&mut rx, Coalesce::READY_ONLY, |e| got.push(e)).await;
        assert_eq!((end, got), (Burst::Quiet, vec![0, 1, 2]));
    }

    // tokio's timers tick in milliseconds, so the tests space events in whole ones.
    const WIDE: Coalesce = Coalesce {
        gap: Duration::from_millis(5),
        max: Duration::from_millis(50),
    };

    #[tokio::test(start_paused = true)]
    async fn a_gap_gathers_events_that_arrive_close_together() {
        let (tx, mut rx) = mpsc::unbounded();
        sender(tx, Some(10), Duration::from_millis(2));
        let mut got = Vec::new();
        let end = follow_burst(&mut rx, WIDE, |e| got.push(e)).await;
        assert_eq!((end, got.len()), (Burst::Ended, 10));
        // Ready-only sees none of them: each is still on its way.
        let (tx, mut rx) = mpsc::unbounded();
        sender(tx, Some(10), Duration::from_millis(2));
        let mut n = 0;
        let end = follow_burst(&mut rx, Coalesce::READY_ONLY, |_| n += 1).await;
        assert_eq!((end, n), (Burst::Quiet, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slower_stream_ends_the_burst_and_a_steady_one_hits_the_cap() {
        let (tx, mut rx) = mpsc::unbounded();
        sender(tx, None, Duration::from_millis(10));
        let mut n = 0;
        let end = follow_burst(&mut rx, WIDE, |_| n += 1).await;
        assert_eq!((end, n), (Burst::Quiet, 0));

        let (tx, mut rx) = mpsc::unbounded();
        sender(tx, None, Duration::from_millis(2));
        let mut n = 0;
        let end = follow_burst(&mut rx, WIDE, |_| n += 1).await;
        assert_eq!(end, Burst::Capped);
        assert!(
            (22..=26).contains(&n),
            "{n} events in 50 ms at one per 2 ms"
        );
    }
}

//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines fed by the
//! watch cache's revision-ordered events (or the store's, when the cache cannot serve
//! the request), filtered by selectors, with bookmarks.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use skiff_api::registry::Resource;
use skiff_api::StatusError;
use skiff_store::Event;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::cache::{
    event_line, Cached, CachedEvent, Freshness, Kind, Miss, ResourceCache, Start, Subscription,
};
use crate::objects;
use crate::request::{Query, Target};
use crate::response;
use crate::rest::{render_one, Filter, Result};
use crate::server::Api;

/// How often an idle watch sends a BOOKMARK when the client allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn bookmark(resource: &Resource, revision: i64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        json!({"kind": resource.kind, "apiVersion": resource.api_version(), "metadata": meta}),
    )
}

/// Maps a store event to a watch event for a filtered watcher, as upstream's watch
/// cache does: an object that starts or stops matching is ADDED or DELETED.
fn translate(resource: &Resource, ev: &Event, filter: &Filter) -> Option<(&'static str, Value)> {
    match ev {
        Event::Put { kv, prev } => {
            let new = objects::decode_as(resource, kv).ok()?;
            // Without selectors the previous value cannot change the event type:
            // skip decoding it (this runs per event per watcher).
            if filter.is_everything() {
                let kind = if prev.is_some() { "MODIFIED" } else { "ADDED" };
                return Some((kind, new));
            }
            let now = filter.matches(&new);
            let before = prev
                .as_ref()
                .and_then(|p| objects::decode_as(resource, p).ok())
                .is_some_and(|o| filter.matches(&o));
            match (before, now) {
                (_, true) if prev.is_none() => Some(("ADDED", new)),
                (true, true) => Some(("MODIFIED", new)),
                (false, true) => Some(("ADDED", new)),
                (true, false) => Some(("DELETED", new)),
                (false, false) => None,
            }
        }
        Event::Delete { kv } => {
            let old = objects::decode_as(resource, kv).ok()?;
            filter.matches(&old).then_some(("DELETED", old))
        }
    }
}

/// A watch served by the store directly: when the cache is not running, or for a
/// revision older than the cache's window (the store may still have it; if not, the
/// client gets upstream's 410 Gone and relists).
async fn store_watch(api: &Api, t: &Target, q: &Query, headers: &HeaderMap) -> Result<Response> {
    let filter = Filter::from_query(t.resource, q)?;
    let resource = t.resource;
    let ns = t.namespace.clone();
    let rv = q.get("resourceVersion").unwrap_or("");
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.get("sendInitialEvents") == Some("true");
    let timeout = match q.int("timeoutSeconds")? {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        // Upstream spreads long watches between 30 and 60 minutes.
        _ => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
    };
    let headers = headers.clone();
    let q = q.clone();
    let single_name = t.name.clone();

    // Start point: an explicit revision, or "now" preceded by synthetic ADDED events.
    let (initial, start) = if rv.is_empty() || rv == "0" || send_initial {
        let page = api
            .objects
            .list(resource, ns.as_deref(), None, None)
            .await?;
        (Some(page.items), page.revision)
    } else {
        let r: i64 = rv
            .parse()
            .map_err(|_| StatusError::bad_request(format!("invalid resource version: {rv}")))?;
        (None, r)
    };
    // Opened before the response starts, so that a store that cannot be reached is a
    // 503 (which clients back off from) rather than a 200 with an error event.
    let opened = api.objects.watch(resource, ns.as_deref(), start);
    if let Err(e) = &opened {
        if e.code == 503 {
            return Err(e.clone());
        }
    }
    let matches_name = move |o: &Value| {
        single_name
            .as_deref()
            .is_none_or(|n| crate::rest::name_of(o) == Some(n))
    };
    let stream = async_stream::stream! {
        let mut last = start;
        if let Some(items) = initial {
            for o in items.into_iter().filter(|o| filter.matches(o) && matches_name(o)) {
                yield Ok::<Bytes, std::io::Error>(line("ADDED", render_one(&headers, &q, resource, o)));
            }
            if send_initial {
                yield Ok(bookmark(resource, start, true));
            }
        }
        let mut w = match opened {
            Ok(w) => w,
            Err(e) => {
                yield Ok(line("ERROR", e.to_json()));
                return;
            }
        };
        let expiry = tokio::time::sleep(timeout);
        tokio::pin!(expiry);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut expiry => break,
                _ = tick.tick(), if bookmarks => yield Ok(bookmark(resource, last, false)),
                ev = w.next() => match ev {
                    None => break,
                    Some(Err(e)) => {
                        let status = match e {
                            skiff_store::Error::Compacted { requested, compacted } => StatusError::expired(requested, compacted),
                            // The client backs off and watches again (no relist needed).
                            e @ skiff_store::Error::Unavailable(_) => objects::store_failure(e),
                            _ => StatusError::expired(last, last),
                        };
                        yield Ok(line("ERROR", status.to_json()));
                        break;
                    }
                    Some(Ok(ev)) => {
                        last = ev.revision();
                        if let Some((kind, obj)) = translate(resource, &ev, &filter) {
                            if matches_name(&obj) {
                                yield Ok(line(kind, render_one(&headers, &q, resource, obj)));
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(streaming(stream))
}

fn streaming(
    stream: impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> Response {
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

/// What a watch request asks for, read once.
struct Params {
    filter: Filter,
    bookmarks: bool,
    send_initial: bool,
    timeout: Duration,
    rv: String,
}

impl Params {
    fn from_query(resource: &'static Resource, q: &Query) -> Result<Self> {
        Ok(Self {
            filter: Filter::from_query(resource, q)?,
            bookmarks: q.flag("allowWatchBookmarks"),
            send_initial: q.get("sendInitialEvents") == Some("true"),
            timeout: match q.int("timeoutSeconds")? {
                Some(s) if s > 0 => Duration::from_secs(s as u64),
                // Upstream spreads long watches between 30 and 60 minutes.
                _ => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
            },
            rv: q.get("resourceVersion").unwrap_or("").to_string(),
        })
    }
}

/// Serves a watch from the watch cache, or from the store when the cache cannot.
pub async fn watch(api: &Api, t: &Target, q: &Query, headers: &HeaderMap) -> Result<Response> {
    let p = Params::from_query(t.resource, q)?;
    let (freshness, start) = if p.rv.is_empty() {
        (Freshness::Consistent, Start::Current)
    } else if p.rv == "0" {
        (Freshness::Any, Start::Current)
    } else {
        let r: i64 = p
            .rv
            .parse()
            .map_err(|_| StatusError::bad_request(format!("invalid resource version: {}", p.rv)))?;
        let start = if p.send_initial {
            Start::Current
        } else {
            Start::After(r)
        };
        (Freshness::NotOlderThan(r), start)
    };
    let cache = match api.cache.fresh(&api.objects, t.resource, freshness).await {
        Ok((c, _)) => c,
        Err(Miss::Fail(e)) if e.code == 503 => return Err(e),
        Err(_) => return store_watch(api, t, q, headers).await,
    };
    let prefix = t.resource.key_prefix(t.namespace.as_deref());
    let sub = match cache.subscribe(&prefix, start) {
        Ok(sub) => sub,
        Err(_too_old) => return store_watch(api, t, q, headers).await,
    };
    let shape = response::shape(headers, false);
    let out = Output {
        prefix: prefix.clone(),
        resource: t.resource,
        plain: shape == response::Shape::Object,
        form: format!("{shape:?}|{}", q.get("includeObject").unwrap_or_default()),
        headers: headers.clone(),
        q: q.clone(),
        name: t.name.clone(),
    };
    Ok(streaming(cached_stream(cache, sub, p, out)))
}

/// How one watcher's events are written.
struct Output {
    /// The watched namespace's keys (the cache broadcasts the whole resource).
    prefix: String,
    resource: &'static Resource,
    /// JSON objects as they are: the cache's shared bytes go out unchanged.
    plain: bool,
    /// Otherwise, what names this watcher's form among an event's shared renders.
    form: String,
    headers: HeaderMap,
    q: Query,
    /// A watch on a single object.
    name: Option<String>,
}

impl Output {
    fn wants(&self, obj: &Cached) -> bool {
        self.name
            .as_deref()
            .is_none_or(|n| obj.field("metadata.name") == Some(n))
    }

    fn line(&self, kind: Kind, c: &Cached) -> Bytes {
        if self.plain {
            event_line(kind.as_str(), &c.json)
        } else {
            let obj = render_one(&self.headers, &self.q, self.resource, c.value());
            line(kind.as_str(), obj)
        }
    }

    /// The line this watcher gets for `ev`, if any: an object that starts or stops
    /// matching its selectors is ADDED or DELETED, as upstream's watch cache sends.
    fn event(&self, ev: &CachedEvent, filter: &Filter) -> Option<Bytes> {
        if !ev.key.starts_with(&self.prefix) || !self.wants(&ev.object) {
            return None;
        }
        if filter.is_everything() {
            return Some(if self.plain {
                ev.line.clone()
            } else {
                self.shared_line(ev.kind, ev)
            });
        }
        let kind = match ev.kind {
            Kind::Deleted => filter.matches_cached(&ev.object).then_some(Kind::Deleted)?,
            Kind::Added | Kind::Modified => {
                let now = filter.matches_cached(&ev.object);
                let before = ev.prev.as_ref().is_some_and(|p| filter.matches_cached(p));
                match (before, now) {
                    (true, true) => Kind::Modified,
                    (false, true) => Kind::Added,
                    (true, false) => Kind::Deleted,
                    (false, false) => return None,
                }
            }
        };
        if kind == ev.kind && self.plain {
            return Some(ev.line.clone());
        }
        Some(self.shared_line(kind, ev))
    }

    /// `ev`'s line as `kind` in this watcher's form, rendered once for every watcher
    /// of the same form (a Table for `kubectl get -w`).
    fn shared_line(&self, kind: Kind, ev: &CachedEvent) -> Bytes {
        if self.plain {
            return self.line(kind, &ev.object);
        }
        ev.rendered(&format!("{}|{}", kind.as_str(), self.form), || {
            self.line(kind, &ev.object)
        })
    }
}

fn cached_stream(
    cache: std::sync::Arc<ResourceCache>,
    sub: Subscription,
    p: Params,
    out: Output,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    async_stream::stream! {
        let Subscription { initial, replay, mut live, revision } = sub;
        let resource = out.resource;
        let mut last = revision;
        for c in initial.iter().filter(|c| p.filter.matches_cached(c) && out.wants(c)) {
            yield Ok::<Bytes, std::io::Error>(out.line(Kind::Added, c));
        }
        drop(initial);
        if p.send_initial {
            yield Ok(bookmark(resource, revision, true));
        }
        let mut delivered = match p.send_initial || p.rv.is_empty() || p.rv == "0" {
            true => revision,
            false => p.rv.parse().unwrap_or(revision),
        };
        for ev in replay {
            delivered = ev.revision;
            if let Some(line) = out.event(&ev, &p.filter) {
                yield Ok(line);
            }
        }
        last = last.max(delivered);
        // One timer for the watch's whole life (a new one per event would register
        // and cancel a timer for every event of every watcher).
        let expiry = tokio::time::sleep(p.timeout);
        tokio::pin!(expiry);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut expiry => break,
                _ = tick.tick(), if p.bookmarks => {
                    last = cache.bookmark_revision(&live, last);
                    yield Ok(bookmark(resource, last, false));
                }
                ev = live.recv() => {
                    // A watcher that is behind takes every event already waiting in
                    // one write: one HTTP/2 DATA frame and TLS record for many events.
                    let mut batch = Batch::default();
                    let mut next = ev.map_err(Gap::from);
                    loop {
                        match next {
                            Ok(ev) => {
                                if ev.revision > last {
                                    last = ev.revision;
                                    if let Some(line) = out.event(&ev, &p.filter) {
                                        batch.push(line);
                                    }
                                }
                            }
                            // Too slow: upstream ends the watch; the client watches
                            // again from its last revision (or relists on 410).
                            Err(Gap::Lagged) => {
                                batch.push(line("ERROR", StatusError::expired(last, last).to_json()));
                                batch.end = true;
                                break;
                            }
                            Err(Gap::Closed) => {
                                batch.end = true;
                                break;
                            }
                            Err(Gap::Empty) => break,
                        }
                        if batch.full() {
                            break;
                        }
                        next = live.try_recv().map_err(Gap::from);
                    }
                    let end = batch.end;
                    if let Some(bytes) = batch.take() {
                        yield Ok(bytes);
                    }
                    if end {
                        break;
                    }
                }
            }
        }
    }
}

/// Why no further event came from a watcher's broadcast receiver.
enum Gap {
    /// Nothing waiting now.
    Empty,
    /// The watcher fell [`crate::cache::WATCHER_BUFFER`] events behind.
    Lagged,
    /// The cache was dropped (its feed lost events).
    Closed,
}

impl From<RecvError> for Gap {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Lagged(_) => Gap::Lagged,
            RecvError::Closed => Gap::Closed,
        }
    }
}

impl From<TryRecvError> for Gap {
    fn from(e: TryRecvError) -> Self {
        match e {
            TryRecvError::Empty => Gap::Empty,
            TryRecvError::Lagged(_) => Gap::Lagged,
            TryRecvError::Closed => Gap::Closed,
        }
    }
}

/// How many bytes of waiting events one write may carry: about one HTTP/2 DATA frame
/// of the largest size clients allow by default, so a batch never waits on itself.
const BATCH_BYTES: usize = 64 * 1024;

/// The lines of the events a watcher takes in one go. One line is passed on as it is
/// (the cache's shared bytes, no copy); several are copied side by side.
#[derive(Default)]
struct Batch {
    first: Option<Bytes>,
    rest: Option<bytes::BytesMut>,
    /// The watch ends after this batch.
    end: bool,
}

impl Batch {
    fn push(&mut self, line: Bytes) {
        match (&self.first, &mut self.rest) {
            (None, _) => self.first = Some(line),
            (Some(first), None) => {
                let mut b =
                    bytes::BytesMut::with_capacity(BATCH_BYTES.max(first.len() + line.len()));
                b.extend_from_slice(first);
                b.extend_from_slice(&line);
                self.rest = Some(b);
            }
            (Some(_), Some(b)) => b.extend_from_slice(&line),
        }
    }

    fn len(&self) -> usize {
        match (&self.first, &self.rest) {
            (_, Some(b)) => b.len(),
            (Some(f), None) => f.len(),
            (None, None) => 0,
        }
    }

    fn full(&self) -> bool {
        self.len() >= BATCH_BYTES
    }

    fn take(&mut self) -> Option<Bytes> {
        match (self.first.take(), self.rest.take()) {
            (_, Some(b)) => Some(b.freeze()),
            (first, None) => first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_one_is_the_line_itself_and_of_many_their_concatenation() {
        let mut one = Batch::default();
        assert!(one.take().is_none());
        let line = Bytes::from_static(b"{\"type\":\"ADDED\"}\n");
        one.push(line.clone());
        let taken = one.take().expect("one line");
        assert_eq!(taken.as_ptr(), line.as_ptr(), "a single line is not copied");
        let mut many = Batch::default();
        for l in [&b"a\n"[..], b"b\n", b"c\n"] {
            many.push(Bytes::copy_from_slice(l));
        }
        assert_eq!(many.len(), 6);
        assert_eq!(&many.take().expect("lines")[..], b"a\nb\nc\n");
        assert!(!many.full());
    }
}

//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines fed by the
//! store's revision-ordered events, filtered by selectors, with bookmarks.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use skiff_api::registry::Resource;
use skiff_api::StatusError;
use skiff_store::Event;

use crate::objects;
use crate::request::{Query, Target};
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

pub async fn watch(api: &Api, t: &Target, q: &Query, headers: &HeaderMap) -> Result<Response> {
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
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
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
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}

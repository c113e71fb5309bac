//! A request's way to its backend: the endpoint (affinity cookie or
//! round-robin), the rewritten path, the forwarding headers, and one retry on
//! another endpoint for an idempotent request without a body when the first
//! attempt fails before an answer (a pod replaced under load leaves its address
//! refusing or silent for a moment; nginx's `proxy_next_upstream error timeout`
//! does the same). An upgrading request (WebSocket) gets a connection of its own
//! and, once the backend agrees (101), the two connections are spliced.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;

use crate::affinity;
use crate::proxy::{text, Conn, Worker};
use crate::routes::{Backend, Endpoint, Route};
use crate::state::Shared;
use crate::upstream::{self, Body};

/// Headers that describe one connection, not the request (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "http2-settings",
];

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The request headers a backend gets: the client's minus hop-by-hop ones
/// (an upgrade keeps `Connection`/`Upgrade`), the original Host, and the
/// `X-Forwarded-*` set ingress-nginx sends (the client's own
/// `X-Forwarded-For` is not trusted, as with its default
/// `use-forwarded-headers: false`).
fn upstream_headers(client: &HeaderMap, conn: &Conn, host: &str, upgrade: bool) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(client.len() + 6);
    for (k, v) in client {
        let name = k.as_str();
        let hop = HOP_BY_HOP.contains(&name);
        let keep_te = name == "te" && v.as_bytes().eq_ignore_ascii_case(b"trailers");
        let keep_upgrade = upgrade && (name == "connection" || name == "upgrade");
        if name.starts_with("x-forwarded-") || name == "x-real-ip" {
            continue;
        }
        if !hop || keep_te || keep_upgrade {
            h.append(k.clone(), v.clone());
        }
    }
    let original_host = client
        .get(header::HOST)
        .cloned()
        .or_else(|| HeaderValue::from_str(host).ok());
    if let Some(v) = original_host {
        h.insert(header::HOST, v.clone());
        h.insert(HeaderName::from_static("x-forwarded-host"), v);
    }
    let ip = conn.remote.ip().to_string();
    if let Ok(v) = HeaderValue::from_str(&ip) {
        h.insert(HeaderName::from_static("x-forwarded-for"), v.clone());
        h.insert(HeaderName::from_static("x-real-ip"), v);
    }
    let proto = HeaderValue::from_static(if conn.tls { "https" } else { "http" });
    h.insert(HeaderName::from_static("x-forwarded-proto"), proto.clone());
    h.insert(HeaderName::from_static("x-forwarded-scheme"), proto.clone());
    h.insert(HeaderName::from_static("x-scheme"), proto);
    h.insert(
        HeaderName::from_static("x-forwarded-port"),
        HeaderValue::from(conn.local.port()),
    );
    h
}

fn strip_response_hop_by_hop(h: &mut HeaderMap) {
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        h.remove(name);
    }
}

/// The parts of a request needed to send it again.
struct Outgoing<'a> {
    method: &'a Method,
    scheme: Scheme,
    path_and_query: PathAndQuery,
    /// Taken by the last attempt, cloned for the others.
    headers: Option<HeaderMap>,
    version: Version,
}

impl Outgoing<'_> {
    /// The request to `ep`; `last`: no retry can follow, so the headers move.
    fn to(&mut self, ep: &Endpoint, body: Body, last: bool) -> Option<Request<Body>> {
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(ep.authority.clone())
            .path_and_query(self.path_and_query.clone())
            .build()
            .ok()?;
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .version(self.version)
            .body(body)
            .ok()?;
        let headers = match last {
            true => self.headers.take(),
            false => self.headers.clone(),
        };
        *req.headers_mut() = headers?;
        Some(req)
    }
}

/// Sends `req` to `backend` as `route` says; returns the response and the
/// endpoint that gave it.
pub async fn forward(
    worker: &Worker,
    conn: &Conn,
    mut req: Request<Incoming>,
    host: &str,
    route: &Route,
    backend: &Backend,
) -> (Response<Body>, Option<SocketAddr>) {
    let shared = &*worker.shared;
    let affinity = route.options.affinity.as_ref();
    let Some((first, mut set_cookie)) = affinity::choose(backend, affinity, req.headers()) else {
        let r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Temporarily Unavailable\n",
        );
        return (r, None);
    };
    let mut ep: Endpoint = first.clone();
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let bodiless = body.is_end_stream();
    let retryable = bodiless && idempotent(&parts.method);
    let protocol = route.options.protocol;
    let h2 = protocol.h2_only() || (parts.version == Version::HTTP_2 && is_grpc(&parts.headers));
    let path_and_query = match route.rewritten(parts.uri.path()) {
        Some(path) => {
            let joined = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            PathAndQuery::from_maybe_shared(Bytes::from(joined))
        }
        None => Ok(parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))),
    };
    let Ok(path_and_query) = path_and_query else {
        return (text(StatusCode::BAD_REQUEST, "400 Bad Request\n"), None);
    };
    let mut out = Outgoing {
        method: &parts.method,
        scheme: if protocol.tls() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        },
        path_and_query,
        headers: Some(upstream_headers(&parts.headers, conn, host, upgrade)),
        version: if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        },
    };
    let mut body = Some(if bodiless { empty() } else { body.boxed() });
    // The endpoints tried so far: a retry goes to one not among them.
    let mut tried: Vec<SocketAddr> = Vec::new();
    loop {
        let last = !retryable || tried.len() + 1 >= MAX_ATTEMPTS;
        let Some(request) = out.to(&ep, body.take().unwrap_or_else(empty), last) else {
            return (text(StatusCode::BAD_REQUEST, "400 Bad Request\n"), None);
        };
        let sent = if upgrade && !protocol.tls() {
            upstream::upgrade(ep.addr, request)
                .await
                .map(|r| r.map(|b| b.boxed()))
                .map_err(|e| e.to_string())
        } else {
            tokio::select! {
                r = worker.upstream.send(protocol, h2, ep.addr, request) => r.map_err(|e| e.to_string()),
                _ = removed(shared, ep.addr) => Err(format!(
                    "{} left the Service's endpoints without answering", ep.addr
                )),
            }
        };
        match sent {
            Ok(mut resp) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    splice(client_upgrade, &mut resp);
                } else {
                    strip_response_hop_by_hop(resp.headers_mut());
                }
                if set_cookie {
                    if let Some(v) =
                        affinity.and_then(|a| affinity::set_cookie(a, &route.path, &ep))
                    {
                        resp.headers_mut().append(header::SET_COOKIE, v);
                    }
                }
                return (resp, Some(ep.addr));
            }
            Err(e) => {
                tried.push(ep.addr);
                let next = (retryable && tried.len() < MAX_ATTEMPTS)
                    .then(|| retry_endpoint(shared, host, parts.uri.path(), backend, &tried))
                    .flatten();
                match next {
                    Some(n) => {
                        tracing::debug!(upstream = %ep.addr, error = %e, retry = %n.addr, "upstream failed; retrying");
                        route.metrics.retried(&shared.metrics);
                        ep = n;
                        set_cookie = affinity.is_some();
                    }
                    _ => {
                        tracing::warn!(upstream = %ep.addr, error = %e, "upstream failed");
                        let r = text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n");
                        return (r, Some(ep.addr));
                    }
                }
            }
        }
    }
}

/// How many endpoints a request that can be retried (no body, idempotent) is
/// tried on before the client gets a 502. nginx's `proxy_next_upstream` tries
/// every server of the upstream; three covers a rollout, where the endpoint
/// tried next can be a pod that is stopping too, without making a client wait
/// through every endpoint of a broken Service.
const MAX_ATTEMPTS: usize = 3;

/// Another endpoint for a retry, none of those `tried`, from the newest table
/// (those that failed may have left it, and new ones joined), else from
/// `backend`.
fn retry_endpoint(
    shared: &Shared,
    host: &str,
    path: &str,
    backend: &Backend,
    tried: &[SocketAddr],
) -> Option<Endpoint> {
    let table = shared.table.load();
    let fresh = match table.lookup(host, path).map(|r| &r.target) {
        Some(crate::routes::Target::Service(b))
            if b.namespace == backend.namespace && b.service == backend.service =>
        {
            b.pick_untried(tried).cloned()
        }
        _ => None,
    };
    fresh.or_else(|| backend.pick_untried(tried).cloned())
}

/// How long a request may still wait on an endpoint after it left the
/// Service (its pod is terminating): answers already on their way come in
/// this time; a pod that went silent (its network gone) never answers.
const REMOVED_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves when `addr` has been out of the route table for [`REMOVED_GRACE`];
/// looks only when a new table is swapped in, so a request costs no timer.
async fn removed(shared: &Shared, addr: SocketAddr) {
    let mut changes = shared.table_changes.subscribe();
    loop {
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
        if !shared.table.load().live.contains(&addr) {
            tokio::time::sleep(REMOVED_GRACE).await;
            if !shared.table.load().live.contains(&addr) {
                return;
            }
        }
    }
}

/// Joins the client's upgraded connection to the backend's once hyper hands
/// both over (after the 101 reaches the client).
fn splice(client: Option<hyper::upgrade::OnUpgrade>, resp: &mut Response<Body>) {
    let Some(client) = client else {
        return;
    };
    let backend = hyper::upgrade::on(&mut *resp);
    tokio::spawn(async move {
        let (c, b) = match (client.await, backend.await) {
            (Ok(c), Ok(b)) => (c, b),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "upgrade");
                return;
            }
        };
        let (mut c, mut b) = (TokioIo::new(c), TokioIo::new(b));
        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut b).await {
            tracing::debug!(error = %e, "upgraded connection");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers() {
        let mut client = HeaderMap::new();
        client.insert("host", HeaderValue::from_static("app.example"));
        client.insert("connection", HeaderValue::from_static("keep-alive"));
        client.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        client.insert("te", HeaderValue::from_static("trailers"));
        client.insert("accept", HeaderValue::from_static("*/*"));
        let conn = Conn {
            remote: "10.9.8.7:4444".parse().expect("addr"),
            local: "10.0.0.1:80".parse().expect("addr"),
            tls: false,
        };
        let h = upstream_headers(&client, &conn, "app.example", false);
        let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(get("host"), "app.example");
        assert_eq!(get("x-forwarded-for"), "10.9.8.7");
        assert_eq!(get("x-real-ip"), "10.9.8.7");
        assert_eq!(get("x-forwarded-host"), "app.example");
        assert_eq!(get("x-forwarded-proto"), "http");
        assert_eq!(get("x-forwarded-port"), "80");
        assert_eq!(get("te"), "trailers");
        assert_eq!(get("accept"), "*/*");
        assert!(h.get("connection").is_none());
    }
}

//! A proxy thread's own keep-alive connections to plain HTTP/1.1 backends, as
//! each nginx worker keeps its `upstream { keepalive }` connections.
//!
//! hyper-util's pooled client (still used for h2c and TLS backends, see
//! [`crate::upstream`]) is built to be shared between threads: its checkout and
//! checkin take a lock shared by every thread, and each response with a body
//! spawns a task that waits for the connection to become idle before putting it
//! back. Here each proxy thread has its own pool, and a connection goes back
//! when the response's body has been read to its end ([`PooledBody`]), with no
//! task of its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::upstream::{Body, CONNECT_TIMEOUT};

/// How long an idle connection is kept (hyper-util's pool had the same).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per endpoint; more are closed when they come back,
/// so a burst does not leave that many sockets open for [`IDLE_TIMEOUT`].
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

/// Why a request could not be sent, or its response head not read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("connect to {0}: timed out")]
    Timeout(SocketAddr),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// A TCP connection to `addr`, with `TCP_NODELAY` (requests and responses are
/// small writes that must not wait for an ACK), given [`CONNECT_TIMEOUT`].
pub async fn dial(addr: SocketAddr) -> Result<TcpStream, Error> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Timeout(addr))?
        .map_err(|e| Error::Connect(addr, e))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

struct Parked {
    sender: SendRequest<Body>,
    since: Instant,
}

/// One proxy thread's idle connections by endpoint. Its lock is only ever
/// taken by that thread (and the sweeper on the same runtime), so it is never
/// contended; it is a `Mutex` because hyper's connection tasks must be `Send`.
#[derive(Default)]
pub struct Http1Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Parked>>>,
}

impl Http1Pool {
    /// A pool, and a task on the current runtime that closes connections idle
    /// for longer than [`IDLE_TIMEOUT`] and ends with the pool.
    pub fn new() -> Arc<Self> {
        let pool = Arc::new(Http1Pool::default());
        let weak = Arc::downgrade(&pool);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(IDLE_TIMEOUT / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = weak.upgrade() else { return };
                pool.sweep(Instant::now());
            }
        });
        pool
    }

    /// Sends `req` to `addr` on an idle connection, else a new one. A request
    /// that an idle connection turned out unable to take (the backend closed
    /// it meanwhile) was not sent, so it goes on the next one: the retry
    /// hyper-util's `retry_canceled_requests` made.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, Error> {
        // A connection of our own sends the request-target as given: the
        // origin form, as a server expects it.
        if let Some(pq) = req.uri().path_and_query().cloned() {
            *req.uri_mut() = pq.into();
        }
        loop {
            let (mut sender, reused) = match self.checkout(addr) {
                Some(s) => (s, true),
                None => (connect(addr).await?, false),
            };
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(e.into());
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let home = Some((Arc::downgrade(self), addr, sender));
                    return Ok(resp.map(|inner| PooledBody { inner, home }.boxed()));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// The most recently parked open connection to `addr` (its socket and
    /// buffers are the likeliest still warm); closed ones met on the way are
    /// dropped.
    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let parked = idle.get_mut(&addr)?;
        while let Some(p) = parked.pop() {
            if !p.sender.is_closed() {
                return Some(p.sender);
            }
        }
        None
    }

    fn check_in(&self, addr: SocketAddr, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let parked = idle.entry(addr).or_default();
        if parked.len() < MAX_IDLE_PER_ENDPOINT {
            parked.push(Parked {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Drops connections closed or idle too long, and endpoints left with
    /// none (a pod that went away leaves its entry behind otherwise).
    fn sweep(&self, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, parked| {
            parked.retain(|p| !p.sender.is_closed() && now.duration_since(p.since) < IDLE_TIMEOUT);
            !parked.is_empty()
        });
    }

    #[cfg(test)]
    fn idle_count(&self, addr: SocketAddr) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.get(&addr).map_or(0, Vec::len)
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Body>, Error> {
    let stream = dial(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(upstream = %addr, error = %e, "backend connection");
        }
    });
    Ok(sender)
}

/// A backend response's body that puts its connection back in the pool once
/// it has been read to the end; dropped before that, the connection is
/// dropped too (HTTP/1.1 cannot reuse it with a response half read).
struct PooledBody {
    inner: Incoming,
    home: Option<(Weak<Http1Pool>, SocketAddr, SendRequest<Body>)>,
}

impl PooledBody {
    fn go_home(&mut self) {
        if let Some((pool, addr, sender)) = self.home.take() {
            if let Some(pool) = pool.upgrade() {
                pool.check_in(addr, sender);
            }
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.go_home(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.go_home(),
            Poll::Ready(Some(Err(_))) => this.home = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // An empty body (a 204, a HEAD's answer, `Content-Length: 0`) is at
        // its end without ever being polled.
        if self.inner.is_end_stream() {
            self.go_home();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    fn empty() -> Body {
        Empty::new().map_err(|never| match never {}).boxed()
    }

    /// A backend on loopback answering every request with `body`, counting
    /// the connections it accepts; `close` answers with `Connection: close`.
    async fn backend(body: &'static str, close: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let svc = hyper::service::service_fn(move |_req| async move {
                    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                    if close {
                        r.headers_mut()
                            .insert(http::header::CONNECTION, "close".parse().expect("value"));
                    }
                    Ok::<_, std::convert::Infallible>(r)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        (addr, accepted)
    }

    fn get(addr: SocketAddr) -> Request<Body> {
        Request::builder()
            .uri(format!("http://{addr}/x?y=1"))
            .header(http::header::HOST, "app.example")
            .body(empty())
            .expect("request")
    }

    async fn read(resp: Response<Body>) -> String {
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_is_read() {
        let (addr, accepted) = backend("hello", false).await;
        let pool = Http1Pool::new();
        for _ in 0..5 {
            let resp = pool.send(addr, get(addr)).await.expect("send");
            assert_eq!(read(resp).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(addr), 1);
    }

    #[tokio::test]
    async fn a_response_still_being_read_holds_its_connection() {
        let (addr, accepted) = backend("hello", false).await;
        let pool = Http1Pool::new();
        let first = pool.send(addr, get(addr)).await.expect("send");
        let second = pool.send(addr, get(addr)).await.expect("send");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle_count(addr), 0);
        assert_eq!(read(first).await, "hello");
        assert_eq!(read(second).await, "hello");
        assert_eq!(pool.idle_count(addr), 2);
    }

    #[tokio::test]
    async fn a_body_dropped_half_read_does_not_come_back() {
        let (addr, _) = backend("hello", false).await;
        let pool = Http1Pool::new();
        drop(pool.send(addr, get(addr)).await.expect("send"));
        assert_eq!(pool.idle_count(addr), 0);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_not_used_again() {
        let (addr, accepted) = backend("bye", true).await;
        let pool = Http1Pool::new();
        for _ in 0..3 {
            let resp = pool.send(addr, get(addr)).await.expect("send");
            assert_eq!(read(resp).await, "bye");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn sweeping_drops_connections_idle_too_long() {
        let (addr, _) = backend("hello", false).await;
        let pool = Http1Pool::new();
        let resp = pool.send(addr, get(addr)).await.expect("send");
        read(resp).await;
        pool.sweep(Instant::now());
        assert_eq!(pool.idle_count(addr), 1);
        pool.sweep(Instant::now() + IDLE_TIMEOUT);
        assert_eq!(pool.idle_count(addr), 0);
        assert!(pool.idle.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn request_and_response_bodies_larger_than_a_buffer_pass_whole() {
        // The backend answers with the request's body, echoed back.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>(Response::new(Full::new(body)))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        let pool = Http1Pool::new();
        let sent: String = (0..300_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        for _ in 0..2 {
            let req = Request::builder()
                .method("POST")
                .uri(format!("http://{addr}/echo"))
                .header(http::header::HOST, "app.example")
                .body(
                    Full::new(Bytes::from(sent.clone()))
                        .map_err(|never| match never {})
                        .boxed(),
                )
                .expect("request");
            let resp = pool.send(addr, req).await.expect("send");
            assert_eq!(read(resp).await, sent);
        }
        assert_eq!(pool.idle_count(addr), 1);
    }

    #[tokio::test]
    async fn a_refused_connect_is_an_error_naming_the_endpoint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let pool = Http1Pool::new();
        let err = pool.send(addr, get(addr)).await.expect_err("refused");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}

//! The listeners and the request path, run by each proxy thread's [`Worker`]:
//! each connection (plain, where HTTP/1.1
//! and h2c prior knowledge are both accepted, or TLS, with h2 by ALPN) is
//! served by hyper-util's auto builder; each request is looked up in the
//! route table snapshot of the moment it arrived and answered with a 404 (no
//! route), a 308 to HTTPS, a 503 (no backend) or the backend's response
//! ([`crate::forward`]), then counted and logged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::access;
use crate::routes::{Route, Target};
use crate::state::Shared;
use crate::upstream::{Body, Clients};

/// The connection a request came on.
#[derive(Debug, Clone)]
pub struct Conn {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

/// One proxy thread's part: what every request reads, and the thread's own
/// pools of backend connections, so that a pooled connection's task runs on
/// the thread whose requests use it (as each nginx worker keeps its own
/// upstream keep-alive connections).
pub struct Worker {
    pub shared: Arc<Shared>,
    pub(crate) upstream: Clients,
}

impl Worker {
    pub fn new(shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(Worker {
            shared,
            upstream: Clients::new(),
        })
    }
}

/// Accepts plain connections until the listener fails.
pub async fn serve_plain(listener: TcpListener, worker: Arc<Worker>) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(remote);
        let conn = Conn {
            remote,
            local,
            tls: false,
        };
        tokio::spawn(serve_conn(stream, conn, worker.clone()));
    }
}

/// Accepts TLS connections until the listener fails.
pub async fn serve_tls(
    listener: TcpListener,
    worker: Arc<Worker>,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(remote);
        let (worker, acceptor) = (worker.clone(), acceptor.clone());
        tokio::spawn(async move {
            match acceptor.accept(stream).await {
                Ok(tls) => {
                    let conn = Conn {
                        remote,
                        local,
                        tls: true,
                    };
                    serve_conn(tls, conn, worker).await;
                }
                Err(e) => tracing::debug!(%remote, error = %e, "TLS handshake"),
            }
        });
    }
}

async fn serve_conn<IO>(io: IO, conn: Conn, worker: Arc<Worker>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let svc = hyper::service::service_fn(move |req| handle(worker.clone(), conn.clone(), req));
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .await
    {
        tracing::debug!(error = %e, "client connection");
    }
}

/// A response the proxy makes itself.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The request's host, lower case, without a port: the Host header, else
/// the authority of an HTTP/2 request (`:authority`, which is all an HTTP/2
/// client such as curl sends).
pub fn host_of<B>(req: &Request<B>) -> String {
    let raw = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| match h.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or("").to_string(),
            None => h.split(':').next().unwrap_or("").to_string(),
        })
        .or_else(|| req.uri().host().map(str::to_string))
        .unwrap_or_default();
    raw.trim_end_matches('.').to_ascii_lowercase()
}

fn redirect(host: &str, https_port: u16, req: &Request<Incoming>) -> Response<Body> {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let mut r = text(StatusCode::PERMANENT_REDIRECT, "308 Permanent Redirect\n");
    if let Ok(v) = http::HeaderValue::from_str(&format!("https://{host}{port}{pq}")) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

/// Serves one request.
pub async fn handle(
    worker: Arc<Worker>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let shared = &worker.shared;
    let start = Instant::now();
    let (method, uri, version) = (req.method().clone(), req.uri().clone(), req.version());
    let logged = access::enabled();
    // Only what the line shows is kept of the request's headers.
    let (referer, user_agent) = match logged {
        true => (
            access::header(req.headers(), "referer").map(str::to_string),
            access::header(req.headers(), "user-agent").map(str::to_string),
        ),
        false => (None, None),
    };
    let table = shared.table.load_full();
    let host = host_of(&req);
    let route: Option<&Route> = table.lookup(&host, uri.path());
    let (resp, upstream_addr) = match route {
        None => (text(StatusCode::NOT_FOUND, "default backend - 404\n"), None),
        Some(r) if r.redirect_to_https && !conn.tls => {
            (redirect(&host, shared.https_port, &req), None)
        }
        Some(r) => match &r.target {
            Target::Missing { .. } => (
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "503 Service Temporarily Unavailable\n",
                ),
                None,
            ),
            Target::Service(b) => crate::forward::forward(&worker, &conn, req, &host, r, b).await,
        },
    };
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    match route {
        Some(r) => r.metrics.record(&shared.metrics, status, elapsed),
        None => shared.unrouted.record(&shared.metrics, status, elapsed),
    }
    if logged {
        let upstream = match route.map(|r| &r.target) {
            Some(Target::Service(b)) => b.upstream_name(),
            _ => "-".to_string(),
        };
        access::log(&access::Entry {
            remote: conn.remote,
            method: &method,
            uri: &uri,
            version,
            referer: referer.as_deref(),
            user_agent: user_agent.as_deref(),
            status,
            bytes: resp.body().size_hint().exact(),
            duration: elapsed,
            upstream: &upstream,
            upstream_addr,
        });
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_from_authority_or_header() {
        let r = Request::builder()
            .uri("/x")
            .header("host", "Foo.Example:8080")
            .body(())
            .expect("req");
        assert_eq!(host_of(&r), "foo.example");
        let r = Request::builder()
            .uri("https://bar.example/x")
            .body(())
            .expect("req");
        assert_eq!(host_of(&r), "bar.example");
        let r = Request::builder()
            .uri("/")
            .header("host", "[::1]:80")
            .body(())
            .expect("req");
        assert_eq!(host_of(&r), "::1");
    }
}

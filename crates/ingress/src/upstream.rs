//! Connections to backends: the proxy thread's own pool for plain HTTP/1.1
//! ([`crate::pool`]), hyper-util's pooled clients for h2c (gRPC) and for both
//! over TLS (`backend-protocol: HTTPS`/`GRPCS`), and a one-off HTTP/1.1
//! connection for a request that upgrades (WebSocket).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::annotations::Protocol;
use crate::pool::{self, Http1Pool};

/// The body of a request to a backend, and of a response to a client.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// How long a connect to an endpoint may take before another is tried: a pod
/// that just went away may leave its address answering nothing.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an idle connection of hyper-util's pools is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// One pooled client per way of speaking to a backend.
pub struct Clients {
    http1: Arc<Http1Pool>,
    h2c: Client<HttpConnector, Body>,
    https: Client<Https, Body>,
    https_h2: Client<Https, Body>,
}

fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_connect_timeout(Some(CONNECT_TIMEOUT));
    c.set_nodelay(true);
    c.enforce_http(false);
    c
}

/// Backends' certificates are not verified, as ingress-nginx's default
/// (`proxy-ssl-verify: off`): pods serve self-signed certificates.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn https(h2: bool) -> Https {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider.clone())))
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
                .with_no_client_auth()
        });
    // ALPN is the builder's to set (h2 or http/1.1, from what it enables).
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if h2 {
        b.enable_http2().wrap_connector(connector())
    } else {
        b.enable_http1().wrap_connector(connector())
    }
}

/// Why a request got no response from its backend.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Http1(#[from] pool::Error),
    #[error("{0:?}")]
    Pooled(#[from] hyper_util::client::legacy::Error),
}

impl Clients {
    /// Must be called on the runtime whose tasks will use it: the HTTP/1.1
    /// pool's sweeper runs there.
    pub fn new() -> Self {
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(1024)
            .retry_canceled_requests(true);
        let mut h2 = Client::builder(TokioExecutor::new());
        h2.pool_idle_timeout(IDLE_TIMEOUT).http2_only(true);
        Clients {
            http1: Http1Pool::new(),
            h2c: h2.build(connector()),
            https: b.build(https(false)),
            https_h2: h2.build(https(true)),
        }
    }

    /// Sends `req` to `addr` (its URI names the same endpoint) the way
    /// `protocol` says; `h2`: the client asked over HTTP/2 for gRPC, which only
    /// HTTP/2 carries.
    pub async fn send(
        &self,
        protocol: Protocol,
        h2: bool,
        addr: SocketAddr,
        req: hyper::Request<Body>,
    ) -> Result<hyper::Response<Body>, SendError> {
        let pooled = match (protocol, h2) {
            (Protocol::Http, false) => return Ok(self.http1.send(addr, req).await?),
            (Protocol::Http, true) | (Protocol::Grpc, _) => self.h2c.request(req).await,
            (Protocol::Https, false) => self.https.request(req).await,
            (Protocol::Https, true) | (Protocol::Grpcs, _) => self.https_h2.request(req).await,
        };
        Ok(pooled?.map(|b: Incoming| b.boxed()))
    }
}

/// Sends an upgrading request on a connection of its own (an upgraded
/// connection is never pooled) and returns the backend's response; the
/// connection stays open for [`hyper::upgrade::on`] of that response.
pub async fn upgrade(
    addr: SocketAddr,
    mut req: hyper::Request<Body>,
) -> Result<hyper::Response<Incoming>, pool::Error> {
    // A connection of our own sends the request-target as given: the origin
    // form, as a server expects it (the pooled client does this itself).
    if let Some(pq) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = pq.into();
    }
    let stream = pool::dial(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgraded backend connection");
        }
    });
    Ok(sender.send_request(req).await?)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn clients_build() {
        // On a runtime: the HTTP/1.1 pool starts its sweeper there.
        // Every client is made at start; a bad combination panics in hyper-rustls.
        let _ = super::Clients::new();
    }
}

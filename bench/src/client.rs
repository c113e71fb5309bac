//! A deliberately thin HTTPS client for the API server: one TLS connection per
//! [`Conn`], HTTP/2 or keep-alive HTTP/1.1, a bearer token or a client certificate, no
//! pooling or retries. It
//! shares the cores with the server, so it should cost as little as a client can.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Http1 => "HTTP/1.1 keep-alive",
            Proto::Http2 => "HTTP/2",
        }
    }
}

/// Where the server is and how to authenticate: everything a connection needs.
#[derive(Clone)]
pub struct Server {
    addr: SocketAddr,
    base: String,
    /// `None`: the TLS client certificate is the credential.
    token: Option<HeaderValue>,
    tls: Arc<rustls::ClientConfig>,
    roots: Arc<rustls::RootCertStore>,
}

impl Server {
    /// Trusts `<data_dir>/ca.crt` and authenticates with `<data_dir>/admin.token`, the
    /// files the API server writes at first start.
    pub fn new(addr: SocketAddr, data_dir: &Path) -> Result<Self> {
        let ca = data_dir.join("ca.crt");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca)
            .with_context(|| format!("reading {}", ca.display()))?
        {
            roots.add(cert.with_context(|| format!("parsing {}", ca.display()))?)?;
        }
        let roots = Arc::new(roots);
        let tls = tls_builder(&roots)?.with_no_client_auth();
        let token_path = data_dir.join("admin.token");
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| format!("reading {}", token_path.display()))?;
        Ok(Server {
            addr,
            base: format!("https://{addr}"),
            token: Some(HeaderValue::from_str(&format!("Bearer {}", token.trim()))?),
            tls: Arc::new(tls),
            roots,
        })
    }

    /// The same server, authenticating with bearer `token` instead of the admin token
    /// (e.g. a ServiceAccount's, to measure the RBAC path beside the admin one).
    pub fn with_token(&self, token: &str) -> Result<Self> {
        Ok(Server {
            token: Some(HeaderValue::from_str(&format!("Bearer {}", token.trim()))?),
            ..self.clone()
        })
    }

    /// The same server, authenticating with a TLS client certificate (PEM) and no
    /// bearer token, as the admin kubeconfig and `skiff kubeconfig --user` do.
    pub fn with_client_certificate(&self, cert_pem: &str, key_pem: &str) -> Result<Self> {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("parsing the client certificate")?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .context("parsing the client key")?;
        let tls = tls_builder(&self.roots)?.with_client_auth_cert(chain, key)?;
        Ok(Server {
            token: None,
            tls: Arc::new(tls),
            ..self.clone()
        })
    }

    /// A new TLS connection speaking `proto` (negotiated by ALPN, and checked).
    pub async fn connect(&self, proto: Proto) -> Result<Conn> {
        let mut tls = (*self.tls).clone();
        tls.alpn_protocols = vec![match proto {
            Proto::Http1 => b"http/1.1".to_vec(),
            Proto::Http2 => b"h2".to_vec(),
        }];
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let stream = TlsConnector::from(Arc::new(tls))
            .connect(ServerName::IpAddress(self.addr.ip().into()), tcp)
            .await
            .context("TLS handshake with the API server")?;
        let io = TokioIo::new(stream);
        let sender = match proto {
            Proto::Http1 => {
                let (send, conn) = http1::handshake(io).await?;
                tokio::spawn(conn);
                Sender::H1(send)
            }
            Proto::Http2 => {
                let (send, conn) = http2::Builder::new(TokioExecutor::new())
                    // Watch streams must never stall on flow control in a benchmark.
                    .initial_stream_window_size(4 << 20)
                    .initial_connection_window_size(8 << 20)
                    .handshake(io)
                    .await?;
                tokio::spawn(conn);
                Sender::H2(send)
            }
        };
        Ok(Conn {
            server: self.clone(),
            sender,
        })
    }
}

fn tls_builder(
    roots: &Arc<rustls::RootCertStore>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots.clone()))
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One connection. HTTP/1.1 carries one request at a time, so `send` takes `&mut`.
pub struct Conn {
    server: Server,
    sender: Sender,
}

impl Conn {
    /// Sends a request and returns the response with its body unread (for watches).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Response<Incoming>> {
        // HTTP/2 takes the authority from the URI; HTTP/1.1 wants origin-form + Host.
        let uri = match self.sender {
            Sender::H1(_) => path.to_string(),
            Sender::H2(_) => format!("{}{path}", self.server.base),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = &self.server.token {
            req = req.header(http::header::AUTHORIZATION, token.clone());
        }
        if let Sender::H1(_) = self.sender {
            req = req.header(http::header::HOST, self.server.addr.to_string());
        }
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let req = req.body(Full::new(body))?;
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        Ok(resp)
    }

    /// Sends a request and reads the whole response body.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        let resp = self.send(method, path, content_type, body).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// `call`, failing unless the status is `want`.
    pub async fn expect(
        &mut self,
        want: StatusCode,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Bytes> {
        let (status, body) = self.call(method.clone(), path, content_type, body).await?;
        if status != want {
            bail!(
                "{method} {path}: {status} (wanted {want}): {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            );
        }
        Ok(body)
    }
}

/// Splits a streamed body into lines (watch events), however frames cut them.
#[derive(Default)]
pub struct Lines {
    buf: BytesMut,
}

impl Lines {
    /// Hands every complete line of what came so far (without its `\n`) to `each`.
    /// Lines wholly inside `chunk` are read where they are; only a line cut by the
    /// chunk's end is copied, to be joined with the next chunk.
    pub fn feed(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) {
        let mut rest = chunk;
        if !self.buf.is_empty() {
            let Some(i) = rest.iter().position(|&b| b == b'\n') else {
                self.buf.extend_from_slice(rest);
                return;
            };
            self.buf.extend_from_slice(&rest[..i]);
            each(&self.buf);
            self.buf.clear();
            rest = &rest[i + 1..];
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            each(&rest[..i]);
            rest = &rest[i + 1..];
        }
        self.buf.extend_from_slice(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_chunks() {
        let mut lines = Lines::default();
        let mut got = Vec::new();
        for chunk in [&b"ab"[..], b"c\nd", b"\n\ne", b"f", b"g\nh\n", b"i\n"] {
            lines.feed(chunk, |l| got.push(String::from_utf8_lossy(l).into_owned()));
        }
        assert_eq!(got, ["abc", "d", "", "efg", "h", "i"]);
    }
}

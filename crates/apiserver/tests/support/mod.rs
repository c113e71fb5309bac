//! What the API server's integration tests share: an HTTPS client that sends
//! one request per connection with a bearer token (the admin's unless told),
//! verifying the server against the data directory's CA.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use serde_json::{json, Value};
use skiff_apiserver::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

#[derive(Clone)]
pub struct Client {
    pub addr: std::net::SocketAddr,
    pub admin: String,
    tls: TlsConnector,
}

impl Client {
    pub fn new(running: &Running, dir: &Path) -> Self {
        let ca = std::fs::read(dir.join(skiff_apiserver::pki::CA)).expect("ca");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.expect("ca pem")).expect("ca cert");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let admin = std::fs::read_to_string(dir.join(skiff_apiserver::pki::TOKEN)).expect("token");
        Self {
            addr: running.addr,
            admin: admin.trim().to_string(),
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    /// One request with `token` on its own connection; the status and the JSON body.
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.call_with(token, &[], method, path, body).await
    }

    /// [`Client::call_as`] with extra request headers.
    pub async fn call_with(
        &self,
        token: &str,
        headers: &[(&str, &str)],
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, _, body) = self.call_headers(token, headers, method, path, body).await;
        (status, body)
    }

    /// [`Client::call_with`], the response's headers too (names lower-cased).
    pub async fn call_headers(
        &self,
        token: &str,
        headers: &[(&str, &str)],
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Vec<(String, String)>, Value) {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let name = ServerName::IpAddress(self.addr.ip().into());
        let mut tls = self.tls.connect(name, tcp).await.expect("tls");
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let content_type = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map_or("application/json", |(_, v)| *v);
        let extra: String = headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nAccept: application/json\r\n{extra}\
             Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            self.addr,
            payload.len()
        );
        tls.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        // A server closing without close_notify is fine once the body is in.
        let _ = tls.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").expect("http response");
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        let response_headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (
            status,
            response_headers,
            serde_json::from_str(&body).unwrap_or(Value::Null),
        )
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.call_as(&self.admin.clone(), method, path, body).await
    }
}

pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// An API server on a fresh memory store in `dir`, listening on an ephemeral
/// loopback port, and a client of it.
pub async fn start(dir: &Path) -> (Running, Client) {
    start_with(dir, None).await
}

/// [`start`] with an audit log (`--audit-log-path`, `--audit-policy-file`).
pub async fn start_with(
    dir: &Path,
    audit: Option<skiff_apiserver::audit::Settings>,
) -> (Running, Client) {
    let config = skiff_apiserver::Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.to_path_buf(),
        compact_interval: std::time::Duration::from_secs(3600),
        compact_keep: 10_000,
        services: skiff_apiserver::services::Settings::parse(
            "10.96.0.0/24",
            "30000-30199",
            "198.51.100.0/26",
        )
        .expect("settings"),
        admission: Default::default(),
        tls_sans: Vec::new(),
        audit,
    };
    let running = skiff_apiserver::start(config, Arc::new(skiff_store::MemoryBackend::new()))
        .await
        .expect("apiserver");
    let client = Client::new(&running, dir);
    (running, client)
}

/// Creates ServiceAccount `robot` in `default` (no bindings) and a token for it
/// (a TokenRequest as the admin).
pub async fn robot(c: &Client) -> String {
    let (code, sa) = c
        .call(
            "POST",
            "/api/v1/namespaces/default/serviceaccounts",
            Some(&json!({"metadata": {"name": "robot"}})),
        )
        .await;
    assert_eq!(code, 201, "{sa}");
    let (code, tr) = c
        .call(
            "POST",
            "/api/v1/namespaces/default/serviceaccounts/robot/token",
            Some(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})),
        )
        .await;
    assert_eq!(code, 201, "{tr}");
    tr["status"]["token"].as_str().expect("token").to_string()
}

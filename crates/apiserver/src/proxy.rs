//! `pods/proxy` and `services/proxy`: HTTP requests relayed to a pod.
//!
//! `/api/v1/namespaces/{ns}/pods/[scheme:]{name}[:port]/proxy/{path}` goes to
//! the pod's IP (the port given, else its first declared container port);
//! `/api/v1/namespaces/{ns}/services/[scheme:]{name}[:port]/proxy/{path}` goes to
//! a ready endpoint of the service's port (named, or numbered and looked up
//! by number, as upstream's `ResourceLocation` does). The API server dials the
//! pod IP itself: it runs on a node whose routes reach every pod (its own
//! bridge, and the cross-node routes the agent programs).
//!
//! The request's method, path below `proxy`, query, headers (but the
//! credentials and hop-by-hop ones) and body go to the pod; its status,
//! headers and body come back as they are. `https:` speaks TLS to the pod
//! without verifying its certificate, as kube-apiserver's proxy transport.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use rand::Rng;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;
use skiff_api::{registry, StatusError};

use crate::server::Api;

/// A proxy request's parts, from its path.
#[derive(Debug, PartialEq)]
pub struct ProxyPath {
    /// `pods` or `services`.
    pub plural: &'static str,
    pub namespace: String,
    /// `[scheme:]name[:port]`.
    pub id: String,
    /// The path below `proxy`, still escaped (at least `/`).
    pub rest: String,
}

/// Headers that belong to one hop, never forwarded (RFC 9110 7.6.1), and the
/// caller's credentials, which the pod must not see.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
    "host",
];

/// How long a connection to the pod may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A `pods/proxy` or `services/proxy` request path, or `None`.
pub fn route(path: &str) -> Option<ProxyPath> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let mut it = rest.splitn(4, '/');
    let namespace = it.next()?;
    let plural = match it.next()? {
        "pods" => "pods",
        "services" => "services",
        _ => return None,
    };
    let id = it.next()?;
    let tail = it.next()?;
    let below = match tail.strip_prefix("proxy") {
        Some("") => "/",
        Some(b) if b.starts_with('/') => b,
        _ => return None,
    };
    if namespace.is_empty() || id.is_empty() {
        return None;
    }
    Some(ProxyPath {
        plural,
        namespace: namespace.to_string(),
        id: id.to_string(),
        rest: below.to_string(),
    })
}

/// Upstream's `SplitSchemeNamePort`: `name`, `name:port` or `scheme:name:port`.
fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [n] => ("", *n, ""),
        [n, p] => ("", *n, *p),
        [s, n, p] => (*s, *n, *p),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

fn unavailable(message: String) -> StatusError {
    let mut e = StatusError::internal(message);
    e.code = 503;
    e.reason = "ServiceUnavailable";
    e
}

/// Go's `net.Dial` error text: `dial tcp 10.244.0.5:81: connect: connection refused`.
fn dial_error(addr: &SocketAddr, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return format!("dial tcp {addr}: i/o timeout");
    }
    let text = match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => e.to_string(),
    };
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    let text: String = match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("dial tcp {addr}: connect: {text}")
}

/// Where a pod proxy request goes: (scheme, address).
async fn pod_location(api: &Api, ns: &str, id: &str) -> Result<(String, SocketAddr), StatusError> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| StatusError::bad_request(format!("invalid pod request {id:?}")))?;
    let pods = registry::lookup("", "v1", "pods").ok_or_else(StatusError::no_such_resource)?;
    let pod = api.objects.get(pods, Some(ns), name).await?;
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let declared = |c: &Value| c["ports"].as_array().cloned().unwrap_or_default();
    let port: u16 = if port.is_empty() {
        containers
            .iter()
            .flat_map(declared)
            .find_map(|p| p["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(80)
    } else if let Ok(p) = port.parse() {
        p
    } else {
        // A container port's name.
        containers
            .iter()
            .flat_map(declared)
            .find(|p| p["name"] == port)
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| StatusError::bad_request(format!("invalid pod request {id:?}")))?
    };
    let ip: IpAddr = pod["status"]["podIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .filter(|ip: &IpAddr| !ip.is_unspecified() && !ip.is_loopback() && !ip.is_multicast())
        .ok_or_else(|| StatusError::bad_request("address not allowed"))?;
    Ok((scheme.to_string(), SocketAddr::new(ip, port)))
}

/// Where a service proxy request goes: a ready address of the port's endpoints.
async fn service_location(
    api: &Api,
    ns: &str,
    id: &str,
) -> Result<(String, SocketAddr), StatusError> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| StatusError::bad_request(format!("invalid service request {id:?}")))?;
    let services =
        registry::lookup("", "v1", "services").ok_or_else(StatusError::no_such_resource)?;
    let svc = api.objects.get(services, Some(ns), name).await?;
    let mut port_name = port.to_string();
    if let Ok(number) = port.parse::<u64>() {
        port_name = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_u64() == Some(number))
            .map(|p| p["name"].as_str().unwrap_or_default().to_string())
            .ok_or_else(|| {
                unavailable(format!(
                    "no service port {number} found for service {name:?}"
                ))
            })?;
    }
    let endpoints =
        registry::lookup("", "v1", "endpoints").ok_or_else(StatusError::no_such_resource)?;
    let eps = api.objects.get(endpoints, Some(ns), name).await?;
    let subsets = eps["subsets"].as_array().cloned().unwrap_or_default();
    if subsets.is_empty() {
        return Err(unavailable(format!(
            "no endpoints available for service {name:?}"
        )));
    }
    let mut rng = rand::rng();
    let seed = rng.random_range(0..subsets.len());
    for i in 0..subsets.len() {
        let ss = &subsets[(seed + i) % subsets.len()];
        let addrs = ss["addresses"].as_array().cloned().unwrap_or_default();
        if addrs.is_empty() {
            continue;
        }
        let Some(p) = ss["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
        else {
            continue;
        };
        let Some(port) = p["port"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        let start = rng.random_range(0..addrs.len());
        for j in 0..addrs.len() {
            let a = &addrs[(start + j) % addrs.len()];
            if let Some(ip) = a["ip"].as_str().and_then(|ip| ip.parse::<IpAddr>().ok()) {
                return Ok((scheme.to_string(), SocketAddr::new(ip, port)));
            }
        }
    }
    Err(unavailable(format!(
        "no endpoints available for service {id:?}"
    )))
}

/// Serves a proxy request.
pub async fn serve(
    api: &Api,
    p: ProxyPath,
    mut parts: http::request::Parts,
    body: Body,
) -> Result<Response, StatusError> {
    // An upgrade (a WebSocket, say) is relayed as upstream's UpgradeAwareHandler
    // does: the pod's 101 goes back, then the bytes both ways.
    // (HTTP/2 has no such upgrade: the request then goes as a plain one.)
    let mut caller_upgrade = None;
    let upgrade = upgrade_of(&parts.headers).filter(|_| {
        caller_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        caller_upgrade.is_some()
    });
    let (scheme, addr) = match p.plural {
        "pods" => pod_location(api, &p.namespace, &p.id).await?,
        _ => service_location(api, &p.namespace, &p.id).await?,
    };
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| {
            unavailable(format!(
                "error trying to reach service: dial tcp {addr}: i/o timeout"
            ))
        })?
        .map_err(|e| {
            unavailable(format!(
                "error trying to reach service: {}",
                dial_error(&addr, &e)
            ))
        })?;
    let _ = tcp.set_nodelay(true);
    let mut req = outgoing(&p, &parts, body, addr)?;
    if let Some(up) = &upgrade {
        let h = req.headers_mut();
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        h.insert(http::header::UPGRADE, up.clone());
    }
    let mut resp = if scheme == "https" {
        let tls = tokio_rustls::TlsConnector::from(insecure_tls()?)
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map_err(|e| unavailable(format!("error trying to reach service: {e}")))?;
        send(tls, req).await?
    } else {
        send(tcp, req).await?
    };
    // The caller's HTTP version, not the pod's: the response goes on the caller's connection.
    *resp.version_mut() = parts.version;
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        return Ok(switch(resp, caller_upgrade));
    }
    let (mut head, incoming) = resp.into_parts();
    for h in DROPPED {
        if *h != "host" {
            head.headers.remove(*h);
        }
    }
    Ok(Response::from_parts(head, Body::new(incoming)))
}

/// The protocol a request asks to upgrade to (`Connection: Upgrade` and `Upgrade`).
fn upgrade_of(headers: &http::HeaderMap) -> Option<http::HeaderValue> {
    let asks = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(http::header::UPGRADE).cloned())
        .flatten()
}

/// The pod switched protocols: its 101 goes back to the caller, and once both
/// connections are upgraded their bytes are copied both ways until either ends.
fn switch(
    mut resp: http::Response<hyper::body::Incoming>,
    caller: Option<hyper::upgrade::OnUpgrade>,
) -> Response {
    let pod = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let Some(caller) = caller else { return };
        match tokio::try_join!(pod, caller) {
            Ok((pod, caller)) => {
                let mut pod = hyper_util::rt::TokioIo::new(pod);
                let mut caller = hyper_util::rt::TokioIo::new(caller);
                let _ = tokio::io::copy_bidirectional(&mut caller, &mut pod).await;
            }
            Err(e) => tracing::debug!(error = %e, "proxy upgrade"),
        }
    });
    let (head, _) = resp.into_parts();
    Response::from_parts(head, Body::empty())
}

/// The request for the pod: method, path below `proxy` and query, the
/// caller's headers but the dropped ones, the body; `Host` the pod's address.
fn outgoing(
    p: &ProxyPath,
    parts: &http::request::Parts,
    body: Body,
    addr: SocketAddr,
) -> Result<http::Request<Body>, StatusError> {
    let target = match parts.uri.query() {
        Some(q) => format!("{}?{q}", p.rest),
        None => p.rest.clone(),
    };
    let mut req = http::Request::builder()
        .method(parts.method.clone())
        .uri(target)
        .body(body)
        .map_err(|e| StatusError::bad_request(e.to_string()))?;
    for (k, v) in &parts.headers {
        let name = k.as_str();
        if DROPPED.contains(&name) || name.starts_with("impersonate-") {
            continue;
        }
        req.headers_mut().append(k.clone(), v.clone());
    }
    if let Ok(host) = http::HeaderValue::from_str(&addr.to_string()) {
        req.headers_mut().insert(http::header::HOST, host);
    }
    Ok(req)
}

/// One HTTP/1.1 exchange over `io`; the connection lives while the body streams.
async fn send<IO>(
    io: IO,
    req: http::Request<Body>,
) -> Result<http::Response<hyper::body::Incoming>, StatusError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| unavailable(format!("error trying to reach service: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "proxy connection");
        }
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| unavailable(format!("error trying to reach service: {e}")))
}

/// The TLS client for `https:` targets. As kube-apiserver's proxy transport
/// (`InsecureSkipVerify`), the pod's certificate is not verified: a pod's
/// serving certificate names nothing the API server could check it against.
fn insecure_tls() -> Result<Arc<rustls::ClientConfig>, StatusError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AnyCertificate(provider.clone()));
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    Arc::new(
                        b.dangerous()
                            .with_custom_certificate_verifier(verifier)
                            .with_no_client_auth(),
                    )
                })
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(StatusError::internal)
}

/// Accepts any server certificate; signatures are still checked, so the
/// handshake is a real one with the key the certificate names. For targets
/// whose certificate nobody could verify (a pod's self-signed one, as
/// kube-apiserver's proxy does) or that is checked another way (a joining
/// node's `/cacerts` fetch, against the join token's hash).
#[derive(Debug)]
pub struct AnyCertificate(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
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
        cert: &CertificateDer<'_>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            route("/api/v1/namespaces/d/pods/web:8080/proxy/a/b/"),
            Some(ProxyPath {
                plural: "pods",
                namespace: "d".into(),
                id: "web:8080".into(),
                rest: "/a/b/".into(),
            })
        );
        assert_eq!(
            route("/api/v1/namespaces/d/services/http:web:http/proxy").map(|p| p.rest),
            Some("/".into())
        );
        assert_eq!(route("/api/v1/namespaces/d/pods/web/proxyx"), None);
        assert_eq!(route("/api/v1/namespaces/d/pods/web/log"), None);
        assert_eq!(route("/api/v1/namespaces/d/configmaps/x/proxy/"), None);
    }

    #[test]
    fn ids() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:80"), Some(("", "web", "80")));
        assert_eq!(
            split_scheme_name_port("https:web:443"),
            Some(("https", "web", "443"))
        );
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn dial_errors_read_like_go() {
        let addr: SocketAddr = "10.244.0.5:81".parse().unwrap();
        assert_eq!(
            dial_error(&addr, &std::io::Error::from_raw_os_error(111)),
            "dial tcp 10.244.0.5:81: connect: connection refused"
        );
    }
}

//! `pods/log`, `pods/exec` and `pods/attach`: forwarded to the node agent that runs
//! the pod, found from the pod's `spec.nodeName` and that Node's `InternalIP` and
//! `status.daemonEndpoints.kubeletEndpoint.Port` (as kube-apiserver finds kubelet).
//!
//! The connection is TLS both ways, as kube-apiserver's to kubelet with
//! `--kubelet-certificate-authority`: the agent's serving certificate is verified
//! against the cluster CA for the Node's address (so a node cannot answer for
//! another), and the API server presents its `apiserver-kubelet-client`
//! certificate, which the agent requires. The agent answers an HTTP/1.1 upgrade (`Upgrade: skiff-stream`, see
//! `skiff_agent::stream`): logs then arrive as raw bytes, exec and attach as frames
//! `[channel][u32 length][payload]` that map one-to-one onto the binary messages of
//! WebSocket `v5.channel.k8s.io` which kubectl speaks to us.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use skiff_api::{registry, StatusError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::request::Target;
use crate::server::Api;

const PROTOCOL: &str = "v5.channel.k8s.io";

/// The TLS client configuration for dialing node agents: the cluster CA as the
/// only root, the `apiserver-kubelet-client` certificate as the client's.
pub fn client_tls(creds: &crate::pki::Credentials) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(creds.ca_pem.as_bytes()) {
        roots
            .add(cert.context("the CA certificate")?)
            .context("the CA certificate")?;
    }
    let chain = CertificateDer::pem_slice_iter(creds.kubelet_client_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the kubelet client certificate")?;
    let key = PrivateKeyDer::from_pem_slice(creds.kubelet_client_key_pem.as_bytes())
        .context("the kubelet client key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("the kubelet client certificate")?;
    Ok(Arc::new(config))
}

/// Where a node's agent listens: the address to dial and the name its
/// certificate must carry (the Node's address).
#[derive(Clone)]
pub(crate) struct AgentAddress {
    addr: String,
    name: ServerName<'static>,
}

/// Whether this request is one of the streaming subresources handled here.
pub fn handles(t: &Target) -> bool {
    t.resource.group.is_empty()
        && t.resource.plural == "pods"
        && t.name.is_some()
        && matches!(t.subresource.as_deref(), Some("log" | "exec" | "attach"))
}

fn bad_request(msg: String) -> StatusError {
    StatusError::bad_request(msg)
}

/// The container a request means: `container=` or the pod's only (or default) one.
fn container_of(pod: &Value, given: Option<&str>, name: &str) -> Result<String, StatusError> {
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // Init and ephemeral containers are named explicitly, never defaulted to.
    let inits: Vec<String> = ["initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| pod["spec"][*k].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    if let Some(c) = given.filter(|c| !c.is_empty()) {
        if names.iter().chain(inits.iter()).any(|n| n == c) {
            return Ok(c.to_string());
        }
        return Err(bad_request(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    if let Some(d) = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
        .as_str()
        .filter(|d| names.iter().any(|n| n == d))
    {
        return Ok(d.to_string());
    }
    match names.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

/// The agent's address for the node running `pod`.
pub(crate) async fn agent_address(
    api: &Api,
    pod: &Value,
    name: &str,
) -> Result<AgentAddress, StatusError> {
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad_request(format!("pod {name} does not have a host assigned")))?;
    let nodes = registry::lookup("", "v1", "nodes").ok_or_else(StatusError::no_such_resource)?;
    let node = api.objects.get(nodes, None, node_name).await?;
    let addrs = node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ip = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|ty| {
            addrs
                .iter()
                .find(|a| a["type"] == *ty)
                .and_then(|a| a["address"].as_str())
        })
        .ok_or_else(|| bad_request(format!("node {node_name} has no address")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0)
        .unwrap_or(10250);
    let server_name = match ip.parse::<IpAddr>() {
        Ok(addr) => ServerName::IpAddress(addr.into()),
        Err(_) => ServerName::try_from(ip.to_string())
            .map_err(|_| bad_request(format!("node {node_name} has no usable address")))?,
    };
    Ok(AgentAddress {
        addr: if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        },
        name: server_name,
    })
}

pub(crate) type AgentStream = TlsStream<TcpStream>;

/// Connects to the agent over verified TLS and asks for the upgrade; `Err`
/// carries its Status.
async fn open(api: &Api, agent: &AgentAddress, path: &str) -> Result<AgentStream, StatusError> {
    open_with(api.kubelet_tls.clone(), agent, path).await
}

/// [`open`] with the TLS client configuration given (for sessions that outlive
/// the request, as port-forward's).
pub(crate) async fn open_with(
    tls: Arc<rustls::ClientConfig>,
    agent: &AgentAddress,
    path: &str,
) -> Result<AgentStream, StatusError> {
    let addr = agent.addr.as_str();
    let unavailable = |e: String| {
        let mut s = StatusError::internal(format!("error dialing the node agent: {e}"));
        s.code = 502;
        s
    };
    let timeout = std::time::Duration::from_secs(10);
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| unavailable(format!("dial tcp {addr}: i/o timeout")))?
        .map_err(|e| unavailable(format!("dial tcp {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(tls);
    let mut sock = tokio::time::timeout(timeout, connector.connect(agent.name.clone(), tcp))
        .await
        .map_err(|_| unavailable(format!("tls handshake with {addr}: i/o timeout")))?
        .map_err(|e| unavailable(format!("tls handshake with {addr}: {e}")))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: skiff-stream\r\n\r\n"
    );
    sock.write_all(req.as_bytes())
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match sock.read(&mut b).await {
            Ok(1) if head.len() < 64 * 1024 => head.push(b[0]),
            _ => return Err(unavailable("the node agent closed the connection".into())),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(502);
    if code == 101 {
        return Ok(sock);
    }
    let mut body = Vec::new();
    let _ = sock.read_to_end(&mut body).await;
    let status: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut e = StatusError::bad_request(
        status["message"]
            .as_str()
            .unwrap_or("the node agent refused the request")
            .to_string(),
    );
    e.code = code;
    e.reason = match status["reason"].as_str() {
        Some("NotFound") => "NotFound",
        Some("BadRequest") => "BadRequest",
        Some("Unauthorized") => "Unauthorized",
        Some("Forbidden") => "Forbidden",
        _ => "InternalError",
    };
    Err(e)
}

/// Serves a streaming subresource request.
pub async fn serve(
    api: &Api,
    t: &Target,
    mut parts: http::request::Parts,
) -> Result<Response, StatusError> {
    if parts.method != http::Method::GET && parts.method != http::Method::POST {
        return Err(StatusError::method_not_allowed());
    }
    let name = t.name.clone().unwrap_or_default();
    let ns = t.namespace.clone().unwrap_or_else(|| "default".into());
    let pod = api.objects.get(t.resource, Some(&ns), &name).await?;
    let query = crate::request::Query::parse(parts.uri.query());
    let container = container_of(&pod, query.get("container"), &name)?;
    let addr = agent_address(api, &pod, &name).await?;
    let kind = match t.subresource.as_deref() {
        Some("log") => "containerLogs",
        Some("exec") => "exec",
        _ => "attach",
    };
    let path = format!(
        "/{kind}/{ns}/{name}/{container}?{}",
        parts.uri.query().unwrap_or("")
    );
    if kind == "containerLogs" {
        let sock = open(api, &addr, &path).await?;
        let stream = futures::stream::unfold(sock, |mut sock| async move {
            let mut buf = vec![0u8; 16 * 1024];
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), sock))
                }
            }
        });
        let mut r = Response::new(Body::from_stream(stream));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        return Ok(r);
    }
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|_| {
            bad_request(format!(
                "{kind} needs a WebSocket upgrade with subprotocol {PROTOCOL} (SPDY is not supported)"
            ))
        })?;
    let offered = parts
        .headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL);
    if !offered {
        return Err(bad_request(format!(
            "{kind} supports only the WebSocket subprotocol {PROTOCOL}"
        )));
    }
    // Open the agent side first, so its errors reach the client as a Status.
    let sock = open(api, &addr, &path).await?;
    Ok(ws
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| relay(socket, sock)))
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<Vec<u8>> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > 16 * 1024 * 1024 {
        return None;
    }
    let mut msg = vec![0u8; len + 1];
    msg[0] = head[0];
    r.read_exact(&mut msg[1..]).await.ok()?;
    Some(msg)
}

/// WebSocket messages <-> agent frames until either side ends.
async fn relay<S: AsyncRead + AsyncWrite + Send + 'static>(socket: WebSocket, sock: S) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut rd, mut wr) = tokio::io::split(sock);
    let upstream = async move {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&ch, payload)) = data.split_first() else {
                continue;
            };
            let mut frame = Vec::with_capacity(payload.len() + 5);
            frame.push(ch);
            frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            frame.extend_from_slice(payload);
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let downstream = async move {
        while let Some(msg) = read_frame(&mut rd).await {
            if ws_tx.send(Message::Binary(msg.into())).await.is_err() {
                return;
            }
        }
        // A normal closure (1000): clients treat a close without a code as an error.
        let close = axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        };
        let _ = ws_tx.send(Message::Close(Some(close))).await;
        let _ = ws_tx.close().await;
    };
    // The agent ending the stream ends the session; the client closing its side
    // only closes the agent's input (stdin), as kubelet's stream server does.
    let up = tokio::spawn(upstream);
    downstream.await;
    up.abort();
}

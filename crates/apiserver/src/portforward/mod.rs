//! `pods/portforward`: forwarded connections to any port of a pod, through the
//! node agent that runs it (each connection is one agent request, see
//! `skiff_agent::portforward`, which connects inside the pod's network namespace).
//!
//! Three framings reach the same forwarding:
//! - SPDY/3.1 tunneled in WebSocket binary messages (subprotocol
//!   `SPDY/3.1+portforward.k8s.io`): kubectl 1.31+'s default;
//! - SPDY/3.1 over an HTTP/1.1 upgrade (`Upgrade: SPDY/3.1`,
//!   `X-Stream-Protocol-Version: portforward.k8s.io`): older kubectl, and
//!   `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`;
//! - WebSocket channels with `?ports=` (`v4.channel.k8s.io`, base64, or none):
//!   the client libraries (Python's `kubernetes.stream.portforward`).

mod channels;
mod session;
mod spdy;

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use skiff_api::StatusError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::podstream::{AgentAddress, AgentStream};
use crate::request::Target;
use crate::server::Api;

/// The port-forward protocol's name, and its tunneled form's WebSocket subprotocol.
const PORT_FORWARD: &str = "portforward.k8s.io";
const TUNNELED: &str = "SPDY/3.1+portforward.k8s.io";

/// Whether this request is `pods/{name}/portforward`.
pub fn handles(t: &Target) -> bool {
    t.resource.group.is_empty()
        && t.resource.plural == "pods"
        && t.name.is_some()
        && t.subresource.as_deref() == Some("portforward")
}

/// A WebSocket port-forward is a `GET`, authorized as `get`; as upstream
/// (`AuthorizePodWebsocketUpgradeCreatePermission`, on since 1.31) it must also
/// be allowed to `create` `pods/portforward`, the verb of the SPDY `POST`.
pub fn authorize_websocket_create(
    authorizers: crate::authz::policy::Authorizers<'_>,
    user: &crate::authn::User,
    parts: &http::request::Parts,
    path: &str,
    query: &crate::request::Query,
) -> Result<(), StatusError> {
    if parts.method != http::Method::GET || !header_has(parts, http::header::UPGRADE, "websocket") {
        return Ok(());
    }
    let attrs =
        crate::authz::request_info::attributes(user.clone(), &http::Method::POST, path, query);
    let decision = crate::authz::policy::decide(authorizers, &attrs);
    if decision.is_allowed() {
        return Ok(());
    }
    Err(crate::authz::message::forbidden(&attrs, decision.reason()))
}

/// Opens one forwarded connection to a port of one pod.
#[derive(Clone)]
pub struct Dialer {
    tls: Arc<rustls::ClientConfig>,
    agent: AgentAddress,
    namespace: String,
    pod: String,
    uid: String,
}

/// What opens forwarded connections: the agent in a cluster, a stand-in in tests.
pub trait Dial: Clone + Send + Sync + 'static {
    type Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static;
    /// The connection to `port`, or the message for the client's error stream.
    fn dial(
        &self,
        port: u16,
    ) -> impl std::future::Future<Output = Result<Self::Conn, String>> + Send;
}

impl Dial for Dialer {
    type Conn = AgentStream;

    async fn dial(&self, port: u16) -> Result<AgentStream, String> {
        let path = format!(
            "/portForward/{}/{}/{port}?podUID={}",
            self.namespace, self.pod, self.uid
        );
        crate::podstream::open_with(self.tls.clone(), &self.agent, &path)
            .await
            .map_err(|e| e.message)
    }
}

fn header_has(parts: &http::request::Parts, name: http::HeaderName, token: &str) -> bool {
    parts
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

/// The WebSocket subprotocols the client offered, in its order.
fn offered_protocols(parts: &http::request::Parts) -> Vec<String> {
    parts
        .headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Serves a port-forward request: the upgrade, then the session in the background.
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
    let agent = crate::podstream::agent_address(api, &pod, &name).await?;
    let dialer = Dialer {
        tls: api.kubelet_tls.clone(),
        agent,
        uid: pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        namespace: ns,
        pod: name,
    };
    if header_has(&parts, http::header::UPGRADE, "websocket") {
        let offered = offered_protocols(&parts);
        let query = crate::request::Query::parse(parts.uri.query());
        let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .map_err(|e| {
                StatusError::bad_request(format!("unable to upgrade websocket connection: {e}"))
            })?;
        if offered.iter().any(|p| p == TUNNELED) {
            return Ok(ws
                .protocols([TUNNELED])
                .on_upgrade(move |socket| tunnel(socket, dialer)));
        }
        let mut values: Vec<String> = query.all("ports").to_vec();
        values.extend(query.all("port").iter().cloned());
        let ports = channels::parse_ports(&values).map_err(StatusError::bad_request)?;
        let base64 = !offered.iter().any(|p| p == channels::BINARY)
            && offered.iter().any(|p| p == channels::BASE64);
        let ws = match offered
            .iter()
            .find(|p| *p == channels::BINARY || *p == channels::BASE64)
        {
            Some(_) => ws.protocols([if base64 { channels::BASE64 } else { channels::BINARY }])
                .on_upgrade(move |socket| channels::serve(socket, dialer, ports, base64)),
            None if offered.is_empty() => {
                ws.on_upgrade(move |socket| channels::serve(socket, dialer, ports, false))
            }
            None => {
                return Err(StatusError::bad_request(format!(
                    "unable to upgrade websocket connection: none of the offered subprotocols {offered:?} is supported (want {TUNNELED}, {}, {})",
                    channels::BINARY,
                    channels::BASE64
                )))
            }
        };
        return Ok(ws);
    }
    if header_has(&parts, http::header::UPGRADE, "SPDY/3.1") {
        let versions: Vec<String> = parts
            .headers
            .get_all("x-stream-protocol-version")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .collect();
        if !versions.is_empty() && !versions.iter().any(|v| v == PORT_FORWARD) {
            let mut e = StatusError::bad_request(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {versions:?}, server supports [\"{PORT_FORWARD}\"]"
            ));
            e.code = 403;
            e.reason = "Forbidden";
            return Err(e);
        }
        let on_upgrade = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or_else(|| {
                StatusError::bad_request("unable to upgrade: the connection cannot be upgraded")
            })?;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    session::serve(hyper_util::rt::TokioIo::new(upgraded), dialer).await
                }
                Err(e) => tracing::debug!(error = %e, "port-forward upgrade"),
            }
        });
        let mut r = Response::new(axum::body::Body::empty());
        *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        h.insert(
            http::header::UPGRADE,
            http::HeaderValue::from_static("SPDY/3.1"),
        );
        h.insert(
            "x-stream-protocol-version",
            http::HeaderValue::from_static(PORT_FORWARD),
        );
        return Ok(r);
    }
    Err(StatusError::bad_request(
        "Upgrade request required".to_string(),
    ))
}

/// SPDY in WebSocket binary messages: the messages are a byte stream to the
/// SPDY session, relayed through an in-memory pipe.
async fn tunnel(socket: WebSocket, dialer: Dialer) {
    let (session_end, ours) = tokio::io::duplex(256 * 1024);
    let session = tokio::spawn(session::serve(session_end, dialer));
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut ws_tx, mut ws_rx) = socket.split();
    let up = async move {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let bytes = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => bytes::Bytes::copy_from_slice(t.as_bytes()),
                Message::Close(_) => break,
                _ => continue,
            };
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx
                        .send(Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let close = axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        };
        let _ = ws_tx.send(Message::Close(Some(close))).await;
        let _ = ws_tx.close().await;
    };
    let up = tokio::spawn(up);
    down.await;
    up.abort();
    session.abort();
}

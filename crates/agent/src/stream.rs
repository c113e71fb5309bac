//! The agent's streaming endpoint, which the API server forwards `pods/log`,
//! `pods/exec`, `pods/attach` and `pods/portforward` (see [`crate::portforward`])
//! to (kubelet's port 10250 plays this role).
//!
//! The request is an HTTP/1.1 upgrade, `GET /{containerLogs|exec|attach}/{ns}/{pod}/
//! {container}?{the client's query}` with `Upgrade: skiff-stream`. An error is an
//! ordinary HTTP response whose body is a `Status`. On `101 Switching Protocols`
//! logs are the raw bytes that follow; exec and attach exchange frames of
//! `[channel u8][length u32 big-endian][payload]` whose channels are those of
//! `v5.channel.k8s.io` (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize, 255 close),
//! so the API server relays WebSocket messages one-to-one.
//!
//! The endpoint speaks TLS only, with the node's serving certificate (signed by
//! the cluster CA for the node's name and addresses), and serves only a client
//! presenting a certificate the cluster CA signed for the API server
//! (`CN=kube-apiserver-kubelet-client`, as kubeadm names it): no bearer token,
//! no admin credential on the node. `/healthz` alone answers anyone.

mod attach;
mod exec;
mod logs;
mod request;
mod resize;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::pod::{lock, Runtime};
use crate::Agent;

pub use exec::exit_status;
pub use logs::tail_offset;
pub use request::percent_decode;
pub(crate) use request::{respond_error, upgraded};
pub use tls::{tls_config, API_SERVER_CLIENT_CN};

use request::{parse_target, read_head};
use tls::{client_of, refusal};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const STATUS: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

pub async fn serve(agent: Arc<Agent>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = sock.set_nodelay(true);
        let agent = agent.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "stream connection: TLS handshake");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("stream connection: TLS handshake timed out");
                        return;
                    }
                };
            let client = client_of(&tls);
            if let Err(e) = handle(agent, tls, client).await {
                tracing::debug!(error = %e, "stream connection");
            }
        });
    }
}

async fn handle<S>(agent: Arc<Agent>, mut sock: S, client: Option<String>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let head = read_head(&mut sock).await?;
    let target = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    if target == "/healthz" {
        sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .await?;
        return Ok(());
    }
    // Exec is a remote shell: only the API server (its client certificate,
    // signed by the cluster CA) may ask.
    let method = head.split_whitespace().next().unwrap_or("GET");
    if let Some((code, reason, message)) = refusal(client.as_deref(), method) {
        return respond_error(&mut sock, code, reason, &message).await;
    }
    let Some(req) = parse_target(&target) else {
        return respond_error(
            &mut sock,
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .await;
    };
    let Some(rt) = agent.find(&req.ns, &req.pod) else {
        return respond_error(
            &mut sock,
            404,
            "NotFound",
            &format!(
                "pod {:?} in namespace {:?} is not running on this node",
                req.pod, req.ns
            ),
        )
        .await;
    };
    if req.kind == "portForward" {
        // `/portForward/{ns}/{pod}/{port}`: the last segment is the port.
        let sandbox = lock(&rt).sandbox;
        let pod = req.get("podUID").unwrap_or(&req.pod).to_string();
        return crate::portforward::serve(sock, sandbox, &pod, &req.container).await;
    }
    let (sandbox, ctr) = {
        let r = lock(&rt);
        (r.sandbox, r.containers.get(&req.container).cloned())
    };
    let Some(ctr) = ctr else {
        return respond_error(
            &mut sock,
            400,
            "BadRequest",
            &format!(
                "container {:?} in pod {:?} is waiting to start: ContainerCreating",
                req.container, req.pod
            ),
        )
        .await;
    };
    match req.kind.as_str() {
        "containerLogs" => logs::logs(&mut sock, &rt, &req, ctr).await,
        "exec" => {
            let Some(sandbox) = sandbox.filter(|_| ctr.running) else {
                return respond_error(
                    &mut sock,
                    400,
                    "BadRequest",
                    &format!("container {:?} is not running", req.container),
                )
                .await;
            };
            let argv = req.all("command");
            if argv.is_empty() {
                return respond_error(
                    &mut sock,
                    400,
                    "BadRequest",
                    "you must specify at least one command for the container",
                )
                .await;
            }
            upgraded(&mut sock).await?;
            exec::exec(sock, &rt, &req, &ctr, sandbox, argv).await
        }
        "attach" => {
            if !ctr.running {
                return respond_error(
                    &mut sock,
                    400,
                    "BadRequest",
                    &format!("container {:?} is not running", req.container),
                )
                .await;
            }
            upgraded(&mut sock).await?;
            attach::attach(sock, &rt, &req, ctr).await
        }
        _ => {
            respond_error(
                &mut sock,
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
            .await
        }
    }
}

fn instance_running(rt: &std::sync::Mutex<Runtime>, name: &str, instance: u64) -> bool {
    lock(rt)
        .containers
        .get(name)
        .is_some_and(|c| c.running && c.instance == instance)
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, ch: u8, data: &[u8]) -> std::io::Result<()> {
    let mut head = [0u8; 5];
    head[0] = ch;
    head[1..].copy_from_slice(&(data.len() as u32).to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(data).await
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > 16 * 1024 * 1024 {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await?;
    Ok(Some((head[0], data)))
}

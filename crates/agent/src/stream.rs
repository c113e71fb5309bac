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

use std::io::SeekFrom;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::pod::{lock, CtrRuntime, Runtime};
use crate::{runtime, Agent};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const STATUS: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// The client certificate's common name the endpoint serves (the API server's).
pub const API_SERVER_CLIENT_CN: &str = "kube-apiserver-kubelet-client";

/// The endpoint's TLS configuration: `cert`/`key` the node's serving
/// certificate and key (PEM), `ca` the cluster CA that must have signed a
/// client's certificate.
pub fn tls_config(cert: &Path, key: &Path, ca: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).with_context(|| format!("reading the {what} {}", p.display()))
    };
    let ca_pem = read(ca, "cluster CA certificate")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&ca_pem) {
        let c = c.with_context(|| format!("the cluster CA certificate {}", ca.display()))?;
        roots
            .add(c)
            .with_context(|| format!("the cluster CA certificate {}", ca.display()))?;
    }
    let chain = CertificateDer::pem_slice_iter(&read(cert, "serving certificate")?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the serving certificate {}", cert.display()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&read(key, "serving key")?)
        .with_context(|| format!("the serving key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // A client certificate is checked when given, and required below for
    // everything but /healthz.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .context("the client certificate verifier")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .with_context(|| format!("the serving certificate {}", cert.display()))?;
    Ok(Arc::new(config))
}

/// The common name of a verified client certificate.
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = c.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Who the client is: the common name of its certificate, which rustls has
/// verified against the cluster CA (for client auth); `None`: no certificate.
fn client_of<S>(tls: &tokio_rustls::server::TlsStream<S>) -> Option<String> {
    let certs = tls.get_ref().1.peer_certificates()?;
    certs.first().and_then(common_name)
}

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

/// What a client may do: only the API server, by its certificate, gets past
/// this; as kubelet, no credential is 401 and another identity 403.
fn refusal(client: Option<&str>, method: &str) -> Option<(u16, &'static str, String)> {
    match client {
        Some(API_SERVER_CLIENT_CN) => None,
        None => Some((401, "Unauthorized", "Unauthorized".to_string())),
        Some(user) => {
            let verb = if method == "POST" { "create" } else { "get" };
            Some((
                403,
                "Forbidden",
                format!("Forbidden (user={user}, verb={verb}, resource=nodes, subresource=proxy)"),
            ))
        }
    }
}

/// A parsed request: kind, namespace, pod, container, and decoded query.
struct Req {
    kind: String,
    ns: String,
    pod: String,
    container: String,
    query: Vec<(String, String)>,
}

impl Req {
    fn get(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    fn all(&self, k: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_target(target: &str) -> Option<Req> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let [kind, ns, pod, container] = parts.as_slice() else {
        return None;
    };
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(Req {
        kind: kind.to_string(),
        ns: percent_decode(ns),
        pod: percent_decode(pod),
        container: percent_decode(container),
        query,
    })
}

async fn read_head<S: AsyncRead + Unpin>(sock: &mut S) -> Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 {
            anyhow::bail!("request head too large");
        }
        if sock.read(&mut byte).await? == 0 {
            anyhow::bail!("connection closed in request head");
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn status_error(code: u16, reason: &str, message: &str) -> serde_json::Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

pub(crate) async fn respond_error<S: AsyncWrite + Unpin>(
    sock: &mut S,
    code: u16,
    reason: &str,
    message: &str,
) -> Result<()> {
    let body = status_error(code, reason, message).to_string();
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await?;
    Ok(())
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
        "containerLogs" => logs(&mut sock, &rt, &req, ctr).await,
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
            exec(sock, &rt, &req, &ctr, sandbox, argv).await
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
            attach(sock, &rt, &req, ctr).await
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

pub(crate) async fn upgraded<S: AsyncWrite + Unpin>(sock: &mut S) -> Result<()> {
    sock.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: skiff-stream\r\nConnection: Upgrade\r\n\r\n",
    )
    .await?;
    Ok(())
}

/// Where the last `n` lines of `data` start.
pub fn tail_offset(data: &[u8], n: usize) -> usize {
    if n == 0 {
        return data.len();
    }
    let mut seen = 0;
    let end = if data.ends_with(b"\n") {
        data.len() - 1
    } else {
        data.len()
    };
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

fn instance_running(rt: &std::sync::Mutex<Runtime>, name: &str, instance: u64) -> bool {
    lock(rt)
        .containers
        .get(name)
        .is_some_and(|c| c.running && c.instance == instance)
}

async fn logs<S: AsyncRead + AsyncWrite + Unpin>(
    sock: &mut S,
    rt: &std::sync::Mutex<Runtime>,
    req: &Req,
    ctr: CtrRuntime,
) -> Result<()> {
    let previous = req.flag("previous");
    let path = if previous {
        ctr.previous_log.clone()
    } else {
        ctr.log.clone()
    };
    let Some(path) = path.filter(|p| p.exists()) else {
        let msg = if previous {
            format!(
                "previous terminated container {:?} in pod {:?} not found",
                req.container, req.pod
            )
        } else {
            format!(
                "container {:?} in pod {:?} is waiting to start: ContainerCreating",
                req.container, req.pod
            )
        };
        return respond_error(sock, 400, "BadRequest", &msg).await;
    };
    let mut file = tokio::fs::File::open(&path).await?;
    let data = tokio::fs::read(&path).await?;
    let start = match req.get("tailLines").and_then(|v| v.parse::<i64>().ok()) {
        Some(n) if n >= 0 => tail_offset(&data, n as usize),
        _ => 0,
    };
    upgraded(sock).await?;
    file.seek(SeekFrom::Start(start as u64)).await?;
    let follow = req.flag("follow") && !previous;
    let mut buf = vec![0u8; 32 * 1024];
    let mut sent: usize = 0;
    let mut limit = req
        .get("limitBytes")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    if !follow {
        // Without follow, the log as it was when asked (tailLines counted then).
        limit = limit.min(data.len() - start);
    }
    loop {
        let n = file.read(&mut buf).await?;
        if n > 0 {
            let n = n.min(limit - sent);
            sock.write_all(&buf[..n]).await?;
            sent += n;
            if sent >= limit {
                break;
            }
            continue;
        }
        if !follow || !instance_running(rt, &req.container, ctr.instance) {
            // One last read: output written just before the exit.
            let n = file.read(&mut buf).await?;
            if n > 0 {
                let n = n.min(limit - sent);
                sock.write_all(&buf[..n]).await?;
                if follow {
                    continue;
                }
            }
            break;
        }
        // Stop when the client has gone (a read on the socket returns EOF).
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(100), sock.read(&mut probe)).await
        {
            break;
        }
    }
    sock.shutdown().await?;
    Ok(())
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

/// The terminal `script` (process `pid`) made for its child, once it exists.
fn child_terminal(pid: u32) -> Option<String> {
    let dir = std::fs::read_dir("/proc").ok()?;
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let ppid = stat[close + 2..].split_whitespace().nth(1);
        if ppid == Some(pid.to_string().as_str()) {
            let tty = std::fs::read_link(format!("/proc/{child}/fd/0")).ok()?;
            let tty = tty.to_string_lossy().into_owned();
            return tty.starts_with("/dev/pts/").then_some(tty);
        }
    }
    None
}

/// Applies resize messages (`{"Width":W,"Height":H}`) to the terminal of the
/// process `pid` made, in order (kubectl sends size+1 then the size, to force a
/// redraw): setting the pty's size makes the kernel send SIGWINCH to its
/// foreground.
fn resizer(pid: u32) -> mpsc::UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let mut tty = None;
        while let Some(data) = rx.recv().await {
            let Ok(size) = serde_json::from_slice::<serde_json::Value>(&data) else {
                continue;
            };
            let (Some(w), Some(h)) = (size["Width"].as_u64(), size["Height"].as_u64()) else {
                continue;
            };
            // The first resize arrives with the session, before `script` forked.
            for _ in 0..40 {
                if tty.is_some() {
                    break;
                }
                tty = tokio::task::spawn_blocking(move || child_terminal(pid))
                    .await
                    .ok()
                    .flatten();
                if tty.is_none() {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
            let Some(t) = &tty else { continue };
            let _ = tokio::process::Command::new("stty")
                .args(["-F", t, "rows", &h.to_string(), "cols", &w.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
    });
    tx
}

/// The exec status a v5 client reads on channel 3.
pub fn exit_status(argv: &[String], code: i32) -> serde_json::Value {
    if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({"metadata": {}, "status": "Failure",
               "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", argv.join(" ")),
               "reason": "NonZeroExitCode",
               "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    }
}

async fn pump<R: AsyncRead + Unpin>(mut r: R, ch: u8, out: mpsc::Sender<(u8, Vec<u8>)>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.send((ch, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
}

async fn exec<S: AsyncRead + AsyncWrite + Send + 'static>(
    sock: S,
    rt: &std::sync::Mutex<Runtime>,
    req: &Req,
    ctr: &CtrRuntime,
    sandbox: u32,
    argv: Vec<String>,
) -> Result<()> {
    let tty = req.flag("tty");
    let want_stdin = req.flag("stdin");
    let mut cmd = ctr.exec_target(sandbox).command(&argv, tty);
    cmd.stdin(if want_stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let (mut rd, mut wr) = tokio::io::split(sock);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let st = json!({"metadata": {}, "status": "Failure", "message": format!("exec failed: {e}"), "reason": "InternalError"});
            write_frame(&mut wr, STATUS, st.to_string().as_bytes()).await?;
            return Ok(());
        }
    };
    let pgid = child.id().unwrap_or(0);
    lock(rt).execs.push(pgid);
    let (tx, mut frames) = mpsc::channel::<(u8, Vec<u8>)>(64);
    let mut pumps = Vec::new();
    if let Some(o) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(o, STDOUT, tx.clone())));
    }
    if let Some(e) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(e, STDERR, tx.clone())));
    }
    drop(tx);
    let mut stdin = child.stdin.take();
    // Client -> process: stdin and close frames; EOF means the client has gone.
    let (gone_tx, mut gone_rx) = tokio::sync::oneshot::channel::<()>();
    let resize = resizer(pgid);
    let input = tokio::spawn(async move {
        loop {
            match read_frame(&mut rd).await {
                Ok(Some((STDIN, data))) => {
                    if let Some(s) = stdin.as_mut() {
                        if s.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Ok(Some((CLOSE, data))) if data.first() == Some(&STDIN) => stdin = None,
                Ok(Some((RESIZE, data))) if tty => {
                    let _ = resize.send(data);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let _ = gone_tx.send(());
    });
    let mut client_gone = false;
    loop {
        tokio::select! {
            f = frames.recv() => match f {
                Some((ch, data)) => {
                    if write_frame(&mut wr, ch, &data).await.is_err() {
                        client_gone = true;
                        break;
                    }
                }
                None => break,
            },
            _ = &mut gone_rx, if !client_gone => {
                client_gone = true;
                runtime::signal_group(pgid, "KILL").await;
            }
        }
    }
    let code = child.wait().await.map(runtime::exit_code).unwrap_or(255);
    input.abort();
    lock(rt).execs.retain(|p| *p != pgid);
    if !client_gone {
        let st = exit_status(&argv, code);
        let _ = write_frame(&mut wr, STATUS, st.to_string().as_bytes()).await;
        let _ = wr.shutdown().await;
    }
    Ok(())
}

async fn attach<S: AsyncRead + AsyncWrite + Send + 'static>(
    sock: S,
    rt: &std::sync::Mutex<Runtime>,
    req: &Req,
    ctr: CtrRuntime,
) -> Result<()> {
    let (mut rd, mut wr) = tokio::io::split(sock);
    // Output is followed from here on: positioned before any input is forwarded, so
    // what the container answers to the first line typed is never skipped.
    let mut output = match ctr.log.clone() {
        Some(path) => {
            let mut file = tokio::fs::File::open(&path).await?;
            file.seek(SeekFrom::End(0)).await?;
            Some(file)
        }
        None => None,
    };
    let stdin = if req.flag("stdin") {
        ctr.stdin.clone()
    } else {
        None
    };
    let stdin_once = ctr.stdin_once;
    let input_stdin = stdin.clone();
    let resize = ctr.pid.filter(|_| ctr.tty).map(resizer);
    let input = tokio::spawn(async move {
        loop {
            match read_frame(&mut rd).await {
                Ok(Some((STDIN, data))) => {
                    if let Some(s) = &input_stdin {
                        let mut g = s.lock().await;
                        if let Some(w) = g.as_mut() {
                            if w.write_all(&data).await.is_err() {
                                *g = None;
                            }
                        }
                    }
                }
                Ok(Some((CLOSE, data))) if data.first() == Some(&STDIN) => {
                    if let (Some(s), true) = (&input_stdin, stdin_once) {
                        *s.lock().await = None;
                    }
                }
                Ok(Some((RESIZE, data))) => {
                    if let Some(r) = &resize {
                        let _ = r.send(data);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        // stdinOnce: the container's stdin closes after the first attach ends.
        if let (Some(s), true) = (&input_stdin, stdin_once) {
            *s.lock().await = None;
        }
    });
    let Some(mut file) = output.take() else {
        return Ok(());
    };
    let mut buf = vec![0u8; 16 * 1024];
    let out_ch = STDOUT;
    loop {
        let n = file.read(&mut buf).await?;
        if n > 0 {
            if write_frame(&mut wr, out_ch, &buf[..n]).await.is_err() {
                input.abort();
                return Ok(());
            }
            continue;
        }
        if !instance_running(rt, &req.container, ctr.instance) {
            let n = file.read(&mut buf).await?;
            if n > 0 {
                let _ = write_frame(&mut wr, out_ch, &buf[..n]).await;
                continue;
            }
            break;
        }
        if input.is_finished() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    input.abort();
    let st = json!({"metadata": {}, "status": "Success"});
    let _ = write_frame(&mut wr, STATUS, st.to_string().as_bytes()).await;
    let _ = wr.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let r =
            parse_target("/exec/default/web/c?command=sh&command=-c&command=echo%20hi&stdout=true")
                .unwrap();
        assert_eq!(r.kind, "exec");
        assert_eq!(r.all("command"), ["sh", "-c", "echo hi"]);
        assert!(r.flag("stdout"));
        assert!(parse_target("/exec/x").is_none());
    }

    #[test]
    fn only_the_api_server_certificate_is_served() {
        assert_eq!(refusal(Some(API_SERVER_CLIENT_CN), "GET"), None);
        assert_eq!(
            refusal(None, "GET"),
            Some((401, "Unauthorized", "Unauthorized".into()))
        );
        let (code, reason, msg) = refusal(Some("system:node:n2"), "POST").unwrap();
        assert_eq!((code, reason), (403, "Forbidden"));
        assert_eq!(
            msg,
            "Forbidden (user=system:node:n2, verb=create, resource=nodes, subresource=proxy)"
        );
    }

    /// A CA, a serving certificate for 127.0.0.1 and client certificates, as
    /// the cluster's pki makes them.
    struct Pki {
        dir: tempfile::TempDir,
        ca_pem: String,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    impl Pki {
        fn new() -> Self {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca.distinguished_name
                .push(rcgen::DnType::CommonName, "test-ca");
            let cert = ca.self_signed(&key).unwrap();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("ca.crt"), cert.pem()).unwrap();
            let (serving, serving_key) = {
                let k = rcgen::KeyPair::generate().unwrap();
                let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
                p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
                let issuer = rcgen::Issuer::new(
                    ca.clone(),
                    rcgen::KeyPair::from_pem(&key.serialize_pem()).unwrap(),
                );
                (p.signed_by(&k, &issuer).unwrap().pem(), k.serialize_pem())
            };
            std::fs::write(dir.path().join("serving.crt"), serving).unwrap();
            std::fs::write(dir.path().join("serving.key"), serving_key).unwrap();
            Self {
                dir,
                ca_pem: cert.pem(),
                issuer: rcgen::Issuer::new(ca, key),
            }
        }

        fn client(&self, cn: &str) -> (String, String) {
            let k = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            (
                p.signed_by(&k, &self.issuer).unwrap().pem(),
                k.serialize_pem(),
            )
        }

        fn server(&self) -> Arc<rustls::ServerConfig> {
            let d = self.dir.path();
            tls_config(
                &d.join("serving.crt"),
                &d.join("serving.key"),
                &d.join("ca.crt"),
            )
            .unwrap()
        }
    }

    /// Connects with `client` (certificate, key) and returns whom the
    /// endpoint saw; `Err` if the handshake failed on the endpoint's side.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        ca_pem: &str,
        client: Option<(String, String)>,
    ) -> Result<Option<String>, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let tls = tokio_rustls::TlsAcceptor::from(server)
                .accept(sock)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(client_of(&tls))
        });
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name =
            rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
        let conn = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, sock)
            .await;
        if let Ok(mut c) = conn {
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await;
            let _ = c.flush().await;
        }
        accept.await.unwrap()
    }

    #[tokio::test]
    async fn the_endpoint_speaks_tls_and_knows_the_api_server_by_its_certificate() {
        let pki = Pki::new();
        let server = pki.server();
        let seen = handshake(
            server.clone(),
            &pki.ca_pem,
            Some(pki.client(API_SERVER_CLIENT_CN)),
        )
        .await
        .unwrap();
        assert_eq!(seen.as_deref(), Some(API_SERVER_CLIENT_CN));
        assert_eq!(refusal(seen.as_deref(), "GET"), None);
        // No certificate: connected (for /healthz), but refused as 401.
        let seen = handshake(server.clone(), &pki.ca_pem, None).await.unwrap();
        assert_eq!(seen, None);
        assert_eq!(refusal(None, "GET").map(|r| r.0), Some(401));
        // Another identity of the same CA: 403.
        let seen = handshake(
            server.clone(),
            &pki.ca_pem,
            Some(pki.client("system:node:n2")),
        )
        .await
        .unwrap();
        assert_eq!(refusal(seen.as_deref(), "GET").map(|r| r.0), Some(403));
        // A certificate another CA signed does not get through the handshake.
        let other = Pki::new();
        assert!(handshake(
            server,
            &pki.ca_pem,
            Some(other.client(API_SERVER_CLIENT_CN))
        )
        .await
        .is_err());
    }

    #[test]
    fn tls_config_names_what_is_missing() {
        let pki = Pki::new();
        let d = pki.dir.path();
        let e = tls_config(
            &d.join("nope.crt"),
            &d.join("serving.key"),
            &d.join("ca.crt"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("serving certificate"), "{e:#}");
    }

    #[test]
    fn tails() {
        let d = b"a\nb\nc\n";
        assert_eq!(&d[tail_offset(d, 2)..], b"b\nc\n");
        assert_eq!(&d[tail_offset(d, 5)..], d);
        assert_eq!(tail_offset(d, 0), d.len());
        let d = b"a\nb";
        assert_eq!(&d[tail_offset(d, 1)..], b"b");
    }

    #[test]
    fn exit_statuses() {
        let s = exit_status(&["false".into()], 1);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "1");
        assert_eq!(exit_status(&[], 0)["status"], "Success");
    }
}

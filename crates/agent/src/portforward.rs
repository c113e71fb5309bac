//! `pods/portforward` on the node: one forwarded connection per request.
//!
//! The API server asks `GET /portForward/{ns}/{pod}/{port}?podUID=...` with
//! `Upgrade: skiff-stream` (see [`crate::stream`]), once for every connection
//! a client forwards. The agent connects to `localhost:{port}` *inside the
//! pod's network namespace*, as kubelet's runtime does (so a server bound to
//! the pod's 127.0.0.1 is reachable too), and answers `101` followed by the
//! connection's raw bytes both ways; a half close travels in both directions.
//! When nothing listens, the answer is a `Status` whose message is upstream's
//! error text, which the API server writes on the client's error stream.

use std::io;
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long a connect inside the pod may take (it is local: refusals are immediate).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Go's text for an errno (`connection refused`), which upstream's message
/// carries: the OS's description with a lower-case first letter, no number.
fn go_errno_text(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::TimedOut {
        return "i/o timeout".into();
    }
    let text = match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code).to_string(),
        None => e.to_string(),
    };
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Go's `net.Dial` error: `dial tcp4 127.0.0.1:81: connect: connection refused`.
fn dial_error(network: &str, addr: &SocketAddr, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::TimedOut {
        return format!("dial {network} {addr}: i/o timeout");
    }
    format!("dial {network} {addr}: connect: {}", go_errno_text(e))
}

/// Connects to `addr` from a thread that joined the network namespace at
/// `netns` first. The thread is made for this and ends with it: a namespace
/// switch is per thread, so no pooled thread is ever left in a pod's namespace.
fn connect_inside(
    netns: String,
    addrs: Vec<SocketAddr>,
) -> io::Result<Vec<io::Result<StdTcpStream>>> {
    let worker = std::thread::Builder::new()
        .name("portforward-connect".into())
        .spawn(move || -> io::Result<Vec<io::Result<StdTcpStream>>> {
            let ns = std::fs::File::open(&netns)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            let mut tries = Vec::new();
            for addr in addrs {
                let r = StdTcpStream::connect_timeout(&addr, CONNECT_TIMEOUT);
                let ok = r.is_ok();
                tries.push(r);
                if ok {
                    break;
                }
            }
            Ok(tries)
        })?;
    worker
        .join()
        .map_err(|_| io::Error::other("the connecting thread panicked"))?
}

/// Opens `localhost:port` inside the network namespace of the sandbox
/// process `sandbox`: IPv4 first, then IPv6, as containerd does. `Err` is
/// upstream's message for the client's error stream.
pub async fn connect(sandbox: u32, pod: &str, port: u16) -> Result<TcpStream, String> {
    let netns = format!("/proc/{sandbox}/ns/net");
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();
    let wrap = |inner: String| {
        format!(
            "error forwarding port {port} to pod {pod}, uid : failed to execute portforward in network namespace {netns:?}: {inner}"
        )
    };
    let path = netns.clone();
    let tries = tokio::task::spawn_blocking(move || connect_inside(path, vec![v4, v6]))
        .await
        .map_err(|e| wrap(e.to_string()))?
        .map_err(|e| wrap(format!("failed to enter the network namespace: {e}")))?;
    let mut errors = Vec::new();
    for (r, (network, addr)) in tries.into_iter().zip([("tcp4", v4), ("tcp6", v6)]) {
        match r {
            Ok(s) => {
                s.set_nonblocking(true).map_err(|e| wrap(e.to_string()))?;
                let s = TcpStream::from_std(s).map_err(|e| wrap(e.to_string()))?;
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => errors.push(dial_error(network, &addr, &e)),
        }
    }
    let (e4, e6) = (
        errors.first().cloned().unwrap_or_default(),
        errors.get(1).cloned().unwrap_or_default(),
    );
    Err(wrap(format!(
        "failed to connect to localhost:{port} inside namespace {pod:?}, IPv4: {e4} IPv6 {e6} "
    )))
}

/// The port of a request's path segment: 1-65535, as kubelet checks it.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) => Err(format!("port {s:?} must be > 0")),
        Ok(p) => Ok(p),
        Err(e) => Err(format!("unable to parse {s:?} as a port: {e}")),
    }
}

/// Serves one forwarded connection to `port` (the request's last path
/// segment) of the pod whose sandbox process is `sandbox`; `pod` names the
/// pod in messages (its UID, as upstream names the sandbox).
pub async fn serve<S>(
    mut sock: S,
    sandbox: Option<u32>,
    pod: &str,
    port: &str,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let port = match parse_port(port) {
        Ok(p) => p,
        Err(msg) => return crate::stream::respond_error(&mut sock, 400, "BadRequest", &msg).await,
    };
    let Some(sandbox) = sandbox else {
        let msg = format!("pod {pod:?} has no running sandbox");
        return crate::stream::respond_error(&mut sock, 400, "BadRequest", &msg).await;
    };
    let mut conn = match connect(sandbox, pod, port).await {
        Ok(c) => c,
        Err(msg) => {
            return crate::stream::respond_error(&mut sock, 500, "InternalError", &msg).await
        }
    };
    crate::stream::upgraded(&mut sock).await?;
    // Each side's end of input becomes a half close on the other.
    let _ = tokio::io::copy_bidirectional(&mut sock, &mut conn).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_go() {
        let refused = io::Error::from_raw_os_error(111);
        assert_eq!(
            dial_error("tcp4", &([127, 0, 0, 1], 81).into(), &refused),
            "dial tcp4 127.0.0.1:81: connect: connection refused"
        );
        let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, 81).into();
        assert_eq!(
            dial_error("tcp6", &v6, &io::Error::from_raw_os_error(99)),
            "dial tcp6 [::1]:81: connect: cannot assign requested address"
        );
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("8080"), Ok(8080));
        assert!(parse_port("0").unwrap_err().contains("must be > 0"));
        assert!(parse_port("x").unwrap_err().contains("unable to parse"));
        assert!(parse_port("70000").is_err());
    }

    #[tokio::test]
    async fn a_refused_port_gives_upstreams_message() {
        // Our own namespace stands in for the pod's: nothing listens on the port
        // a closed listener had.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let me = std::process::id();
        match connect(me, "p-uid", port).await {
            Ok(_) => panic!("connected to a closed port"),
            Err(msg) => {
                assert!(
                    msg.starts_with(&format!(
                        "error forwarding port {port} to pod p-uid, uid : failed to execute portforward in network namespace \"/proc/{me}/ns/net\": failed to connect to localhost:{port} inside namespace \"p-uid\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 [::1]:{port}: connect: "
                    )),
                    "{msg}"
                );
            }
        }
    }
}

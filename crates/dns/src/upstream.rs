//! Forwarding names outside the cluster zone to the node's resolvers, and the
//! check that keeps skiff from being an open resolver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use crate::request::Transport;
use crate::settings::contains;

/// How long one upstream gets before the next is tried.
const TRY_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends `query` to each upstream in turn; the first matching response wins.
/// The response is relayed unchanged (a truncated UDP answer makes the client
/// retry over TCP, which is then forwarded over TCP).
pub async fn forward(
    upstreams: &[SocketAddr],
    query: &[u8],
    transport: Transport,
) -> Option<Vec<u8>> {
    if query.len() < 2 {
        return None;
    }
    for up in upstreams {
        let attempt = async {
            match transport {
                Transport::Udp => udp(*up, query).await,
                Transport::Tcp => tcp(*up, query).await,
            }
        };
        match timeout(TRY_TIMEOUT, attempt).await {
            Ok(Ok(resp)) if resp.len() >= 12 && resp[..2] == query[..2] => return Some(resp),
            Ok(Err(e)) => tracing::debug!(upstream = %up, error = %e, "upstream failed"),
            _ => tracing::debug!(upstream = %up, "upstream timed out"),
        }
    }
    None
}

async fn udp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from anyone but the upstream.
    sock.connect(up).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        if n >= 12 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(up).await?;
    let len = u16::try_from(query.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut msg = Vec::with_capacity(query.len() + 2);
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(query);
    s.write_all(&msg).await?;
    let n = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Whether `client` may have outside names forwarded: loopback, the pod
/// network, and the node's own addresses (a bind to the address succeeds only
/// if it is local). Everyone else gets REFUSED for outside names.
pub fn may_recurse(client: IpAddr, allowed: &[(IpAddr, u8)]) -> bool {
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(client),
        v4 => v4,
    };
    client.is_loopback()
        || allowed.iter().any(|net| contains(*net, client))
        || std::net::UdpSocket::bind(SocketAddr::new(client, 0)).is_ok()
}

/// Upstreams from `/etc/resolv.conf`, minus any that would loop back to us.
pub fn from_resolv_conf(avoid: &[IpAddr]) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    crate::settings::resolv_conf_nameservers(&text)
        .into_iter()
        .filter(|a| !avoid.contains(&a.ip()))
        .collect()
}

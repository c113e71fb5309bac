//! Forwarding names outside the cluster zone to the node's resolvers, and the
//! check that keeps skiff from being an open resolver.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use crate::request::Transport;
use crate::settings::contains;

/// How long one upstream gets before the next is tried.
const TRY_TIMEOUT: Duration = Duration::from_secs(2);

/// Forwards to the node's resolvers, refusing to forward to itself.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    /// The exact packets (with their fresh ids) on their way upstream. One of
    /// them arriving as a request means an upstream leads back to us (e.g.
    /// resolv.conf names an address our wildcard socket serves): answering
    /// SERVFAIL at once breaks the loop instead of amplifying it.
    inflight: Mutex<HashSet<Vec<u8>>>,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self {
            upstreams,
            inflight: Mutex::new(HashSet::new()),
        }
    }

    /// Whether `packet` is one of our own forwards come back.
    pub fn is_loop(&self, packet: &[u8]) -> bool {
        self.inflight
            .lock()
            .map(|s| s.contains(packet))
            .unwrap_or(false)
    }

    /// Sends `query` to each upstream in turn under a fresh id; the first
    /// matching response wins and goes back with the client's id. The
    /// response is otherwise relayed unchanged (a truncated UDP answer makes
    /// the client retry over TCP, which is then forwarded over TCP).
    pub async fn forward(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        if query.len() < 12 {
            return None;
        }
        let mut ours = query.to_vec();
        ours[..2].copy_from_slice(&rand::random::<u16>().to_be_bytes());
        let inserted = self
            .inflight
            .lock()
            .map(|mut s| s.insert(ours.clone()))
            .unwrap_or(false);
        let mut result = None;
        for up in &self.upstreams {
            let attempt = async {
                match transport {
                    Transport::Udp => udp(*up, &ours).await,
                    Transport::Tcp => tcp(*up, &ours).await,
                }
            };
            match timeout(TRY_TIMEOUT, attempt).await {
                Ok(Ok(mut resp)) if resp.len() >= 12 && resp[..2] == ours[..2] => {
                    resp[..2].copy_from_slice(&query[..2]);
                    result = Some(resp);
                    break;
                }
                Ok(Err(e)) => tracing::debug!(upstream = %up, error = %e, "upstream failed"),
                _ => tracing::debug!(upstream = %up, "upstream timed out"),
            }
        }
        if inserted {
            if let Ok(mut s) = self.inflight.lock() {
                s.remove(&ours);
            }
        }
        result
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pods_and_the_node_may_recurse() {
        let pods = [("10.244.0.0".parse().unwrap(), 16)];
        for ok in [
            "127.0.0.1",
            "127.0.0.9",
            "::1",
            "10.244.3.4",
            "::ffff:10.244.0.9",
        ] {
            assert!(may_recurse(ok.parse().unwrap(), &pods), "{ok}");
        }
        // TEST-NET addresses are never the machine's own.
        for no in ["192.0.2.7", "198.51.100.1", "2001:db8::1"] {
            assert!(!may_recurse(no.parse().unwrap(), &pods), "{no}");
        }
    }

    #[tokio::test]
    async fn a_packet_we_forwarded_is_a_loop() {
        let f = Forwarder::new(Vec::new());
        let q = vec![0u8; 20];
        assert!(!f.is_loop(&q));
        // No upstreams: nothing answers, and nothing stays in flight.
        assert_eq!(f.forward(&q, Transport::Udp).await, None);
        assert!(f.inflight.lock().map(|s| s.is_empty()).unwrap_or(false));
    }
}

//! How a joined node reaches the API servers (k3s's agent load balancer): its
//! components dial a TCP forwarder on loopback, which connects to one of the
//! cluster's servers, staying with the last one that answered and moving on
//! when it refuses or does not answer. The servers come from
//! `default/kubernetes`'s endpoints (every live API server, see the API
//! server's `services::peers`), refreshed while the node runs; `--server` is
//! the first and the fallback. TLS is end to end: the forwarder only moves
//! bytes, and every server's certificate names 127.0.0.1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Endpoints;
use tokio::net::{TcpListener, TcpStream};

/// A server that neither accepts nor refuses within this is skipped (a dead
/// machine drops the SYN; a dead process on a live one is refused at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the list of servers is read again: a server that joined must be
/// known before the one this node talks to dies, or the node is cut off until
/// the next read (one GET per node every few seconds is cheap).
const REFRESH_EVERY: Duration = Duration::from_secs(3);

/// The servers, in the order they are tried, and which one answered last.
#[derive(Debug)]
struct Servers {
    list: Vec<SocketAddr>,
    preferred: usize,
}

impl Servers {
    /// The order to try: the last that answered, then the rest in turn.
    fn order(&self) -> Vec<SocketAddr> {
        let n = self.list.len();
        (0..n)
            .map(|i| self.list[(self.preferred + i) % n])
            .collect()
    }

    /// A new list from the endpoints; `fallback` (`--server`) goes last if
    /// absent, and the preferred server stays preferred if still listed.
    fn replace(&mut self, mut list: Vec<SocketAddr>, fallback: SocketAddr) {
        list.sort();
        list.dedup();
        if !list.contains(&fallback) {
            list.push(fallback);
        }
        let current = self.list.get(self.preferred).copied();
        self.preferred = current
            .and_then(|c| list.iter().position(|s| *s == c))
            .unwrap_or(0);
        self.list = list;
    }
}

/// A running forwarder.
pub struct Balancer {
    /// Where the node's components dial: `127.0.0.1:<ephemeral port>`.
    pub local: SocketAddr,
    servers: Arc<Mutex<Servers>>,
    fallback: SocketAddr,
}

impl Balancer {
    /// Starts forwarding to `server` (`--server`, resolved) until the list is read.
    pub async fn start(server: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the API server forwarder on 127.0.0.1")?;
        let local = listener.local_addr()?;
        let servers = Arc::new(Mutex::new(Servers {
            list: vec![server],
            preferred: 0,
        }));
        tokio::spawn(accept(listener, servers.clone()));
        Ok(Self {
            local,
            servers,
            fallback: server,
        })
    }

    /// Keeps the list current from `default/kubernetes`'s endpoints.
    pub fn follow(&self, client: kube::Client) {
        let servers = self.servers.clone();
        let fallback = self.fallback;
        tokio::spawn(async move {
            let api: kube::Api<Endpoints> = kube::Api::namespaced(client, "default");
            loop {
                match api.get_opt("kubernetes").await {
                    Ok(Some(eps)) => {
                        let list = addresses(&eps);
                        if !list.is_empty() {
                            lock(&servers).replace(list, fallback);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot read the API servers' endpoints"),
                }
                tokio::time::sleep(REFRESH_EVERY).await;
            }
        });
    }
}

fn lock(s: &Mutex<Servers>) -> std::sync::MutexGuard<'_, Servers> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The servers an Endpoints object names.
fn addresses(eps: &Endpoints) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for subset in eps.subsets.iter().flatten() {
        let ports: Vec<u16> = subset
            .ports
            .iter()
            .flatten()
            .filter_map(|p| u16::try_from(p.port).ok())
            .collect();
        for a in subset.addresses.iter().flatten() {
            if let Ok(ip) = a.ip.parse::<std::net::IpAddr>() {
                out.extend(ports.iter().map(|p| SocketAddr::new(ip, *p)));
            }
        }
    }
    out
}

async fn accept(listener: TcpListener, servers: Arc<Mutex<Servers>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let servers = servers.clone();
        tokio::spawn(async move {
            let order = lock(&servers).order();
            for server in order {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
                    Ok(Ok(upstream)) => {
                        {
                            let mut s = lock(&servers);
                            if let Some(i) = s.list.iter().position(|x| *x == server) {
                                if s.preferred != i {
                                    tracing::info!(%server, "API server connections now go here");
                                }
                                s.preferred = i;
                            }
                        }
                        let _ = upstream.set_nodelay(true);
                        let _ = client.set_nodelay(true);
                        let (mut a, mut b) = (client, upstream);
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                        return;
                    }
                    Ok(Err(e)) => tracing::debug!(%server, error = %e, "API server refused"),
                    Err(_) => tracing::debug!(%server, "API server did not answer"),
                }
            }
            tracing::warn!("no API server answered; the connection is dropped");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn the_last_server_that_answered_is_tried_first_and_kept_across_refreshes() {
        let mut s = Servers {
            list: vec![a("10.0.0.1:6443")],
            preferred: 0,
        };
        s.replace(
            vec![a("10.0.0.3:6443"), a("10.0.0.2:6443")],
            a("10.0.0.1:6443"),
        );
        // The one that answered last (the fallback) stays first.
        assert_eq!(
            s.order(),
            vec![a("10.0.0.1:6443"), a("10.0.0.2:6443"), a("10.0.0.3:6443")]
        );
        s.preferred = 1;
        s.replace(
            vec![a("10.0.0.3:6443"), a("10.0.0.4:6443")],
            a("10.0.0.1:6443"),
        );
        assert_eq!(s.order()[0], a("10.0.0.3:6443"));
    }

    #[tokio::test]
    async fn connections_move_to_a_server_that_answers() {
        let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dead_addr = dead.local_addr().expect("addr");
        drop(dead);
        let live = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let live_addr = live.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut c, _)) = live.accept().await {
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let _ = c.write_all(b"live").await;
                });
            }
        });
        let b = Balancer::start(dead_addr).await.expect("start");
        lock(&b.servers).replace(vec![dead_addr, live_addr], dead_addr);
        use tokio::io::AsyncReadExt;
        let mut c = TcpStream::connect(b.local).await.expect("connect");
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).await.expect("read");
        assert_eq!(buf, b"live");
        assert_eq!(lock(&b.servers).order()[0], live_addr);
    }
}

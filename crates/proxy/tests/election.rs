//! The load-balancer address election end to end, over real HTTP: several
//! "nodes" (one [`Election`] each, its own kube client) against a tiny
//! in-process Lease API (create, read, list, update and delete with
//! resourceVersion preconditions, as the API server answers them). Each node
//! reaches the API through its own listener, which a test can cut to play a
//! dead or partitioned node. No network namespace, no skiff.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use skiff_proxy::announce::{Addresses, Election};
use skiff_proxy::election::{
    lease_name, LEASE_DURATION, RENEW_DEADLINE, RENEW_PERIOD, ROUND_TIMEOUT,
};
use skiff_proxy::metrics::Metrics;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::Instant;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";

/// The Leases of kube-system, with resourceVersions.
#[derive(Default)]
struct Store {
    rv: u64,
    leases: BTreeMap<String, Value>,
}

fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": reason, "reason": reason, "code": code}),
    )
}

impl Store {
    fn stamp(&mut self, mut obj: Value) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        obj
    }

    fn handle(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let name = path
            .strip_prefix(LEASES)
            .and_then(|r| r.strip_prefix('/'))
            .map(str::to_string);
        let version = |v: &Value| {
            v["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string)
        };
        match (method, name) {
            ("GET", None) => (
                200,
                json!({"kind": "LeaseList", "apiVersion": "coordination.k8s.io/v1",
                       "metadata": {"resourceVersion": self.rv.to_string()},
                       "items": self.leases.values().cloned().collect::<Vec<_>>()}),
            ),
            ("GET", Some(n)) => match self.leases.get(&n) {
                Some(l) => (200, l.clone()),
                None => status(404, "NotFound"),
            },
            ("POST", None) => {
                let n = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if self.leases.contains_key(&n) {
                    return status(409, "AlreadyExists");
                }
                let l = self.stamp(body);
                self.leases.insert(n, l.clone());
                (201, l)
            }
            ("PUT", Some(n)) => {
                let Some(old) = self.leases.get(&n) else {
                    return status(404, "NotFound");
                };
                if version(&body).is_some_and(|v| Some(v) != version(old)) {
                    return status(409, "Conflict");
                }
                let l = self.stamp(body);
                self.leases.insert(n, l.clone());
                (200, l)
            }
            ("DELETE", Some(n)) => {
                let Some(old) = self.leases.get(&n) else {
                    return status(404, "NotFound");
                };
                let want = body["preconditions"]["resourceVersion"].as_str();
                if want.is_some_and(|w| Some(w.to_string()) != version(old)) {
                    return status(409, "Conflict");
                }
                let l = self.leases.remove(&n).unwrap_or(Value::Null);
                (200, l)
            }
            _ => status(405, "MethodNotAllowed"),
        }
    }

    fn holder(&self, addr: Ipv4Addr) -> Option<String> {
        let l = self.leases.get(&lease_name(addr))?;
        l["spec"]["holderIdentity"].as_str().map(str::to_string)
    }
}

type Shared = Arc<Mutex<Store>>;

/// Serves HTTP/1.1 on one connection: requests with a Content-Length body.
async fn serve_conn(conn: tokio::net::TcpStream, store: Shared, cut: Arc<AtomicBool>) {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default();
        let path = target.split('?').next().unwrap_or_default().to_string();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        if cut.load(Ordering::SeqCst) {
            // A dead node's requests never come back.
            std::future::pending::<()>().await;
        }
        let (code, value) = store.lock().expect("store").handle(&method, &path, &body);
        let text = value.to_string();
        // One write: head and body apart would meet delayed ACKs (40 ms).
        let reply = format!(
            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One node: its election and the switch that cuts it off the API.
struct Node {
    election: Election,
    cut: Arc<AtomicBool>,
}

impl Node {
    fn announced(&self) -> Addresses {
        self.election.announced.borrow().clone()
    }
}

async fn node(store: &Shared, name: &str) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cut = Arc::new(AtomicBool::new(false));
    let (s, c) = (store.clone(), cut.clone());
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve_conn(conn, s.clone(), c.clone()));
        }
    });
    let url = format!("http://127.0.0.1:{port}").parse().expect("url");
    let client = kube::Client::try_from(kube::Config::new(url)).expect("client");
    Node {
        election: Election::start(client, name, Metrics::default()),
        cut,
    }
}

fn addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 60, last)
}

fn set(addrs: &[Ipv4Addr]) -> Addresses {
    addrs.iter().copied().collect()
}

/// Waits until `f` holds, checking every 20 ms; how long it took.
async fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Slack for a loaded machine on top of the protocol's own bounds.
const SLACK: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_lone_node_announces_at_once_and_releases() {
    let store = Shared::default();
    let a = node(&store, "a").await;
    a.election.want(set(&[addr(1)]));
    let took = until(SLACK, "announced", || a.announced() == set(&[addr(1)])).await;
    println!("a lone node announced its address {took:?} after wanting it");
    assert_eq!(
        store.lock().expect("store").holder(addr(1)).as_deref(),
        Some("a")
    );
    a.election.want(set(&[]));
    until(SLACK, "silent", || a.announced().is_empty()).await;
    until(SLACK, "Lease deleted", || {
        store.lock().expect("store").leases.is_empty()
    })
    .await;
}

#[tokio::test]
async fn one_holder_per_address_and_takeover_when_it_dies() {
    let store = Shared::default();
    let nodes = [
        node(&store, "a").await,
        node(&store, "b").await,
        node(&store, "c").await,
    ];
    let all = set(&[addr(1), addr(2), addr(3), addr(4)]);
    for n in &nodes {
        n.election.want(all.clone());
    }
    // Every address is announced by exactly one node.
    let disjoint = |nodes: &[Node]| {
        let mut seen = BTreeSet::new();
        nodes
            .iter()
            .all(|n| n.announced().iter().all(|a| seen.insert(*a)))
    };
    until(SLACK, "all announced", || {
        nodes
            .iter()
            .flat_map(Node::announced)
            .collect::<Addresses>()
            == all
    })
    .await;
    assert!(disjoint(&nodes));
    // The holder of 192.168.60.1 dies: its API calls hang from now on.
    let holder = store.lock().expect("store").holder(addr(1)).expect("held");
    let dead = nodes
        .iter()
        .position(|n| n.announced().contains(&addr(1)))
        .expect("a holder");
    assert_eq!(holder, ["a", "b", "c"][dead]);
    nodes[dead].cut.store(true, Ordering::SeqCst);
    let died = Instant::now();
    let mut quiet = None;
    let mut moved = None;
    while moved.is_none() {
        // Never two nodes at once, at any moment of the move.
        assert!(disjoint(&nodes), "two nodes announce one address");
        if quiet.is_none() && !nodes[dead].announced().contains(&addr(1)) {
            quiet = Some(died.elapsed());
        }
        if nodes.iter().any(|n| n.announced().contains(&addr(1))) && quiet.is_some() {
            moved = Some(died.elapsed());
        }
        assert!(
            died.elapsed() < LEASE_DURATION + RENEW_PERIOD + SLACK,
            "not moved"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (quiet, moved) = (quiet.unwrap_or_default(), moved.unwrap_or_default());
    println!(
        "holder cut off: silent after {quiet:?} (deadline {RENEW_DEADLINE:?}), address moved after {moved:?} (lease {LEASE_DURATION:?} + renew {RENEW_PERIOD:?})"
    );
    assert!(quiet <= RENEW_DEADLINE + ROUND_TIMEOUT + SLACK);
    // Not before the Lease could have expired: the dead node renewed at most
    // one renew period before it was cut.
    assert!(
        moved + RENEW_PERIOD >= LEASE_DURATION,
        "moved too early: {moved:?}"
    );
    // The dead node's other addresses moved too; the living keep theirs.
    until(
        LEASE_DURATION + RENEW_PERIOD + SLACK,
        "everything moved",
        || {
            nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != dead)
                .flat_map(|(_, n)| n.announced())
                .collect::<Addresses>()
                == all
        },
    )
    .await;
    assert!(nodes[dead].announced().is_empty());
    assert!(disjoint(&nodes));
}

#[tokio::test]
async fn a_stopped_node_hands_over_at_once() {
    let store = Shared::default();
    let a = node(&store, "a").await;
    a.election.want(set(&[addr(1)]));
    until(SLACK, "a announces", || a.announced() == set(&[addr(1)])).await;
    let b = node(&store, "b").await;
    b.election.want(set(&[addr(1)]));
    tokio::time::sleep(RENEW_PERIOD).await;
    assert!(b.announced().is_empty(), "b took a live Lease");
    // Stopping a releases its Lease: b takes it within one renew period, not
    // after the Lease would have expired.
    drop(a);
    let took = until(RENEW_PERIOD + SLACK, "b announces", || {
        b.announced() == set(&[addr(1)])
    })
    .await;
    println!("stopped holder: address moved after {took:?}");
}

#[tokio::test]
async fn restart_keeps_own_lease_and_waits_out_a_stale_one() {
    let store = Shared::default();
    // Left by an earlier run of this node, and by a node that is gone; 1 and
    // 2 are still wanted, 3 and 4 not.
    for (a, holder) in [
        (addr(1), "a"),
        (addr(2), "gone"),
        (addr(3), "gone"),
        (addr(4), "a"),
    ] {
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": lease_name(a), "namespace": "kube-system"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 6}});
        let mut s = store.lock().expect("store");
        let l = s.stamp(lease);
        s.leases.insert(lease_name(a), l);
    }
    let a = node(&store, "a").await;
    a.election.want(set(&[addr(1), addr(2)]));
    until(SLACK, "own Lease renewed", || {
        a.announced().contains(&addr(1))
    })
    .await;
    let gone = |x: Ipv4Addr| {
        let s = store.lock().expect("store");
        !s.leases.contains_key(&lease_name(x))
    };
    // Its own unwanted Lease is released at the first full round.
    until(RENEW_PERIOD + SLACK, "own unwanted Lease released", || {
        gone(addr(4))
    })
    .await;
    assert!(
        !gone(addr(3)),
        "a live-looking Lease of another node was deleted"
    );
    let started = Instant::now();
    let took = until(
        LEASE_DURATION + RENEW_PERIOD + SLACK,
        "stale Lease taken",
        || a.announced().contains(&addr(2)),
    )
    .await;
    println!("stale Lease of a gone node taken after {took:?}");
    assert!(started.elapsed() + RENEW_PERIOD >= LEASE_DURATION);
    // The gone node's unwanted Lease is cleared away once expired.
    until(RENEW_PERIOD + SLACK, "expired Lease deleted", || {
        gone(addr(3))
    })
    .await;
    let s = store.lock().expect("store");
    assert_eq!(s.holder(addr(2)).as_deref(), Some("a"));
    assert_eq!(a.announced(), set(&[addr(1), addr(2)]));
    let transitions = &s.leases[&lease_name(addr(2))]["spec"]["leaseTransitions"];
    assert_eq!(transitions, &json!(1));
}

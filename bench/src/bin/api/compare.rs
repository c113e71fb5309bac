//! The backend comparison (issue 16): ConfigMaps created through the API server on
//! SQLite and on a 3-member etcd, beside the etcd backend's own `create` (no API) and
//! beside raw etcd-client create-if-absent transactions on the same etcd, all with the
//! same number of concurrent clients, in interleaved rounds.
//!
//! The raw transaction is what `EtcdBackend::create` sends at minimum (compare
//! `create_revision == 0`, put), with the bytes the server stored for a ConfigMap, so
//! "skiff on etcd ÷ raw etcd" is what skiff keeps of what etcd can do.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use etcd_client::{Compare, CompareOp, ConnectOptions, KvClient, Txn, TxnOp};
use http::{Method, StatusCode};
use serde_json::json;
use skiff_bench::client::{Proto, Server};
use skiff_bench::report;
use skiff_bench::stats::{fmt_duration, fmt_rate, Samples};
use skiff_store::{Backend, SqliteBackend};

use crate::writes::{self, ApiCreator, Creates};
use crate::{cpu, etcd, ratio, NAMESPACE};

pub const HEADING: &str = "## API server on etcd (bench/api)";

/// Where the raw floor writes: beside skiff's `/skiff`, same length, so the etcd keys
/// of both are the same size.
const RAW_PREFIX: &str = "/floor";

/// The namespace key the diagnostic side reads before each create.
const RAW_NAMESPACE: &str = "/floor/registry/namespaces/bench";

/// What one run compares; `etcd` is required (it is what this comparison is about).
pub struct Plan {
    pub sqlite: bool,
    pub clients: usize,
    pub configmaps: usize,
    pub gets: usize,
    pub proto: Proto,
    pub command: String,
    /// See `nscache.rs`.
    pub cached_namespace: bool,
}

/// The ways of creating, in the order of the table's columns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    SqliteApi,
    EtcdApi,
    EtcdStore,
    /// Diagnostic: a linearizable read of the namespace's key before each txn, as the
    /// API server's namespace check makes today (see the docs section).
    RawGetTxn,
    RawTxn,
}

const N: usize = 5;
const SIDES: [Side; N] = [
    Side::SqliteApi,
    Side::EtcdApi,
    Side::EtcdStore,
    Side::RawGetTxn,
    Side::RawTxn,
];

fn cm_name(i: usize) -> String {
    format!("cm-{i:06}")
}

/// The store key the API server uses for ConfigMap `name` in the bench namespace.
fn cm_key(name: &str) -> String {
    format!("/registry/configmaps/{NAMESPACE}/{name}")
}

/// A ConfigMap of typical size and shape: an app's properties file and a few
/// environment values (about 0.6 KB as stored).
pub fn configmap(name: &str) -> Bytes {
    Bytes::from(
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app": "web", "bench": "api"}},
            "data": {
                "app.properties": "log.level=info\nlisten=0.0.0.0:8080\n\
                    metrics.enabled=true\ncache.size=256\n\
                    upstream=http://backend.bench.svc.cluster.local:9090\n\
                    retry.max=5\nretry.backoff=250ms\n",
                "FEATURE_FLAGS": "checkout,search,recommendations",
                "TIMEOUT_SECONDS": "30",
            },
        })
        .to_string(),
    )
}

/// Everything the measurement talks to.
pub struct Targets {
    pub sqlite: Option<Server>,
    pub etcd: Server,
    /// The very store the etcd-backed API server uses (same client, same feed).
    pub store: Arc<dyn Backend>,
    /// A plain etcd-client connection to the same cluster, for the floor.
    pub raw: KvClient,
    pub etcd_pids: Vec<u32>,
}

/// Connects the floor's client: one client for all of its tasks, as the store has one
/// for all of the server's requests, and with the store's `require_leader`.
pub async fn raw_client(endpoints: Vec<String>) -> Result<KvClient> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_require_leader(true);
    let client = etcd_client::Client::connect(endpoints, Some(options))
        .await
        .context("connecting the raw etcd client")?;
    Ok(client.kv_client())
}

#[derive(Default)]
struct Results {
    creates: [Creates; N],
    cpu: [cpu::Split; N],
    gets: [Samples; N],
    /// etcd requests handled during each side's creates, by gRPC method.
    requests: [BTreeMap<String, f64>; N],
}

/// Every member's handled gRPC requests by method, read off the async threads.
async fn etcd_requests() -> Result<BTreeMap<String, f64>> {
    Ok(tokio::task::spawn_blocking(etcd::Members::requests).await?)
}

/// `clients` tasks sharing `kv`, each sending one create-if-absent transaction at a
/// time, until every key is written (one round), adding to `total`.
async fn raw_txn(
    kv: &KvClient,
    value: &Bytes,
    keys: Vec<Vec<u8>>,
    read_first: Option<&'static str>,
    clients: usize,
    total: &mut Creates,
) -> Result<()> {
    let (count, keys) = (keys.len(), Arc::new(keys));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients.max(1) {
        let (mut kv, keys, next, value) = (kv.clone(), keys.clone(), next.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency = Samples::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(key) = keys.get(i) else { break };
                let t = Instant::now();
                if let Some(read) = read_first {
                    kv.get(read, None).await?;
                }
                // Built inside the clock, as the store builds its own per create.
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.clone(), value.to_vec(), None)]);
                let resp = kv.txn(txn).await?;
                ensure!(
                    resp.succeeded(),
                    "raw txn: {} exists already",
                    String::from_utf8_lossy(key)
                );
                latency.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latency)
        }));
    }
    for t in tasks {
        total
            .latency
            .extend(t.await.context("raw etcd client panicked")??);
    }
    total.add_round(count, started.elapsed());
    Ok(())
}

fn raw_key(name: &str) -> Vec<u8> {
    format!("{RAW_PREFIX}{}", cm_key(name)).into_bytes()
}

/// Keys of the store-direct side: outside `/registry`, so the API server never sees
/// them as objects.
fn direct_key(name: &str) -> String {
    format!("/bench-direct/configmaps/{name}")
}

/// Creates and gets on every side; returns the docs section and the printed tables.
pub async fn measure(plan: &Plan, t: &Targets) -> Result<(String, String)> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    let mut sqlite = match &t.sqlite {
        Some(server) => {
            writes::create_namespace(server, plan.proto).await?;
            let c = ApiCreator::connect_to(server, plan.proto, plan.clients, path.clone());
            Some(c.await?)
        }
        None => None,
    };
    writes::create_namespace(&t.etcd, plan.proto).await?;
    let mut on_etcd = ApiCreator::connect_to(&t.etcd, plan.proto, plan.clients, path).await?;

    // Warm-up, not counted: connections, the leader's caches, the server's first
    // requests. The floor then writes exactly the bytes the server stored.
    let warm: Vec<String> = (0..writes::PER_ROUND / 5)
        .map(|i| format!("warm-{i:04}"))
        .collect();
    let bodies = || warm.iter().map(|n| configmap(n)).collect::<Vec<_>>();
    let mut scratch = Creates::default();
    if let Some(c) = &mut sqlite {
        c.create_bodies(bodies(), &mut scratch).await?;
    }
    on_etcd.create_bodies(bodies(), &mut scratch).await?;
    let store = t.store.clone();
    let first = cm_key(&warm[0]);
    let value = tokio::task::spawn_blocking(move || store.get(&first))
        .await??
        .context("the first ConfigMap is not in the etcd store")?
        .value;
    eprintln!("a stored ConfigMap is {} bytes", value.len());
    let direct = |names: &[String]| names.iter().map(|n| direct_key(n)).collect();
    let raw = |names: &[String]| names.iter().map(|n| raw_key(n)).collect();
    let ns_raw = |names: &[String]| names.iter().map(|n| raw_key(&format!("ns-{n}"))).collect();
    writes::direct(
        t.store.clone(),
        value.clone(),
        direct(&warm),
        plan.clients,
        &mut scratch,
    )
    .await?;
    raw_txn(&t.raw, &value, raw(&warm), None, plan.clients, &mut scratch).await?;
    // The namespace the diagnostic side reads before each create, as the server does.
    t.raw
        .clone()
        .put(RAW_NAMESPACE, b"{}".to_vec(), None)
        .await?;

    let sides: Vec<Side> = SIDES
        .into_iter()
        .filter(|s| plan.sqlite || *s != Side::SqliteApi)
        .collect();
    eprintln!(
        "creating {} ConfigMaps on each of {sides:?} with {} clients each, in rounds of {}",
        plan.configmaps,
        plan.clients,
        writes::PER_ROUND
    );
    let mut r = Results::default();
    for (round, range) in writes::rounds(plan.configmaps).enumerate() {
        let names: Vec<String> = range.map(cm_name).collect();
        // Each side leads in turn: whatever the machine does meanwhile hits all alike.
        for k in 0..sides.len() {
            let side = sides[(round + k) % sides.len()];
            let i = side as usize;
            let requests = etcd_requests().await?;
            let before = cpu::snapshot_with(&t.etcd_pids);
            match side {
                Side::SqliteApi => {
                    if let Some(c) = &mut sqlite {
                        let b = names.iter().map(|n| configmap(n)).collect();
                        c.create_bodies(b, &mut r.creates[i]).await?;
                    }
                }
                Side::EtcdApi => {
                    let b = names.iter().map(|n| configmap(n)).collect();
                    on_etcd.create_bodies(b, &mut r.creates[i]).await?;
                }
                Side::EtcdStore => {
                    let (store, keys) = (t.store.clone(), direct(&names));
                    writes::direct(store, value.clone(), keys, plan.clients, &mut r.creates[i])
                        .await?;
                }
                Side::RawTxn | Side::RawGetTxn => {
                    let (keys, read) = match side {
                        Side::RawGetTxn => (ns_raw(&names), Some(RAW_NAMESPACE)),
                        _ => (raw(&names), None),
                    };
                    raw_txn(&t.raw, &value, keys, read, plan.clients, &mut r.creates[i]).await?;
                }
            }
            r.cpu[i] = r.cpu[i].plus(before.split_since());
            for (method, n) in etcd_requests().await? {
                let since = n - requests.get(&method).copied().unwrap_or(0.0);
                *r.requests[i].entry(method).or_default() += since;
            }
        }
    }
    drop((sqlite, on_etcd));

    eprintln!("timing {} gets on each side, one at a time", plan.gets);
    let picks = picks(plan.configmaps, plan.gets);
    for side in &sides {
        let i = *side as usize;
        r.gets[i] = gets(*side, plan, t, &picks).await?;
    }
    let (main, cpu) = tables(plan, &sides, &mut r, value.len());
    let printed = format!("{main}\n{cpu}");
    Ok((docs_section(plan, &main, &cpu, value.len()), printed))
}

/// Which objects to get: spread over all, the same on every side.
fn picks(n: usize, count: usize) -> Vec<usize> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        })
        .collect()
}

/// Get latency on one side, one request at a time.
async fn gets(side: Side, plan: &Plan, t: &Targets, picks: &[usize]) -> Result<Samples> {
    let mut out = Samples::default();
    match side {
        Side::SqliteApi | Side::EtcdApi => {
            let server = match side {
                Side::SqliteApi => t.sqlite.as_ref().context("no SQLite server")?,
                _ => &t.etcd,
            };
            let mut conn = server.connect(plan.proto).await?;
            for &i in picks {
                let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps/{}", cm_name(i));
                let start = Instant::now();
                conn.expect(StatusCode::OK, Method::GET, &path, None, Bytes::new())
                    .await?;
                out.push(start.elapsed());
            }
        }
        Side::EtcdStore => {
            let (store, picks) = (t.store.clone(), picks.to_vec());
            out = tokio::task::spawn_blocking(move || {
                let mut out = Samples::default();
                for i in picks {
                    let key = direct_key(&cm_name(i));
                    let start = Instant::now();
                    let found = store.get(&key)?;
                    out.push(start.elapsed());
                    ensure!(found.is_some(), "{key} is missing from the etcd store");
                }
                Ok(out)
            })
            .await??;
        }
        // The same reads as the raw side: no column of its own.
        Side::RawGetTxn => {}
        Side::RawTxn => {
            let mut kv = t.raw.clone();
            for &i in picks {
                let key = raw_key(&cm_name(i));
                let start = Instant::now();
                let resp = kv.get(key, None).await?;
                out.push(start.elapsed());
                ensure!(!resp.kvs().is_empty(), "a raw key is missing from etcd");
            }
        }
    }
    Ok(out)
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::SqliteApi => "skiff on SQLite",
            Side::EtcdApi => "skiff on etcd",
            Side::EtcdStore => "EtcdBackend (no API)",
            Side::RawGetTxn => "raw etcd get+txn",
            Side::RawTxn => "raw etcd txn",
        }
    }
}

/// The main table (one column per side, then the two ratios) and the CPU table.
fn tables(plan: &Plan, sides: &[Side], r: &mut Results, bytes: usize) -> (String, String) {
    let (sq, et, raw) = (
        Side::SqliteApi as usize,
        Side::EtcdApi as usize,
        Side::RawTxn as usize,
    );
    let no_sqlite = !sides.contains(&Side::SqliteApi);
    // One row: a figure per side ("—" where a side did not run or has none), then
    // etcd ÷ SQLite and skiff-on-etcd ÷ raw txn.
    let row = |what: String, figures: [String; N], ratios: [Option<String>; 2]| {
        let mut cells = vec![what];
        for (side, figure) in SIDES.iter().zip(figures) {
            cells.push(if sides.contains(side) {
                figure
            } else {
                "—".into()
            });
        }
        cells.extend(ratios.map(|r| r.unwrap_or_else(|| "—".into())));
        cells
    };
    let mut header = vec!["measure".to_string()];
    header.extend(SIDES.iter().map(|s| s.label().to_string()));
    header.extend(["etcd ÷ SQLite".into(), "skiff-on-etcd ÷ raw txn".into()]);
    let mut rows = vec![header];
    let c = &r.creates;
    rows.push(row(
        format!("create throughput, {} clients", plan.clients),
        std::array::from_fn(|i| fmt_rate(c[i].rate())),
        [
            (!no_sqlite).then(|| ratio(c[et].rate(), c[sq].rate())),
            Some(ratio(c[et].rate(), c[raw].rate())),
        ],
    ));
    let paired = |a: usize, b: usize| {
        c[a].paired_ratio(&c[b])
            .map_or("n/a".into(), |x| ratio(x, 1.0))
    };
    rows.push(row(
        format!(
            "create throughput, median of {} paired rounds",
            c[et].round_rates.len()
        ),
        std::array::from_fn(|_| String::new()),
        [(!no_sqlite).then(|| paired(et, sq)), Some(paired(et, raw))],
    ));
    let mut time_rows = |what: String, samples: &mut [Samples; N]| {
        for (q, pick) in [
            ("p50", Samples::p50 as fn(&mut Samples) -> Duration),
            ("p99", Samples::p99),
        ] {
            let v: Vec<Duration> = samples.iter_mut().map(pick).collect();
            let secs = |i: usize| v[i].as_secs_f64();
            rows.push(row(
                format!("{what} {q}"),
                std::array::from_fn(|i| {
                    if samples[i].is_empty() {
                        "—".into()
                    } else {
                        fmt_duration(v[i])
                    }
                }),
                [
                    (!no_sqlite).then(|| ratio(secs(et), secs(sq))),
                    Some(ratio(secs(et), secs(raw))),
                ],
            ));
        }
    };
    let mut latency: [Samples; N] = std::array::from_fn(|i| r.creates[i].latency.clone());
    time_rows("create latency".into(), &mut latency);
    time_rows(
        format!("get ({} stored, one at a time)", plan.configmaps),
        &mut r.gets,
    );
    let main = report::grid(&rows);

    let mut cpu_rows = vec![vec![
        format!("CPU per create ({bytes} B)"),
        "API server threads".to_string(),
        "etcd client runtime".into(),
        "etcd members (3)".into(),
        "load generator".into(),
        "whole bench process + etcd".into(),
        "etcd requests per create".into(),
    ]];
    for side in sides {
        let i = *side as usize;
        let n = r.creates[i].count.max(1) as u32;
        let c = r.cpu[i];
        cpu_rows.push(vec![
            side.label().into(),
            fmt_duration(c.server / n),
            fmt_duration(c.store / n),
            fmt_duration(c.etcd / n),
            fmt_duration(c.client / n),
            fmt_duration((c.process + c.etcd) / n),
            per_create(&r.requests[i], n),
        ]);
    }
    (main, report::grid(&cpu_rows))
}

/// "Range 1.00 + Txn 1.00": the unary requests (streams end only with their stream)
/// etcd handled per create, over every member.
fn per_create(requests: &BTreeMap<String, f64>, creates: u32) -> String {
    let parts: Vec<String> = requests
        .iter()
        .map(|(m, n)| (m, n / f64::from(creates)))
        .filter(|(_, per)| *per >= 0.005)
        .map(|(m, per)| format!("{m} {per:.2}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" + ")
    }
}

fn docs_section(plan: &Plan, main: &str, cpu: &str, bytes: usize) -> String {
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{HEADING}\n\n\
Command: `{cmd}`\n\n\
Run {date} on a machine with `nproc` = {nproc}, **shared with other builds**; the load \
generator, both API servers and all three etcd members run on the same cores, inside a \
network namespace the benchmark made. The absolute figures are noisy; the ratios, \
measured side by side in this one run, are what to compare.\n\n\
{main}\n\
- Every side creates the same {n} objects with {clients} concurrent clients, each one \
request at a time, in interleaved rounds of {per_round} (each side leads in turn); the \
paired-round median is the ratio of neighbouring rounds.\n\
- skiff on SQLite / on etcd: ConfigMaps POSTed over HTTPS ({proto}) to an in-process API \
server whose store is a `SqliteBackend` (WAL, `synchronous=FULL`) or an `EtcdBackend` \
(as `--store etcd`) on 3 etcd {etcd} members (plain gRPC on 127.0.0.1-3). Both stores \
are on tmpfs, so fsync is nearly free on both sides: the ratio compares the software \
path, not this VM's disk.\n\
- EtcdBackend (no API): `Backend::create` of the stored bytes ({bytes} B) on {clients} \
threads, on the same store object the etcd-backed server uses.\n\
- raw etcd-client: {clients} tasks sharing one etcd-client connection, each sending \
`Txn(when create_revision(key) == 0, then put(key, value))` of the same {bytes} bytes: \
what `EtcdBackend::create` sends at minimum. Gets: one linearizable range read of a key.\n\
- Goal (issue 16): skiff-on-etcd create throughput ≥ 0.5× the raw etcd txn rate.\n\
{experiment}\n\
CPU per create on each side (user + system time from `/proc`, 10 ms resolution; etcd \
members counted per process):\n\n\
{cpu}",
        cmd = plan.command,
        n = plan.configmaps,
        clients = plan.clients,
        per_round = writes::PER_ROUND,
        proto = plan.proto.name(),
        etcd = etcd_version(),
        experiment = if plan.cached_namespace {
            "- **Experiment on** (`--experiment-cached-namespace`): the etcd-backed \
             server's reads of the bench namespace come from memory, as a cached \
             namespace check would.\n"
        } else {
            ""
        },
    )
}

/// `etcd --version`'s first line's version, for the record.
fn etcd_version() -> String {
    std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim_start_matches("etcd Version:").trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// For `main`: the inner run of the comparison, from set-up to the docs.
pub fn run(ns: &str, plan: &Plan, docs: Option<&std::path::Path>) -> Result<()> {
    use skiff_bench::runtime::runtime;
    eprintln!("starting 3 etcd members inside netns {ns}");
    let members = etcd::Members::start()?;
    let store = Arc::new(members.open()?);
    // tmpfs for SQLite too: see the docs note.
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-api-")
        .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm".into()
        } else {
            std::env::temp_dir()
        })?;
    let server_rt = runtime(cpu::SERVER, None)?;
    let client_rt = runtime(cpu::CLIENT, None)?;
    let mut stoppers = Vec::new();
    let mut start = |name: &str, backend: Arc<dyn Backend>| -> Result<Server> {
        let data_dir = dir.path().join(name);
        std::fs::create_dir_all(&data_dir)?;
        let running = server_rt.block_on(skiff_apiserver::start(
            crate::server_config(&data_dir),
            backend,
        ))?;
        stoppers.push(running.stopper());
        eprintln!("API server on {name} at {}", running.url);
        Server::new(running.addr, &data_dir)
    };
    let result = (|| {
        let sqlite = if plan.sqlite {
            let store = Arc::new(SqliteBackend::open(dir.path().join("sqlite.db"))?);
            Some(start("sqlite", store)?)
        } else {
            None
        };
        let backend: Arc<dyn Backend> = if plan.cached_namespace {
            eprintln!("experiment: the etcd server's namespace reads come from memory");
            Arc::new(crate::nscache::CachedNamespace::new(store.clone()))
        } else {
            store.clone()
        };
        let etcd_server = start("etcd", backend)?;
        let raw = client_rt.block_on(raw_client(members.endpoints()))?;
        let targets = Targets {
            sqlite,
            etcd: etcd_server,
            store: store.clone(),
            raw,
            etcd_pids: members.pids(),
        };
        client_rt.block_on(async {
            tokio::select! {
                r = measure(plan, &targets) => r,
                r = skiff_bench::netns::interrupted() => {
                    r.and_then(|()| Err(anyhow::anyhow!("interrupted")))
                }
            }
        })
    })();
    for s in &stoppers {
        s.stop();
    }
    client_rt.shutdown_timeout(Duration::from_secs(2));
    server_rt.shutdown_timeout(Duration::from_secs(2));
    drop(store);
    drop(members);
    let (section, printed) = result?;
    println!("\n{printed}");
    match docs {
        Some(path) => {
            report::write_section(path, HEADING, &section)?;
            eprintln!("recorded in {}", path.display());
        }
        None => eprintln!("not recording (--no-docs)"),
    }
    Ok(())
}

//! `bench/api`: the API server's create throughput, get/list latency and watch
//! fan-out, each printed beside the raw SQLite store doing the same work in the same
//! run. See `bench/README.md`.
//!
//! The binary first re-executes itself inside a network namespace it creates (see
//! `skiff_bench::netns`); the inner run starts the API server in-process on
//! 127.0.0.1 in that namespace, on a fresh SQLite store in a temp dir.
//!
//! With `--backends ...,etcd` (the default) it runs the backend comparison instead
//! (`compare.rs`): the API server on SQLite and on a 3-member etcd it starts in the
//! same namespace (`etcd.rs`), beside raw etcd-client transactions.

mod compare;
mod cpu;
mod etcd;
mod nscache;
mod rbac;
mod reads;
mod watch;
mod writes;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use skiff_bench::client::{Proto, Server};
use skiff_bench::netns;
use skiff_bench::report::{self, Table};
use skiff_bench::runtime::runtime;
use skiff_bench::stats::{fmt_duration, fmt_rate, thousands, Samples};
use skiff_store::{Backend, SqliteBackend};

/// Everything the benchmark writes lives in this namespace.
pub const NAMESPACE: &str = "bench";
/// The store prefix of the Services in `NAMESPACE` (the API server's key layout).
pub const PREFIX: &str = "/registry/services/bench/";

const HEADING: &str = "## API server (bench/api)";

pub fn name(i: usize) -> String {
    format!("svc-{i:06}")
}

pub fn key(i: usize) -> String {
    format!("{PREFIX}{}", name(i))
}

/// Benchmark the API server against the raw SQLite store, side by side.
#[derive(Parser, Debug, Clone)]
#[command(name = "api")]
struct Args {
    /// Services created (through the API, and into the raw store) and then read.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Concurrent watch streams.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Changes (merge patches) every watcher must receive.
    #[arg(long, default_value_t = 1_000)]
    changes: usize,
    /// Concurrent create clients, each on its own connection.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Get requests timed (random names, one at a time).
    #[arg(long, default_value_t = 2_000)]
    gets: usize,
    /// Full lists timed; 5x as many single pages, and as many page-by-page walks.
    #[arg(long, default_value_t = 10)]
    lists: usize,
    /// Stores to run the API server on. `sqlite` alone: the full suite against the raw
    /// SQLite store. With `etcd`: the backend comparison (creates and gets on each,
    /// beside the etcd backend alone and raw etcd-client transactions on a 3-member
    /// etcd this run starts), recorded in its own section.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,etcd")]
    backends: Vec<StoreKind>,
    /// ConfigMaps created on each side of the backend comparison.
    #[arg(long, default_value_t = 10_000)]
    configmaps: usize,
    /// Experiment: answer the etcd server's reads of the bench namespace from memory
    /// (as a cached namespace check would), to measure what that check costs.
    #[arg(long)]
    experiment_cached_namespace: bool,
    /// Run the RBAC comparison instead (issue 17): the same creates, gets, lists and
    /// watches as the admin and as a ServiceAccount bound to `edit`, side by side
    /// (`rbac.rs`), recorded in its own section. Uses --services (per identity),
    /// --clients, --gets, --lists, --watchers (per identity) and --changes.
    #[arg(long)]
    rbac: bool,
    /// RoleBindings unrelated to the benchmark in the cluster during `--rbac`.
    #[arg(long, default_value_t = 1_000)]
    other_bindings: usize,
    /// Speak keep-alive HTTP/1.1 instead of HTTP/2.
    #[arg(long)]
    http1: bool,
    /// Do not record the results in the docs file (for smoke runs).
    #[arg(long)]
    no_docs: bool,
    /// The file the results section is written into.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md"))]
    docs: PathBuf,
    /// Internal: the network namespace this run was re-executed in.
    #[arg(long = "inner", hide = true)]
    inner: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum StoreKind {
    Sqlite,
    Etcd,
}

impl Args {
    fn comparison(&self) -> bool {
        self.backends.contains(&StoreKind::Etcd)
    }

    /// The backend comparison's plan and its reproducing command.
    fn plan(&self) -> compare::Plan {
        let sqlite = self.backends.contains(&StoreKind::Sqlite);
        compare::Plan {
            sqlite,
            clients: self.clients,
            configmaps: self.configmaps,
            gets: self.gets,
            proto: self.proto(),
            command: format!(
                "cargo run --release -p skiff-bench --bin api -- --backends {} --clients {} \
                 --configmaps {} --gets {}{}{}",
                if sqlite { "sqlite,etcd" } else { "etcd" },
                self.clients,
                self.configmaps,
                self.gets,
                if self.http1 { " --http1" } else { "" },
                if self.experiment_cached_namespace {
                    " --experiment-cached-namespace"
                } else {
                    ""
                }
            ),
            cached_namespace: self.experiment_cached_namespace,
        }
    }

    /// The RBAC comparison's plan and its reproducing command.
    fn rbac_plan(&self) -> rbac::Plan {
        rbac::Plan {
            services: self.services,
            clients: self.clients,
            gets: self.gets,
            lists: self.lists,
            watchers: self.watchers,
            changes: self.changes,
            other_bindings: self.other_bindings,
            proto: self.proto(),
            command: format!(
                "cargo run --release -p skiff-bench --bin api -- --rbac --services {} \
                 --clients {} --gets {} --lists {} --watchers {} --changes {} \
                 --other-bindings {}{}",
                self.services,
                self.clients,
                self.gets,
                self.lists,
                self.watchers,
                self.changes,
                self.other_bindings,
                if self.http1 { " --http1" } else { "" }
            ),
        }
    }

    fn proto(&self) -> Proto {
        if self.http1 {
            Proto::Http1
        } else {
            Proto::Http2
        }
    }

    /// The command that reproduces this run, every size spelled out.
    fn command_line(&self) -> String {
        format!(
            "cargo run --release -p skiff-bench --bin api -- --backends sqlite --services {} \
             --watchers {} --changes {} --clients {} --gets {} --lists {}{}",
            self.services,
            self.watchers,
            self.changes,
            self.clients,
            self.gets,
            self.lists,
            if self.http1 { " --http1" } else { "" }
        )
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.inner {
        None => netns::run_outer("skiff-bench"),
        Some(ns) => inner(ns, &args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("bench/api: error: {e:#}");
        ExitCode::FAILURE
    })
}

fn inner(ns: &str, args: &Args) -> Result<()> {
    netns::verify_inside(ns)?;
    if args.rbac {
        anyhow::ensure!(
            args.services > 0 && args.clients > 0 && args.lists > 0 && args.changes > 0,
            "--services, --clients, --lists and --changes must be positive"
        );
        let docs = (!args.no_docs).then_some(args.docs.as_path());
        return rbac::run(ns, &args.rbac_plan(), docs);
    }
    if args.comparison() {
        anyhow::ensure!(
            args.configmaps > 0 && args.clients > 0,
            "--configmaps and --clients must be positive"
        );
        let docs = (!args.no_docs).then_some(args.docs.as_path());
        return compare::run(ns, &args.plan(), docs);
    }
    anyhow::ensure!(
        args.services > 0 && args.clients > 0 && args.lists > 0,
        "--services, --clients and --lists must be positive"
    );
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-api")
        .tempdir()?;
    let data_dir = dir.path().join("server");
    std::fs::create_dir_all(&data_dir)?;

    // Two runtimes, so server and load generator are told apart in the CPU figures
    // and neither can starve the other's scheduler; both default to one worker per core.
    let server_rt = runtime(cpu::SERVER, None)?;
    let client_rt = runtime(cpu::CLIENT, None)?;

    let store = Arc::new(SqliteBackend::open(data_dir.join("state.db"))?);
    let backend: Arc<dyn Backend> = store.clone();
    let running = server_rt.block_on(skiff_apiserver::start(server_config(&data_dir), backend))?;
    let stopper = running.stopper();
    let server = Server::new(running.addr, &data_dir)?;
    eprintln!("API server at {} (inside netns {ns})", running.url);

    let raw_store = Arc::new(SqliteBackend::open(dir.path().join("raw.db"))?);
    let result = client_rt.block_on(async {
        tokio::select! {
            r = measure(args, &server, store, raw_store) => r,
            r = netns::interrupted() => r.and_then(|()| Err(anyhow::anyhow!("interrupted"))),
        }
    });
    stopper.stop();
    client_rt.shutdown_timeout(Duration::from_secs(2));
    server_rt.shutdown_timeout(Duration::from_secs(2));
    let (section, table) = result?;
    println!("\n{table}");
    if args.no_docs {
        eprintln!("not recording (--no-docs)");
    } else {
        report::write_section(&args.docs, HEADING, &section)?;
        eprintln!("recorded in {}", args.docs.display());
    }
    drop(dir);
    Ok(())
}

/// The API server's configuration (any store): on 127.0.0.1, a free port.
pub fn server_config(data_dir: &std::path::Path) -> skiff_apiserver::Config {
    skiff_apiserver::Config {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: data_dir.to_path_buf(),
        // Compaction would add unrelated writes mid-measurement.
        compact_interval: Duration::from_secs(24 * 3600),
        compact_keep: i64::MAX / 2,
        // The defaults `skiff server` uses (a /12 of ClusterIPs: room for every Service).
        services: Default::default(),
        admission: Default::default(),
        tls_sans: Vec::new(),
        audit: None,
    }
}

/// The ratio column: skiff's figure divided by the floor's.
fn ratio(skiff: f64, floor: f64) -> String {
    if floor <= 0.0 {
        return "n/a".into();
    }
    let r = skiff / floor;
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

fn time_row(t: &mut Table, what: String, skiff: Duration, floor: Duration) {
    t.row(
        what,
        fmt_duration(skiff),
        fmt_duration(floor),
        ratio(skiff.as_secs_f64(), floor.as_secs_f64()),
    );
}

fn p50_p99_rows(t: &mut Table, what: &str, skiff: &mut Samples, floor: &mut Samples) {
    time_row(t, format!("{what} p50"), skiff.p50(), floor.p50());
    time_row(t, format!("{what} p99"), skiff.p99(), floor.p99());
}

/// Runs every phase; returns the docs section and the printed table.
async fn measure(
    args: &Args,
    server: &Server,
    store: Arc<SqliteBackend>,
    raw_store: Arc<SqliteBackend>,
) -> Result<(String, String)> {
    let (n, proto) = (args.services, args.proto());
    let mut cpu_table = Table::new(
        "API phase",
        "server CPU",
        "per request or event",
        "client CPU",
    );
    let mut cpu_row = |what: &str, ops: usize, split: cpu::Split| {
        cpu_table.row(
            what,
            fmt_duration(split.server),
            fmt_duration(split.server / ops.max(1) as u32),
            fmt_duration(split.client),
        );
    };

    writes::create_namespace(server, proto).await?;
    eprintln!(
        "creating {n} services through the API ({} clients, {}) and in a raw \
         SqliteBackend ({} threads), interleaved in rounds of {}",
        args.clients,
        proto.name(),
        args.clients,
        writes::PER_ROUND
    );
    let mut creator = writes::ApiCreator::connect(server, proto, args.clients).await?;
    let (mut api_create, mut raw_create) = (writes::Creates::default(), writes::Creates::default());
    let mut create_cpu = cpu::Split::default();
    let mut template = None;
    for (round, range) in writes::rounds(n).enumerate() {
        // Alternating which side goes first cancels any bias from the order itself
        // (e.g. the kernel writing back the previous side's dirty pages).
        if round % 2 == 1 {
            let value = template.clone().context("no template yet")?;
            writes::raw(
                raw_store.clone(),
                value,
                range.clone(),
                args.clients,
                &mut raw_create,
            )
            .await?;
        }
        let before = cpu::snapshot();
        creator.create(range.clone(), &mut api_create).await?;
        create_cpu = create_cpu.plus(before.split_since());
        if round % 2 == 0 {
            // The floor writes exactly the bytes the server stored for a Service.
            let value = match &template {
                Some(v) => v.clone(),
                None => template
                    .insert(
                        store
                            .get(&key(0))?
                            .context("the first service is not in the server's store")?
                            .value,
                    )
                    .clone(),
            };
            writes::raw(
                raw_store.clone(),
                value,
                range,
                args.clients,
                &mut raw_create,
            )
            .await?;
        }
    }
    drop(creator);
    cpu_row("create", n, create_cpu);
    template.context("no services were created")?;

    eprintln!(
        "timing {} gets and {} lists of each kind",
        args.gets, args.lists
    );
    let mut api_reads = reads::api(server, proto, n, args.gets, args.lists).await?;
    for (what, ops, split) in &api_reads.cpu {
        cpu_row(what, *ops, *split);
    }
    let mut raw_reads = reads::raw(store.clone(), n, args.gets, args.lists).await?;

    eprintln!(
        "{} watchers x {} changes through the API",
        args.watchers, args.changes
    );
    let before = cpu::snapshot();
    let mut api_watch =
        watch::api(server, proto, store.clone(), n, args.watchers, args.changes).await?;
    cpu_row(
        "watch (per event delivered)",
        api_watch.deliveries,
        before.split_since(),
    );
    eprintln!(
        "{} watchers x {} changes on the raw store",
        args.watchers, args.changes
    );
    let mut raw_watch = watch::raw(raw_store, n, args.watchers, args.changes).await?;

    let mut t = Table::new(
        "measure",
        "skiff API",
        "floor: raw SqliteBackend",
        "skiff ÷ floor",
    );
    t.row(
        format!("create throughput, {} clients", args.clients),
        fmt_rate(api_create.rate()),
        fmt_rate(raw_create.rate()),
        ratio(api_create.rate(), raw_create.rate()),
    );
    if let Some(r) = api_create.paired_ratio(&raw_create) {
        t.row(
            format!(
                "create throughput, median of {} paired rounds",
                api_create.round_rates.len()
            ),
            String::new(),
            String::new(),
            ratio(r, 1.0),
        );
    }
    let (mut ac, mut rc) = (api_create.latency, raw_create.latency);
    p50_p99_rows(&mut t, "create latency", &mut ac, &mut rc);
    let stored = thousands(n as u64);
    p50_p99_rows(
        &mut t,
        &format!("get ({stored} stored)"),
        &mut api_reads.get,
        &mut raw_reads.get,
    );
    time_row(
        &mut t,
        format!("list all {stored} p50"),
        api_reads.list_all.p50(),
        raw_reads.list_all.p50(),
    );
    p50_p99_rows(
        &mut t,
        &format!("list limit={}", reads::PAGE),
        &mut api_reads.list_page,
        &mut raw_reads.list_page,
    );
    time_row(
        &mut t,
        format!("list all in pages of {} p50", reads::PAGE),
        api_reads.list_walk.p50(),
        raw_reads.list_walk.p50(),
    );
    let fan = format!("{} watchers × {} changes", args.watchers, args.changes);
    time_row(
        &mut t,
        format!("{fan}: all delivered"),
        api_watch.all_delivered,
        raw_watch.all_delivered,
    );
    t.row(
        format!("{fan}: events delivered"),
        fmt_rate(api_watch.events_per_sec()),
        fmt_rate(raw_watch.events_per_sec()),
        ratio(api_watch.events_per_sec(), raw_watch.events_per_sec()),
    );
    p50_p99_rows(
        &mut t,
        "watch delivery latency",
        &mut api_watch.latency,
        &mut raw_watch.latency,
    );

    let table = t.markdown();
    let cpu = cpu_table.markdown();
    let printed = format!("{table}\n{cpu}");
    let section = docs_section(args, &table, &cpu);
    Ok((section, printed))
}

fn docs_section(args: &Args, table: &str, cpu: &str) -> String {
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{HEADING}\n\n\
Command: `{cmd}`\n\n\
Run {date} on a machine with `nproc` = {nproc}, **shared with other builds and with the \
load generator** (clients and server run in one process on the same cores, inside a \
network namespace the benchmark made, over HTTPS on 127.0.0.1 with {proto}). The absolute \
figures are noisy; only the ratios, measured side by side in this one run, are meaningful.\n\n\
{table}\n\
- Floor: the same operations as direct `Backend` calls on a `SqliteBackend` (WAL, \
`synchronous=FULL`, so every create or change is one fsynced transaction on both sides). \
Creates and the watch go to a second fresh store with the same value bytes the server \
stored; gets and lists read the server's own store file.\n\
- Creates alternate with the floor in rounds of {per_round}; fsync latency on a shared VM \
swings tenfold within seconds, so the median of the per-round ratios is the steadier \
figure.\n\
- Rates: a ratio below 1 is how much of the store's rate the API keeps. Times: a ratio \
above 1 is how many times longer the API takes.\n\
- Watch: the fan-out, with the same writes on both sides: one writer thread changes \
Services one after another straight on a store backend (get, set an annotation, update \
with the read revision as precondition): the server's own store for skiff, whose watch \
cache picks the changes up from the store's watch, and a second fresh store for the \
floor. skiff's watchers each have their own HTTPS connection to the API server and \
watch the namespace's Services from one resourceVersion; the floor's are \
`Backend::watch` receivers in-process. Delivery latency runs from the start of a change \
to a watcher parsing its event, so both sides include the durable write.\n\n\
CPU used by the server's threads and by the clients during each API phase (user + \
system time from `/proc`, 10 ms resolution):\n\n\
{cpu}",
        cmd = args.command_line(),
        proto = args.proto().name(),
        per_round = writes::PER_ROUND,
    )
}

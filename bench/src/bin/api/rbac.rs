//! RBAC enforcement beside the admin path (issue 17, `--rbac`): the same creates,
//! gets, lists and watches sent as the admin (group `system:masters`, which upstream
//! and skiff allow before RBAC is asked) and as a ServiceAccount whose only rights
//! come from a RoleBinding to the `edit` ClusterRole in the bench namespace, in one
//! run, in alternating rounds, against one API server.
//!
//! The ServiceAccount's token is what a pod gets: a TokenRequest bound to a Pod, so
//! every request verifies an ES256 JWT, checks that the ServiceAccount and the Pod
//! still exist with the token's uids, and asks the RBAC index. The cluster also
//! holds `--other-bindings` unrelated RoleBindings (and a tenth as many
//! ClusterRoles with ClusterRoleBindings), so the index is not trivially small.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use skiff_bench::client::{Conn, Proto, Server};
use skiff_bench::report::{self, Table};
use skiff_bench::runtime::runtime;
use skiff_bench::stats::{fmt_duration, fmt_rate, Samples};
use skiff_store::{Backend, SqliteBackend};

use crate::writes::{self, Creates};
use crate::{cpu, name, ratio, reads, watch, NAMESPACE};

pub const HEADING: &str = "## API server: RBAC enforced vs the admin path (bench/api --rbac)";

const ACCOUNT: &str = "bench-editor";
const POD: &str = "bench-client";
/// Namespaces the unrelated RoleBindings are spread over (the bench one among them).
const OTHER_NAMESPACES: usize = 10;
/// Gets and list pages are sent in rounds of this many per side.
const READ_ROUND: usize = 200;

/// What one run measures, and the command that reproduces it.
pub struct Plan {
    pub services: usize,
    pub clients: usize,
    pub gets: usize,
    pub lists: usize,
    pub watchers: usize,
    pub changes: usize,
    pub other_bindings: usize,
    pub proto: Proto,
    pub command: String,
}

/// The two identities, in the table's column order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    Rbac,
}

const BOTH: [Who; 2] = [Who::Admin, Who::Rbac];

/// One request of a round.
struct Req {
    method: Method,
    path: String,
    body: Bytes,
}

impl Req {
    fn get(path: String) -> Self {
        Req {
            method: Method::GET,
            path,
            body: Bytes::new(),
        }
    }
}

/// One side's figures for one operation: rates per round, latencies, server CPU.
#[derive(Default)]
struct Side {
    ops: Creates,
    cpu: cpu::Split,
}

/// Both sides of one operation.
#[derive(Default)]
struct Pair {
    admin: Side,
    rbac: Side,
}

impl Pair {
    fn side(&mut self, who: Who) -> &mut Side {
        match who {
            Who::Admin => &mut self.admin,
            Who::Rbac => &mut self.rbac,
        }
    }
}

/// Sends `reqs` over `conns` (each connection one request at a time, requests handed
/// out from one counter), each answered with `want`; one round of `side`.
async fn drive(
    conns: &mut Vec<Conn>,
    reqs: Vec<Req>,
    want: StatusCode,
    side: &mut Side,
) -> Result<()> {
    let count = reqs.len();
    let reqs = Arc::new(reqs);
    let next = Arc::new(AtomicUsize::new(0));
    let before = cpu::snapshot();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(conns.len());
    for mut conn in conns.drain(..) {
        let (next, reqs) = (next.clone(), reqs.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency = Samples::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = reqs.get(i) else { break };
                let ct = (!r.body.is_empty()).then_some("application/json");
                let t = Instant::now();
                conn.expect(want, r.method.clone(), &r.path, ct, r.body.clone())
                    .await?;
                latency.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>((conn, latency))
        }));
    }
    let mut failed = None;
    for t in tasks {
        match t.await.context("a client task panicked")? {
            Ok((conn, latency)) => {
                conns.push(conn);
                side.ops.latency.extend(latency);
            }
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    side.ops.add_round(count, started.elapsed());
    side.cpu = side.cpu.plus(before.split_since());
    Ok(())
}

/// The two sides' connections.
struct Clients {
    admin: Vec<Conn>,
    rbac: Vec<Conn>,
}

impl Clients {
    async fn connect(admin: &Server, rbac: &Server, proto: Proto, n: usize) -> Result<Self> {
        let (mut a, mut r) = (Vec::new(), Vec::new());
        for _ in 0..n.max(1) {
            a.push(admin.connect(proto).await?);
            r.push(rbac.connect(proto).await?);
        }
        Ok(Clients { admin: a, rbac: r })
    }

    /// One round on each side, `make(who)` giving its requests; the side that goes
    /// first alternates with `round`, so neither always meets a warmer or colder
    /// machine.
    async fn round(
        &mut self,
        round: usize,
        want: StatusCode,
        pair: &mut Pair,
        make: impl Fn(Who) -> Vec<Req>,
    ) -> Result<()> {
        let order = if round.is_multiple_of(2) {
            BOTH
        } else {
            [Who::Rbac, Who::Admin]
        };
        for who in order {
            let conns = match who {
                Who::Admin => &mut self.admin,
                Who::Rbac => &mut self.rbac,
            };
            drive(conns, make(who), want, pair.side(who)).await?;
        }
        Ok(())
    }
}

pub fn run(ns: &str, plan: &Plan, docs: Option<&Path>) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-rbac")
        .tempdir()?;
    let data_dir = dir.path().join("server");
    std::fs::create_dir_all(&data_dir)?;
    let server_rt = runtime(cpu::SERVER, None)?;
    let client_rt = runtime(cpu::CLIENT, None)?;
    let store: Arc<dyn Backend> = Arc::new(SqliteBackend::open(data_dir.join("state.db"))?);
    let running = server_rt.block_on(skiff_apiserver::start(
        crate::server_config(&data_dir),
        store,
    ))?;
    let stopper = running.stopper();
    let admin = Server::new(running.addr, &data_dir)?;
    eprintln!("API server at {} (inside netns {ns})", running.url);
    let result = client_rt.block_on(async {
        tokio::select! {
            r = measure(plan, &admin) => r,
            r = skiff_bench::netns::interrupted() => r.and_then(|()| Err(anyhow::anyhow!("interrupted"))),
        }
    });
    stopper.stop();
    client_rt.shutdown_timeout(Duration::from_secs(2));
    server_rt.shutdown_timeout(Duration::from_secs(2));
    let (table, cpu) = result?;
    println!("\n{table}\n{cpu}");
    match docs {
        None => eprintln!("not recording (--no-docs)"),
        Some(path) => {
            report::write_section(path, HEADING, &docs_section(plan, &table, &cpu))?;
            eprintln!("recorded in {}", path.display());
        }
    }
    Ok(())
}

async fn post(conn: &mut Conn, path: &str, body: Value) -> Result<Value> {
    let out = conn
        .expect(
            StatusCode::CREATED,
            Method::POST,
            path,
            Some("application/json"),
            Bytes::from(body.to_string()),
        )
        .await?;
    Ok(serde_json::from_slice(&out)?)
}

fn other_namespace(k: usize) -> String {
    if k == 0 {
        NAMESPACE.to_string()
    } else {
        format!("{NAMESPACE}-other-{k}")
    }
}

/// `--other-bindings` RoleBindings over `OTHER_NAMESPACES` namespaces, each for a user,
/// a group and a ServiceAccount of its own, to `view`, `edit` or a Role of that
/// namespace; a tenth as many ClusterRoles, each bound to a user by a
/// ClusterRoleBinding. None of them names the benchmark's ServiceAccount.
async fn unrelated_bindings(
    admin: &Server,
    proto: Proto,
    count: usize,
    clients: usize,
) -> Result<()> {
    let mut conn = admin.connect(proto).await?;
    for k in 1..OTHER_NAMESPACES {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other_namespace(k)}});
        post(&mut conn, "/api/v1/namespaces", body).await?;
    }
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let mut reqs = Vec::new();
    for k in 0..OTHER_NAMESPACES {
        let ns = other_namespace(k);
        for r in 0..10 {
            let role = json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": format!("other-role-{r}")},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
                           "resourceNames": [format!("cm-{r}")]}],
            });
            reqs.push(Req {
                method: Method::POST,
                path: format!("{rbac}/namespaces/{ns}/roles"),
                body: Bytes::from(role.to_string()),
            });
        }
    }
    for i in 0..count {
        let ns = other_namespace(i % OTHER_NAMESPACES);
        let role_ref = match i % 3 {
            0 => {
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"})
            }
            1 => {
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"})
            }
            _ => {
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("other-role-{}", i % 10)})
            }
        };
        let rb = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("other-{i:05}")},
            "roleRef": role_ref,
            "subjects": [
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("user-{i}")},
                {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": format!("group-{}", i % 50)},
                {"kind": "ServiceAccount", "name": format!("sa-{i}"), "namespace": ns},
            ],
        });
        reqs.push(Req {
            method: Method::POST,
            path: format!("{rbac}/namespaces/{ns}/rolebindings"),
            body: Bytes::from(rb.to_string()),
        });
    }
    for i in 0..count / 10 {
        let cr = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("other-{i:05}")},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}],
        });
        let crb = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("other-{i:05}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("other-{i:05}")},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("cluster-user-{i}")}],
        });
        reqs.push(Req {
            method: Method::POST,
            path: format!("{rbac}/clusterroles"),
            body: Bytes::from(cr.to_string()),
        });
        reqs.push(Req {
            method: Method::POST,
            path: format!("{rbac}/clusterrolebindings"),
            body: Bytes::from(crb.to_string()),
        });
    }
    let mut conns = Vec::new();
    for _ in 0..clients.max(1) {
        conns.push(admin.connect(proto).await?);
    }
    drive(&mut conns, reqs, StatusCode::CREATED, &mut Side::default()).await
}

/// The ServiceAccount, its RoleBinding to `edit`, a Pod that runs as it, and a token
/// bound to that Pod (what the kubelet would fetch for it): the RBAC side's server.
async fn service_account_client(admin: &Server, proto: Proto) -> Result<Server> {
    let mut conn = admin.connect(proto).await?;
    let base = format!("/api/v1/namespaces/{NAMESPACE}");
    post(
        &mut conn,
        &format!("{base}/serviceaccounts"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT}}),
    )
    .await?;
    post(
        &mut conn,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/rolebindings"),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("{ACCOUNT}-edit")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}],
        }),
    )
    .await?;
    let pod = post(
        &mut conn,
        &format!("{base}/pods"),
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD},
            "spec": {"serviceAccountName": ACCOUNT,
                     "containers": [{"name": "client", "image": "registry.k8s.io/pause:3.10"}]},
        }),
    )
    .await?;
    let uid = pod["metadata"]["uid"]
        .as_str()
        .context("the pod has no uid")?;
    let tr = post(
        &mut conn,
        &format!("{base}/serviceaccounts/{ACCOUNT}/token"),
        json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": POD, "uid": uid}},
        }),
    )
    .await?;
    let token = tr["status"]["token"]
        .as_str()
        .context("the TokenRequest has no status.token")?;
    admin.with_token(token)
}

/// Waits until the RBAC index has the ServiceAccount's binding, and checks that the
/// side is really RBAC-limited: `edit` in the bench namespace lists Services there
/// but may not list Nodes.
async fn wait_for_binding(rbac: &Server, proto: Proto) -> Result<()> {
    let mut conn = rbac.connect(proto).await?;
    let path = format!("/api/v1/namespaces/{NAMESPACE}/services?limit=1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = conn.call(Method::GET, &path, None, Bytes::new()).await?;
        match status {
            StatusCode::OK => break,
            StatusCode::FORBIDDEN if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            s => bail!(
                "the ServiceAccount's list of services: {s}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    let (status, _) = conn
        .call(Method::GET, "/api/v1/nodes", None, Bytes::new())
        .await?;
    ensure!(
        status == StatusCode::FORBIDDEN,
        "the ServiceAccount listed nodes ({status}): it is not limited by RBAC"
    );
    Ok(())
}

/// Everything the workload needs, measured; returns the results and CPU tables.
async fn measure(plan: &Plan, admin: &Server) -> Result<(String, String)> {
    let (n, proto) = (plan.services, plan.proto);
    let services = format!("/api/v1/namespaces/{NAMESPACE}/services");
    writes::create_namespace(admin, proto).await?;
    eprintln!(
        "{} unrelated RoleBindings over {OTHER_NAMESPACES} namespaces, {} ClusterRoles and bindings",
        plan.other_bindings,
        plan.other_bindings / 10
    );
    unrelated_bindings(admin, proto, plan.other_bindings, plan.clients).await?;
    let rbac = service_account_client(admin, proto).await?;
    wait_for_binding(&rbac, proto).await?;

    let mut clients = Clients::connect(admin, &rbac, proto, plan.clients).await?;
    eprintln!(
        "creating {n} services as each identity ({} clients each, {}), alternating rounds of {}",
        plan.clients,
        proto.name(),
        writes::PER_ROUND
    );
    // Admin creates svc-0..n, the ServiceAccount svc-n..2n: same bodies, same sizes.
    let mut create = Pair::default();
    for (round, range) in writes::rounds(n).enumerate() {
        clients
            .round(round, StatusCode::CREATED, &mut create, |who| {
                let offset = if who == Who::Admin { 0 } else { n };
                range
                    .clone()
                    .map(|i| Req {
                        method: Method::POST,
                        path: services.clone(),
                        body: writes::service(i + offset),
                    })
                    .collect()
            })
            .await?;
    }

    eprintln!(
        "{} gets per identity ({} clients each)",
        plan.gets, plan.clients
    );
    let picks = reads::picks(2 * n, plan.gets);
    let mut get = Pair::default();
    for (round, chunk) in picks.chunks(READ_ROUND).enumerate() {
        clients
            .round(round, StatusCode::OK, &mut get, |_| {
                chunk
                    .iter()
                    .map(|&i| Req::get(format!("{services}/{}", name(i))))
                    .collect()
            })
            .await?;
    }

    let pages = plan.lists * 5 * plan.clients;
    eprintln!(
        "{pages} list pages of {} and {} full lists per identity",
        reads::PAGE,
        plan.lists
    );
    let page_path = format!("{services}?limit={}", reads::PAGE);
    let mut page = Pair::default();
    let rounds = pages.div_ceil(READ_ROUND / 4).max(1);
    for round in 0..rounds {
        let count = (READ_ROUND / 4).min(pages - round * (READ_ROUND / 4));
        clients
            .round(round, StatusCode::OK, &mut page, |_| {
                (0..count).map(|_| Req::get(page_path.clone())).collect()
            })
            .await?;
    }
    let mut full = Pair::default();
    for round in 0..plan.lists {
        clients
            .round(round, StatusCode::OK, &mut full, |_| {
                vec![Req::get(services.clone())]
            })
            .await?;
    }

    eprintln!(
        "{} watchers per identity x {} changes, both at once",
        plan.watchers, plan.changes
    );
    let mut writer = admin.connect(proto).await?;
    let rv = watch::current_rv(&mut writer).await?;
    // One clock: both identities' watchers wait for the same changes, stamped once.
    let clock = watch::Clock::new(plan.changes);
    let admin_watch = watch::open(admin, proto, plan.watchers, &rv, &clock).await?;
    let rbac_watch = watch::open(&rbac, proto, plan.watchers, &rv, &clock).await?;
    watch::settle().await;
    watch::write_changes(&mut writer, n, &clock).await?;
    let mut admin_fan = watch::finish(&clock, admin_watch, plan.watchers).await?;
    let mut rbac_fan = watch::finish(&clock, rbac_watch, plan.watchers).await?;

    let mut t = Table::new(
        "measure",
        "admin (system:masters)",
        "ServiceAccount, RoleBinding to edit",
        "RBAC ÷ admin",
    );
    let stored = 2 * n;
    let ops_rows = |t: &mut Table, what: &str, pair: &mut Pair| {
        t.row(
            format!("{what}: ops/s"),
            fmt_rate(pair.admin.ops.rate()),
            fmt_rate(pair.rbac.ops.rate()),
            ratio(pair.rbac.ops.rate(), pair.admin.ops.rate()),
        );
        if let Some(r) = pair.rbac.ops.paired_ratio(&pair.admin.ops) {
            t.row(
                format!(
                    "{what}: ops/s, median of {} paired rounds",
                    pair.rbac.ops.round_rates.len()
                ),
                String::new(),
                String::new(),
                ratio(r, 1.0),
            );
        }
        for (label, p) in [("p50", 50.0), ("p99", 99.0)] {
            let (a, r) = (
                pair.admin.ops.latency.percentile(p),
                pair.rbac.ops.latency.percentile(p),
            );
            t.row(
                format!("{what}: latency {label}"),
                fmt_duration(a),
                fmt_duration(r),
                ratio(r.as_secs_f64(), a.as_secs_f64()),
            );
        }
    };
    ops_rows(
        &mut t,
        &format!("create, {} clients", plan.clients),
        &mut create,
    );
    ops_rows(
        &mut t,
        &format!("get ({stored} stored), {} clients", plan.clients),
        &mut get,
    );
    ops_rows(
        &mut t,
        &format!("list limit={}, {} clients", reads::PAGE, plan.clients),
        &mut page,
    );
    ops_rows(&mut t, &format!("list all {stored}"), &mut full);
    let fan = format!(
        "watch, {} watchers each × {} changes",
        plan.watchers, plan.changes
    );
    t.row(
        format!("{fan}: events/s"),
        fmt_rate(admin_fan.events_per_sec()),
        fmt_rate(rbac_fan.events_per_sec()),
        ratio(rbac_fan.events_per_sec(), admin_fan.events_per_sec()),
    );
    for (label, a, r) in [
        ("p50", admin_fan.latency.p50(), rbac_fan.latency.p50()),
        ("p99", admin_fan.latency.p99(), rbac_fan.latency.p99()),
    ] {
        t.row(
            format!("{fan}: delivery {label}"),
            fmt_duration(a),
            fmt_duration(r),
            ratio(r.as_secs_f64(), a.as_secs_f64()),
        );
    }

    let mut c = Table::new(
        "server CPU per request",
        "admin",
        "ServiceAccount",
        "RBAC ÷ admin",
    );
    for (what, pair) in [
        ("create", &create),
        ("get", &get),
        ("list limit=500", &page),
        ("list all", &full),
    ] {
        let per = |s: &Side| s.cpu.server / s.ops.count.max(1) as u32;
        let (a, r) = (per(&pair.admin), per(&pair.rbac));
        c.row(
            what,
            fmt_duration(a),
            fmt_duration(r),
            ratio(r.as_secs_f64(), a.as_secs_f64()),
        );
    }
    Ok((t.markdown(), c.markdown()))
}

fn docs_section(plan: &Plan, table: &str, cpu: &str) -> String {
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{HEADING}\n\n\
Command: `{cmd}`\n\n\
Run {date} on a machine with `nproc` = {nproc}, shared with other builds and with the load \
generator (clients and server in one process, inside a network namespace the benchmark \
made, HTTPS on 127.0.0.1 with {proto}). Issue 17's goal: the RBAC side keeps >= 0.95× of \
the admin side's throughput.\n\n\
{table}\n\
- Admin: the admin bearer token, user `admin` in `system:masters`, which is allowed before \
RBAC is asked (as upstream's privileged-group authorizer). ServiceAccount: `{ACCOUNT}` in \
`{NAMESPACE}` with a RoleBinding to the `edit` ClusterRole, authenticating with a token from \
a TokenRequest bound to a Pod (what a pod's projected token is, about 1 KB): every request \
authenticates the JWT (its signature verified once per token, its claims checked every time), \
checks that the ServiceAccount and the Pod exist with the token's uids (as the store has them \
now: kept in memory until the store's watch reports a change), and asks the RBAC index, which \
also holds {other} unrelated RoleBindings over {spaces} namespaces and {cluster} ClusterRoles \
with ClusterRoleBindings.\n\
- One API server, one SQLite store; the admin creates `svc-0..{n}`, the ServiceAccount the \
next {n}; gets pick from all of them, lists read all of them. Every operation runs in rounds \
that alternate which identity goes first; the median of per-round ratios is the steadier \
figure on a shared machine. Watches: both identities' watchers are open at once on the same \
changes from one writer. Rates: RBAC ÷ admin below 1 is what RBAC costs. Times: above 1.\n\n\
Server CPU per request (user + system time of the server's threads during each side's \
rounds, from `/proc`, 10 ms resolution):\n\n\
{cpu}",
        cmd = plan.command,
        proto = plan.proto.name(),
        other = plan.other_bindings,
        spaces = OTHER_NAMESPACES,
        cluster = plan.other_bindings / 10,
        n = plan.services,
    )
}

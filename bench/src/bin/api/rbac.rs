//! RBAC enforcement beside the admin path (issue 17, `--rbac`): the same creates,
//! gets, lists and watches sent by three identities in one run, in rotating rounds,
//! against one API server: the admin (a client certificate in `system:masters`, which
//! upstream and skiff allow before RBAC is asked: the admin kubeconfig), a user with a
//! client certificate whose only rights come from a RoleBinding to the `edit`
//! ClusterRole in the bench namespace (RBAC's cost with the same credential), and a
//! ServiceAccount with the same binding (RBAC's cost plus its token's).
//!
//! The ServiceAccount's token is what a pod gets: a TokenRequest bound to a Pod, so
//! every request carries a ~1 KB ES256 JWT, checks that the ServiceAccount and the Pod
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
use skiff_bench::report;
use skiff_bench::runtime::runtime;
use skiff_bench::stats::{fmt_duration, fmt_rate, Samples};
use skiff_store::{Backend, SqliteBackend};

use crate::writes::{self, Creates};
use crate::{cpu, name, ratio, reads, watch, NAMESPACE};

pub const HEADING: &str = "## API server: RBAC enforced vs the admin path (bench/api --rbac)";

const ACCOUNT: &str = "bench-editor";
/// The user of the client certificate bound to `edit`.
const USER: &str = "bench-user";
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

/// The three identities, in the table's column order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    User,
    Account,
}

const ALL: [Who; 3] = [Who::Admin, Who::User, Who::Account];

impl Who {
    fn index(self) -> usize {
        self as usize
    }
}

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

/// Every identity's side of one operation, indexed by [`Who::index`].
#[derive(Default)]
struct Sides([Side; 3]);

impl Sides {
    fn side(&mut self, who: Who) -> &mut Side {
        &mut self.0[who.index()]
    }

    fn get(&self, who: Who) -> &Side {
        &self.0[who.index()]
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

/// Every identity's connections, indexed by [`Who::index`].
struct Clients([Vec<Conn>; 3]);

impl Clients {
    async fn connect(servers: &Servers, proto: Proto, n: usize) -> Result<Self> {
        let mut out: [Vec<Conn>; 3] = Default::default();
        for _ in 0..n.max(1) {
            for who in ALL {
                out[who.index()].push(servers.of(who).connect(proto).await?);
            }
        }
        Ok(Clients(out))
    }

    /// One round on each side, `make(who)` giving its requests; the side that goes
    /// first rotates with `round`, so none always meets a warmer or colder machine.
    async fn round(
        &mut self,
        round: usize,
        want: StatusCode,
        sides: &mut Sides,
        make: impl Fn(Who) -> Vec<Req>,
    ) -> Result<()> {
        for k in 0..ALL.len() {
            let who = ALL[(round + k) % ALL.len()];
            drive(&mut self.0[who.index()], make(who), want, sides.side(who)).await?;
        }
        Ok(())
    }
}

/// Each identity's way to the server.
struct Servers([Server; 3]);

impl Servers {
    fn of(&self, who: Who) -> &Server {
        &self.0[who.index()]
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
    // The admin token sets the cluster up; the measured admin is the certificate.
    let admin = Server::new(running.addr, &data_dir)?;
    let ca = skiff_apiserver::pki::Ca::load(&data_dir)?;
    let hour = Duration::from_secs(3600);
    let (cert, key) = ca.issue_client("system:admin", &["system:masters"], hour)?;
    let admin_cert = admin.with_client_certificate(&cert, &key)?;
    let (cert, key) = ca.issue_client(USER, &[], hour)?;
    let user_cert = admin.with_client_certificate(&cert, &key)?;
    eprintln!("API server at {} (inside netns {ns})", running.url);
    let result = client_rt.block_on(async {
        tokio::select! {
            r = measure(plan, &admin, admin_cert, user_cert) => r,
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

/// The ServiceAccount and the user's RoleBindings to `edit`, a Pod that runs as the
/// ServiceAccount, and a token bound to that Pod (what the kubelet would fetch for
/// it): the ServiceAccount side's server.
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
    post(
        &mut conn,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/rolebindings"),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("{USER}-edit")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": USER}],
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

/// Waits until the RBAC index has an identity's binding, and checks that the side
/// is really RBAC-limited: `edit` in the bench namespace lists Services there but
/// may not list Nodes.
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
                "the RBAC-limited list of services: {s}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
    let (status, _) = conn
        .call(Method::GET, "/api/v1/nodes", None, Bytes::new())
        .await?;
    ensure!(
        status == StatusCode::FORBIDDEN,
        "an RBAC-limited identity listed nodes ({status}): it is not limited by RBAC"
    );
    Ok(())
}

/// Everything the workload needs, measured; returns the results and CPU tables.
/// `admin` (the admin token) sets up; `admin_cert` and `user_cert` are measured.
async fn measure(
    plan: &Plan,
    admin: &Server,
    admin_cert: Server,
    user_cert: Server,
) -> Result<(String, String)> {
    let (n, proto) = (plan.services, plan.proto);
    let services = format!("/api/v1/namespaces/{NAMESPACE}/services");
    writes::create_namespace(admin, proto).await?;
    eprintln!(
        "{} unrelated RoleBindings over {OTHER_NAMESPACES} namespaces, {} ClusterRoles and bindings",
        plan.other_bindings,
        plan.other_bindings / 10
    );
    unrelated_bindings(admin, proto, plan.other_bindings, plan.clients).await?;
    let account = service_account_client(admin, proto).await?;
    wait_for_binding(&account, proto).await?;
    wait_for_binding(&user_cert, proto).await?;
    let servers = Servers([admin_cert, user_cert, account]);

    let mut clients = Clients::connect(&servers, proto, plan.clients).await?;
    eprintln!(
        "creating {n} services as each identity ({} clients each, {}), rotating rounds of {}",
        plan.clients,
        proto.name(),
        writes::PER_ROUND
    );
    // Identity k creates svc-(k*n)..((k+1)*n): same bodies, same sizes.
    let mut create = Sides::default();
    for (round, range) in writes::rounds(n).enumerate() {
        clients
            .round(round, StatusCode::CREATED, &mut create, |who| {
                let offset = who.index() * n;
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
    let stored = ALL.len() * n;

    eprintln!(
        "{} gets per identity ({} clients each)",
        plan.gets, plan.clients
    );
    let picks = reads::picks(stored, plan.gets);
    let mut get = Sides::default();
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
    let mut page = Sides::default();
    let rounds = pages.div_ceil(READ_ROUND / 4).max(1);
    for round in 0..rounds {
        let count = (READ_ROUND / 4).min(pages - round * (READ_ROUND / 4));
        clients
            .round(round, StatusCode::OK, &mut page, |_| {
                (0..count).map(|_| Req::get(page_path.clone())).collect()
            })
            .await?;
    }
    let mut full = Sides::default();
    for round in 0..plan.lists {
        clients
            .round(round, StatusCode::OK, &mut full, |_| {
                vec![Req::get(services.clone())]
            })
            .await?;
    }

    eprintln!(
        "{} watchers per identity x {} changes, all at once",
        plan.watchers, plan.changes
    );
    let mut writer = admin.connect(proto).await?;
    let rv = watch::current_rv(&mut writer).await?;
    // One clock: every identity's watchers wait for the same changes, stamped once.
    let clock = watch::Clock::new(plan.changes);
    let mut opened = Vec::new();
    for who in ALL {
        opened.push(watch::open(servers.of(who), proto, plan.watchers, &rv, &clock).await?);
    }
    watch::settle().await;
    watch::write_changes(&mut writer, n, &clock).await?;
    let mut fans = Vec::new();
    for w in opened {
        fans.push(watch::finish(&clock, w, plan.watchers).await?);
    }

    let mut grid = Grid(vec![vec![
        "measure".to_string(),
        "admin (certificate, system:masters)".to_string(),
        "user (certificate), RoleBinding to edit".to_string(),
        "ServiceAccount (bound token), RoleBinding to edit".to_string(),
        "user ÷ admin".to_string(),
        "ServiceAccount ÷ admin".to_string(),
    ]]);
    grid.ops(&format!("create, {} clients", plan.clients), &mut create);
    grid.ops(
        &format!("get ({stored} stored), {} clients", plan.clients),
        &mut get,
    );
    grid.ops(
        &format!("list limit={}, {} clients", reads::PAGE, plan.clients),
        &mut page,
    );
    grid.ops(&format!("list all {stored}"), &mut full);
    let fan = format!(
        "watch, {} watchers each × {} changes",
        plan.watchers, plan.changes
    );
    let events = [0, 1, 2].map(|k| fans[k].events_per_sec());
    grid.row(format!("{fan}: events/s"), events, fmt_rate);
    let p50 = [0, 1, 2].map(|k| fans[k].latency.p50().as_secs_f64());
    grid.row(format!("{fan}: delivery p50"), p50, secs);
    let p99 = [0, 1, 2].map(|k| fans[k].latency.p99().as_secs_f64());
    grid.row(format!("{fan}: delivery p99"), p99, secs);

    let mut cpu_rows = vec![vec![
        "server CPU per request".to_string(),
        "admin".to_string(),
        "user".to_string(),
        "ServiceAccount".to_string(),
        "user ÷ admin".to_string(),
        "ServiceAccount ÷ admin".to_string(),
    ]];
    for (what, sides) in [
        ("create", &create),
        ("get", &get),
        ("list limit=500", &page),
        ("list all", &full),
    ] {
        let per = ALL.map(|w| {
            let s = sides.get(w);
            (s.cpu.server / s.ops.count.max(1) as u32).as_secs_f64()
        });
        cpu_rows.push(vec![
            what.to_string(),
            secs(per[0]),
            secs(per[1]),
            secs(per[2]),
            ratio(per[1], per[0]),
            ratio(per[2], per[0]),
        ]);
    }
    Ok((report::grid(&grid.0), report::grid(&cpu_rows)))
}

/// Seconds as a duration figure.
fn secs(f: f64) -> String {
    fmt_duration(Duration::from_secs_f64(f))
}

/// The results table: a figure per identity and each one's ratio to the admin's.
struct Grid(Vec<Vec<String>>);

impl Grid {
    fn row(&mut self, what: String, figures: [f64; 3], fmt: impl Fn(f64) -> String) {
        self.0.push(vec![
            what,
            fmt(figures[0]),
            fmt(figures[1]),
            fmt(figures[2]),
            ratio(figures[1], figures[0]),
            ratio(figures[2], figures[0]),
        ]);
    }

    /// Rate, paired-round median ratio and latencies of one operation.
    fn ops(&mut self, what: &str, sides: &mut Sides) {
        let rates = ALL.map(|w| sides.get(w).ops.rate());
        self.row(format!("{what}: ops/s"), rates, fmt_rate);
        let admin = &sides.get(Who::Admin).ops;
        let paired = ALL.map(|w| sides.get(w).ops.paired_ratio(admin).unwrap_or(0.0));
        self.row(
            format!(
                "{what}: ops/s, median of {} paired rounds (÷ admin)",
                admin.round_rates.len()
            ),
            paired,
            |r| format!("{r:.2}×"),
        );
        for (label, p) in [("p50", 50.0), ("p99", 99.0)] {
            let lat = ALL.map(|w| sides.side(w).ops.latency.percentile(p).as_secs_f64());
            self.row(format!("{what}: latency {label}"), lat, secs);
        }
    }
}

fn docs_section(plan: &Plan, table: &str, cpu: &str) -> String {
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{HEADING}\n\n\
Command: `{cmd}`\n\n\
Run {date} on a machine with `nproc` = {nproc}, shared with other builds and with the load \
generator (clients and server in one process, inside a network namespace the benchmark \
made, HTTPS on 127.0.0.1 with {proto}). Issue 17's goal: with RBAC enforced, >= 0.95× of \
the admin side's throughput.\n\n\
{table}\n\
- Admin: a client certificate for `system:admin` in `system:masters` (what the admin \
kubeconfig holds), allowed before RBAC is asked (as upstream's privileged-group \
authorizer). User: a client certificate for `{USER}` (no groups), whose only rights are a \
RoleBinding to the `edit` ClusterRole in `{NAMESPACE}`: the same credential as the admin's, \
so its ratio is what RBAC enforcement costs. ServiceAccount: `{ACCOUNT}` in \
`{NAMESPACE}` with the same binding, authenticating with a token from \
a TokenRequest bound to a Pod (what a pod's projected token is, about 1 KB): every request \
authenticates the JWT (its signature verified once per token, its claims checked every time), \
checks that the ServiceAccount and the Pod exist with the token's uids (as the store has them \
now: kept in memory until the store's watch reports a change), and asks the RBAC index, which \
also holds {other} unrelated RoleBindings over {spaces} namespaces and {cluster} ClusterRoles \
with ClusterRoleBindings.\n\
- One API server, one SQLite store; the admin creates `svc-0..{n}`, the user the next {n}, \
the ServiceAccount the {n} after; gets pick from all of them, lists read all of them. Every \
operation runs in rounds that rotate which identity goes first; the median of per-round \
ratios is the steadier figure on a shared machine. Watches: every identity's watchers are \
open at once on the same changes from one writer. Rates: ÷ admin below 1 is what the \
identity costs. Times: above 1.\n\n\
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

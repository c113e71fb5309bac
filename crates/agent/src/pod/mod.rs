//! One task per pod: sets up its sandbox and network, starts, watches, probes and
//! restarts its containers, reports status the way kubelet does, and tears it all
//! down when the pod is deleted.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use kube::api::{DeleteParams, Preconditions};
use kube::Api;
use serde_json::Value;
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::state::{self, PodState, SavedContainer, Term};
use crate::{events, files, net, runtime, Agent};

mod containers;
mod ephemeral;
mod image;
mod probes;
mod sandbox;
mod status;

pub enum Msg {
    Update(Box<Pod>),
    /// The pod is gone from the API (or was never ours): stop at once.
    Gone,
    Exited {
        ctr: usize,
        gen: u64,
        code: Option<i32>,
    },
    Probe {
        ctr: usize,
        gen: u64,
        kind: usize,
        ok: bool,
    },
    /// The sandbox process (by PID) ended.
    SandboxExited(u32),
    /// A container's postStart hook failed.
    PostStartFailed {
        ctr: usize,
        gen: u64,
    },
    /// What some volumes may be read from changed (a ConfigMap or Secret of the
    /// pod's namespace): those volumes are rewritten.
    SourceChanged(crate::volumes::Source),
    /// A container's image pull ended.
    Pulled {
        ctr: usize,
        took: Duration,
        result: Box<Result<skiff_image::Image, skiff_image::PullError>>,
    },
}

/// What streaming (logs, exec, attach) needs to know about a running pod.
#[derive(Default)]
pub struct Runtime {
    pub sandbox: Option<u32>,
    pub containers: HashMap<String, CtrRuntime>,
    /// Process groups of exec sessions, killed when the pod goes.
    pub execs: Vec<u32>,
}

#[derive(Clone)]
pub struct CtrRuntime {
    pub env: Vec<(String, String)>,
    pub workdir: String,
    pub log: Option<PathBuf>,
    pub previous_log: Option<PathBuf>,
    pub running: bool,
    pub instance: u64,
    pub stdin: Option<Arc<tokio::sync::Mutex<Option<ChildStdin>>>>,
    pub stdin_once: bool,
    pub tty: bool,
    /// The container's process (its group leader), while it runs.
    pub pid: Option<u32>,
    /// The runtime's handle of an image container.
    pub runc: Option<crate::container::RuncRef>,
}

impl CtrRuntime {
    /// Where `exec` runs a command for this container.
    pub fn exec_target(&self, sandbox: u32) -> crate::container::ExecTarget {
        crate::container::ExecTarget::of(self.runc.as_ref(), sandbox, &self.workdir, &self.env)
    }
}

pub const STARTUP: usize = 0;
pub const READINESS: usize = 1;
pub const LIVENESS: usize = 2;

#[derive(Default, Clone, Copy)]
struct ProbeState {
    next: Option<Instant>,
    in_flight: bool,
    successes: i32,
    failures: i32,
}

#[derive(Debug, Clone)]
enum St {
    Waiting { reason: String, message: String },
    Running,
    Terminated(Term),
}

struct Ctr {
    spec: Container,
    init: bool,
    restart_count: i32,
    state: St,
    last: Option<Term>,
    gen: u64,
    proc: Option<runtime::Proc>,
    started_at: Option<String>,
    started_instant: Option<Instant>,
    backoff: Option<Duration>,
    next_start: Option<Instant>,
    ready: bool,
    startup_ok: bool,
    probes: [ProbeState; 3],
    env: Vec<(String, String)>,
    workdir: String,
    /// The running image container instance (none for a host-program container).
    runc: Option<crate::container::RuncRef>,
    /// `registry/repo@sha256:...` of the image the container runs.
    image_id: Option<String>,
    /// The current image pull back-off, after a failed pull.
    pull_backoff: Option<Duration>,
    pull: image::Pull,
}

impl Ctr {
    /// Where exec probes and hooks of this container run.
    fn exec_target(&self, sandbox: u32) -> crate::container::ExecTarget {
        crate::container::ExecTarget::of(self.runc.as_ref(), sandbox, &self.workdir, &self.env)
    }
    fn probe(&self, kind: usize) -> Option<&Probe> {
        match kind {
            STARTUP => self.spec.startup_probe.as_ref(),
            READINESS => self.spec.readiness_probe.as_ref(),
            _ => self.spec.liveness_probe.as_ref(),
        }
    }
    fn is_running(&self) -> bool {
        matches!(self.state, St::Running)
    }
    fn succeeded(&self) -> bool {
        matches!(&self.state, St::Terminated(t) if t.exit_code == 0)
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

pub struct Worker {
    agent: Arc<Agent>,
    pod: Pod,
    uid: String,
    ns: String,
    name: String,
    dir: PathBuf,
    tx: mpsc::UnboundedSender<Msg>,
    rt: Arc<Mutex<Runtime>>,
    ctrs: Vec<Ctr>,
    ip: Option<Ipv4Addr>,
    veth: String,
    sandbox: Option<runtime::Proc>,
    setup_error: Option<(String, String)>,
    fatal: Option<(String, String)>,
    start_time: String,
    last_status: Option<Value>,
    transitions: HashMap<String, (String, String)>,
    deleting: bool,
    gone: bool,
    /// When this worker began, until the pod was first reported Ready (for the
    /// start-latency log line).
    began: Option<Instant>,
    /// Events recorded since the last status write.
    events: events::Pending,
    /// The pod's volumes, once prepared for its first image container.
    volumes: Option<HashMap<String, crate::volumes::Prepared>>,
    /// Ephemeral containers started so far ([`ephemeral`]).
    ephemeral: ephemeral::Ephemerals,
}

impl Worker {
    pub fn new(
        agent: Arc<Agent>,
        pod: Pod,
        tx: mpsc::UnboundedSender<Msg>,
        rt: Arc<Mutex<Runtime>>,
        saved: Option<PodState>,
    ) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let dir = state::pods_dir(&agent.data_dir).join(&uid);
        let spec = pod.spec.clone().unwrap_or_default();
        let mut ctrs = Vec::new();
        for (init, c) in spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (true, c))
            .chain(spec.containers.iter().map(|c| (false, c)))
        {
            ctrs.push(Ctr {
                spec: c.clone(),
                init,
                restart_count: 0,
                state: St::Waiting {
                    reason: "ContainerCreating".into(),
                    message: String::new(),
                },
                last: None,
                gen: 0,
                proc: None,
                started_at: None,
                started_instant: None,
                backoff: None,
                next_start: Some(Instant::now()),
                ready: false,
                startup_ok: c.startup_probe.is_none(),
                probes: Default::default(),
                env: Vec::new(),
                workdir: "/".into(),
                runc: None,
                image_id: None,
                pull_backoff: None,
                pull: Default::default(),
            });
        }
        let mut w = Self {
            veth: net::veth_name(&uid),
            agent,
            pod,
            uid,
            ns,
            name,
            dir,
            tx,
            rt,
            ctrs,
            ip: None,
            sandbox: None,
            setup_error: None,
            fatal: None,
            start_time: now(),
            last_status: None,
            transitions: HashMap::new(),
            deleting: false,
            gone: false,
            began: Some(Instant::now()),
            events: Default::default(),
            volumes: None,
            ephemeral: Default::default(),
        };
        if let Some(s) = saved {
            w.adopt(s);
        }
        w
    }

    /// Takes over what a previous agent left: sandbox, IP, live containers.
    fn adopt(&mut self, s: PodState) {
        if let Some(t) = s.start_time {
            self.start_time = t;
        }
        self.ip = s.ip;
        if let Some(p) = s.sandbox.filter(runtime::Proc::alive) {
            self.sandbox = Some(p);
            self.began = None;
        }
        let sandbox_pid = self.sandbox.map(|p| p.pid);
        if let Some(p) = self.sandbox {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                while p.alive() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let _ = tx.send(Msg::SandboxExited(p.pid));
            });
        }
        for (i, c) in self.ctrs.iter_mut().enumerate() {
            let Some(saved) = s.containers.get(&c.spec.name) else {
                continue;
            };
            c.restart_count = saved.restart_count;
            c.last = saved.last.clone();
            c.env = saved.env.clone();
            c.workdir = saved.workdir.clone();
            c.runc = saved.runc.clone();
            c.image_id = saved.image_id.clone();
            let dead_log = |c: &Ctr| CtrRuntime {
                env: c.env.clone(),
                workdir: c.workdir.clone(),
                log: Some(log_path(&self.dir, &c.spec.name, c.restart_count)),
                previous_log: (c.restart_count > 0)
                    .then(|| log_path(&self.dir, &c.spec.name, c.restart_count - 1)),
                running: false,
                instance: 0,
                stdin: None,
                stdin_once: false,
                tty: false,
                pid: None,
                runc: None,
            };
            if let Some(t) = &saved.terminated {
                c.state = St::Terminated(t.clone());
                c.next_start = None;
                lock(&self.rt)
                    .containers
                    .insert(c.spec.name.clone(), dead_log(c));
                continue;
            }
            let live = saved.proc.filter(runtime::Proc::alive);
            if let (Some(p), None) = (live, sandbox_pid) {
                // Its sandbox is gone: the process is cut off; it will be started
                // again in a new sandbox.
                let (pid, runc) = (p.pid, saved.runc.clone());
                tokio::spawn(
                    async move { crate::container::signal(pid, runc.as_ref(), "KILL").await },
                );
                continue;
            }
            if let Some(p) = live {
                c.gen += 1;
                c.proc = Some(p);
                c.state = St::Running;
                c.started_at = saved.started_at.clone();
                c.started_instant = Some(Instant::now());
                c.next_start = None;
                // Adopted containers are trusted as started; probes re-establish
                // readiness from scratch, as after any kubelet restart.
                c.startup_ok = true;
                c.ready = c.spec.readiness_probe.is_none();
                for kind in 0..3 {
                    c.probes[kind].next = Some(Instant::now());
                }
                let tx = self.tx.clone();
                let gen = c.gen;
                tokio::spawn(async move {
                    while p.alive() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    let _ = tx.send(Msg::Exited {
                        ctr: i,
                        gen,
                        code: None,
                    });
                });
                let mut rt = lock(&self.rt);
                rt.sandbox = sandbox_pid;
                rt.containers.insert(
                    c.spec.name.clone(),
                    CtrRuntime {
                        env: c.env.clone(),
                        workdir: c.workdir.clone(),
                        log: Some(log_path(&self.dir, &c.spec.name, c.restart_count)),
                        previous_log: (c.restart_count > 0)
                            .then(|| log_path(&self.dir, &c.spec.name, c.restart_count - 1)),
                        running: true,
                        instance: c.gen,
                        stdin: None,
                        stdin_once: c.spec.stdin_once.unwrap_or(false),
                        tty: c.spec.tty.unwrap_or(false),
                        pid: Some(p.pid),
                        runc: c.runc.clone(),
                    },
                );
            }
        }
        lock(&self.rt).sandbox = sandbox_pid;
        tracing::info!(pod = %self.name, ns = %self.ns, "adopted running pod");
    }

    fn save(&self) {
        let mut s = PodState {
            uid: self.uid.clone(),
            namespace: self.ns.clone(),
            name: self.name.clone(),
            ip: self.ip,
            veth: self.veth.clone(),
            sandbox: self.sandbox,
            start_time: Some(self.start_time.clone()),
            containers: Default::default(),
        };
        for c in &self.ctrs {
            s.containers.insert(
                c.spec.name.clone(),
                SavedContainer {
                    proc: c.proc,
                    restart_count: c.restart_count,
                    started_at: c.started_at.clone(),
                    env: c.env.clone(),
                    workdir: c.workdir.clone(),
                    last: c.last.clone(),
                    terminated: match &c.state {
                        St::Terminated(t) => Some(t.clone()),
                        _ => None,
                    },
                    runc: c.runc.clone(),
                    image_id: c.image_id.clone(),
                },
            );
        }
        state::save(&self.dir, &s);
    }

    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        self.deleting = self.pod.metadata.deletion_timestamp.is_some();
        // An adopted pod's host ports: the agent's table was rebuilt at start.
        if let (Some(_), Some(ip)) = (self.sandbox, self.ip) {
            let ports = self.wanted_host_ports();
            if !ports.is_empty() {
                let _ = self.agent.claim_host_ports(&self.uid, &ports, Some(ip));
                self.agent.sync_rules().await;
            }
        }
        loop {
            if self.deleting {
                break;
            }
            let finished = self.finished();
            if self.sandbox.is_none() && self.fatal.is_none() && !finished {
                self.setup().await;
            }
            if self.sandbox.is_some() && !finished {
                self.reconcile().await;
                self.start_ephemeral();
            }
            self.report().await;
            if finished && self.sandbox.is_some() {
                self.release_network().await;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => self.handle(m).await,
                    None => self.gone = true,
                },
                _ = tokio::time::sleep_until(deadline) => {}
            }
            // Drain whatever else arrived, so a burst costs one status write.
            while let Ok(m) = rx.try_recv() {
                self.handle(m).await;
            }
            if self.gone {
                self.deleting = true;
            }
        }
        let grace = if self.gone {
            Duration::from_secs(2)
        } else {
            self.grace()
        };
        self.terminate(&mut rx, grace).await;
        if !self.gone {
            self.report().await;
        }
        self.teardown().await;
        self.post_events();
        if !self.gone {
            self.finish_delete().await;
        }
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    async fn handle(&mut self, m: Msg) {
        match m {
            Msg::Update(p) => {
                if p.metadata.deletion_timestamp.is_some() {
                    self.deleting = true;
                }
                // downwardAPI files of labels and annotations follow them, as kubelet's.
                let metadata_changed = p.metadata.labels != self.pod.metadata.labels
                    || p.metadata.annotations != self.pod.metadata.annotations;
                self.pod = *p;
                if metadata_changed && !self.deleting {
                    self.refresh_volumes(&crate::volumes::Source::PodMetadata)
                        .await;
                }
            }
            Msg::SourceChanged(source) => {
                if !self.deleting {
                    self.refresh_volumes(&source).await;
                }
            }
            Msg::Pulled { ctr, took, result } => self.pulled(ctr, took, *result),
            Msg::Gone => self.gone = true,
            Msg::Exited { ctr, gen, code } => self.exited(ctr, gen, code),
            Msg::Probe { ctr, gen, kind, ok } => self.probed(ctr, gen, kind, ok).await,
            Msg::SandboxExited(pid) => {
                if self.sandbox.map(|p| p.pid) == Some(pid) && !self.deleting {
                    self.sandbox_lost().await;
                }
            }
            Msg::PostStartFailed { ctr, gen } => {
                if self
                    .ctrs
                    .get(ctr)
                    .is_some_and(|c| c.gen == gen && c.is_running())
                {
                    let name = self.ctrs[ctr].spec.name.clone();
                    self.event(
                        true,
                        "FailedPostStartHook",
                        format!("PostStartHook failed for container {name}"),
                        Some(&name),
                    );
                    self.kill_for_restart(ctr, "PostStart hook failed").await;
                }
            }
        }
    }

    fn finished(&self) -> bool {
        matches!(self.phase(), "Succeeded" | "Failed")
    }

    fn hostname(&self) -> String {
        files::hostname(&self.pod)
    }

    /// Logs (at debug) how long after the worker began a stage of the pod's first
    /// start was reached: where a pod's start time goes.
    fn mark(&self, stage: &str) {
        if let Some(t) = self.began {
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            tracing::debug!(pod = %self.name, ns = %self.ns, stage, ms = format!("{ms:.1}"), "pod start");
        }
    }

    /// Records an Event about this pod (or one of its containers), as kubelet
    /// does; queued until [`Worker::post_events`].
    fn event(&self, warning: bool, reason: &str, message: String, container: Option<&str>) {
        let field_path = container.and_then(|c| {
            self.ctrs.iter().find(|x| x.spec.name == c).map(|x| {
                let list = if x.init {
                    "initContainers"
                } else {
                    "containers"
                };
                format!("spec.{list}{{{c}}}")
            })
        });
        let subject = events::Subject {
            namespace: &self.ns,
            name: &self.name,
            uid: &self.uid,
            node_name: &self.agent.node_name,
        };
        self.events
            .record(&subject, warning, reason, message, field_path);
    }

    /// Posts the queued events (after the status they go with was written).
    fn post_events(&self) {
        self.events.post(&self.agent.client, &self.ns);
    }

    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    /// Starts what should run now; launches due probes.
    async fn reconcile(&mut self) {
        let now = Instant::now();
        let init_pending = self.ctrs.iter().position(|c| c.init && !c.succeeded());
        let startable: Vec<usize> = match init_pending {
            Some(i) => vec![i],
            None => (0..self.ctrs.len())
                .filter(|i| !self.ctrs[*i].init)
                .collect(),
        };
        for i in startable {
            let c = &self.ctrs[i];
            if c.proc.is_none()
                && matches!(c.state, St::Waiting { .. })
                && c.next_start.is_some_and(|t| t <= now)
            {
                self.start(i).await;
            }
        }
        for i in 0..self.ctrs.len() {
            for kind in [STARTUP, READINESS, LIVENESS] {
                self.maybe_probe(i, kind, now);
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut t = Instant::now() + Duration::from_secs(5);
        if self.sandbox.is_none() && self.fatal.is_none() {
            t = t.min(Instant::now() + Duration::from_secs(2));
        }
        for c in &self.ctrs {
            if let Some(n) = c.next_start {
                t = t.min(n);
            }
            if c.is_running() {
                for p in &c.probes {
                    if let (Some(n), false) = (p.next, p.in_flight) {
                        t = t.min(n);
                    }
                }
            }
        }
        t
    }

    /// SIGTERM to every container, SIGKILL to what is left after `grace`.
    async fn terminate(&mut self, rx: &mut mpsc::UnboundedReceiver<Msg>, grace: Duration) {
        // A pull still under way is for a container that will not start now.
        self.abort_pulls();
        if !self.gone {
            for c in self.ctrs.iter().filter(|c| c.proc.is_some()) {
                self.event(
                    false,
                    "Killing",
                    format!("Stopping container {}", c.spec.name),
                    Some(&c.spec.name),
                );
            }
        }
        let mut deadline = Instant::now() + grace;
        if !self.gone {
            self.pre_stop(deadline).await;
        }
        for c in &self.ctrs {
            if let Some(p) = c.proc {
                crate::container::signal(p.pid, c.runc.as_ref(), "TERM").await;
            }
        }
        let mut killed = false;
        loop {
            if self.ctrs.iter().all(|c| c.proc.is_none()) {
                break;
            }
            if Instant::now() >= deadline {
                if killed {
                    break;
                }
                for c in &self.ctrs {
                    if let Some(p) = c.proc {
                        crate::container::signal(p.pid, c.runc.as_ref(), "KILL").await;
                    }
                }
                killed = true;
                deadline = Instant::now() + Duration::from_secs(5);
            }
            tokio::select! {
                m = rx.recv() => match m {
                    Some(Msg::Exited { ctr, gen, code }) => self.exited(ctr, gen, code),
                    Some(Msg::Update(p)) => self.pod = *p,
                    Some(Msg::Gone) => { self.gone = true; deadline = deadline.min(Instant::now()); }
                    Some(Msg::Probe { .. })
                    | Some(Msg::SandboxExited(_))
                    | Some(Msg::PostStartFailed { .. })
                    | Some(Msg::SourceChanged(_))
                    | Some(Msg::Pulled { .. }) => {}
                    None => { self.gone = true; deadline = deadline.min(Instant::now()); }
                },
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Removes the sandbox, veth, IP and files.
    async fn teardown(&mut self) {
        let execs = std::mem::take(&mut lock(&self.rt).execs);
        for pid in execs {
            runtime::signal_group(pid, "KILL").await;
        }
        for c in &self.ctrs {
            if let Some(p) = c.proc.filter(runtime::Proc::alive) {
                crate::container::signal(p.pid, c.runc.as_ref(), "KILL").await;
            }
        }
        if let Some(p) = self.sandbox.take() {
            if p.alive() {
                runtime::signal(p.pid, "KILL").await;
            }
        }
        let runcs: Vec<_> = self.ctrs.iter().filter_map(|c| c.runc.clone()).collect();
        crate::container::remove_pod(&self.uid, &self.dir, runcs).await;
        if let Some(v) = self.volumes.take() {
            crate::volumes::release(&v).await;
        }
        net::detach_pod(&self.veth).await;
        if self.agent.release_host_ports(&self.uid) {
            self.agent.sync_rules().await;
        }
        if let Some(ip) = self.ip.take() {
            self.agent.ipam.release_owned(ip, &self.uid);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        lock(&self.agent.pods).remove(&self.uid);
        self.agent.source_watches.reconcile(&self.agent);
        tracing::info!(pod = %self.name, ns = %self.ns, "pod removed");
    }

    /// The final, grace-0 delete once the containers are gone (kubelet's job).
    async fn finish_delete(&self) {
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &self.ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        if let Err(e) = api.delete(&self.name, &dp).await {
            if !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409) {
                tracing::warn!(pod = %self.name, error = %e, "final pod delete");
            }
        }
    }
}

pub fn log_path(dir: &std::path::Path, container: &str, restart: i32) -> PathBuf {
    dir.join(container).join(format!("{restart}.log"))
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

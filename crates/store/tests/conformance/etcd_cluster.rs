//! A 3-member etcd cluster (Debian's `etcd-server`) for one test: its own network
//! namespace (only `lo`, so fixed loopback addresses and ports never clash with another
//! test's), data directories in a temporary directory, and everything torn down on drop
//! (members killed by PID, then the namespace deleted), even when the test panics.
//!
//! The store connects from a thread that joined the namespace: threads it starts
//! inherit the namespace, so the client's sockets all live inside it.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use skiff_store::{
    Backend, EtcdBackend, EtcdConfig, EtcdTls, KeyValue, ListResult, Result, Revision, Watch,
};

static NEXT: AtomicUsize = AtomicUsize::new(0);

const MEMBERS: usize = 3;
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

/// How long a new cluster may take to elect a leader and answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub const PREFIX: &str = "/skiff";
pub const CLUSTER: &str = "conformance";

pub struct EtcdCluster {
    netns: String,
    members: Vec<Child>,
    dir: tempfile::TempDir,
    /// Set when clients must speak TLS and present a certificate.
    tls: Option<Pki>,
}

/// PEM files of a test CA, the members' serving certificate and a client certificate.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Pki {
    fn write(dir: &Path) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, SanType,
        };
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "etcd test ca");
        let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
        let issuer = Issuer::new(ca, ca_key);
        let issue = |name: &str, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            for i in 0..MEMBERS {
                let ip = member_ip(i).parse().expect("ip");
                params.subject_alt_names.push(SanType::IpAddress(ip));
            }
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &issuer).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = issue("etcd", ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = issue("skiff", ExtendedKeyUsagePurpose::ClientAuth);
        let file = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write pem");
            path
        };
        Pki {
            ca: file("ca.crt", &ca_pem),
            cert: file("client.crt", &client_cert),
            key: file("client.key", &client_key),
            server_cert: file("server.crt", &server_cert),
            server_key: file("server.key", &server_key),
        }
    }
}

/// Member `i` listens on its own loopback address.
fn member_ip(i: usize) -> String {
    format!("127.0.0.{}", i + 1)
}

impl EtcdCluster {
    /// A namespace with `lo` up and no etcd in it (yet).
    pub fn empty() -> Self {
        let netns = format!(
            "skiff-test-etcd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        run_ok(Command::new("ip").args(["netns", "add", &netns]));
        // From here on, dropping `cluster` removes the namespace again.
        let cluster = EtcdCluster {
            netns,
            members: Vec::new(),
            tls: None,
            // tmpfs when there is one: etcd fsyncs every write on every member.
            dir: tempfile::Builder::new()
                .prefix("skiff-etcd-")
                .tempdir_in(shm_or_tmp())
                .expect("tempdir"),
        };
        run_ok(Command::new("ip").args(["-n", &cluster.netns, "link", "set", "lo", "up"]));
        cluster
    }

    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A cluster that serves clients only over TLS, to clients with a certificate.
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
        let mut cluster = Self::empty();
        if tls {
            cluster.tls = Some(Pki::write(cluster.dir.path()));
        }
        let scheme = cluster.scheme();
        let mut client_tls = Vec::new();
        if let Some(pki) = &cluster.tls {
            client_tls = vec![
                format!("--cert-file={}", pki.server_cert.display()),
                format!("--key-file={}", pki.server_key.display()),
                format!("--trusted-ca-file={}", pki.ca.display()),
                "--client-cert-auth".to_owned(),
            ];
        }
        let peers = (0..MEMBERS)
            .map(|i| format!("m{i}=http://{}:{PEER_PORT}", member_ip(i)))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..MEMBERS {
            let ip = member_ip(i);
            let log = File::create(cluster.dir.path().join(format!("m{i}.log"))).expect("log");
            let child = Command::new("ip")
                .args(["netns", "exec", &cluster.netns, "etcd"])
                .arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    cluster.dir.path().join(format!("m{i}")).display()
                ))
                .arg(format!(
                    "--listen-client-urls={scheme}://{ip}:{CLIENT_PORT}"
                ))
                .arg(format!(
                    "--advertise-client-urls={scheme}://{ip}:{CLIENT_PORT}"
                ))
                .args(&client_tls)
                .arg(format!("--listen-peer-urls=http://{ip}:{PEER_PORT}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://{ip}:{PEER_PORT}"
                ))
                .arg(format!("--initial-cluster={peers}"))
                .args([
                    "--initial-cluster-state=new",
                    "--initial-cluster-token=skiff-test",
                    "--heartbeat-interval=50",
                    "--election-timeout=500",
                    "--logger=zap",
                    "--log-level=warn",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start etcd (Debian package etcd-server)");
            cluster.members.push(child);
        }
        cluster
    }

    /// The member that is not the raft leader right now (per each member's metrics).
    pub fn a_follower(&self) -> usize {
        (0..MEMBERS)
            .find(|&i| {
                let url = format!("http://{}:{CLIENT_PORT}/metrics", member_ip(i));
                let out = Command::new("ip")
                    .args(["netns", "exec", &self.netns, "curl", "-sf", &url])
                    .output()
                    .expect("curl");
                let metrics = String::from_utf8_lossy(&out.stdout);
                out.status.success() && metrics.lines().any(|l| l == "etcd_server_is_leader 0")
            })
            .expect("a member that is not the leader")
    }

    /// SIGKILLs member `i`, as a machine that dies would stop it.
    pub fn kill_member(&mut self, i: usize) {
        let member = &mut self.members[i];
        let _ = member.kill();
        let _ = member.wait();
    }

    /// SIGSTOPs every member (by PID): an etcd that accepts connections and answers
    /// nothing, the hardest outage for a client to notice.
    pub fn pause(&self) {
        self.signal_all("-STOP");
    }

    /// SIGCONTs every member after `pause`.
    pub fn resume(&self) {
        self.signal_all("-CONT");
    }

    fn signal_all(&self, signal: &str) {
        for child in &self.members {
            run_ok(Command::new("kill").args([signal, &child.id().to_string()]));
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        (0..MEMBERS)
            .map(|i| format!("{}://{}:{CLIENT_PORT}", self.scheme(), member_ip(i)))
            .collect()
    }

    pub fn pki(&self) -> Option<&Pki> {
        self.tls.as_ref()
    }

    pub fn config(&self, capacity: usize) -> EtcdConfig {
        EtcdConfig {
            endpoints: self.endpoints(),
            prefix: PREFIX.into(),
            cluster: CLUSTER.into(),
            tls: self.tls.as_ref().map(|pki| EtcdTls {
                ca_file: Some(pki.ca.clone()),
                cert_file: Some(pki.cert.clone()),
                key_file: Some(pki.key.clone()),
            }),
            watch_capacity: capacity,
        }
    }

    /// Runs `f` on a thread inside the cluster's namespace (threads it starts stay there).
    pub fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = PathBuf::from("/run/netns").join(&self.netns);
        std::thread::spawn(move || {
            let ns = File::open(&path).expect("open netns");
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread inside the namespace")
    }

    /// Opens a store once the cluster answers.
    pub fn open(&self, config: EtcdConfig) -> Result<EtcdBackend> {
        let addrs: Vec<SocketAddr> = (0..MEMBERS)
            .map(|i| {
                format!("{}:{CLIENT_PORT}", member_ip(i))
                    .parse()
                    .expect("addr")
            })
            .collect();
        self.inside(move || {
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                let listening = addrs
                    .iter()
                    .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok());
                if listening {
                    match EtcdBackend::connect(config.clone()) {
                        // Before the first election etcd answers "no leader".
                        Err(e) if Instant::now() < deadline && e.to_string().contains("leader") => {
                        }
                        other => return other,
                    }
                }
                assert!(Instant::now() < deadline, "etcd did not start in time");
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    }
}

fn shm_or_tmp() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // SIGKILL: a member asked to stop politely waits for peers that may be gone.
        for child in &mut self.members {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Anything else left inside, by PID, before the namespace goes.
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.netns])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

fn run_ok(c: &mut Command) {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A store together with the cluster it runs on: the store goes first, then the
/// cluster, when the conformance suite drops its backend.
pub struct OnEtcd {
    store: EtcdBackend,
    _cluster: EtcdCluster,
}

impl OnEtcd {
    pub fn start(capacity: usize) -> Self {
        let cluster = EtcdCluster::start();
        let store = cluster
            .open(cluster.config(capacity))
            .expect("open the etcd store");
        OnEtcd {
            store,
            _cluster: cluster,
        }
    }
}

impl Backend for OnEtcd {
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.store.get(key)
    }
    fn list(&self, prefix: &str, after: Option<&str>, limit: Option<usize>) -> Result<ListResult> {
        self.store.list(prefix, after, limit)
    }
    fn create(&self, key: &str, value: &[u8]) -> Result<KeyValue> {
        self.store.create(key, value)
    }
    fn update(&self, key: &str, value: &[u8], expected: Revision) -> Result<KeyValue> {
        self.store.update(key, value, expected)
    }
    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.store.delete(key, expected)
    }
    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        self.store.watch(prefix, after)
    }
    fn compact(&self, revision: Revision) -> Result<()> {
        self.store.compact(revision)
    }
    fn current_revision(&self) -> Result<Revision> {
        self.store.current_revision()
    }
    fn compacted_revision(&self) -> Revision {
        self.store.compacted_revision()
    }
    fn ready(&self) -> Result<()> {
        self.store.ready()
    }
}

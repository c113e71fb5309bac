//! An etcd member run by `skiff server` itself, as k3s's embedded etcd: the
//! first server (`--cluster-init`) makes a one-member cluster, each server that
//! joins it (`--server URL --token T`) adds a member of its own, so three
//! servers are a cluster that outlives any one of them. skiff runs Debian's
//! `etcd` (package `etcd-server`) as a child process rather than linking etcd
//! in: there is no Rust etcd server.
//!
//! Everything is TLS with the cluster CA: the member serves clients and peers
//! with certificates signed at every start (so they follow `--node-ip`), asks
//! peers and clients for certificates of the same CA, and skiff's store dials
//! its own member on loopback with a client certificate. The member's data is
//! `<data-dir>/etcd`, its log `<data-dir>/etcd.log`; it dies with skiff.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use skiff_apiserver::pki::{self, Ca};
use skiff_store::EtcdTls;

/// Debian's `etcd-server` installs it as `/usr/bin/etcd`.
pub const ETCD_BIN: &str = "etcd";
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
/// What skiff's store dials: its own member, which forwards to the leader. A
/// server cut off from its member is cut off from the cluster anyway (the member
/// runs beside it, and dies with it).
pub const LOCAL_ENDPOINT: &str = "https://127.0.0.1:2379";
/// Under the data directory: the member's data, its log, its certificates.
const DATA_DIR: &str = "etcd";
const LOG_FILE: &str = "etcd.log";
const TLS_DIR: &str = "etcd-tls";
/// How long a starting member may take to answer (a joining one catches up first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a member may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Bounds on each request of the readiness probe and the membership calls.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd's answers to a member add that pass with time.
const RETRY_ADD: [&str; 2] = ["unhealthy cluster", "no leader"];
/// Lines of the member's log shown when it does not come up.
const LOG_TAIL_LINES: usize = 20;

/// This server's member: its name (the node name), address and files.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub ip: IpAddr,
    /// skiff's data directory (the cluster CA is `ca.crt` there).
    pub data_dir: PathBuf,
}

/// How the member starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A new one-member cluster (`--cluster-init`); `token` keeps its peers from
    /// ever talking to another cluster's.
    New { token: String },
    /// A member just added to a running cluster; `initial_cluster` is every
    /// member's `name=peer-url`, this one included.
    Existing { initial_cluster: String },
    /// The member's data is there: etcd knows its cluster from it.
    Restart,
}

fn url(ip: IpAddr, port: u16) -> String {
    format!("https://{}", SocketAddr::new(ip, port))
}

impl Member {
    pub fn etcd_dir(&self) -> PathBuf {
        self.data_dir.join(DATA_DIR)
    }
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }
    pub fn client_url(&self) -> String {
        url(self.ip, CLIENT_PORT)
    }
    pub fn peer_url(&self) -> String {
        url(self.ip, PEER_PORT)
    }
    fn tls(&self, f: &str) -> PathBuf {
        self.data_dir.join(TLS_DIR).join(f)
    }
    fn ca_file(&self) -> PathBuf {
        self.data_dir.join(pki::CA)
    }

    /// Signs the member's serving, peer and client certificates with the cluster
    /// CA. The serving and peer ones are both server and client certificates:
    /// peers dial each other with theirs, and etcd's gRPC gateway dials its own
    /// member with the serving one.
    pub fn sign_certs(&self, ca: &Ca) -> Result<()> {
        let dir = self.data_dir.join(TLS_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let names = [
            self.ip.to_string(),
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            self.name.clone(),
        ];
        for (kind, cn, sans, server) in [
            (
                "server",
                format!("etcd-server:{}", self.name),
                &names[..],
                true,
            ),
            ("peer", format!("etcd-peer:{}", self.name), &names[..], true),
            ("client", CLIENT_CN.to_string(), &[][..], false),
        ] {
            let (cert, key) = ca
                .issue_leaf(&cn, sans, server, true)
                .with_context(|| format!("signing the etcd {kind} certificate"))?;
            pki::write_private(&self.tls(&format!("{kind}.key")), &key)?;
            pki::write_mode(&self.tls(&format!("{kind}.crt")), &cert, 0o644)?;
        }
        Ok(())
    }

    /// What the store presents to the member.
    pub fn store_tls(&self) -> EtcdTls {
        EtcdTls {
            ca_file: Some(self.ca_file()),
            cert_file: Some(self.tls("client.crt")),
            key_file: Some(self.tls("client.key")),
        }
    }

    /// A client of the members at `endpoints`, with this member's client certificate.
    async fn client(&self, endpoints: &[String]) -> Result<Client> {
        let read =
            |p: PathBuf| std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()));
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(self.ca_file())?))
            .identity(Identity::from_pem(
                read(self.tls("client.crt"))?,
                read(self.tls("client.key"))?,
            ));
        let options = ConnectOptions::new()
            .with_tls(tls)
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_require_leader(true);
        Client::connect(endpoints, Some(options))
            .await
            .with_context(|| format!("cannot reach etcd at {}", endpoints.join(",")))
    }
}

/// The common name of skiff's etcd client certificate.
const CLIENT_CN: &str = "skiff-etcd-client";

/// Whether `data_dir` holds an embedded etcd member's data.
pub fn has_data(data_dir: &Path) -> bool {
    data_dir.join(DATA_DIR).join("member").is_dir()
}

/// The member's command line.
pub fn args(m: &Member, start: &Start) -> Vec<String> {
    let tls = |f: &str| m.tls(f).display().to_string();
    let ca = m.ca_file().display().to_string();
    let mut a = vec![
        format!("--name={}", m.name),
        format!("--data-dir={}", m.etcd_dir().display()),
        format!(
            "--listen-client-urls={},{}",
            m.client_url(),
            url(IpAddr::from([127, 0, 0, 1]), CLIENT_PORT)
        ),
        format!("--advertise-client-urls={}", m.client_url()),
        format!("--listen-peer-urls={}", m.peer_url()),
        format!("--initial-advertise-peer-urls={}", m.peer_url()),
        format!("--cert-file={}", tls("server.crt")),
        format!("--key-file={}", tls("server.key")),
        "--client-cert-auth".to_string(),
        format!("--trusted-ca-file={ca}"),
        format!("--peer-cert-file={}", tls("peer.crt")),
        format!("--peer-key-file={}", tls("peer.key")),
        "--peer-client-cert-auth".to_string(),
        format!("--peer-trusted-ca-file={ca}"),
        // 3.4's default logger (capnslog) is deprecated and says so at every start.
        "--logger=zap".to_string(),
    ];
    match start {
        Start::New { token } => a.extend([
            format!("--initial-cluster={}={}", m.name, m.peer_url()),
            "--initial-cluster-state=new".to_string(),
            format!("--initial-cluster-token={token}"),
        ]),
        Start::Existing { initial_cluster } => a.extend([
            format!("--initial-cluster={initial_cluster}"),
            "--initial-cluster-state=existing".to_string(),
        ]),
        Start::Restart => {}
    }
    a
}

/// `--initial-cluster` for `own` joining `members` (each a name, empty for a
/// member added but never started, and its peer URLs), which already lists it.
pub fn initial_cluster(members: &[(String, Vec<String>)], own: &Member) -> Result<String> {
    let peer = own.peer_url();
    let mut out = Vec::new();
    for (name, urls) in members {
        if urls.contains(&peer) {
            out.extend(urls.iter().map(|u| format!("{}={u}", own.name)));
        } else if name.is_empty() {
            bail!(
                "etcd has a member at {} that was added but never started: start that server first (servers join one at a time)",
                urls.join(",")
            );
        } else if *name == own.name {
            bail!(
                "etcd already has a member named {name:?} at {}: give this server another --node-name",
                urls.join(",")
            );
        } else {
            out.extend(urls.iter().map(|u| format!("{name}={u}")));
        }
    }
    if !members.iter().any(|(_, urls)| urls.contains(&peer)) {
        bail!("etcd's member list does not have this server's member {peer}");
    }
    Ok(out.join(","))
}

fn listed(members: &[etcd_client::Member]) -> Vec<(String, Vec<String>)> {
    members
        .iter()
        .map(|m| (m.name().to_string(), m.peer_urls().to_vec()))
        .collect()
}

/// Adds `own` to the cluster whose members answer at `endpoints` (unless an
/// earlier attempt did and its member never started), and returns its
/// `--initial-cluster`. A member whose data was lost is not re-added: etcd
/// still counts it, and it must be removed first.
pub async fn add_member(own: &Member, endpoints: &[String]) -> Result<String> {
    if endpoints.is_empty() {
        bail!("--server: the cluster named no etcd member to join");
    }
    let mut client = own.client(endpoints).await?;
    let list = client
        .member_list()
        .await
        .with_context(|| format!("listing etcd's members at {}", endpoints.join(",")))?;
    let mut members = listed(list.members());
    let peer = own.peer_url();
    match members.iter().find(|(_, urls)| urls.contains(&peer)) {
        Some((name, _)) if !name.is_empty() => bail!(
            "etcd already has a started member {name:?} at {peer}, but {} has no data: remove that member from etcd first",
            own.etcd_dir().display()
        ),
        Some(_) => tracing::info!(%peer, "etcd member added before, not started: starting it"),
        None => {
            // etcd refuses a member while one added recently has not been
            // connected to the others for a few seconds ("unhealthy cluster"):
            // servers started one after another hit that; it passes.
            let deadline = Instant::now() + READY_TIMEOUT;
            let resp = loop {
                match client.member_add([peer.as_str()], None).await {
                    Ok(r) => break r,
                    Err(e)
                        if Instant::now() < deadline
                            && RETRY_ADD.iter().any(|m| e.to_string().contains(m)) =>
                    {
                        tracing::info!(error = %e, "etcd cannot add a member yet: retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("adding etcd member {peer}"))
                    }
                }
            };
            tracing::info!(%peer, "added this server's etcd member");
            members = listed(resp.member_list());
        }
    }
    initial_cluster(&members, own)
}

/// The running member; stopped when dropped.
pub struct Etcd {
    child: Option<Child>,
    member: Member,
}

impl Etcd {
    /// Starts the member. Its log is appended to `<data-dir>/etcd.log`.
    ///
    /// Called on the thread that runs `skiff server`'s main future (the main
    /// thread: `block_on` polls it there): the parent-death signal fires when the
    /// thread that forked the child ends, and a pool thread may end while skiff
    /// still runs.
    pub fn start(member: &Member, start: &Start) -> Result<Self> {
        let log_path = member.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot write {}", log_path.display()))?;
        let mut cmd = Command::new(ETCD_BIN);
        cmd.args(args(member, start))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().with_context(|| {
            format!("cannot run {ETCD_BIN} for the embedded etcd (Debian package etcd-server)")
        })?;
        tracing::info!(pid = child.id(), name = %member.name, ?start, "started the embedded etcd member");
        Ok(Self {
            child: Some(child),
            member: member.clone(),
        })
    }

    /// Waits until the member answers a linearizable read (it has a leader and
    /// has caught up), or fails with the end of its log.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let endpoints = [LOCAL_ENDPOINT.to_string()];
        loop {
            if let Some(status) = self.try_wait()? {
                bail!(
                    "the embedded etcd exited ({status}) before it answered; the end of {}:\n{}",
                    self.member.log_path().display(),
                    log_tail(&self.member.log_path())
                );
            }
            let probe = async {
                let mut c = self.member.client(&endpoints).await?;
                c.get("health", None).await.context("reading")?;
                anyhow::Ok(())
            };
            let err = match tokio::time::timeout(REQUEST_TIMEOUT, probe).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "no answer".to_string(),
            };
            if Instant::now() > deadline {
                bail!(
                    "the embedded etcd did not answer on {LOCAL_ENDPOINT} within {} s ({err}); the end of {}:\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.member.log_path().display(),
                    log_tail(&self.member.log_path())
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn try_wait(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().context("waiting for the embedded etcd"),
            None => Ok(None),
        }
    }

    /// Resolves when the member exits on its own, with a line saying so.
    pub async fn exited(&mut self) -> String {
        loop {
            match self.try_wait() {
                Ok(Some(status)) => {
                    return format!(
                        "the embedded etcd exited ({status}); see {}",
                        self.member.log_path().display()
                    )
                }
                Ok(None) => {}
                Err(e) => return format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`].
    pub fn stop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                tracing::info!("the embedded etcd stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!("the embedded etcd did not stop within {STOP_GRACE:?}: killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes the child get SIGKILL when skiff dies, however it dies (a SIGKILLed
/// server must not leave a member holding its ports and data).
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and makes only two raw
    // system calls (prctl, getppid), which are async-signal-safe; it allocates
    // nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            // The parent may have died before the signal was armed.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("skiff exited while starting etcd"));
            }
            Ok(())
        });
    }
}

/// The last lines of the member's log.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Records the member's client URL, for servers that join through this one
/// (see `skiff_apiserver::server_join::Bootstrap`).
pub fn advertise(member: &Member) -> Result<()> {
    let path = member
        .data_dir
        .join(skiff_apiserver::server_join::EMBEDDED_ETCD_FILE);
    pki::write_mode(&path, &format!("{}\n", member.client_url()), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, ip: &str) -> Member {
        Member {
            name: name.into(),
            ip: ip.parse().expect("ip"),
            data_dir: "/var/lib/skiff".into(),
        }
    }

    #[test]
    fn a_new_cluster_is_tls_everywhere_and_lists_only_itself() {
        let m = member("n1", "10.0.0.2");
        let a = args(
            &m,
            &Start::New {
                token: "skiff-abc".into(),
            },
        );
        for want in [
            "--name=n1",
            "--data-dir=/var/lib/skiff/etcd",
            "--listen-client-urls=https://10.0.0.2:2379,https://127.0.0.1:2379",
            "--advertise-client-urls=https://10.0.0.2:2379",
            "--listen-peer-urls=https://10.0.0.2:2380",
            "--initial-advertise-peer-urls=https://10.0.0.2:2380",
            "--cert-file=/var/lib/skiff/etcd-tls/server.crt",
            "--client-cert-auth",
            "--trusted-ca-file=/var/lib/skiff/ca.crt",
            "--peer-cert-file=/var/lib/skiff/etcd-tls/peer.crt",
            "--peer-client-cert-auth",
            "--peer-trusted-ca-file=/var/lib/skiff/ca.crt",
            "--initial-cluster=n1=https://10.0.0.2:2380",
            "--initial-cluster-state=new",
            "--initial-cluster-token=skiff-abc",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
    }

    #[test]
    fn a_joining_member_names_the_cluster_and_a_restart_names_nothing() {
        let m = member("n2", "fd00::3");
        let a = args(
            &m,
            &Start::Existing {
                initial_cluster: "n1=https://10.0.0.2:2380,n2=https://[fd00::3]:2380".into(),
            },
        );
        assert!(a.contains(&"--initial-cluster-state=existing".to_string()));
        assert!(a.contains(&"--listen-peer-urls=https://[fd00::3]:2380".to_string()));
        let r = args(&m, &Start::Restart);
        assert!(
            !r.iter().any(|x| x.starts_with("--initial-cluster")),
            "{r:?}"
        );
    }

    #[test]
    fn the_initial_cluster_names_the_new_member_and_refuses_confusion() {
        let me = member("n3", "10.0.0.4");
        let started = |n: &str, ip: &str| (n.to_string(), vec![format!("https://{ip}:2380")]);
        let unstarted = |ip: &str| (String::new(), vec![format!("https://{ip}:2380")]);
        let got = initial_cluster(
            &[
                started("n1", "10.0.0.2"),
                started("n2", "10.0.0.3"),
                unstarted("10.0.0.4"),
            ],
            &me,
        )
        .expect("ok");
        assert_eq!(
            got,
            "n1=https://10.0.0.2:2380,n2=https://10.0.0.3:2380,n3=https://10.0.0.4:2380"
        );
        let err = initial_cluster(
            &[
                started("n1", "10.0.0.2"),
                unstarted("10.0.0.3"),
                unstarted("10.0.0.4"),
            ],
            &me,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("never started"), "{err}");
        let err = initial_cluster(&[started("n3", "10.0.0.9"), unstarted("10.0.0.4")], &me)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--node-name"), "{err}");
        let err = initial_cluster(&[started("n1", "10.0.0.2")], &me)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not have"), "{err}");
    }

    #[test]
    fn certificates_are_signed_by_the_cluster_ca_for_the_member() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, _) = pki::ensure_ca(dir.path()).expect("ca");
        let m = Member {
            data_dir: dir.path().to_path_buf(),
            ..member("n1", "10.0.0.2")
        };
        m.sign_certs(&ca).expect("signed");
        let names =
            pki::cert_names(&std::fs::read_to_string(m.tls("server.crt")).expect("server cert"))
                .expect("names");
        for n in ["10.0.0.2", "127.0.0.1", "localhost", "n1"] {
            assert!(names.contains(n), "{n} not in {names:?}");
        }
        let tls = m.store_tls();
        assert!(tls.cert_file.is_some_and(|p| p.exists()));
        assert!(tls.key_file.is_some_and(|p| p.exists()));
        assert!(!has_data(dir.path()));
    }
}

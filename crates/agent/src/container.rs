//! Image containers: an overlayfs root over the image's unpacked layers and a real
//! OCI runtime (`runc`) started from a runtime spec ([`crate::oci`]). Everything of
//! one container instance lives in its bundle directory
//! `<pod dir>/<container>/run-<restart>/` (`config.json`, `rootfs`, the overlay's
//! `upper` and `work`, runc's `pid` file), so a restart starts from a fresh
//! writable layer, as upstream.
//!
//! `runc run` stays in the foreground: it is the process the agent waits on (its
//! exit status is the container's), it forwards the signals it gets to the
//! container, and `runc kill`/`runc delete --force` reach the container even when
//! runc itself is gone.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

/// The OCI runtime binary (Debian's `runc`; `crun` 1.8 refuses hybrid cgroup hosts).
pub const RUNTIME: &str = "runc";

/// Fails with a clear message when the OCI runtime is not installed.
pub async fn check_runtime() -> Result<()> {
    match Command::new(RUNTIME).arg("--version").output().await {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "the OCI runtime `{RUNTIME}` is not installed (apt-get install {RUNTIME}); \
             or pass --host-images to run the built-in catalog's host programs"
        ),
    }
}

/// Where runc keeps container state, and which container: enough to exec into it
/// or kill it, also after an agent restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuncRef {
    pub root: PathBuf,
    pub id: String,
}

impl RuncRef {
    fn command(&self) -> Command {
        let mut c = Command::new(RUNTIME);
        c.arg("--root").arg(&self.root);
        c
    }

    /// Sends `signal` to the container's init (and so, for KILL, its whole PID
    /// namespace); absent is fine.
    pub async fn kill(&self, signal: &str) {
        let _ = self
            .command()
            .args(["kill", &self.id, signal])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }

    /// Kills what is left of the container and forgets it.
    pub async fn delete(&self) {
        let _ = self
            .command()
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

/// Signals a container process: the runtime's process group (`runc run` forwards
/// what it gets to the container) and, for KILL, the container's init through the
/// runtime too, since a killed `runc run` forwards nothing.
pub async fn signal(group: u32, runc: Option<&RuncRef>, signal: &str) {
    if let (Some(r), "KILL") = (runc, signal) {
        r.kill("KILL").await;
    }
    crate::runtime::signal_group(group, signal).await;
}

/// Removes what image containers of a pod left on the node: runtime state,
/// overlay mounts (before any file of the pod directory is removed, so nothing
/// is deleted through a mount) and cgroups.
pub async fn remove_pod(pod_uid: &str, pod_dir: &Path, runcs: Vec<RuncRef>) {
    for r in runcs {
        r.delete().await;
    }
    if let Ok(rd) = std::fs::read_dir(pod_dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_bundles(&e.path()).await;
            }
        }
    }
    crate::cgroup::remove_pod(pod_uid);
}

/// runc's container id for one instance: unique per pod, container and restart.
pub fn container_id(pod_uid: &str, container: &str, restart: i32) -> String {
    format!("{pod_uid}_{container}_{restart}")
}

/// The bundle directory of one instance.
pub fn bundle_dir(container_dir: &Path, restart: i32) -> PathBuf {
    container_dir.join(format!("run-{restart}"))
}

/// The overlayfs mount options: the layers top first, as overlayfs stacks them.
pub fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> String {
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    )
}

/// Makes the bundle's root filesystem: an overlay of `layers` (bottom first) with
/// a fresh writable layer. Returns the merged directory.
pub async fn mount_rootfs(bundle: &Path, layers: &[PathBuf]) -> Result<PathBuf> {
    let (upper, work, rootfs) = (
        bundle.join("upper"),
        bundle.join("work"),
        bundle.join("rootfs"),
    );
    for d in [&upper, &work, &rootfs] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut layers = layers.to_vec();
    if layers.is_empty() {
        // An image of no layers (FROM scratch, nothing added) is an empty root.
        let empty = bundle.join("empty");
        std::fs::create_dir_all(&empty)?;
        layers.push(empty);
    }
    // The mount(2) call itself, not the `mount` program: a fork and exec on every
    // container start is time the pod waits for.
    let options = overlay_options(&layers, &upper, &work);
    let target = rootfs.clone();
    tokio::task::spawn_blocking(move || {
        nix::mount::mount(
            Some("overlay"),
            target.as_path(),
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        )
    })
    .await
    .context("mounting the container's root filesystem")?
    .with_context(|| {
        format!(
            "mounting the container's root filesystem at {}",
            rootfs.display()
        )
    })?;
    Ok(rootfs)
}

/// Unmounts and removes every instance bundle under a container's directory
/// (logs, which live beside them, stay).
pub async fn remove_bundles(container_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(container_dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with("run-") {
            continue;
        }
        remove_bundle(&e.path()).await;
    }
}

/// Unmounts and removes one bundle.
pub async fn remove_bundle(bundle: &Path) {
    // A container's first start has no bundle yet: nothing to read or unmount.
    if !bundle.exists() {
        return;
    }
    let rootfs = bundle.join("rootfs");
    if is_mount_point(&rootfs) {
        // Detached (`umount -l`): a process still holding files there does not
        // keep the bundle from going.
        let _ = tokio::task::spawn_blocking(move || {
            nix::mount::umount2(rootfs.as_path(), nix::mount::MntFlags::MNT_DETACH)
        })
        .await;
    }
    if let Err(e) = std::fs::remove_dir_all(bundle) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(bundle = %bundle.display(), error = %e, "removing a container bundle");
        }
    }
}

fn is_mount_point(p: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = p.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == want))
}

/// What starting an instance needs.
pub struct Start<'a> {
    pub runc: &'a RuncRef,
    pub bundle: &'a Path,
    pub log: &'a Path,
    pub stdin: bool,
    pub tty: bool,
}

/// `runc run` in the foreground, in its own process group, output appended to the
/// log; `tty` runs it on a pseudo-terminal (`script`), which the container's
/// process inherits as its stdio.
pub fn run(s: &Start<'_>) -> Result<Child> {
    let mut argv: Vec<String> = vec![
        RUNTIME.into(),
        "--root".into(),
        s.runc.root.to_string_lossy().into_owned(),
        // runc's own messages, apart from the container's output: a failure to
        // start is told from the process's exit by [`start_error`].
        "--log".into(),
        s.bundle.join(RUNTIME_LOG).to_string_lossy().into_owned(),
        "--log-format".into(),
        "json".into(),
        "run".into(),
        "--bundle".into(),
        s.bundle.to_string_lossy().into_owned(),
        "--pid-file".into(),
        s.bundle.join("pid").to_string_lossy().into_owned(),
        s.runc.id.clone(),
    ];
    if s.tty {
        argv = crate::runtime::under_pty(&argv);
    }
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    crate::runtime::container_stdio(&mut c, s.log, s.stdin)?;
    c.spawn().context("starting the OCI runtime")
}

/// runc's log of its own messages, in the bundle.
const RUNTIME_LOG: &str = "runc.log";
/// The file `runc run --pid-file` writes once the container is created: its
/// command was found and it is about to run it.
const PID_FILE: &str = "pid";

/// Waits until `runc run` (spawned by [`run`] on `bundle`) has created the
/// container, as kubelet reports a container Running once its runtime has
/// started it. `Err(code)`: runc exited first, with that exit code; the
/// container never started (see [`start_error`]). Gives up waiting (as
/// started) after `limit`, the exit then reported as usual.
pub async fn wait_created(child: &mut Child, bundle: &Path, limit: Duration) -> Result<(), i32> {
    let pid_file = bundle.join(PID_FILE);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if pid_file.exists() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // The pid file is written before runc returns on success.
            return match pid_file.exists() {
                true => Ok(()),
                false => Err(crate::runtime::exit_code(status)),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        // Creation takes tens of milliseconds: a check every millisecond (the
        // timer's resolution, one stat each) keeps Ready within 1 ms of it.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Why runc could not start the container of `bundle`, if it could not: its
/// last error message (`runc run failed: unable to start container process:
/// exec: "x": executable file not found in $PATH`). `None` once the container
/// was created: an exit is then the process's own.
pub fn start_error(bundle: &Path) -> Option<String> {
    if bundle.join(PID_FILE).exists() {
        return None;
    }
    let log = std::fs::read_to_string(bundle.join(RUNTIME_LOG)).unwrap_or_default();
    let message = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next_back();
    Some(message.unwrap_or_else(|| "the OCI runtime could not start the container".into()))
}

/// How to run a command inside a container: in the sandbox's namespaces for a
/// host-program container, through the runtime for an image container.
#[derive(Debug, Clone)]
pub enum ExecTarget {
    Host {
        sandbox: u32,
        workdir: String,
        env: Vec<(String, String)>,
    },
    Image(RuncRef),
}

impl ExecTarget {
    /// An image container's runtime handle if it has one, else the sandbox with
    /// the container's working directory and environment.
    pub fn of(
        runc: Option<&RuncRef>,
        sandbox: u32,
        workdir: &str,
        env: &[(String, String)],
    ) -> Self {
        match runc {
            Some(r) => Self::Image(r.clone()),
            None => Self::Host {
                sandbox,
                workdir: workdir.to_string(),
                env: env.to_vec(),
            },
        }
    }

    /// The command that runs `argv` there; `tty`: on a pseudo-terminal, made on
    /// the node by `script`, which the process inside inherits as its stdio.
    pub fn command(&self, argv: &[String], tty: bool) -> Command {
        match self {
            Self::Host {
                sandbox,
                workdir,
                env,
            } => {
                let argv = if tty {
                    crate::runtime::under_pty(argv)
                } else {
                    argv.to_vec()
                };
                let mut env = env.clone();
                if tty && !env.iter().any(|(k, _)| k == "TERM") {
                    env.push(("TERM".into(), "xterm".into()));
                }
                let mut c = crate::runtime::enter(*sandbox, workdir, &argv);
                c.env_clear()
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                c
            }
            Self::Image(r) => {
                let mut words: Vec<String> = vec![
                    RUNTIME.into(),
                    "--root".into(),
                    r.root.to_string_lossy().into_owned(),
                    "exec".into(),
                ];
                if tty {
                    words.extend(["--env".to_string(), "TERM=xterm".to_string()]);
                }
                words.push(r.id.clone());
                words.extend(argv.iter().cloned());
                if tty {
                    words = crate::runtime::under_pty(&words);
                }
                let mut c = Command::new(&words[0]);
                c.args(&words[1..]);
                c
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_stacks_top_first() {
        let o = overlay_options(
            &["/l/base".into(), "/l/top".into()],
            Path::new("/b/upper"),
            Path::new("/b/work"),
        );
        assert_eq!(
            o,
            "lowerdir=/l/top:/l/base,upperdir=/b/upper,workdir=/b/work"
        );
    }

    #[test]
    fn ids() {
        assert_eq!(container_id("u", "web", 2), "u_web_2");
        assert_eq!(
            bundle_dir(Path::new("/p/web"), 2),
            PathBuf::from("/p/web/run-2")
        );
    }
}

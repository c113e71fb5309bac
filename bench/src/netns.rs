//! Keeping a benchmark's traffic inside a network namespace the benchmark creates.
//!
//! The binary is started normally (the "outer" run). It makes a fresh namespace with
//! only `lo` up, re-executes itself inside it with `--inner NAME`, waits, and deletes the
//! namespace afterwards: on success, on failure, and on Ctrl-C / SIGTERM / SIGHUP (which
//! it forwards to the inner run by PID so the inner run can remove its temp files).
//! Only a SIGKILL of the outer run can leave the namespace behind (the inner run then
//! notices it was orphaned and stops; `ip netns del skiff-bench-<pid>` removes the rest).

use std::ffi::OsString;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};

/// The flag the outer run passes to the inner run, followed by the namespace's name.
pub const INNER_FLAG: &str = "--inner";

/// A network namespace this process created; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// `ip netns add NAME` and `lo` up. Needs root (CAP_SYS_ADMIN).
    pub fn create(name: &str) -> Result<Self> {
        ip(&["netns", "add", name])
            .context("creating the benchmark's network namespace (run as root)")?;
        // From here on, drop removes the namespace even if bringing `lo` up fails.
        let ns = Netns {
            name: name.to_owned(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Netns {
    /// SIGKILLs, by PID, every process still inside the namespace: all of them were
    /// started by this benchmark's inner run (etcd members, say), and a namespace that
    /// is deleted with processes in it lives on, unnamed, until they exit.
    fn kill_leftovers(&self) {
        let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if pid.parse::<u32>().is_ok() {
                eprintln!(
                    "killing process {pid} left in network namespace {}",
                    self.name
                );
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_leftovers();
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!(
                "warning: could not delete network namespace {}: {e:#}",
                self.name
            );
        }
    }
}

/// Refuses to go on unless this process really is inside namespace `name`, so that an
/// `--inner` run started by hand cannot put a server in the machine's own namespace.
pub fn verify_inside(name: &str) -> Result<()> {
    let out = Command::new("ip")
        .args(["netns", "identify", &std::process::id().to_string()])
        .output()
        .context("cannot run `ip netns identify`")?;
    let current = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || current.trim() != name {
        bail!(
            "refusing to run: this process is not inside network namespace {name} \
             (start the benchmark without {INNER_FLAG}; it makes its own namespace)"
        );
    }
    Ok(())
}

/// The outer run: re-executes this binary inside a fresh namespace named
/// `<prefix>-<pid>` and returns the inner run's exit status.
pub fn run_outer(prefix: &str) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(outer(prefix))
}

async fn outer(prefix: &str) -> Result<ExitCode> {
    // Subscribe before anything exists that would need cleaning up.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;

    let ns = Netns::create(&format!("{prefix}-{}", std::process::id()))?;
    let exe = std::env::current_exe().context("locating this benchmark's binary")?;
    let mut args: Vec<OsString> = vec![INNER_FLAG.into(), ns.name().into()];
    args.extend(std::env::args_os().skip(1));
    // `ip netns exec` execs the program, so the child's PID is the inner run's own.
    let mut child = tokio::process::Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(&exe)
        .args(&args)
        .kill_on_drop(true)
        .spawn()
        .context("starting the inner run")?;

    let status = tokio::select! {
        s = child.wait() => s?,
        _ = int.recv() => stop(&mut child).await?,
        _ = term.recv() => stop(&mut child).await?,
        _ = hup.recv() => stop(&mut child).await?,
    };
    drop(ns);
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// Asks the inner run (by PID) to stop and clean up; kills it if it does not.
async fn stop(child: &mut tokio::process::Child) -> Result<std::process::ExitStatus> {
    eprintln!("interrupted: stopping the benchmark");
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(s) => Ok(s?),
        Err(_) => {
            child.start_kill()?;
            Ok(child.wait().await?)
        }
    }
}

/// For the inner run: resolves on Ctrl-C, SIGTERM or SIGHUP, or when the outer run is
/// gone (killed with SIGKILL, so it could not pass the signal on): an orphaned inner run
/// must not keep a server running.
pub async fn interrupted() -> Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let parent = std::os::unix::process::parent_id();
    let orphaned = async {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        while std::os::unix::process::parent_id() == parent {
            tick.tick().await;
        }
        eprintln!("the outer run is gone: stopping");
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
        _ = orphaned => {}
    }
    Ok(())
}

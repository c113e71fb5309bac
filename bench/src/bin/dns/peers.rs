//! The peers: Knot DNS and dnsmasq, each started as a child process on its own
//! loopback address inside the benchmark's namespace, serving the same records.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::records::{Records, ZONE};

/// A child process killed (by its PID, through `Child`) and reaped on drop.
pub struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn spawn(name: &'static str, cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name} (is it installed? see bench/README.md)"))?;
        Ok(Process { name, child })
    }

    /// Fails if the process has already exited (a bad configuration, a port taken).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Knot DNS with `workers` UDP workers (as many as skiff has UDP sockets).
pub fn knot(dir: &Path, records: &Records, addr: &str, workers: usize) -> Result<Process> {
    let zone = dir.join(format!("{ZONE}.zone"));
    std::fs::write(&zone, records.knot_zone())?;
    let conf = dir.join("knot.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  listen: {addr}@53\n  udp-workers: {workers}\n  tcp-workers: 1\n  \
             background-workers: 1\n  rundir: {d}\n\
             database:\n  storage: {d}\n\
             log:\n  - target: stderr\n    any: error\n\
             zone:\n  - domain: {ZONE}\n    file: {z}\n    journal-content: none\n    \
             zonefile-sync: -1\n",
            d = dir.display(),
            z = zone.display()
        ),
    )?;
    Process::spawn("knotd", Command::new("knotd").arg("-c").arg(&conf))
}

/// dnsmasq (single-threaded by design) answering only from its configuration.
pub fn dnsmasq(dir: &Path, records: &Records, addr: &str) -> Result<Process> {
    let conf = dir.join("dnsmasq.conf");
    std::fs::write(
        &conf,
        format!(
            "port=53\nlisten-address={addr}\nbind-interfaces\nno-resolv\nno-hosts\n\
             user=root\ncache-size=10000\n{}",
            records.dnsmasq_lines()
        ),
    )?;
    Process::spawn(
        "dnsmasq",
        Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--pid-file=", "-C"])
            .arg(&conf),
    )
}

/// Waits until the server at `addr` answers `name` with an address.
pub fn wait_answers(
    what: &str,
    addr: &str,
    name: &str,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        alive()?;
        let out = Command::new("dig")
            .args([&format!("@{addr}"), "+short", "+time=1", "+tries=1", name])
            .output()
            .context("running dig")?;
        if !out.stdout.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} at {addr} does not answer {name}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The peers' versions as they report them (for the record).
pub fn versions() -> (String, String) {
    let first_line = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("{cmd} (version unknown)"))
    };
    (first_line("knotd"), first_line("dnsmasq"))
}

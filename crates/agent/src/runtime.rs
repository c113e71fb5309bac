//! Processes: the pod sandbox (a `sleep` holding fresh network, UTS and IPC
//! namespaces with the pod's hostname, and for host-program pods a mount namespace
//! with its own resolv.conf/hosts/hostname bind mounted) and containers (process
//! groups entered into the sandbox's namespaces).
//! Processes are started through `unshare`/`nsenter`, so nothing forks in async code,
//! and they outlive the agent: a restarted agent adopts them by PID and start time.

use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// A process identified across agent restarts: PID plus kernel start time, so a
/// reused PID is never mistaken for ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: u32,
    pub start: u64,
}

impl Proc {
    pub fn of(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            start: start_time(pid)?,
        })
    }

    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start) && !is_zombie(self.pid)
    }
}

/// Field 22 of `/proc/PID/stat`: start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 2..].to_string();
            rest.split_whitespace().next().map(|st| st == "Z")
        })
        .unwrap_or(false)
}

/// Sets the sandbox up from inside its new namespaces, then holds them. Setting
/// up costs three processes besides the shell (each one a fork and exec, which is
/// most of a pod's start time): the hostname is written to the UTS namespace's
/// `/proc/sys/kernel/hostname` by the shell itself, one `mount -a` reads the pod's
/// bind mounts (`resolv.conf`, `hosts`, `hostname` over `/etc/*`) from a
/// pod-private fstab (only when that fstab is not empty: host-program pods), and one `ip -batch` makes the veth pair from inside (`eth0`
/// here, its peer moved straight into the node's namespace), brings `lo` and
/// `eth0` up with the pod's address and adds the default route.
///
/// The holder then watches `eth0`'s carrier: it comes up once the agent has put the
/// node's end on the bridge and set it up, and goes away only when that end is
/// removed, i.e. the agent tore the pod down or the node's network namespace itself
/// is gone (a test cluster deleted while the agent was dead). Then nothing can reach
/// the pod any more, so it kills every process left in its network namespace
/// instead of leaking them (checked over netlink with `ip`, every 5 s); one `find`
/// then picks the processes sharing the namespace. A sandbox never wired within
/// 30 s (its agent died while starting it) ends the same way; a live agent then
/// simply makes a new one.
const SANDBOX_SCRIPT: &str = r#"printf '%s\n' "$1" > /proc/sys/kernel/hostname || exit 1
if [ -s "$2/fstab" ]; then mount -a -T "$2/fstab" || exit 1; fi
ip -batch "$2/network" || exit 1
echo ready
exec </dev/null >/dev/null 2>&1
wired() { case "$(ip -o link show dev eth0 2>/dev/null)" in *LOWER_UP*) return 0;; esac; return 1; }
n=0
until wired; do n=$((n+1)); [ $n -gt 150 ] && break; sleep 0.2; done
while wired; do sleep 5; done
ino=$(readlink /proc/$$/ns/net | tr -dc 0-9)
for d in $(find /proc/[0-9]*/ns/net -maxdepth 0 -lname "net:\[$ino\]" 2>/dev/null); do
  p=${d#/proc/}; p=${p%%/*}
  [ "$p" = "$$" ] || kill -KILL "$p" 2>/dev/null
done
exit 0"#;

/// The files bind-mounted over the sandbox's `/etc`, from the pod's directory.
const ETC_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// An fstab field: spaces, tabs, newlines and backslashes octal-escaped, as
/// `mount` reads them.
fn fstab_escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The sandbox's fstab: the pod's `/etc` files bind-mounted from `dir`.
pub fn sandbox_fstab(dir: &Path) -> String {
    ETC_FILES
        .iter()
        .map(|f| {
            let src = fstab_escape(&dir.join(f).to_string_lossy());
            format!("{src} /etc/{f} none bind 0 0\n")
        })
        .collect()
}

/// Starts a pod sandbox whose files (`hostname`, `hosts`, `resolv.conf`) live in
/// `dir`; `network` is the `ip -batch` script it runs inside its new network
/// namespace. `bind_etc`: bind those files over the sandbox's `/etc`, which only
/// host-program containers (the `--host-images` catalog) see; image containers get
/// them from their runc config, so image pods skip the `mount` run (a few ms of
/// every pod start) and the sandbox's own mount namespace. Returns once it is set
/// up.
pub async fn start_sandbox(
    dir: &Path,
    hostname: &str,
    network: &str,
    bind_etc: bool,
) -> Result<(Proc, Child)> {
    let fstab = if bind_etc {
        sandbox_fstab(dir)
    } else {
        String::new()
    };
    std::fs::write(dir.join("fstab"), fstab)?;
    std::fs::write(dir.join("network"), network)?;
    let err_path = dir.join("sandbox.err");
    let err = std::fs::File::create(&err_path)?;
    // A mount namespace only where the `/etc` files are bound in it: an image
    // container has a mount namespace of its own (runc's), and making one copies
    // every mount of the node's (each running container's root among them).
    let mount_ns: &[&str] = if bind_etc {
        &["--mount", "--propagation", "private"]
    } else {
        &[]
    };
    let mut child = Command::new("unshare")
        .args(["--net", "--uts", "--ipc"])
        .args(mount_ns)
        .args(["--", "sh", "-c", SANDBOX_SCRIPT, "sandbox", hostname])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        // Its own process group: signals to the agent's group never reach pods.
        .process_group(0)
        .spawn()
        .context("starting the pod sandbox")?;
    let pid = child.id().context("sandbox exited at once")?;
    let stdout = child.stdout.take().context("sandbox stdout")?;
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(stdout);
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reader.read_line(&mut line),
    )
    .await;
    if !matches!(read, Ok(Ok(_))) || line.trim() != "ready" {
        let _ = child.start_kill();
        let _ = child.wait().await;
        let msg = std::fs::read_to_string(&err_path).unwrap_or_default();
        bail!("pod sandbox setup failed: {}", msg.trim());
    }
    let proc = Proc::of(pid).context("sandbox vanished")?;
    Ok((proc, child))
}

/// What a container process is started with.
pub struct Spawn<'a> {
    pub sandbox: u32,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub workdir: &'a str,
    pub log: &'a Path,
    pub stdin: bool,
    pub tty: bool,
}

/// Quotes a word for `sh`.
pub fn shell_quote(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// The `nsenter` invocation that runs `argv` inside a sandbox's namespaces.
pub fn enter(sandbox: u32, workdir: &str, argv: &[String]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg("-t")
        .arg(sandbox.to_string())
        .args(["-n", "-u", "-i", "-m"])
        .arg(format!("--wd={workdir}"))
        .arg("--")
        .args(argv);
    c
}

/// Wraps `argv` so that it runs on a fresh pseudo-terminal (`script` allocates it).
pub fn under_pty(argv: &[String]) -> Vec<String> {
    let line = argv
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        "script".into(),
        "-q".into(),
        "-f".into(),
        "-e".into(),
        "-c".into(),
        line,
        "/dev/null".into(),
    ]
}

/// Starts a container process in its own process group, output appended to `log`.
pub fn spawn_container(s: &Spawn<'_>) -> Result<Child> {
    let argv = if s.tty {
        under_pty(s.argv)
    } else {
        s.argv.to_vec()
    };
    let mut c = enter(s.sandbox, s.workdir, &argv);
    c.env_clear()
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    container_stdio(&mut c, s.log, s.stdin)?;
    c.spawn().context("starting the container process")
}

/// A container process's stdio and group: stdin piped or none, output appended
/// to `log`, its own process group (signals to the agent's never reach it).
pub fn container_stdio(c: &mut Command, log: &Path, stdin: bool) -> Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    c.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    Ok(())
}

/// Sends `signal` to a process group; absent is fine.
pub async fn signal_group(pid: u32, signal: &str) {
    let _ = tokio::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Sends `signal` to one process; absent is fine.
pub async fn signal(pid: u32, signal: &str) {
    let _ = tokio::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// The exit code the way container runtimes report it: 128 + signal when killed.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn own_process_is_alive() {
        let p = Proc::of(std::process::id()).unwrap();
        assert!(p.alive());
        let stale = Proc {
            pid: p.pid,
            start: p.start + 1,
        };
        assert!(!stale.alive());
    }
}

//! The benchmark's pods, inside the namespace the benchmark runs in (the
//! "node"): each pod is a namespace joined to the node by a veth pair, with a
//! /32 address and a default route via the node, so pod-to-pod traffic is
//! forwarded by the node and crosses the forward hook where the enforcer's
//! table sits (the routed layout of the proxy's e2e test; a bridge with
//! br_netfilter reaches the same hook).
//!
//! Everything made here is removed on drop: helper processes (by PID, through
//! `kill_on_drop`), then the namespaces (which take their veths along).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The node's side of every veth, and the pods' default gateway.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
/// The port every server pod listens on.
pub const PORT: u16 = 8080;

/// A pod of the benchmark: its name (in the API and as a namespace suffix),
/// address and labels.
#[derive(Debug, Clone, Copy)]
pub struct PodSpec {
    pub name: &'static str,
    pub ip: Ipv4Addr,
    pub labels: &'static [(&'static str, &'static str)],
}

/// Opens the load's connections; allowed by the last policy selecting the server.
pub const CLIENT: PodSpec = PodSpec {
    name: "client",
    ip: Ipv4Addr::new(10, 244, 0, 2),
    labels: &[("role", "client")],
};
/// Runs the enforcement prober; allowed like the client.
pub const PROBER: PodSpec = PodSpec {
    name: "prober",
    ip: Ipv4Addr::new(10, 244, 0, 3),
    labels: &[("role", "client")],
};
/// No policy allows it: checks that the policies are in force.
pub const INTRUDER: PodSpec = PodSpec {
    name: "intruder",
    ip: Ipv4Addr::new(10, 244, 0, 4),
    labels: &[("role", "intruder")],
};
/// The load's target, selected by `--selecting` of the policies.
pub const SERVER: PodSpec = PodSpec {
    name: "server",
    ip: Ipv4Addr::new(10, 244, 0, 10),
    labels: &[("app", "server")],
};
/// The prober's target, which the measured changes isolate and release.
pub const TARGET: PodSpec = PodSpec {
    name: "target",
    ip: Ipv4Addr::new(10, 244, 0, 11),
    labels: &[("app", "target")],
};

pub const PODS: [PodSpec; 5] = [CLIENT, PROBER, INTRUDER, SERVER, TARGET];

pub fn addr(pod: PodSpec) -> SocketAddr {
    SocketAddr::from((pod.ip, PORT))
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A pod namespace; deleted on drop.
struct PodNs {
    name: String,
}

impl Drop for PodNs {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("warning: could not delete namespace {}: {e:#}", self.name);
        }
    }
}

/// The pods and the processes running in them.
pub struct Topology {
    prefix: String,
    // Processes before namespaces: fields drop in declaration order.
    servers: Vec<Child>,
    namespaces: Vec<PodNs>,
}

impl Topology {
    /// Makes every pod of [`PODS`] and starts the two servers. `prefix` names
    /// the namespaces (the benchmark's own namespace name).
    pub fn create(prefix: &str) -> Result<Self> {
        // Forwarding is off in a fresh namespace.
        run("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        let mut t = Topology {
            prefix: prefix.to_string(),
            servers: Vec::new(),
            namespaces: Vec::new(),
        };
        for pod in PODS {
            t.pod(pod)?;
        }
        for pod in [SERVER, TARGET] {
            let child = t
                .helper(pod, &["serve".into(), "--port".into(), PORT.to_string()])?
                .stdin(Stdio::null())
                .spawn()
                .with_context(|| format!("starting the server in {}", pod.name))?;
            t.servers.push(child);
        }
        Ok(t)
    }

    fn ns_name(&self, pod: PodSpec) -> String {
        format!("{}-{}", self.prefix, pod.name)
    }

    fn pod(&mut self, pod: PodSpec) -> Result<()> {
        let ns = self.ns_name(pod);
        run("ip", &["netns", "add", &ns])?;
        self.namespaces.push(PodNs { name: ns.clone() });
        let host_if = format!("vb-{}", pod.name);
        let (a, gw) = (format!("{}/32", pod.ip), GATEWAY.to_string());
        run(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        run("ip", &["addr", "add", &format!("{gw}/32"), "dev", &host_if])?;
        run("ip", &["link", "set", &host_if, "up"])?;
        run("ip", &["route", "add", &a, "dev", &host_if])?;
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        run("ip", &["-n", &ns, "addr", "add", &a, "dev", "eth0"])?;
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", &ns, "route", "add", &gw, "dev", "eth0"])?;
        run("ip", &["-n", &ns, "route", "add", "default", "via", &gw])?;
        // Room for the load's ephemeral ports (the range is per namespace).
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_local_port_range=1024 65000",
            ],
        )?;
        Ok(())
    }

    /// This benchmark binary, re-executed inside `pod` with `args`.
    fn helper(&self, pod: PodSpec, args: &[String]) -> Result<tokio::process::Command> {
        let exe = std::env::current_exe().context("locating the benchmark binary")?;
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", &self.ns_name(pod)])
            .arg(exe)
            .args(args)
            .kill_on_drop(true);
        Ok(c)
    }

    /// Runs a helper in `pod` to completion and returns its stdout.
    pub async fn run_in(&self, pod: PodSpec, args: &[String]) -> Result<String> {
        let out = self
            .helper(pod, args)?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .output()
            .await
            .with_context(|| format!("running {args:?} in {}", pod.name))?;
        if !out.status.success() {
            bail!(
                "{args:?} in {} failed: {}",
                pod.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Starts the prober in [`PROBER`].
    pub fn prober(&self) -> Result<Prober> {
        let mut child = self
            .helper(PROBER, &["probe".into()])?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the prober")?;
        let stdin = child.stdin.take().context("prober stdin")?;
        let stdout = child.stdout.take().context("prober stdout")?;
        Ok(Prober {
            _child: child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }
}

/// The running prober (see `wire::probe`); killed on drop.
pub struct Prober {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Prober {
    /// Starts waiting until new connections to `target` are allowed (or denied).
    pub async fn start(&mut self, allow: bool, target: SocketAddr) -> Result<()> {
        let want = if allow { "allow" } else { "deny" };
        self.stdin
            .write_all(format!("{want} {target}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// The time from [`Prober::start`] to the first connection that behaved so.
    pub async fn done(&mut self) -> Result<std::time::Duration> {
        let line = self.lines.next_line().await?.context("the prober exited")?;
        match line.strip_prefix("ok ") {
            Some(us) => Ok(std::time::Duration::from_micros(us.parse()?)),
            None => bail!("probe failed: {line}"),
        }
    }
}

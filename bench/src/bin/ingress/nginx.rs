//! The peer: Debian's nginx as a reverse proxy to the same pod IPs the ingress
//! routes to (an `upstream` per backend, keep-alive to the pods), run by this
//! benchmark inside its namespace as a foreground process (`daemon off`) with
//! its own configuration and files, and stopped by its PID.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cluster::{Pods, BACKEND_PORT, HOST, NODE_IP};
use crate::load;

/// nginx listens beside the ingress, on the node's address.
const PORT: u16 = 8081;

pub struct Nginx {
    child: Option<tokio::process::Child>,
    pub addr: SocketAddr,
    dir: PathBuf,
    pods: Pods,
}

fn upstream(out: &mut String, name: &str, ips: &[Ipv4Addr]) {
    let _ = writeln!(out, "  upstream {name} {{");
    for ip in ips {
        let _ = writeln!(out, "    server {ip}:{BACKEND_PORT};");
    }
    let _ = writeln!(out, "    keepalive 128;\n  }}");
}

fn location(out: &mut String, path: &str, upstream: &str) {
    let _ = writeln!(
        out,
        "    location {path} {{\n      proxy_pass http://{upstream};\n      proxy_http_version 1.1;\n      \
         proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n      \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      \
         proxy_set_header X-Forwarded-Proto $scheme;\n    }}"
    );
}

/// The configuration: `/a` and `/b` as the Ingress has them, plus `extra`
/// paths to echo-b (the route changes).
fn config(dir: &Path, pods: &Pods, extra: &[String]) -> String {
    let d = dir.display();
    let mut out = format!(
        "worker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\nhttp {{\n  access_log {d}/access.log;\n  \
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n"
    );
    upstream(&mut out, "echo_a", &pods.a);
    upstream(&mut out, "echo_b", &pods.b);
    let _ = writeln!(
        out,
        "  server {{\n    listen {NODE_IP}:{PORT};\n    server_name {HOST};"
    );
    location(&mut out, "/a", "echo_a");
    location(&mut out, "/b", "echo_b");
    for path in extra {
        location(&mut out, path, "echo_b");
    }
    out.push_str("  }\n}\n");
    out
}

impl Nginx {
    /// Writes the configuration under `dir/nginx` and starts nginx; returns once
    /// `/a` answers through it.
    pub async fn start(bin: &Path, dir: &Path, pods: &Pods, extra: &[String]) -> Result<Self> {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, pods, extra))?;
        let child = tokio::process::Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let nginx = Nginx {
            child: Some(child),
            addr: SocketAddr::from((NODE_IP, PORT)),
            dir,
            pods: pods.clone(),
        };
        load::wait_answer(nginx.addr, "/a", "echo-a", Duration::from_secs(10))
            .await
            .with_context(|| {
                format!(
                    "nginx never answered; its error log:\n{}",
                    std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
                )
            })?;
        eprintln!("nginx up at {}", nginx.addr);
        Ok(nginx)
    }

    fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .and_then(tokio::process::Child::id)
            .context("nginx is not running")
    }

    /// Rewrites the configuration with `extra` paths and asks nginx to reload
    /// it (SIGHUP to the master, by PID).
    pub fn reload(&self, extra: &[String]) -> Result<()> {
        std::fs::write(
            self.dir.join("nginx.conf"),
            config(&self.dir, &self.pods, extra),
        )?;
        let status = Command::new("kill")
            .args(["-HUP", &self.pid()?.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -HUP nginx failed");
        }
        Ok(())
    }
}

/// The PIDs whose parent is `pid` (nginx's workers).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

impl Drop for Nginx {
    /// Fast shutdown (SIGTERM to the master, which stops its workers); if the
    /// master is still there after 5 s, its workers and then it are killed by PID.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let Some(pid) = child.id() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The master is still there, so these are still its workers.
        for w in children(pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &w.to_string()])
                .status();
        }
        let _ = child.start_kill();
        std::thread::sleep(Duration::from_millis(50));
        let _ = child.try_wait();
    }
}

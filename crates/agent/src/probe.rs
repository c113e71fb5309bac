//! Container probes: httpGet and tcpSocket against the pod IP from the node (as
//! kubelet does), exec inside the pod's namespaces.

use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::container::ExecTarget;

/// A port given by number or by the name of a container port.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok().filter(|p| *p > 0),
        IntOrString::String(s) => {
            if let Ok(n) = s.parse::<u16>() {
                return Some(n);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }
    }
}

pub async fn run(p: &Probe, c: &Container, pod_ip: Ipv4Addr, target: &ExecTarget) -> bool {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    let fut = async {
        if let Some(h) = &p.http_get {
            let Some(port) = resolve_port(&h.port, c) else {
                return false;
            };
            let host = h.host.clone().unwrap_or_else(|| pod_ip.to_string());
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            http_get(
                &host,
                port,
                &path,
                h.http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.as_str(), h.value.as_str()))
                    .collect(),
            )
            .await
        } else if let Some(t) = &p.tcp_socket {
            let Some(port) = resolve_port(&t.port, c) else {
                return false;
            };
            let host = t.host.clone().unwrap_or_else(|| pod_ip.to_string());
            tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .is_ok()
        } else if let Some(e) = &p.exec {
            let argv = e.command.clone().unwrap_or_default();
            if argv.is_empty() {
                return false;
            }
            let mut cmd = target.command(&argv, false);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            matches!(cmd.status().await, Ok(s) if s.success())
        } else {
            false
        }
    };
    tokio::time::timeout(timeout, fut).await.unwrap_or(false)
}

/// Success is a 2xx or 3xx status, as kubelet's prober.
async fn http_get(host: &str, port: u16, path: &str, headers: Vec<(&str, &str)>) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect((host, port)).await else {
        return false;
    };
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while got.len() < 12 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&got);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..400).contains(&c))
}

//! The proxier's few side effects outside `nft`: the service-CIDR route, node
//! address discovery and conntrack cleanup, all through the ordinary tools
//! (`ip`, `conntrack`) so there is no netlink code to maintain here.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::model::{Cidr, Proto};
use crate::ruleset::{FAMILY, TABLE};
use crate::{Error, Result};

/// Routing table holding the service CIDR's `unreachable` route.
pub const ROUTE_TABLE: u32 = 29547;
/// Routing table holding the route the node's own sockets use for service addresses.
pub const LOCAL_ROUTE_TABLE: u32 = 29546;
/// Rule sending the node's own traffic to the service CIDR to [`LOCAL_ROUTE_TABLE`]:
/// a local connect() routes before the output hook DNATs, so an unreachable route
/// (or none: a node without a default route) would fail every ClusterIP from the
/// node itself. The route there goes through `lo`, so it also works on a node with
/// no default route, and the kernel still picks a global source address; after
/// DNAT the packet is rerouted to the endpoint, and what is not DNATed is rejected
/// by the table's filter chains and never leaves the node.
pub const RULE_PREF_LOCAL: u32 = 29546;
/// Rule sending everything else (forwarded, never DNATed) to the unreachable route.
pub const RULE_PREF_UNREACHABLE: u32 = 29547;

fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            cmd: cmd.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: format!("{cmd} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd args` with `input` on its stdin; its stderr on failure.
async fn run_with_input(cmd: &str, args: &[&str], input: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let spawn_err = |e: std::io::Error| format!("running {cmd}: {e}");
    let mut child = tokio::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).await.map_err(spawn_err)?;
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Feeds `text` to `nft -f -` as one transaction.
pub async fn nft_apply(text: &str) -> Result<()> {
    run_with_input("nft", &["-f", "-"], text)
        .await
        .map_err(Error::Nft)
}

/// Runs `lines` through one `ip -batch -`.
pub async fn ip_batch(lines: &[String]) -> Result<()> {
    let mut input = lines.join("\n");
    input.push('\n');
    run_with_input("ip", &["-batch", "-"], &input)
        .await
        .map_err(|stderr| Error::Command {
            cmd: format!("ip -batch ({})", lines.join("; ")),
            stderr,
        })
}

/// Removes the proxier's table (shutdown). Blocking: runs from `Drop`.
pub fn delete_table() {
    if let Err(e) = run("nft", &["delete", "table", FAMILY, TABLE]) {
        tracing::debug!(error = %e, "deleting the nft table");
    }
}

/// The node's global-scope IPv4 addresses (never loopback), for node ports when
/// no node address is configured.
pub fn node_ipv4s() -> Vec<Ipv4Addr> {
    let Ok(out) = run("ip", &["-4", "-o", "addr", "show", "scope", "global"]) else {
        return Vec::new();
    };
    // `2: eth0    inet 10.0.0.5/24 brd ... scope global eth0`
    out.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .filter(|ip: &Ipv4Addr| !ip.is_loopback())
        .collect()
}

/// Installs the `unreachable` route for the service CIDR (idempotent).
pub fn install_route(cidr: Cidr) -> Result<()> {
    remove_route(cidr);
    let c = cidr.to_string();
    let table = ROUTE_TABLE.to_string();
    run(
        "ip",
        &["route", "replace", "unreachable", &c, "table", &table],
    )?;
    let local_table = LOCAL_ROUTE_TABLE.to_string();
    run(
        "ip",
        &["route", "replace", &c, "dev", "lo", "table", &local_table],
    )?;
    run(
        "ip",
        &[
            "rule",
            "add",
            "pref",
            &RULE_PREF_LOCAL.to_string(),
            "to",
            &c,
            "iif",
            "lo",
            "lookup",
            &local_table,
        ],
    )?;
    run(
        "ip",
        &[
            "rule",
            "add",
            "pref",
            &RULE_PREF_UNREACHABLE.to_string(),
            "to",
            &c,
            "lookup",
            &table,
        ],
    )?;
    Ok(())
}

/// Removes what [`install_route`] added; missing pieces are fine.
pub fn remove_route(cidr: Cidr) {
    let c = cidr.to_string();
    for pref in [RULE_PREF_LOCAL, RULE_PREF_UNREACHABLE] {
        let _ = run("ip", &["rule", "del", "pref", &pref.to_string()]);
    }
    let _ = run(
        "ip",
        &[
            "route",
            "del",
            "unreachable",
            &c,
            "table",
            &ROUTE_TABLE.to_string(),
        ],
    );
    let _ = run(
        "ip",
        &[
            "route",
            "del",
            &c,
            "dev",
            "lo",
            "table",
            &LOCAL_ROUTE_TABLE.to_string(),
        ],
    );
}

/// Deletes the conntrack entries whose replies come from `ep:port`, an endpoint
/// no service uses any more.
///
/// UDP: every such flow, or a client that keeps its socket (a DNS resolver) would
/// keep sending datagrams to a dead pod until the entry times out. TCP: only the
/// connections still waiting for a SYN-ACK (`SYN_SENT`, kept 120 s): a client
/// retransmitting its SYN, or reusing the source port of an attempt that failed,
/// would otherwise follow the old DNAT to the dead pod; with the entry gone the
/// next SYN picks a live endpoint. Established connections are left alone so a
/// pod that only went not ready finishes what it is serving.
pub async fn conntrack_flush(proto: Proto, ep: Ipv4Addr, port: u16) {
    let out = tokio::process::Command::new("conntrack")
        .args(conntrack_delete_args(proto, ep, port))
        .output()
        .await;
    match out {
        // Exit status 1 with "0 flow entries" just means nothing to delete.
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "conntrack is not usable; stale flows stay"),
    }
}

/// The `conntrack` arguments of [`conntrack_flush`].
pub fn conntrack_delete_args(proto: Proto, ep: Ipv4Addr, port: u16) -> Vec<String> {
    let mut args = vec![
        "-D".to_string(),
        "-p".to_string(),
        proto.to_string(),
        "--reply-src".to_string(),
        ep.to_string(),
        "--reply-port-src".to_string(),
        port.to_string(),
    ];
    if proto == Proto::Tcp {
        args.extend(["--state".to_string(), "SYN_SENT".to_string()]);
    }
    args
}

//! The enforcer's side effects: feeding transactions to `nft`, reading its
//! counters back and removing the table, all through the ordinary `nft` tool.

use std::collections::HashMap;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::ruleset::{FAMILY, TABLE};
use crate::{Error, Result};

/// Feeds `text` to `nft -f -` as one transaction.
pub async fn nft_apply(text: &str) -> Result<()> {
    let spawn_err = |source| Error::Spawn {
        cmd: "nft -f -".into(),
        source,
    };
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).await.map_err(spawn_err)?;
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Nft(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// Packets and bytes of every named counter in the table.
pub async fn read_counters() -> Result<HashMap<String, (u64, u64)>> {
    let cmd = format!("nft -j list counters table {FAMILY} {TABLE}");
    let out = tokio::process::Command::new("nft")
        .args(["-j", "list", "counters", "table", FAMILY, TABLE])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| Error::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(parse_counters(&String::from_utf8_lossy(&out.stdout)))
}

/// `{"nftables": [{"metainfo": ...}, {"counter": {"name": ..., "packets": n,
/// "bytes": n, ...}}, ...]}` -> name -> (packets, bytes).
pub fn parse_counters(json: &str) -> HashMap<String, (u64, u64)> {
    let mut out = HashMap::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return out;
    };
    for item in v["nftables"].as_array().into_iter().flatten() {
        let c = &item["counter"];
        if let (Some(name), Some(packets), Some(bytes)) = (
            c["name"].as_str(),
            c["packets"].as_u64(),
            c["bytes"].as_u64(),
        ) {
            out.insert(name.to_string(), (packets, bytes));
        }
    }
    out
}

/// Removes the enforcer's table (shutdown). Blocking: runs from `Drop`.
pub fn delete_table() {
    let out = std::process::Command::new("nft")
        .args(["delete", "table", FAMILY, TABLE])
        .stderr(Stdio::null())
        .status();
    if let Err(e) = out {
        tracing::debug!(error = %e, "deleting the netpol nft table");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_from_nft_json() {
        let j = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"counter": {"family": "ip", "name": "denied/in/default/broker", "table": "skiff-netpol", "handle": 5, "packets": 3, "bytes": 180}}]}"#;
        let c = parse_counters(j);
        assert_eq!(c.get("denied/in/default/broker"), Some(&(3, 180)));
        assert!(parse_counters("not json").is_empty());
    }
}

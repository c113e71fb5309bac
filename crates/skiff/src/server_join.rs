//! `skiff server --server URL --token K10...::server:<secret>`: another API
//! server for a cluster whose state is in etcd. Before the store is opened it
//! fetches the cluster's CA (trusted only if it is the one the token names) and
//! then its bootstrap data (CA key, admin token, cluster id, join token), which
//! the caller writes into its own data directory; from there it starts as any
//! server. The bundle also says whether the cluster runs embedded etcd
//! (`--cluster-init`): the joining server then adds a member of its own (see
//! `embedded_etcd`). The API side is `skiff_apiserver::server_join`.

use anyhow::{anyhow, bail, Result};
use skiff_apiserver::join::CACERTS_PATH;
use skiff_apiserver::server_join::{Bootstrap, ServerToken, BOOTSTRAP_PATH};

use crate::join::{client, status_message, unreachable};

/// The flags of a server that makes or joins a cluster of servers (k3s's names).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerJoinArgs {
    /// Make a new cluster whose state is in an etcd member this server runs
    /// (Debian's `etcd` binary), which further servers join with `--server`:
    /// three servers then survive the loss of any one. Implies `--store etcd`.
    #[arg(long)]
    pub cluster_init: bool,
    /// Join the cluster of the server at this URL (`https://host:6443`) as another
    /// API server: with an etcd member of its own if that cluster runs embedded
    /// etcd (`--cluster-init`), else on the same `--store etcd`; needs `--token`.
    #[arg(long = "server", value_name = "URL", alias = "join")]
    pub server: Option<String>,
    /// The cluster's server token (`<data-dir>/server-token` on its first server).
    #[arg(long = "token", value_name = "TOKEN", env = "SKIFF_TOKEN")]
    pub token: Option<String>,
}

/// Fetches the cluster's bootstrap data from `--server` (`None` without it);
/// the caller checks it fits its store and writes it with [`Bootstrap::write`].
/// Every failure is one line naming the flag at fault.
pub async fn fetch(args: &ServerJoinArgs) -> Result<Option<Bootstrap>> {
    let Some(server) = args.server.as_deref() else {
        if args.token.is_some() {
            bail!("--token needs --server (the URL of a server of the cluster to join)");
        }
        return Ok(None);
    };
    let server = server.trim_end_matches('/');
    if !server.starts_with("https://") {
        bail!("--server must be the API server's https:// URL, e.g. https://10.0.0.1:6443, not {server:?}");
    }
    let token = args.token.as_deref().ok_or_else(|| {
        anyhow!("--server needs --token (the first server's <data-dir>/server-token)")
    })?;
    let token = ServerToken::parse(token).map_err(|e| anyhow!("invalid --token: {e}"))?;

    let ca = crate::join::fetch_ca(server, &token.ca_hash, "--token").await?;
    let resp = client(Some(&ca))?
        .get(format!("{server}{BOOTSTRAP_PATH}"))
        .bearer_auth(token.bearer())
        .send()
        .await
        .map_err(|e| unreachable(server, e))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| unreachable(server, e))?;
    let bootstrap: Bootstrap = match status {
        200 => serde_json::from_slice(&body)
            .map_err(|e| anyhow!("the server's bootstrap answer is not valid: {e}"))?,
        401 => bail!("the server refused --token (401 Unauthorized): use the server token from its <data-dir>/server-token"),
        _ => bail!("fetching the cluster's bootstrap data failed ({status}): {}", status_message(&body)),
    };
    if bootstrap.ca_cert.as_bytes() != ca.as_slice() {
        bail!("the server answered with another CA than it serves at {CACERTS_PATH}");
    }
    tracing::info!(%server, embedded_etcd = bootstrap.embedded_etcd, "fetched the cluster's bootstrap data");
    Ok(Some(bootstrap))
}

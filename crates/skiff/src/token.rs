//! `skiff token create|list|delete`: join tokens, as `kubeadm token` and
//! `k3s token` manage them. A join token is a bootstrap token (a Secret
//! `kube-system/bootstrap-token-<id>`, upstream's format) printed in k3s's secure
//! form, `K10<sha256 of the cluster CA>::<id>.<secret>`. Deleting the Secret
//! revokes the token; nodes that already joined keep their own credentials.
//! These commands use the admin kubeconfig in `--data-dir`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, PostParams};
use skiff_apiserver::authn::{self, BootstrapToken, BootstrapTokenInfo, JoinToken};

#[derive(Parser, Debug)]
pub struct DataDirArgs {
    /// The server's data directory (its admin kubeconfig and CA are used).
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a join token and print it.
    Create {
        /// How long the token is valid, e.g. `30m`, `24h`, `1h30m`; `0`: forever.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Ttl,
        /// What the token is for, shown by `skiff token list`.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// List join tokens.
    List {
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Delete (revoke) join tokens, by id (or the whole token).
    Delete {
        /// Token ids (`abcdef`), bootstrap tokens (`abcdef.0123456789abcdef`) or join tokens.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Join a cluster without starting the node: writes the node's kubeconfig,
    /// serving certificate and key to `--data-dir`, as `skiff agent` does first.
    #[command(hide = true)]
    Join {
        /// The API server to join, e.g. `https://10.0.0.1:6443`.
        #[arg(long)]
        server: String,
        /// The join token.
        #[arg(long)]
        token: Option<String>,
        /// Name of the node.
        #[arg(long)]
        node_name: String,
        /// The node's addresses (repeatable).
        #[arg(long = "address", required = true)]
        addresses: Vec<std::net::IpAddr>,
        /// Where the node's credentials are written.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// A token's lifetime: `None` never expires.
#[derive(Debug, Clone, Copy)]
pub struct Ttl(Option<Duration>);

/// `0`, or a sum of `<n>h`, `<n>m`, `<n>s` (Go's form, `24h0m0s`, included).
fn parse_ttl(s: &str) -> Result<Ttl, String> {
    let bad = || format!("invalid duration {s:?}: expected e.g. 30m, 24h, 1h30m, or 0 for forever");
    if s == "0" {
        return Ok(Ttl(None));
    }
    match go_duration_secs(s).ok_or_else(bad)? {
        0 => Ok(Ttl(None)),
        total => Ok(Ttl(Some(Duration::from_secs(total)))),
    }
}

/// The seconds of a non-empty sum of `<n>h`, `<n>m`, `<n>s` (Go's duration
/// form without fractions); `None` if it is not one or overflows.
pub fn go_duration_secs(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .filter(|&d| d > 0)?;
        let n: u64 = rest[..digits].parse().ok()?;
        let unit = match rest[digits..].chars().next() {
            Some('h') => 3600,
            Some('m') => 60,
            Some('s') => 1,
            _ => return None,
        };
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v))?;
        rest = &rest[digits + 1..];
    }
    Some(total)
}

pub fn run(cmd: TokenCommand) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    rt.block_on(async move {
        match cmd {
            TokenCommand::Create {
                ttl,
                description,
                dir,
            } => create(&dir.data_dir, ttl, description.as_deref()).await,
            TokenCommand::List { dir } => list(&dir.data_dir).await,
            TokenCommand::Delete { ids, dir } => delete(&dir.data_dir, &ids).await,
            TokenCommand::Join {
                server,
                token,
                node_name,
                addresses,
                data_dir,
            } => {
                let creds =
                    crate::join::join(&server, token.as_deref(), &node_name, &addresses, &data_dir)
                        .await?;
                let how = if creds.reused {
                    "already joined"
                } else {
                    "joined"
                };
                println!(
                    "node {node_name} {how}: kubeconfig {}",
                    creds.kubeconfig.display()
                );
                Ok(())
            }
        }
    })
}

async fn secrets(data_dir: &Path) -> Result<kube::Api<Secret>> {
    let kubeconfig = data_dir.join(skiff_apiserver::pki::KUBECONFIG);
    if !kubeconfig.exists() {
        bail!(
            "no admin kubeconfig at {}: is --data-dir the server's data directory?",
            kubeconfig.display()
        );
    }
    let client = crate::components::client(&kubeconfig).await?;
    Ok(kube::Api::namespaced(client, authn::NAMESPACE))
}

fn ca_pem(data_dir: &Path) -> Result<Vec<u8>> {
    let path = data_dir.join(skiff_apiserver::pki::CA);
    std::fs::read(&path).with_context(|| format!("reading the cluster CA {}", path.display()))
}

/// One line for an API error, as kubectl shows it.
fn api_error(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => anyhow::anyhow!("{}", s.message),
        other => anyhow::anyhow!("{other}"),
    }
}

async fn create(data_dir: &Path, ttl: Ttl, description: Option<&str>) -> Result<()> {
    let ca = ca_pem(data_dir)?;
    let api = secrets(data_dir).await?;
    let token = BootstrapToken::generate();
    let expiration = match ttl.0 {
        Some(d) => {
            Some(chrono::Utc::now() + chrono::Duration::from_std(d).context("--ttl is too long")?)
        }
        None => None,
    };
    let secret: Secret = serde_json::from_value(token.to_secret(description, expiration))?;
    api.create(&PostParams::default(), &secret)
        .await
        .map_err(api_error)
        .context("creating the token")?;
    println!("{}", JoinToken::new(&ca, token));
    Ok(())
}

/// Kubernetes' short human durations: `45s`, `10m`, `23h`, `6d`, `2y`.
fn short_duration(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s if s < 365 * 86400 => format!("{}d", s / 86400),
        s => format!("{}y", s / (365 * 86400)),
    }
}

/// One `skiff token list` row: TOKEN TTL EXPIRES USAGES DESCRIPTION EXTRA GROUPS.
fn row(info: &BootstrapTokenInfo, ca: &[u8], now: chrono::DateTime<chrono::Utc>) -> [String; 6] {
    let none = || "<none>".to_string();
    let (ttl, expires) = match &info.expiration {
        None => ("<forever>".to_string(), "<never>".to_string()),
        Some(e) => {
            let ttl = match chrono::DateTime::parse_from_rfc3339(e) {
                Ok(t) if t > now => {
                    short_duration((t.with_timezone(&chrono::Utc) - now).num_seconds().max(1))
                }
                _ => "<invalid>".to_string(),
            };
            (ttl, e.clone())
        }
    };
    [
        JoinToken::new(ca, info.token.clone()).to_string(),
        ttl,
        expires,
        if info.usages.is_empty() {
            none()
        } else {
            info.usages.join(",")
        },
        info.description.clone().unwrap_or_else(none),
        if info.extra_groups.is_empty() {
            none()
        } else {
            info.extra_groups.join(",")
        },
    ]
}

/// Columns padded as kubeadm's tabwriter pads them (three spaces apart).
fn table(rows: &[[String; 6]]) -> String {
    let mut widths = [0usize; 6];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

async fn list(data_dir: &Path) -> Result<()> {
    let ca = ca_pem(data_dir)?;
    let api = secrets(data_dir).await?;
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(api_error)
        .context("listing tokens")?;
    let now = chrono::Utc::now();
    let mut rows = vec![[
        "TOKEN".to_string(),
        "TTL".into(),
        "EXPIRES".into(),
        "USAGES".into(),
        "DESCRIPTION".into(),
        "EXTRA GROUPS".into(),
    ]];
    for s in list.items {
        let Ok(v) = serde_json::to_value(&s) else {
            continue;
        };
        if let Some(info) = BootstrapTokenInfo::from_secret(&v) {
            rows.push(row(&info, &ca, now));
        }
    }
    if rows.len() == 1 {
        eprintln!("No join tokens found.");
        return Ok(());
    }
    print!("{}", table(&rows));
    Ok(())
}

/// The token id in what was given: an id, a bootstrap token or a join token.
fn token_id(given: &str) -> Result<String> {
    let given = given.trim();
    if let Ok(j) = JoinToken::parse(given) {
        return Ok(j.token.id);
    }
    if let Some(t) = BootstrapToken::parse(given) {
        return Ok(t.id);
    }
    let id_ok = given.len() == 6
        && given
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if id_ok {
        return Ok(given.to_string());
    }
    bail!("{given:?} is not a token id ([a-z0-9]{{6}}), a bootstrap token or a join token")
}

async fn delete(data_dir: &Path, given: &[String]) -> Result<()> {
    let ids = given
        .iter()
        .map(|g| token_id(g))
        .collect::<Result<Vec<_>>>()?;
    let api = secrets(data_dir).await?;
    for id in ids {
        let name = format!("{}{id}", authn::BOOTSTRAP_TOKEN_SECRET_PREFIX);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => println!("bootstrap token {id:?} deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                bail!("bootstrap token {id:?} not found")
            }
            Err(e) => {
                return Err(api_error(e))
                    .with_context(|| format!("deleting bootstrap token {id:?}"))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_go_durations_or_zero() {
        let secs = |s: &str| parse_ttl(s).unwrap().0.map(|d| d.as_secs());
        assert_eq!(secs("0"), None);
        assert_eq!(secs("1s"), Some(1));
        assert_eq!(secs("30m"), Some(1800));
        assert_eq!(secs("24h"), Some(86400));
        assert_eq!(secs("24h0m0s"), Some(86400));
        assert_eq!(secs("1h30m"), Some(5400));
        for bad in ["", "10", "h", "1d", "-1s", "1.5h", "1h-", "1é"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rows_read_as_kubeadms() {
        let now = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let forever =
            BootstrapTokenInfo::from_secret(&t.to_secret(Some("the default join token"), None))
                .unwrap();
        let r = row(&forever, b"CA", now);
        assert!(r[0].starts_with("K10") && r[0].ends_with("::abcdef.0123456789abcdef"));
        assert_eq!(
            r[1..],
            [
                "<forever>",
                "<never>",
                "authentication",
                "the default join token",
                "<none>"
            ]
        );
        let soon = BootstrapTokenInfo::from_secret(&t.to_secret(
            None,
            Some(now + chrono::Duration::hours(23) + chrono::Duration::minutes(59)),
        ))
        .unwrap();
        let r = row(&soon, b"CA", now);
        assert_eq!(r[1], "23h");
        assert_eq!(r[2], "2030-01-01T23:59:00Z");
        let past = BootstrapTokenInfo::from_secret(
            &t.to_secret(None, Some(now - chrono::Duration::seconds(1))),
        )
        .unwrap();
        assert_eq!(row(&past, b"CA", now)[1], "<invalid>");
        let text = table(&[
            [
                "A".into(),
                "BB".into(),
                "C".into(),
                "D".into(),
                "E".into(),
                "F".into(),
            ],
            [
                "aaa".into(),
                "b".into(),
                "c".into(),
                "d".into(),
                "e".into(),
                "f".into(),
            ],
        ]);
        assert_eq!(text, "A     BB   C   D   E   F\naaa   b    c   d   e   f\n");
    }

    #[test]
    fn tokens_are_deleted_by_id_whatever_form_is_given() {
        assert_eq!(token_id("abcdef").unwrap(), "abcdef");
        assert_eq!(token_id("abcdef.0123456789abcdef").unwrap(), "abcdef");
        let join = format!("K10{}::abcdef.0123456789abcdef", "0".repeat(64));
        assert_eq!(token_id(&join).unwrap(), "abcdef");
        assert!(token_id("ABCDEF").is_err());
        assert!(token_id("abc").is_err());
    }
}

//! `skiff kubeconfig --user NAME [--group G]...`: a kubeconfig for a new
//! user, printed to stdout. The user is a client certificate signed by the
//! cluster CA in `--data-dir` (so this runs on a server machine), CN the
//! name and one O per group, as upstream's x509 authenticator reads it (and as
//! `kubeadm kubeconfig user --client-name` makes one). What the user may do
//! is RBAC's: bind a role to the name or a group.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use skiff_apiserver::pki;

#[derive(Parser, Debug)]
pub struct KubeconfigArgs {
    /// The user name (the certificate's CN).
    #[arg(long)]
    user: String,
    /// A group of the user (one O each); repeat for several.
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// How long the certificate is valid, e.g. `8760h`, `720h`, `1h30m`.
    #[arg(long, default_value = "8760h", value_parser = parse_expiration)]
    expiration: Expiration,
    /// The server's data directory (its CA signs the certificate).
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    data_dir: PathBuf,
    /// The API server URL the kubeconfig points at; the admin kubeconfig's by default.
    #[arg(long)]
    server: Option<String>,
}

#[derive(Clone, Copy, Debug)]
struct Expiration(Duration);

/// A Go duration of hours, minutes and seconds (`8760h`, `1h30m`, `90s`),
/// as `kubeadm kubeconfig user --validity-period` takes.
fn parse_expiration(s: &str) -> Result<Expiration, String> {
    let bad = || format!("invalid duration {s:?}: expected e.g. 8760h, 720h, 1h30m");
    let total = crate::token::go_duration_secs(s).ok_or_else(bad)?;
    if total == 0 {
        return Err(format!(
            "{s:?}: the certificate must be valid for at least 1s"
        ));
    }
    Ok(Expiration(Duration::from_secs(total)))
}

pub fn run(args: KubeconfigArgs) -> Result<()> {
    print!("{}", render(&args)?);
    Ok(())
}

fn render(args: &KubeconfigArgs) -> Result<String> {
    if args.user.trim().is_empty() {
        bail!("--user must name the user (the certificate's common name)");
    }
    if let Some(empty) = args.groups.iter().position(|g| g.trim().is_empty()) {
        bail!(
            "--group #{} is empty: each --group names a group",
            empty + 1
        );
    }
    let dir = &args.data_dir;
    if !dir.join(pki::CA).exists() || !dir.join(pki::CA_KEY).exists() {
        bail!(
            "no cluster CA in {} ({} and {}): --data-dir must be a server's data directory",
            dir.display(),
            pki::CA,
            pki::CA_KEY
        );
    }
    let ca = pki::Ca::load(dir)?;
    let server = match &args.server {
        Some(s) => s.clone(),
        None => admin_server(dir)?,
    };
    let groups: Vec<&str> = args.groups.iter().map(String::as_str).collect();
    let (cert, key) = ca
        .issue_client(&args.user, &groups, args.expiration.0)
        .context("issuing the client certificate")?;
    Ok(pki::kubeconfig_with(
        &server,
        &ca.cert_pem,
        &args.user,
        &pki::Credential::Certificate {
            cert_pem: &cert,
            key_pem: &key,
        },
    ))
}

/// The server URL of the data directory's admin kubeconfig.
fn admin_server(dir: &Path) -> Result<String> {
    let path = dir.join(pki::KUBECONFIG);
    let kc = kube::config::Kubeconfig::read_from(&path).with_context(|| {
        format!(
            "reading {} for the server URL (or give --server)",
            path.display()
        )
    })?;
    kc.clusters
        .iter()
        .find_map(|c| c.cluster.as_ref()?.server.clone())
        .with_context(|| format!("no server URL in {} (give --server)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_are_go_durations() {
        assert_eq!(parse_expiration("8760h").unwrap().0.as_secs(), 8760 * 3600);
        assert_eq!(parse_expiration("1h30m").unwrap().0.as_secs(), 5400);
        assert_eq!(parse_expiration("90s").unwrap().0.as_secs(), 90);
        for bad in ["", "h", "10", "10d", "0h", "1h-", "99999999999999999999h"] {
            assert!(parse_expiration(bad).is_err(), "{bad:?}");
        }
    }

    fn args(dir: &Path, user: &str, groups: &[&str]) -> KubeconfigArgs {
        KubeconfigArgs {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            expiration: Expiration(Duration::from_secs(3600)),
            data_dir: dir.to_path_buf(),
            server: None,
        }
    }

    #[test]
    fn a_kubeconfig_for_a_user_in_groups_signed_by_the_data_dirs_ca() {
        let dir = tempfile::tempdir().unwrap();
        let err = render(&args(dir.path(), "jane", &[])).unwrap_err();
        assert!(format!("{err:#}").contains("--data-dir"), "{err:#}");
        pki::ensure(dir.path(), "https://10.0.0.1:6443", &[]).unwrap();
        let err = render(&args(dir.path(), " ", &[])).unwrap_err();
        assert!(err.to_string().contains("--user"), "{err}");
        let err = render(&args(dir.path(), "jane", &["devs", ""])).unwrap_err();
        assert!(err.to_string().contains("--group #2"), "{err}");

        let text = render(&args(dir.path(), "jane", &["devs", "ops"])).unwrap();
        let kc: kube::config::Kubeconfig = serde_yaml_ok(&text);
        assert_eq!(kc.current_context.as_deref(), Some("skiff"));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:6443"));
        let user = &kc.auth_infos[0];
        assert_eq!(user.name, "jane");
        let auth = user.auth_info.as_ref().unwrap();
        assert!(auth.token.is_none());
        let cert_b64 = auth.client_certificate_data.as_deref().unwrap();
        let cert_pem = String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, cert_b64).unwrap(),
        )
        .unwrap();
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let who = skiff_apiserver::x509::user_of(&der, std::time::SystemTime::now()).unwrap();
        assert_eq!(who.name, "jane");
        assert_eq!(who.groups, ["devs", "ops", "system:authenticated"]);
    }

    fn serde_yaml_ok(text: &str) -> kube::config::Kubeconfig {
        kube::config::Kubeconfig::from_yaml(text).expect("a kubeconfig")
    }
}

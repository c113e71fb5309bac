//! The cluster's credentials, made at first start and reused afterwards: a
//! self-signed CA, the serving certificate it signs, an admin bearer token, and an
//! admin kubeconfig that ties them together.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub struct Credentials {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub admin_token: String,
    pub kubeconfig_path: PathBuf,
}

const CA: &str = "ca.crt";
const CERT: &str = "server.crt";
const KEY: &str = "server.key";
const TOKEN: &str = "admin.token";
pub const KUBECONFIG: &str = "admin.kubeconfig";

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn generate(dir: &Path, extra_sans: &[String]) -> Result<()> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "skiff-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_after = rcgen::date_time_ymd(2125, 1, 1);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let mut sans: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "127.0.0.1",
        "::1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sans.extend(extra_sans.iter().cloned());
    for s in sans {
        let san = match s.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(s.clone().try_into()?),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    let cert = params.signed_by(&key, &issuer)?;

    let token: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..32)
            .map(|_| format!("{:02x}", rng.random::<u8>()))
            .collect()
    };
    write_private(&dir.join(KEY), &key.serialize_pem())?;
    fs::write(dir.join(CERT), cert.pem())?;
    fs::write(dir.join(CA), ca_cert.pem())?;
    write_private(&dir.join(TOKEN), &token)?;
    Ok(())
}

/// Loads the data directory's credentials, making them on first start.
/// `extra_sans` are added to a newly made serving certificate (the listen address,
/// the `kubernetes` service IP).
pub fn ensure(dir: &Path, server_url: &str, extra_sans: &[String]) -> Result<Credentials> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let present = [CA, CERT, KEY, TOKEN].iter().all(|f| dir.join(f).exists());
    if !present {
        generate(dir, extra_sans)?;
    }
    let read = |f: &str| {
        fs::read_to_string(dir.join(f))
            .with_context(|| format!("cannot read {}", dir.join(f).display()))
    };
    let creds = Credentials {
        ca_pem: read(CA)?,
        cert_pem: read(CERT)?,
        key_pem: read(KEY)?,
        admin_token: read(TOKEN)?.trim().to_string(),
        kubeconfig_path: dir.join(KUBECONFIG),
    };
    write_private(&creds.kubeconfig_path, &kubeconfig(server_url, &creds))?;
    Ok(creds)
}

pub fn kubeconfig(server_url: &str, creds: &Credentials) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(&creds.ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: skiff
  context:
    cluster: skiff
    user: admin
    namespace: default
current-context: skiff
",
        token = creds.admin_token
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        let b = ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.admin_token, b.admin_token);
        let kc = fs::read_to_string(&a.kubeconfig_path).unwrap();
        assert!(kc.contains("server: https://127.0.0.1:6443"));
        assert!(kc.contains(&a.admin_token));
    }
}

//! The cluster's credentials, made at first start and reused afterwards: a
//! self-signed CA (its key kept, so the server can sign node certificates), the
//! serving certificate it signs, the client certificate the API server presents
//! to node agents (kubeadm's `apiserver-kubelet-client`), an admin bearer token,
//! and an admin kubeconfig that ties them together. Node serving certificates
//! (a joining node's, from its CSR; the in-process agent's) are signed here too.

mod ca;
mod kubeconfig;
mod secrets;
mod server_certs;

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

pub use ca::{Ca, SignError};
pub use kubeconfig::{kubeconfig_for, kubeconfig_with, Credential};
pub(crate) use secrets::random_hex;
pub use secrets::{write_mode, write_private};
pub use server_certs::cert_names;

use ca::node_serving_params;
use server_certs::{kubelet_client_params, serving_params, serving_sans};

pub struct Credentials {
    pub ca_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub admin_token: String,
    pub kubeconfig_path: PathBuf,
    /// What the API server presents to node agents' streaming endpoints.
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

impl Credentials {
    /// The CA that signs node certificates.
    pub fn ca(&self) -> Ca {
        Ca {
            cert_pem: self.ca_pem.clone(),
            key_pem: self.ca_key_pem.clone(),
        }
    }
}

/// The CA certificate (PEM); also what a joining node writes beside its kubeconfig.
pub const CA: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
const CERT: &str = "server.crt";
const KEY: &str = "server.key";
pub const TOKEN: &str = "admin.token";
pub const KUBECONFIG: &str = "admin.kubeconfig";
pub use crate::x509::{ADMIN_CLIENT_CERT, ADMIN_CLIENT_KEY, ADMIN_USER};
/// The client certificate the API server presents to node agents (kubeadm's names).
pub const KUBELET_CLIENT_CERT: &str = "apiserver-kubelet-client.crt";
pub const KUBELET_CLIENT_KEY: &str = "apiserver-kubelet-client.key";
/// The common name node agents require of a streaming client (kubeadm's).
pub const KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";
/// A node agent's serving certificate and key, in its data directory.
pub const AGENT_SERVING_CERT: &str = "agent-serving.crt";
pub const AGENT_SERVING_KEY: &str = "agent-serving.key";

/// How long a node serving certificate is valid: upstream's CSR signer default
/// (`--cluster-signing-duration`, 8760h).
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The data directory's CA, made if it has none; `true` when it was made now.
/// A data directory from before the CA key was kept gets a new CA (and so new
/// certificates). Separate from [`ensure`] because an embedded etcd needs the CA
/// (its certificates) before the store, and so the API server, can start.
pub fn ensure_ca(dir: &Path) -> Result<(Ca, bool)> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let has = |f: &str| dir.join(f).exists();
    if has(CA) && has(CA_KEY) {
        return Ok((Ca::load(dir)?, false));
    }
    if has(CA) {
        tracing::warn!(
            dir = %dir.display(),
            "the CA key was not kept by this older data directory: making a new CA; copies of admin.kubeconfig made before must be replaced"
        );
    }
    let ca = Ca::generate()?;
    // What the old CA signed is worthless now: removed here, so whoever calls
    // [`ensure`] later (which may be a later call than this one) signs it again.
    for f in [
        CERT,
        KEY,
        KUBELET_CLIENT_CERT,
        KUBELET_CLIENT_KEY,
        ADMIN_CLIENT_CERT,
        ADMIN_CLIENT_KEY,
    ] {
        let _ = fs::remove_file(dir.join(f));
    }
    write_private(&dir.join(CA_KEY), &ca.key_pem)?;
    write_mode(&dir.join(CA), &ca.cert_pem, 0o644)?;
    Ok((ca, true))
}

/// Loads the data directory's credentials, making what is missing. `extra_sans`
/// are names the serving certificate must cover (the listen address): a
/// certificate lacking one is signed again.
pub fn ensure(dir: &Path, server_url: &str, extra_sans: &[String]) -> Result<Credentials> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let has = |f: &str| dir.join(f).exists();
    let read = |f: &str| {
        fs::read_to_string(dir.join(f))
            .with_context(|| format!("cannot read {}", dir.join(f).display()))
    };
    let (ca, new_ca) = ensure_ca(dir)?;

    let sans = serving_sans(extra_sans);
    let covered = !new_ca
        && has(CERT)
        && has(KEY)
        && read(CERT)
            .and_then(|pem| cert_names(&pem))
            .is_ok_and(|have| sans.iter().all(|s| have.contains(s)));
    if !covered {
        let (cert, key) = ca.issue(&serving_params(&sans)?)?;
        write_private(&dir.join(KEY), &key)?;
        write_mode(&dir.join(CERT), &cert, 0o644)?;
    }
    if new_ca || !has(KUBELET_CLIENT_CERT) || !has(KUBELET_CLIENT_KEY) {
        let (cert, key) = ca.issue(&kubelet_client_params()?)?;
        write_private(&dir.join(KUBELET_CLIENT_KEY), &key)?;
        write_mode(&dir.join(KUBELET_CLIENT_CERT), &cert, 0o644)?;
    }
    if !has(TOKEN) {
        write_private(&dir.join(TOKEN), &random_hex(32))?;
    }
    let admin = crate::x509::ensure_admin(dir, &ca, new_ca)?;
    let creds = Credentials {
        ca_pem: ca.cert_pem.clone(),
        ca_key_pem: ca.key_pem.clone(),
        cert_pem: read(CERT)?,
        key_pem: read(KEY)?,
        admin_token: read(TOKEN)?.trim().to_string(),
        kubeconfig_path: dir.join(KUBECONFIG),
        kubelet_client_cert_pem: read(KUBELET_CLIENT_CERT)?,
        kubelet_client_key_pem: read(KUBELET_CLIENT_KEY)?,
    };
    let kubeconfig = kubeconfig_with(
        server_url,
        &creds.ca_pem,
        "admin",
        &Credential::Certificate {
            cert_pem: &admin.0,
            key_pem: &admin.1,
        },
    );
    write_private(&creds.kubeconfig_path, &kubeconfig)?;
    Ok(creds)
}

/// Signs the in-process node agent's serving certificate (`skiff server`):
/// a fresh key and a certificate for `node_name` and `addresses`, written to
/// `<dir>/agent-serving.crt` and `.key`, where the agent reads them as a
/// joined node reads what `skiff agent` wrote. Made at every start, so it
/// follows the node's addresses.
pub fn agent_serving_cert(dir: &Path, node_name: &str, addresses: &[IpAddr]) -> Result<()> {
    let ca = Ca::load(dir)?;
    let (cert, key) = ca.issue(&node_serving_params(
        node_name,
        addresses,
        SystemTime::now(),
    )?)?;
    write_private(&dir.join(AGENT_SERVING_KEY), &key)?;
    write_mode(&dir.join(AGENT_SERVING_CERT), &cert, 0o644)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};

    use super::*;

    fn parse(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn made_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        let b = ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.cert_pem, b.cert_pem);
        assert_eq!(a.kubelet_client_cert_pem, b.kubelet_client_cert_pem);
        assert_eq!(a.admin_token, b.admin_token);
        let kc = fs::read_to_string(&a.kubeconfig_path).unwrap();
        assert!(kc.contains("server: https://127.0.0.1:6443"));
        // The admin kubeconfig is a client certificate, made once.
        assert!(!kc.contains(&a.admin_token));
        assert!(kc.contains("client-certificate-data: "));
        assert_eq!(kc, fs::read_to_string(&b.kubeconfig_path).unwrap());
        use std::os::unix::fs::PermissionsExt;
        for f in [
            CA_KEY,
            KEY,
            TOKEN,
            KUBELET_CLIENT_KEY,
            KUBECONFIG,
            ADMIN_CLIENT_KEY,
        ] {
            let mode = fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }

    #[test]
    fn a_new_listen_address_re_signs_the_serving_certificate_with_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        let b = ensure(dir.path(), "https://10.1.2.3:6443", &["10.1.2.3".into()]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_ne!(a.cert_pem, b.cert_pem);
        let names = cert_names(&b.cert_pem).unwrap();
        assert!(names.contains("10.1.2.3") && names.contains("127.0.0.1"));
        assert!(names.contains("kubernetes.default.svc"));
    }

    #[test]
    fn an_old_data_dir_without_the_ca_key_gets_a_new_ca_and_keeps_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let a = ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        fs::remove_file(dir.path().join(CA_KEY)).unwrap();
        let b = ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        assert_ne!(a.ca_pem, b.ca_pem);
        assert_ne!(a.kubelet_client_cert_pem, b.kubelet_client_cert_pem);
        assert_eq!(a.admin_token, b.admin_token);
    }

    #[test]
    fn a_ca_made_early_is_the_one_ensure_uses_and_an_old_one_takes_its_certificates_along() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, new) = ensure_ca(dir.path()).unwrap();
        assert!(new);
        let c = ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        assert_eq!(c.ca_pem, ca.cert_pem);
        assert!(!ensure_ca(dir.path()).unwrap().1);
        // An older data directory without the key: the new CA is made first, by
        // ensure_ca, and ensure must still sign new certificates with it.
        fs::remove_file(dir.path().join(CA_KEY)).unwrap();
        let (ca2, new) = ensure_ca(dir.path()).unwrap();
        assert!(new);
        let c2 = ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        assert_eq!(c2.ca_pem, ca2.cert_pem);
        assert_ne!(c2.cert_pem, c.cert_pem);
        assert_ne!(c2.kubelet_client_cert_pem, c.kubelet_client_cert_pem);
    }

    #[test]
    fn leaf_certificates_have_the_names_and_usages_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = ensure_ca(dir.path()).unwrap();
        let sans = ["10.0.0.2".to_string(), "localhost".to_string()];
        let (pem, key) = ca.issue_leaf("etcd-peer", &sans, true, true).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let want: BTreeSet<String> = sans.iter().cloned().collect();
        assert_eq!(cert_names(&pem).unwrap(), want);
        let der = parse(&pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let (pem, _) = ca
            .issue_leaf("skiff-etcd-client", &[], false, true)
            .unwrap();
        let der = parse(&pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(!eku.server_auth && eku.client_auth);
    }

    #[test]
    fn the_kubelet_client_certificate_is_for_client_auth_as_kubeadms() {
        let dir = tempfile::tempdir().unwrap();
        let c = ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        let der = parse(&c.kubelet_client_cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), KUBELET_CLIENT_CN);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
    }

    #[test]
    fn a_node_csr_is_signed_for_its_name_and_addresses_only() {
        let dir = tempfile::tempdir().unwrap();
        let creds = ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        let ca = Ca::load(dir.path()).unwrap();
        // The request asks for more than it may have.
        let key = KeyPair::generate().unwrap();
        let mut req = CertificateParams::new(vec![
            "kubernetes.default".to_string(),
            "evil.example".to_string(),
            "10.9.9.9".to_string(),
        ])
        .unwrap();
        req.distinguished_name
            .push(DnType::CommonName, "system:node:someone-else");
        req.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let csr = req.serialize_request(&key).unwrap().pem().unwrap();
        let ips: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        let pem = ca.sign_node_serving(&csr, "node-a", &ips).unwrap();
        let names = cert_names(&pem).unwrap();
        let want: BTreeSet<String> = ["node-a", "10.0.0.5", "fd00::5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, want);
        let der = parse(&pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "system:node:node-a");
        let o = cert.subject().iter_organization().next().unwrap();
        assert_eq!(o.as_str().unwrap(), "system:nodes");
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert!(!cert.is_ca());
        // Signed by the cluster CA, for the requester's key, valid for a year.
        let ca_der = parse(&creds.ca_pem);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86400;
        assert_eq!(days, 365);
        // Garbage is a bad request, not a server error.
        assert!(matches!(
            ca.sign_node_serving("not a csr", "node-a", &ips),
            Err(SignError::BadRequest(_))
        ));
    }

    #[test]
    fn the_in_process_agent_gets_a_serving_certificate_from_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        let ip: IpAddr = "10.244.0.1".parse().unwrap();
        agent_serving_cert(dir.path(), "test-node", &[ip]).unwrap();
        let pem = fs::read_to_string(dir.path().join(AGENT_SERVING_CERT)).unwrap();
        let names = cert_names(&pem).unwrap();
        assert!(names.contains("test-node") && names.contains("10.244.0.1"));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(AGENT_SERVING_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

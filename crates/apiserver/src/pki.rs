//! The cluster's credentials, made at first start and reused afterwards: a
//! self-signed CA (its key kept, so the server can sign node certificates), the
//! serving certificate it signs, the client certificate the API server presents
//! to node agents (kubeadm's `apiserver-kubelet-client`), an admin bearer token,
//! and an admin kubeconfig that ties them together. Node serving certificates
//! (a joining node's, from its CSR; the in-process agent's) are signed here too.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

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

/// Writes a file only its owner may read (mode 0600), replacing it atomically.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    write_mode(path, contents, 0o600)
}

/// Writes `contents` to `path` with `mode`, through a temporary file renamed
/// into place, so a reader never sees half a file.
pub fn write_mode(path: &Path, contents: &str, mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    // The mode of an existing file is kept by open(2): set it explicitly.
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub(crate) fn random_hex(bytes: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn serial() -> SerialNumber {
    use rand::Rng;
    let mut b: [u8; 16] = rand::rng().random();
    b[0] &= 0x7f; // a positive INTEGER
    SerialNumber::from_slice(&b)
}

fn at(t: SystemTime) -> time::OffsetDateTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The cluster CA: its certificate and key, which sign every other certificate.
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    key_pem: String,
}

/// Why a node's certificate signing request was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the csr is not a valid PEM certificate signing request: {0}")]
    BadRequest(String),
    #[error("signing: {0}")]
    Internal(String),
}

impl Ca {
    fn generate() -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "skiff-ca");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let cert = ca.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA of a data directory (`ca.crt`, `ca.key`).
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |f: &str| {
            fs::read_to_string(dir.join(f))
                .with_context(|| format!("cannot read {}", dir.join(f).display()))
        };
        Ok(Self {
            cert_pem: read(CA)?,
            key_pem: read(CA_KEY)?,
        })
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let key = KeyPair::from_pem(&self.key_pem).context("the CA key")?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key).context("the CA certificate")
    }

    /// A fresh key and a certificate for it, made from `params`.
    fn issue(&self, params: &CertificateParams) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A fresh key and a certificate for `common_name`, valid for `sans` (names or
    /// addresses) and the given usages, as long as the CA: for the certificates an
    /// embedded etcd serves, talks to its peers and is dialled with.
    pub fn issue_leaf(
        &self,
        common_name: &str,
        sans: &[String],
        server_auth: bool,
        client_auth: bool,
    ) -> Result<(String, String)> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for s in sans {
            let san = san_of(s)?;
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if server_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        params.serial_number = Some(serial());
        self.issue(&params)
    }

    /// A fresh key and a client certificate for user `user` in `groups`, as
    /// upstream's x509 authenticator reads one (CN the user name, one O per
    /// group), valid for `valid` from now: for the admin kubeconfig, `skiff
    /// kubeconfig --user`, and each component's own identity.
    pub fn issue_client(
        &self,
        user: &str,
        groups: &[&str],
        valid: Duration,
    ) -> Result<(String, String)> {
        let params = client_params(user, valid)?;
        let key = KeyPair::generate()?;
        let ca_key = KeyPair::from_pem(&self.key_pem).context("the CA key")?;
        let issuer =
            Issuer::from_ca_cert_pem(&self.cert_pem, &ca_key).context("the CA certificate")?;
        let drafted = params.signed_by(&key, &issuer)?;
        let subject = crate::x509::subject_der(user, groups);
        let der = crate::x509::with_subject(drafted.der(), &subject, &ca_key)?;
        Ok((certificate_pem(&der), key.serialize_pem()))
    }

    /// Signs a node's serving certificate for the public key in `csr_pem`. Only
    /// the key is taken from the request: the subject is `system:node:<name>` in
    /// group `system:nodes` (what kubelet asks for), the names are `node_name`
    /// and `addresses` whatever the request lists, the usage server auth only.
    pub fn sign_node_serving(
        &self,
        csr_pem: &str,
        node_name: &str,
        addresses: &[IpAddr],
    ) -> Result<String, SignError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| SignError::BadRequest(e.to_string()))?;
        let params = node_serving_params(node_name, addresses, SystemTime::now())
            .map_err(|e| SignError::BadRequest(e.to_string()))?;
        let issuer = self
            .issuer()
            .map_err(|e| SignError::Internal(format!("{e:#}")))?;
        let cert = params
            .signed_by(&csr.public_key, &issuer)
            .map_err(|e| SignError::Internal(e.to_string()))?;
        Ok(cert.pem())
    }

    /// Signs a client certificate for the public key in `csr_pem` only: the
    /// subject is `user` in `groups` whatever the request asks (a joined
    /// node's components, see [`crate::component_certs`]), valid for `valid`.
    pub fn sign_client(
        &self,
        csr_pem: &str,
        user: &str,
        groups: &[&str],
        valid: Duration,
    ) -> Result<String, SignError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| SignError::BadRequest(e.to_string()))?;
        let internal = |e: anyhow::Error| SignError::Internal(format!("{e:#}"));
        let params = client_params(user, valid).map_err(internal)?;
        let ca_key = KeyPair::from_pem(&self.key_pem)
            .context("the CA key")
            .map_err(internal)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &ca_key)
            .context("the CA certificate")
            .map_err(internal)?;
        let drafted = params
            .signed_by(&csr.public_key, &issuer)
            .map_err(|e| SignError::Internal(e.to_string()))?;
        let subject = crate::x509::subject_der(user, groups);
        let der = crate::x509::with_subject(drafted.der(), &subject, &ca_key).map_err(internal)?;
        Ok(certificate_pem(&der))
    }
}

/// A client certificate's contents for `user`, valid for `valid` from a
/// minute ago (a client whose clock is a little behind still accepts it).
/// The subject is a stand-in with the CN only: rcgen writes one O at most, so
/// the signer puts the real subject in ([`crate::x509::with_subject`]).
fn client_params(user: &str, valid: Duration) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, user);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = SystemTime::now();
    params.not_before = at(now - Duration::from_secs(60));
    params.not_after = at(now + valid);
    params.serial_number = Some(serial());
    Ok(params)
}

/// A DER certificate as PEM, 64 base64 characters a line.
fn certificate_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// A node serving certificate's contents, valid from a minute before `now`.
fn node_serving_params(
    node_name: &str,
    addresses: &[IpAddr],
    now: SystemTime,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("system:node:{node_name}"));
    params.subject_alt_names = vec![SanType::DnsName(
        node_name
            .to_string()
            .try_into()
            .with_context(|| format!("node name {node_name:?}"))?,
    )];
    for ip in addresses {
        let san = SanType::IpAddress(*ip);
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = at(now - Duration::from_secs(60));
    params.not_after = at(now + NODE_CERT_VALIDITY);
    params.serial_number = Some(serial());
    Ok(params)
}

/// The API server's serving certificate's names: the usual ones plus `extra`.
fn serving_sans(extra: &[String]) -> Vec<String> {
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
    for s in extra {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    sans
}

fn san_of(s: &str) -> Result<SanType> {
    Ok(match s.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(s.to_string().try_into()?),
    })
}

fn serving_params(sans: &[String]) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    for s in sans {
        let san = san_of(s)?;
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    params.serial_number = Some(serial());
    Ok(params)
}

fn kubelet_client_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    // kubeadm's: the O grants the API server's own identity full access on
    // clusters that authorize kubelet requests through RBAC.
    params
        .distinguished_name
        .push(DnType::OrganizationName, "kubeadm:cluster-admins");
    params
        .distinguished_name
        .push(DnType::CommonName, KUBELET_CLIENT_CN);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    params.serial_number = Some(serial());
    Ok(params)
}

/// The DNS names and IP addresses a PEM certificate is valid for.
pub fn cert_names(pem: &str) -> Result<BTreeSet<String>> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    let mut names = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    names.insert(d.to_string());
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(names)
}

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

/// What a kubeconfig's user authenticates with.
pub enum Credential<'a> {
    Token(&'a str),
    Certificate { cert_pem: &'a str, key_pem: &'a str },
}

/// A kubeconfig for `server_url` trusting `ca_pem`, as `user` with bearer `token`.
pub fn kubeconfig_for(server_url: &str, ca_pem: &str, user: &str, token: &str) -> String {
    kubeconfig_with(server_url, ca_pem, user, &Credential::Token(token))
}

/// A kubeconfig for `server_url` trusting `ca_pem`, as `user` (the name of
/// its user entry) with `credential`; cluster and context `skiff`.
pub fn kubeconfig_with(
    server_url: &str,
    ca_pem: &str,
    user: &str,
    credential: &Credential<'_>,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ca = b64(ca_pem);
    let credential = match credential {
        Credential::Token(token) => format!("    token: {token}"),
        Credential::Certificate { cert_pem, key_pem } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}",
            b64(cert_pem),
            b64(key_pem)
        ),
    };
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
{credential}
contexts:
- name: skiff
  context:
    cluster: skiff
    user: {user}
    namespace: default
current-context: skiff
"
    )
}

#[cfg(test)]
mod tests {
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

//! The cluster CA and what it signs: leaf, client and node serving
//! certificates, from fresh keys or from a node's CSR. Apart from the data
//! directory's bookkeeping, which only decides when to sign.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use super::{CA, CA_KEY, NODE_CERT_VALIDITY};

pub(super) fn serial() -> SerialNumber {
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
    pub(super) key_pem: String,
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
    pub(super) fn generate() -> Result<Self> {
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
    pub(super) fn issue(&self, params: &CertificateParams) -> Result<(String, String)> {
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
pub(super) fn node_serving_params(
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

pub(super) fn san_of(s: &str) -> Result<SanType> {
    Ok(match s.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(s.to_string().try_into()?),
    })
}

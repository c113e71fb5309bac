//! Client-certificate authentication, as upstream's x509 request
//! authenticator: the TLS listener asks every client for a certificate,
//! verifies one that is given against the cluster CA (chain, validity, the
//! client-auth usage) and refuses the handshake of a client whose certificate
//! fails; a client without one is served and authenticates otherwise (a bearer
//! token) or not at all (401).
//!
//! A verified certificate is the user named by its subject's CN, in the groups
//! named by every O (upstream's `CommonNameUserConversion`), plus
//! `system:authenticated`. The acceptor puts the verified certificate into
//! each request's extensions ([`PeerCertificate`]), where
//! [`crate::authn::authenticate_request`] reads it before any bearer token, as
//! upstream's union authenticator tries x509 first.
//!
//! The other way round, a user is written into a certificate here too: a
//! subject with one O per group ([`subject_der`], [`with_subject`], for
//! [`Ca::issue_client`]), and the admin kubeconfig's certificate,
//! `system:admin` in `system:masters` ([`ensure_admin`]).

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use axum::middleware::AddExtension;
use axum_server::accept::Accept;
use axum_server::tls_rustls::RustlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Layer;

use crate::authn::User;
use crate::pki::Ca;

/// The serving TLS configuration: the API server's certificate, HTTP/2 and
/// HTTP/1.1, and an optional client certificate verified against `ca_pem`.
pub fn server_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.context("the CA certificate")?)
            .context("the CA certificate")?;
    }
    // Upstream's default verify options ask for the client-auth usage, as
    // webpki does of a client certificate; an anonymous client is let through.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("the client certificate verifier")?;
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the serving certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("the serving key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("the serving certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The identity in the verified client certificate of the connection a
/// request came on, if its client gave one naming a user. Read once per
/// connection at the handshake, not per request: parsing the certificate was
/// ~2% of the server's CPU in a stream of gets (bench/api `--rbac`).
#[derive(Clone, Default)]
pub struct PeerCertificate(Option<Arc<CertIdentity>>);

/// A client certificate's user and validity window (Unix seconds).
struct CertIdentity {
    user: User,
    not_before: i64,
    not_after: i64,
}

impl CertIdentity {
    fn parse(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let validity = cert.validity();
        let subject = cert.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?;
        if name.is_empty() {
            return None;
        }
        let groups: Vec<&str> = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .collect();
        Some(Self {
            user: User::new(name, &groups),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    fn user_at(&self, now: SystemTime) -> Option<&User> {
        let now = unix_secs(now)?;
        (self.not_before..=self.not_after)
            .contains(&now)
            .then_some(&self.user)
    }
}

impl PeerCertificate {
    fn of(conn: &rustls::ServerConnection) -> Self {
        Self(
            conn.peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|c| CertIdentity::parse(c))
                .map(Arc::new),
        )
    }

    /// The user this certificate authenticates as; `None` without one, or
    /// when it has no CN or has expired since the handshake (upstream checks
    /// every request against the current time).
    pub fn user(&self) -> Option<User> {
        self.0.as_ref()?.user_at(SystemTime::now()).cloned()
    }
}

/// The user a client certificate names: CN the name, every O a group.
pub fn user_of(der: &[u8], now: SystemTime) -> Option<User> {
    CertIdentity::parse(der)?.user_at(now).cloned()
}

/// The subject upstream reads a user from: one O per group, then the CN, each
/// attribute its own RDN (as Go writes a `pkix.Name`).
pub fn subject_der(user: &str, groups: &[&str]) -> Vec<u8> {
    const ORGANIZATION: &[u64] = &[2, 5, 4, 10];
    const COMMON_NAME: &[u64] = &[2, 5, 4, 3];
    let rdn = |w: yasna::DERWriter, oid: &[u64], value: &str| {
        w.write_set(|w| {
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&yasna::models::ObjectIdentifier::from_slice(oid));
                w.next().write_utf8_string(value);
            })
        })
    };
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for g in groups {
                rdn(w.next(), ORGANIZATION, g);
            }
            rdn(w.next(), COMMON_NAME, user);
        })
    })
}

/// `cert_der` with its subject replaced by `subject` and signed again by
/// `issuer_key` (the key that signed it). rcgen keeps one value per attribute
/// type in a name, so a certificate for several groups is made by rcgen with
/// a stand-in subject and finished here; everything else is rcgen's.
pub fn with_subject(
    cert_der: &[u8],
    subject: &[u8],
    issuer_key: &impl rcgen::SigningKey,
) -> Result<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    let (tbs, algorithm) = yasna::parse_der(cert_der, |r| {
        r.read_sequence(|r| {
            let tbs = r.next().read_der()?;
            let algorithm = r.next().read_der()?;
            r.next().read_bitvec_bytes()?;
            Ok((tbs, algorithm))
        })
    })
    .context("parsing the certificate")?;
    // TBSCertificate ::= SEQUENCE { [0] version, serialNumber, signature,
    //   issuer, validity, subject, subjectPublicKeyInfo, ... }
    let mut fields = Vec::new();
    yasna::parse_der(&tbs, |r| {
        r.read_sequence_of(|r| {
            fields.push(r.read_der()?);
            Ok(())
        })
    })
    .context("parsing the certificate's contents")?;
    const SUBJECT: usize = 5;
    anyhow::ensure!(
        fields.len() > SUBJECT && fields[0].first() == Some(&0xa0),
        "not a version 3 certificate"
    );
    fields[SUBJECT] = subject.to_vec();
    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for f in &fields {
                w.next().write_der(f);
            }
        })
    });
    let signature = issuer_key.sign(&tbs).context("signing the certificate")?;
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&tbs);
            w.next().write_der(&algorithm);
            w.next().write_bitvec_bytes(&signature, signature.len() * 8);
        })
    }))
}

/// How long `cert_pem` is valid for from `now`, if `ca_pem`'s key signed it
/// (the cluster CA: ECDSA P-256) and it is valid now.
pub fn time_left(cert_pem: &str, ca_pem: &str, now: SystemTime) -> Option<Duration> {
    let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).ok()?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).ok()?;
    let ca_key = ca.public_key().subject_public_key.data.as_ref();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, ca_key)
        .verify(
            cert.tbs_certificate.as_ref(),
            cert.signature_value.data.as_ref(),
        )
        .ok()?;
    let now = unix_secs(now)?;
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return None;
    }
    let left = validity.not_after.timestamp().checked_sub(now)?;
    u64::try_from(left).ok().map(Duration::from_secs)
}

fn unix_secs(t: SystemTime) -> Option<i64> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

/// The admin kubeconfig's client certificate and key (k3s's names).
pub const ADMIN_CLIENT_CERT: &str = "client-admin.crt";
pub const ADMIN_CLIENT_KEY: &str = "client-admin.key";
/// Who the admin kubeconfig is: k3s's admin user, in `system:masters`.
pub const ADMIN_USER: &str = "system:admin";
/// How long client certificates made here are valid (k3s's year).
pub const CLIENT_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A client certificate with less left than this is made again at start (as
/// k3s renews within 90 days of expiry).
const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 3600);

/// The admin client certificate and key in `dir`: the ones there while
/// `ca` signed them and they are good for a while yet, else new ones.
pub fn ensure_admin(dir: &Path, ca: &Ca, new_ca: bool) -> Result<(String, String)> {
    let kept = || {
        let cert = std::fs::read_to_string(dir.join(ADMIN_CLIENT_CERT)).ok()?;
        let key = std::fs::read_to_string(dir.join(ADMIN_CLIENT_KEY)).ok()?;
        let left = time_left(&cert, &ca.cert_pem, SystemTime::now())?;
        (left > RENEW_BEFORE).then_some((cert, key))
    };
    if let Some(pair) = kept().filter(|_| !new_ca) {
        return Ok(pair);
    }
    let (cert, key) =
        ca.issue_client(ADMIN_USER, &[crate::authn::MASTERS], CLIENT_CERT_VALIDITY)?;
    crate::pki::write_private(&dir.join(ADMIN_CLIENT_KEY), &key)?;
    crate::pki::write_mode(&dir.join(ADMIN_CLIENT_CERT), &cert, 0o644)?;
    Ok((cert, key))
}

/// TLS with client certificates around `A` (the TCP acceptor): each accepted
/// connection's service puts its [`PeerCertificate`] into every request.
#[derive(Clone)]
pub struct PeerCertAcceptor<A> {
    inner: RustlsAcceptor<A>,
}

impl<A> PeerCertAcceptor<A> {
    pub fn new(inner: RustlsAcceptor<A>) -> Self {
        Self { inner }
    }
}

type Accepted<St, Sv> = (
    tokio_rustls::server::TlsStream<St>,
    AddExtension<Sv, PeerCertificate>,
);

impl<A, I, S> Accept<I, S> for PeerCertAcceptor<A>
where
    A: Accept<I, S> + Clone + Send + Sync + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A::Service: Send + 'static,
    A::Future: Send + 'static,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<A::Stream>;
    type Service = AddExtension<A::Service, PeerCertificate>;
    type Future = Pin<Box<dyn Future<Output = io::Result<Accepted<A::Stream, A::Service>>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let handshake = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = handshake.await?;
            let peer = PeerCertificate::of(stream.get_ref().1);
            Ok((stream, axum::Extension(peer).layer(service)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .to_vec()
    }

    #[test]
    fn the_common_name_is_the_user_and_every_organization_a_group() {
        let dir = tempfile::tempdir().expect("dir");
        let (ca, _) = crate::pki::ensure_ca(dir.path()).expect("ca");
        let year = Duration::from_secs(365 * 86400);
        let (pem, _) = ca
            .issue_client("jane", &["devs", "ops"], year)
            .expect("cert");
        let user = user_of(&der(&pem), SystemTime::now()).expect("user");
        assert_eq!(user.name, "jane");
        assert_eq!(
            user.groups,
            ["devs", "ops", crate::authn::AUTHENTICATED].map(String::from)
        );
        // Outside its validity it is no one: not yet valid, or expired.
        let earlier = SystemTime::now() - Duration::from_secs(3600);
        assert!(user_of(&der(&pem), earlier).is_none());
        let later = SystemTime::now() + year + Duration::from_secs(3600);
        assert!(user_of(&der(&pem), later).is_none());
        // No CN: not a user (upstream's conversion declines it).
        let (pem, _) = ca.issue_client("", &["devs"], year).expect("cert");
        assert!(user_of(&der(&pem), SystemTime::now()).is_none());
    }

    #[test]
    fn a_client_certificate_carries_every_group_and_the_cas_signature() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = crate::pki::ensure_ca(dir.path()).unwrap();
        let groups = ["devs", "system:masters", "ops"];
        let (pem, key) = ca
            .issue_client("jane", &groups, Duration::from_secs(3600))
            .unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let cert_der = der(&pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
        let orgs: Vec<&str> = cert
            .subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert_eq!(orgs, groups);
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "jane");
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let secs = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(secs, 3600 + 60);
        // Signed again after its subject was put in: the CA's signature holds.
        let ca_der = der(&ca.cert_pem);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        let ca_key = ca_cert.public_key().subject_public_key.data.as_ref();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, ca_key)
            .verify(
                cert.tbs_certificate.as_ref(),
                cert.signature_value.data.as_ref(),
            )
            .expect("the CA's signature");
        let left = time_left(&pem, &ca.cert_pem, SystemTime::now()).expect("signed and valid");
        assert!(left <= Duration::from_secs(3600) && left > Duration::from_secs(3500));
        let (other, _) = crate::pki::ensure_ca(&dir.path().join("other")).unwrap();
        assert!(time_left(&pem, &other.cert_pem, SystemTime::now()).is_none());
        // The key handed out is the certificate's.
        let key = rcgen::KeyPair::from_pem(&key).unwrap();
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
    }

    #[test]
    fn the_admin_kubeconfig_is_a_masters_certificate_made_again_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        crate::pki::ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        let first = std::fs::read_to_string(dir.path().join(ADMIN_CLIENT_CERT)).unwrap();
        let who = user_of(&der(&first), SystemTime::now()).unwrap();
        assert_eq!(who.name, ADMIN_USER);
        assert!(who.in_group(crate::authn::MASTERS));
        let ca = crate::pki::Ca::load(dir.path()).unwrap();
        let left = time_left(&first, &ca.cert_pem, SystemTime::now()).unwrap();
        assert!(left > CLIENT_CERT_VALIDITY - Duration::from_secs(60));
        // Kept while fresh ...
        crate::pki::ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        let kept = std::fs::read_to_string(dir.path().join(ADMIN_CLIENT_CERT)).unwrap();
        assert_eq!(kept, first);
        // ... made again when a month is left, or it is gone.
        let (month, key) = ca
            .issue_client(
                ADMIN_USER,
                &[crate::authn::MASTERS],
                Duration::from_secs(30 * 86400),
            )
            .unwrap();
        std::fs::write(dir.path().join(ADMIN_CLIENT_CERT), &month).unwrap();
        std::fs::write(dir.path().join(ADMIN_CLIENT_KEY), &key).unwrap();
        crate::pki::ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        let renewed = std::fs::read_to_string(dir.path().join(ADMIN_CLIENT_CERT)).unwrap();
        assert_ne!(renewed, month);
        let left = time_left(&renewed, &ca.cert_pem, SystemTime::now()).unwrap();
        assert!(left > CLIENT_CERT_VALIDITY - Duration::from_secs(60));
        let kc = std::fs::read_to_string(dir.path().join(crate::pki::KUBECONFIG)).unwrap();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &renewed);
        assert!(kc.contains(&format!("client-certificate-data: {b64}")));
        std::fs::remove_file(dir.path().join(ADMIN_CLIENT_KEY)).unwrap();
        crate::pki::ensure(dir.path(), "https://127.0.0.1:6443", &[]).unwrap();
        let again = std::fs::read_to_string(dir.path().join(ADMIN_CLIENT_CERT)).unwrap();
        assert_ne!(again, renewed);
    }
}

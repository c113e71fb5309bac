//! The endpoint's TLS and who may use it (the node's serving certificate, the
//! API server's client certificate); apart as the endpoint's security boundary.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The client certificate's common name the endpoint serves (the API server's).
pub const API_SERVER_CLIENT_CN: &str = "kube-apiserver-kubelet-client";

/// The endpoint's TLS configuration: `cert`/`key` the node's serving
/// certificate and key (PEM), `ca` the cluster CA that must have signed a
/// client's certificate.
pub fn tls_config(cert: &Path, key: &Path, ca: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).with_context(|| format!("reading the {what} {}", p.display()))
    };
    let ca_pem = read(ca, "cluster CA certificate")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&ca_pem) {
        let c = c.with_context(|| format!("the cluster CA certificate {}", ca.display()))?;
        roots
            .add(c)
            .with_context(|| format!("the cluster CA certificate {}", ca.display()))?;
    }
    let chain = CertificateDer::pem_slice_iter(&read(cert, "serving certificate")?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the serving certificate {}", cert.display()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&read(key, "serving key")?)
        .with_context(|| format!("the serving key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // A client certificate is checked when given, and required below for
    // everything but /healthz.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .context("the client certificate verifier")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .with_context(|| format!("the serving certificate {}", cert.display()))?;
    Ok(Arc::new(config))
}

/// The common name of a verified client certificate.
fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = c.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Who the client is: the common name of its certificate, which rustls has
/// verified against the cluster CA (for client auth); `None`: no certificate.
pub(super) fn client_of<S>(tls: &tokio_rustls::server::TlsStream<S>) -> Option<String> {
    let certs = tls.get_ref().1.peer_certificates()?;
    certs.first().and_then(common_name)
}

/// What a client may do: only the API server, by its certificate, gets past
/// this; as kubelet, no credential is 401 and another identity 403.
pub(super) fn refusal(client: Option<&str>, method: &str) -> Option<(u16, &'static str, String)> {
    match client {
        Some(API_SERVER_CLIENT_CN) => None,
        None => Some((401, "Unauthorized", "Unauthorized".to_string())),
        Some(user) => {
            let verb = if method == "POST" { "create" } else { "get" };
            Some((
                403,
                "Forbidden",
                format!("Forbidden (user={user}, verb={verb}, resource=nodes, subresource=proxy)"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[test]
    fn only_the_api_server_certificate_is_served() {
        assert_eq!(refusal(Some(API_SERVER_CLIENT_CN), "GET"), None);
        assert_eq!(
            refusal(None, "GET"),
            Some((401, "Unauthorized", "Unauthorized".into()))
        );
        let (code, reason, msg) = refusal(Some("system:node:n2"), "POST").unwrap();
        assert_eq!((code, reason), (403, "Forbidden"));
        assert_eq!(
            msg,
            "Forbidden (user=system:node:n2, verb=create, resource=nodes, subresource=proxy)"
        );
    }

    /// A CA, a serving certificate for 127.0.0.1 and client certificates, as
    /// the cluster's pki makes them.
    struct Pki {
        dir: tempfile::TempDir,
        ca_pem: String,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    impl Pki {
        fn new() -> Self {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca.distinguished_name
                .push(rcgen::DnType::CommonName, "test-ca");
            let cert = ca.self_signed(&key).unwrap();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("ca.crt"), cert.pem()).unwrap();
            let (serving, serving_key) = {
                let k = rcgen::KeyPair::generate().unwrap();
                let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
                p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
                let issuer = rcgen::Issuer::new(
                    ca.clone(),
                    rcgen::KeyPair::from_pem(&key.serialize_pem()).unwrap(),
                );
                (p.signed_by(&k, &issuer).unwrap().pem(), k.serialize_pem())
            };
            std::fs::write(dir.path().join("serving.crt"), serving).unwrap();
            std::fs::write(dir.path().join("serving.key"), serving_key).unwrap();
            Self {
                dir,
                ca_pem: cert.pem(),
                issuer: rcgen::Issuer::new(ca, key),
            }
        }

        fn client(&self, cn: &str) -> (String, String) {
            let k = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            (
                p.signed_by(&k, &self.issuer).unwrap().pem(),
                k.serialize_pem(),
            )
        }

        fn server(&self) -> Arc<rustls::ServerConfig> {
            let d = self.dir.path();
            tls_config(
                &d.join("serving.crt"),
                &d.join("serving.key"),
                &d.join("ca.crt"),
            )
            .unwrap()
        }
    }

    /// Connects with `client` (certificate, key) and returns whom the
    /// endpoint saw; `Err` if the handshake failed on the endpoint's side.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        ca_pem: &str,
        client: Option<(String, String)>,
    ) -> Result<Option<String>, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let tls = tokio_rustls::TlsAcceptor::from(server)
                .accept(sock)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(client_of(&tls))
        });
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name =
            rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
        let conn = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, sock)
            .await;
        if let Ok(mut c) = conn {
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await;
            let _ = c.flush().await;
        }
        accept.await.unwrap()
    }

    #[tokio::test]
    async fn the_endpoint_speaks_tls_and_knows_the_api_server_by_its_certificate() {
        let pki = Pki::new();
        let server = pki.server();
        let seen = handshake(
            server.clone(),
            &pki.ca_pem,
            Some(pki.client(API_SERVER_CLIENT_CN)),
        )
        .await
        .unwrap();
        assert_eq!(seen.as_deref(), Some(API_SERVER_CLIENT_CN));
        assert_eq!(refusal(seen.as_deref(), "GET"), None);
        // No certificate: connected (for /healthz), but refused as 401.
        let seen = handshake(server.clone(), &pki.ca_pem, None).await.unwrap();
        assert_eq!(seen, None);
        assert_eq!(refusal(None, "GET").map(|r| r.0), Some(401));
        // Another identity of the same CA: 403.
        let seen = handshake(
            server.clone(),
            &pki.ca_pem,
            Some(pki.client("system:node:n2")),
        )
        .await
        .unwrap();
        assert_eq!(refusal(seen.as_deref(), "GET").map(|r| r.0), Some(403));
        // A certificate another CA signed does not get through the handshake.
        let other = Pki::new();
        assert!(handshake(
            server,
            &pki.ca_pem,
            Some(other.client(API_SERVER_CLIENT_CN))
        )
        .await
        .is_err());
    }

    #[test]
    fn tls_config_names_what_is_missing() {
        let pki = Pki::new();
        let d = pki.dir.path();
        let e = tls_config(
            &d.join("nope.crt"),
            &d.join("serving.key"),
            &d.join("ca.crt"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("serving certificate"), "{e:#}");
    }
}

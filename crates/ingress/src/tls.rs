//! TLS termination: the certificate for each handshake chosen by SNI from the
//! `kubernetes.io/tls` Secrets the served Ingresses name in `spec.tls`, and a
//! self-signed default certificate (as ingress-nginx's "Kubernetes Ingress
//! Controller Fake Certificate") for every other name, and for a host whose
//! Secret is missing or unusable, so one bad Secret never breaks other hosts.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::routes::build::{Problem, TlsHost};

/// The certificates of the hosts with TLS.
#[derive(Debug, Default)]
pub struct CertStore {
    pub exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` certificates by `example.com`.
    pub wildcard: HashMap<String, Arc<CertifiedKey>>,
}

/// Picks a certificate by SNI; replaced whole after each change.
#[derive(Debug)]
pub struct Resolver {
    pub store: ArcSwap<CertStore>,
    default: Arc<CertifiedKey>,
}

impl Resolver {
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        Resolver {
            store: ArcSwap::from_pointee(CertStore::default()),
            default,
        }
    }

    /// The certificate served to a client asking for `sni`.
    pub fn for_name(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let store = self.store.load();
        let name = sni.map(str::to_ascii_lowercase);
        name.as_deref()
            .and_then(|n| {
                store.exact.get(n).or_else(|| {
                    let (_, parent) = n.split_once('.')?;
                    store.wildcard.get(parent)
                })
            })
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.for_name(hello.server_name()))
    }
}

/// The server side of TLS: HTTP/2 and HTTP/1.1 offered by ALPN.
pub fn server_config(resolver: Arc<Resolver>) -> rustls::ServerConfig {
    let mut c = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_no_client_auth().with_cert_resolver(resolver.clone()))
    .unwrap_or_else(|_| {
        // The ring provider supports the default versions; this is unreachable
        // in practice, and TLS 1.3 alone is a safe answer if it is not.
        rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_no_client_auth()
            .with_cert_resolver(resolver)
    });
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    c
}

/// The name of ingress-nginx's default certificate, kept so users recognise it.
pub const DEFAULT_CERT_NAME: &str = "Kubernetes Ingress Controller Fake Certificate";

/// A self-signed certificate for names no Secret covers, made at start.
pub fn default_certificate() -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])
        .map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEFAULT_CERT_NAME);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Acme Co");
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).map(Arc::new)
}

/// A certificate chain and its key (PEM) ready to serve.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("tls.key: {e}"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("tls.key: {e}"))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// Parsed certificates by Secret (`namespace/name`) and resourceVersion, so a
/// rebuild parses only the Secrets that changed.
#[derive(Default)]
pub struct Cache {
    parsed: HashMap<(String, String), Parsed>,
}

/// A Secret's resourceVersion and what its PEM gave.
type Parsed = (String, Result<Arc<CertifiedKey>, String>);

impl Cache {
    fn get(&mut self, ns: &str, secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let rv = secret.metadata.resource_version.clone().unwrap_or_default();
        let key = (ns.to_string(), name);
        if let Some((v, r)) = self.parsed.get(&key) {
            if *v == rv {
                return r.clone();
            }
        }
        let data = secret.data.as_ref();
        let field = |k: &str| data.and_then(|d| d.get(k)).map(|b| b.0.as_slice());
        let r = match (field("tls.crt"), field("tls.key")) {
            (Some(c), Some(k)) => certified_key(c, k).map(Arc::new),
            _ => Err("it has no tls.crt and tls.key".to_string()),
        };
        self.parsed.insert(key, (rv, r.clone()));
        r
    }
}

/// The certificate of each host in `hosts` from the Secrets `secret` finds;
/// a host without one is left to the default certificate and reported.
pub fn store<'a>(
    hosts: &[TlsHost],
    secret: impl Fn(&str, &str) -> Option<&'a Secret>,
    cache: &mut Cache,
) -> (CertStore, Vec<Problem>) {
    let mut out = CertStore::default();
    let mut problems = Vec::new();
    for h in hosts {
        let Some(name) = &h.secret else {
            continue;
        };
        let got = match secret(&h.namespace, name) {
            Some(s) => cache.get(&h.namespace, s),
            None => Err("it does not exist".to_string()),
        };
        match got {
            Ok(ck) => {
                let map = match h.host.strip_prefix("*.") {
                    Some(parent) => out.wildcard.entry(parent.to_string()),
                    None => out.exact.entry(h.host.clone()),
                };
                // The oldest Ingress's Secret wins (hosts come oldest first).
                map.or_insert(ck);
            }
            Err(why) => problems.push(Problem {
                ingress: h.ingress.clone(),
                warning: true,
                reason: "TLSSecretNotUsable",
                message: format!(
                    "secret \"{}/{name}\" for host {:?}: {why}; serving the default certificate",
                    h.namespace, h.host
                ),
            }),
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::IngressRef;
    use k8s_openapi::ByteString;

    fn secret(name: &str, host: &str) -> Secret {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![host.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("default".into());
        s.metadata.resource_version = Some("1".into());
        s.type_ = Some("kubernetes.io/tls".into());
        s.data = Some(
            [
                ("tls.crt".to_string(), ByteString(cert.pem().into_bytes())),
                (
                    "tls.key".to_string(),
                    ByteString(key.serialize_pem().into_bytes()),
                ),
            ]
            .into(),
        );
        s
    }

    fn host(h: &str, secret: &str) -> TlsHost {
        TlsHost {
            host: h.into(),
            namespace: "default".into(),
            secret: Some(secret.into()),
            ingress: IngressRef {
                namespace: "default".into(),
                name: "i".into(),
            },
        }
    }

    #[test]
    fn by_sni_with_the_default_for_the_rest() {
        let (a, w) = (secret("a", "a.example"), secret("w", "*.wild.example"));
        let secrets = [&a, &w];
        let find = |_: &str, n: &str| {
            secrets
                .iter()
                .copied()
                .find(|s| s.metadata.name.as_deref() == Some(n))
        };
        let hosts = [
            host("a.example", "a"),
            host("*.wild.example", "w"),
            host("gone.example", "missing"),
        ];
        let (store, problems) = super::store(&hosts, find, &mut Cache::default());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("secret \"default/missing\""));
        let r = Resolver::new(default_certificate().expect("default"));
        r.store.store(Arc::new(store));
        let first = |sni: Option<&str>| r.for_name(sni).cert[0].clone();
        let default = first(None);
        assert_ne!(first(Some("a.example")), default);
        assert_eq!(first(Some("A.Example")), first(Some("a.example")));
        assert_ne!(first(Some("x.wild.example")), default);
        assert_ne!(first(Some("x.wild.example")), first(Some("a.example")));
        assert_eq!(first(Some("x.y.wild.example")), default);
        assert_eq!(first(Some("gone.example")), default);
    }
}

//! What the API server's own certificates hold (the serving certificate's
//! names, the client certificate it shows node agents), and reading a
//! certificate's names back to tell whether it must be signed again.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::Result;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose};

use super::ca::{san_of, serial};
use super::KUBELET_CLIENT_CN;

/// The API server's serving certificate's names: the usual ones plus `extra`.
pub(super) fn serving_sans(extra: &[String]) -> Vec<String> {
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

pub(super) fn serving_params(sans: &[String]) -> Result<CertificateParams> {
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

pub(super) fn kubelet_client_params() -> Result<CertificateParams> {
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

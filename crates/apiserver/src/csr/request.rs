//! What a PEM certificate signing request asks for: subject and names, read
//! with x509-parser (the signers check them against what they may issue).

use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// A parsed request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Requested {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Email addresses and URIs: neither signer issues them.
    pub other_names: usize,
}

/// Upstream's words for a request that is no PEM CSR.
pub const NOT_A_CSR: &str = "PEM block type must be CERTIFICATE REQUEST";

/// Parses `pem` (the bytes of `spec.request`).
pub fn parse(pem: &[u8]) -> Result<Requested, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| NOT_A_CSR.to_string())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(NOT_A_CSR.into());
    }
    let (_, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    csr.verify_signature()
        .map_err(|_| "x509: invalid signature on the certificate request".to_string())?;
    let subject = &csr.certification_request_info.subject;
    let mut out = Requested {
        common_name: subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string(),
        organizations: subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect(),
        ..Default::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => out.dns_names.push(d.to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => out
                            .ip_addresses
                            .push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                        16 => out
                            .ip_addresses
                            .push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                        _ => out.other_names += 1,
                    },
                    _ => out.other_names += 1,
                }
            }
        }
    }
    Ok(out)
}

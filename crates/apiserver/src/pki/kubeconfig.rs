//! Kubeconfig files: the admin's, and those handed to users and components.
//! Apart because they are text for clients, not certificates.

use base64::Engine;

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

//! certificates.k8s.io/v1 CertificateSigningRequests end to end with openssl
//! and the machine's real kubectl (issue 20): a key and CSR made by openssl,
//! created with kubectl, approved with `kubectl certificate approve`, signed
//! by the kube-apiserver-client signer, and the issued certificate then
//! authenticates kubectl as the user it names. Denial, and `approve` on
//! signers as upstream's RBAC needs it.

mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use support::{eventually, Cluster};

const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

fn sh_ok(c: &Cluster, script: &str) -> String {
    let out = c.sh(script);
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A key and a PEM CSR for `subject` in `dir`; returns the CSR's base64.
fn openssl_csr(c: &Cluster, dir: &Path, name: &str, subject: &str) -> String {
    let d = dir.display();
    sh_ok(
        c,
        &format!(
            "openssl req -new -newkey rsa:2048 -nodes -keyout {d}/{name}.key -subj '{subject}' -out {d}/{name}.csr 2>/dev/null"
        ),
    );
    let pem = std::fs::read(dir.join(format!("{name}.csr"))).expect("csr");
    base64::engine::general_purpose::STANDARD.encode(pem)
}

fn create_csr(c: &Cluster, name: &str, request: &str, signer: &str, usages: &str) {
    let out = c.apply(&format!(
        "apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {{name: {name}}}
spec:
  request: {request}
  signerName: {signer}
  expirationSeconds: 86400
  usages: [{usages}]
"
    ));
    assert!(
        out.contains(&format!(
            "certificatesigningrequest.certificates.k8s.io/{name}"
        )),
        "{out}"
    );
}

fn csr_json(c: &Cluster, name: &str) -> Value {
    serde_json::from_str(&c.k(&["get", "csr", name, "-o", "json"])).expect("csr json")
}

/// A kubeconfig that authenticates with `name`'s key and issued certificate.
fn cert_kubeconfig(c: &Cluster, dir: &Path, name: &str) -> String {
    let d = dir.display();
    let ca = c.data_dir().join("ca.crt");
    let kc = format!("{d}/{name}.kubeconfig");
    sh_ok(
        c,
        &format!(
            "export KUBECONFIG={kc}; kubectl config set-cluster skiff --server=https://127.0.0.1:6443 --certificate-authority={ca} >/dev/null && \
             kubectl config set-credentials {name} --client-certificate={d}/{name}.crt --client-key={d}/{name}.key >/dev/null && \
             kubectl config set-context ctx --cluster=skiff --user={name} >/dev/null && kubectl config use-context ctx >/dev/null",
            ca = ca.display()
        ),
    );
    kc
}

#[test]
fn an_approved_csr_gives_a_certificate_that_authenticates() {
    let c = Cluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let request = openssl_csr(&c, dir.path(), "jane", "/CN=jane/O=dev/O=qa");
    create_csr(&c, "jane", &request, CLIENT_SIGNER, "client auth");

    let csr = csr_json(&c, "jane");
    assert!(
        !csr["spec"]["username"].as_str().unwrap_or("").is_empty(),
        "the requester is recorded: {csr}"
    );
    let table = c.k(&["get", "csr", "jane"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(row[2], CLIENT_SIGNER, "{table}");
    assert_eq!(row[4], "24h", "{table}");
    assert_eq!(row[5], "Pending", "{table}");

    let out = c.k(&["certificate", "approve", "jane"]);
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/jane approved"
    );
    let cert = eventually(Duration::from_secs(20), || {
        let csr = csr_json(&c, "jane");
        csr["status"]["certificate"].as_str().map(str::to_string)
    });
    let pem = base64::engine::general_purpose::STANDARD
        .decode(cert)
        .expect("base64 certificate");
    std::fs::write(dir.path().join("jane.crt"), &pem).expect("write cert");
    let row = c.k(&["get", "csr", "jane", "--no-headers"]);
    assert!(row.contains("Approved,Issued"), "{row}");
    let text = sh_ok(
        &c,
        &format!(
            "openssl x509 -noout -subject -ext extendedKeyUsage -in {}/jane.crt",
            dir.path().display()
        ),
    );
    assert!(
        text.contains("CN = jane") || text.contains("CN=jane"),
        "{text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");

    // The certificate is jane, in dev and qa, to the API server.
    let kc = cert_kubeconfig(&c, dir.path(), "jane");
    let who = sh_ok(
        &c,
        &format!("kubectl --kubeconfig={kc} auth whoami -o json"),
    );
    let who: Value = serde_json::from_str(&who).expect("whoami json");
    assert_eq!(who["status"]["userInfo"]["username"], "jane", "{who}");
    let groups = who["status"]["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("\"dev\"") && groups.contains("\"qa\""),
        "{groups}"
    );
    let out = c.sh(&format!("kubectl --kubeconfig={kc} get pods"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("User \"jane\" cannot list resource \"pods\""),
        "{err}"
    );

    // Denied: no certificate comes.
    let request = openssl_csr(&c, dir.path(), "bob", "/CN=bob");
    create_csr(&c, "bob", &request, CLIENT_SIGNER, "client auth");
    let out = c.k(&["certificate", "deny", "bob"]);
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/bob denied"
    );
    std::thread::sleep(Duration::from_secs(2));
    let bob = csr_json(&c, "bob");
    assert!(bob["status"]["certificate"].is_null(), "{bob}");
    let row = c.k(&["get", "csr", "bob", "--no-headers"]);
    assert!(row.contains("Denied"), "{row}");

    // Approving needs `approve` on the signer, besides update on approval.
    c.apply(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: csr-approver}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests]
  verbs: [get, list, watch]
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests/approval]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: jane-approves}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: csr-approver}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: jane}]
",
    );
    let request = openssl_csr(&c, dir.path(), "carol", "/CN=carol");
    create_csr(&c, "carol", &request, CLIENT_SIGNER, "client auth");
    let approve = format!("kubectl --kubeconfig={kc} certificate approve carol");
    let err = eventually(Duration::from_secs(10), || {
        let out = c.sh(&approve);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        err.contains("user not permitted").then_some(err)
    });
    assert!(
        err.contains(&format!(
            "user not permitted to approve requests with signerName \"{CLIENT_SIGNER}\""
        )),
        "{err}"
    );
    c.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: csr-approver}}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests]
  verbs: [get, list, watch]
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests/approval]
  verbs: [update]
- apiGroups: [certificates.k8s.io]
  resources: [signers]
  resourceNames: [{CLIENT_SIGNER}]
  verbs: [approve]
"
    ));
    eventually(Duration::from_secs(10), || {
        c.sh(&approve).status.success().then_some(())
    });
    eventually(Duration::from_secs(20), || {
        csr_json(&c, "carol")["status"]["certificate"]
            .as_str()
            .map(|_| ())
    });
}

#[test]
fn bad_csrs_are_refused_or_failed() {
    let c = Cluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = c.kubectl_in(
        &["apply", "-f", "-"],
        "apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {name: junk}
spec: {request: bm90IGEgY3NyCg==, signerName: kubernetes.io/kube-apiserver-client, usages: [client auth]}
",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.request: Invalid value"), "{err}");
    assert!(
        err.contains("PEM block type must be CERTIFICATE REQUEST"),
        "{err}"
    );
    // A client CSR asking for server auth is approved, then failed by the signer.
    let request = openssl_csr(&c, dir.path(), "srv", "/CN=srv");
    create_csr(&c, "srv", &request, CLIENT_SIGNER, "server auth");
    c.k(&["certificate", "approve", "srv"]);
    let failed = eventually(Duration::from_secs(20), || {
        let csr = csr_json(&c, "srv");
        csr["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Failed")
            .cloned()
    });
    assert_eq!(failed["reason"], "SignerValidationFailure", "{failed}");
    let csr = csr_json(&c, "srv");
    assert!(csr["status"]["certificate"].is_null(), "{csr}");
}

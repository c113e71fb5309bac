//! certificates.k8s.io printers (upstream `printCertificateSigningRequest`).

use serde_json::Value;

use super::{arr_at, at, col, human_duration, name, str_at, Ctx, Printer, Row, AGE, NAME};

pub(crate) const CERTIFICATE_SIGNING_REQUEST: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        col(
            "SignerName",
            "string",
            "Only one of the signer name or the requestor may be empty.",
        ),
        col("Requestor", "string", "Name of the requestor"),
        col(
            "RequestedDuration",
            "string",
            "Requested duration of the certificate",
        ),
        col("Condition", "string", "State of the signing request"),
    ],
    row: csr_row,
};

/// Upstream `extractCSRStatus`: Denied over Approved over Pending, then
/// `,Failed` and `,Issued`.
fn condition(csr: &Value) -> String {
    let conds = arr_at(csr, &["status", "conditions"]);
    let has = |t: &str| conds.iter().any(|c| c["type"] == t);
    let mut s = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        s.push_str(",Failed");
    }
    if !str_at(csr, &["status", "certificate"]).is_empty() {
        s.push_str(",Issued");
    }
    s
}

fn csr_row(csr: &Value, ctx: &Ctx) -> Row {
    let signer = match str_at(csr, &["spec", "signerName"]) {
        "" => "<none>",
        s => s,
    };
    let duration = match at(csr, &["spec", "expirationSeconds"]).and_then(Value::as_i64) {
        Some(secs) => human_duration(chrono::Duration::seconds(secs)),
        None => "<none>".to_string(),
    };
    Row::new(vec![
        name(csr).into(),
        ctx.age(csr).into(),
        signer.into(),
        str_at(csr, &["spec", "username"]).into(),
        duration.into(),
        condition(csr).into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_print_as_upstream() {
        assert_eq!(condition(&json!({})), "Pending");
        let issued = json!({"status": {"conditions": [{"type": "Approved"}], "certificate": "x"}});
        assert_eq!(condition(&issued), "Approved,Issued");
        let denied = json!({"status": {"conditions": [{"type": "Denied"}, {"type": "Failed"}]}});
        assert_eq!(condition(&denied), "Denied,Failed");
        let ctx = Ctx {
            now: chrono::Utc::now(),
        };
        let row = csr_row(&json!({"spec": {"expirationSeconds": 3600}}), &ctx);
        assert_eq!(row.cells[2], json!("<none>"));
        assert_eq!(row.cells[4], json!("60m"));
    }
}

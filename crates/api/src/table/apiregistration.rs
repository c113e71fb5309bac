//! apiregistration.k8s.io printers (upstream `printAPIService`).

use serde_json::Value;

use super::{arr_at, at, col, name, str_at, Ctx, Printer, Row, AGE, NAME};

pub(crate) const API_SERVICE: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Service",
            "string",
            "The reference to the service that hosts this API endpoint.",
        ),
        col("Available", "string", "Whether this service is available."),
        AGE,
    ],
    row: apiservice_row,
};

fn apiservice_row(svc: &Value, ctx: &Ctx) -> Row {
    let service = match at(svc, &["spec", "service"]).filter(|s| s.is_object()) {
        Some(s) => format!("{}/{}", str_at(s, &["namespace"]), str_at(s, &["name"])),
        None => "Local".to_string(),
    };
    let available = arr_at(svc, &["status", "conditions"])
        .iter()
        .find(|c| c["type"] == "Available")
        .map(|c| {
            let status = c["status"].as_str().unwrap_or("");
            match c["reason"].as_str() {
                Some(r) if status != "True" && !r.is_empty() => format!("{status} ({r})"),
                _ => status.to_string(),
            }
        })
        .unwrap_or_else(|| "Unknown".to_string());
    Row::new(vec![
        name(svc).into(),
        service.into(),
        available.into(),
        ctx.age(svc).into(),
    ])
}

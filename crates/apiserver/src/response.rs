//! Building HTTP responses: JSON objects, `Status` errors, warnings, Tables.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;
use skiff_api::StatusError;

pub fn json(code: u16, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn error(err: &StatusError) -> Response {
    json(err.code, &err.to_json())
}

/// Adds upstream-style `Warning: 299 - "..."` headers, which kubectl prints.
pub fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            r.headers_mut().append(http::header::WARNING, v);
        }
    }
    r
}

/// Whether the client asked for a server-side Table (`kubectl get`).
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| part.contains("as=Table") && part.contains("g=meta.k8s.io"))
}

pub struct Failure(pub StatusError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        error(&self.0)
    }
}

impl From<StatusError> for Failure {
    fn from(e: StatusError) -> Self {
        Self(e)
    }
}

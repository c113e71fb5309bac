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

/// A JSON body encoded already (a list assembled from the watch cache's bytes).
pub fn json_bytes(code: u16, body: bytes::Bytes) -> Response {
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

/// The form a response takes, from the `Accept` header's `as=` transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The object (or list) itself.
    Object,
    /// A `meta.k8s.io` Table (`kubectl get`).
    Table,
    /// `PartialObjectMetadata` (or `PartialObjectMetadataList` for a list):
    /// what kube-rs's `*_metadata` calls and metadata informers ask for.
    Metadata,
}

/// The first form in the `Accept` header the server can give, in the
/// client's order, as upstream's negotiation picks: a transform the server
/// does not know (or a list asked as a single object) is skipped in favour
/// of the next media type. Nothing usable means the object itself.
pub fn shape(headers: &HeaderMap, list: bool) -> Shape {
    for part in headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut params = part.split(';').skip(1).filter_map(|p| p.split_once('='));
        let (mut as_, mut g, mut v) = (None, None, None);
        for (k, val) in params.by_ref() {
            match k.trim() {
                "as" => as_ = Some(val.trim()),
                "g" => g = Some(val.trim()),
                "v" => v = Some(val.trim()),
                _ => {}
            }
        }
        let Some(as_) = as_ else {
            return Shape::Object;
        };
        if g != Some("meta.k8s.io") || !matches!(v, Some("v1" | "v1beta1")) {
            continue;
        }
        match (as_, list) {
            ("Table", _) => return Shape::Table,
            ("PartialObjectMetadata", false) | ("PartialObjectMetadataList", true) => {
                return Shape::Metadata
            }
            _ => {}
        }
    }
    Shape::Object
}

/// Whether the client asked for a server-side Table (`kubectl get`).
pub fn wants_table(headers: &HeaderMap) -> bool {
    shape(headers, false) == Shape::Table
}

/// An object's `meta.k8s.io/v1 PartialObjectMetadata`.
pub fn partial_metadata(obj: &Value) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn the_first_usable_form_in_the_accept_header_wins() {
        let meta = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        let meta_list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        for (h, list, want) in [
            (meta, false, Shape::Metadata),
            (meta_list, true, Shape::Metadata),
            // A single object asked as a list (and back) is not that form.
            (meta, true, Shape::Object),
            (meta_list, false, Shape::Object),
            (table, false, Shape::Table),
            (table, true, Shape::Table),
            ("application/json", false, Shape::Object),
            ("application/json, application/json;as=Table;g=meta.k8s.io;v=v1", false, Shape::Object),
            ("application/json;as=Other;g=meta.k8s.io;v=v1, application/json;as=Table;g=meta.k8s.io;v=v1", false, Shape::Table),
            ("application/vnd.kubernetes.protobuf,application/json", false, Shape::Object),
        ] {
            assert_eq!(shape(&accept(h), list), want, "{h} list={list}");
        }
        assert_eq!(shape(&HeaderMap::new(), false), Shape::Object);
    }
}

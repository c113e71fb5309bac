//! What clients discover about service-account tokens: the OIDC documents
//! (upstream's ServiceAccountIssuerDiscovery) and the `authentication.k8s.io`
//! resources, which are not stored and so are not in the registry.

use axum::body::Body;
use axum::response::Response;
use serde_json::json;
use skiff_api::registry::Resource;

use super::{Keys, ISSUER};

pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
pub const JWKS_PATH: &str = "/openid/v1/jwks";

/// A create-only review resource of `authentication.k8s.io/v1`.
const fn review(plural: &'static str, singular: &'static str, kind: &'static str) -> Resource {
    Resource {
        group: "authentication.k8s.io",
        version: "v1",
        plural,
        singular,
        kind,
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        status: false,
        scale: false,
        has_spec: true,
        storage: plural,
    }
}

pub static TOKEN_REVIEWS: Resource = review("tokenreviews", "tokenreview", "TokenReview");
pub static SELF_SUBJECT_REVIEWS: Resource = review(
    "selfsubjectreviews",
    "selfsubjectreview",
    "SelfSubjectReview",
);
/// The kind a `serviceaccounts/token` request is, for its error messages.
pub static TOKEN_REQUESTS: Resource = review("tokenrequests", "tokenrequest", "TokenRequest");

/// Resources served outside the registry, for discovery to list.
pub static RESOURCES: &[&Resource] = &[&SELF_SUBJECT_REVIEWS, &TOKEN_REVIEWS];

/// The `serviceaccounts` subresource: (name, kind, group, version, verbs).
pub const TOKEN_SUBRESOURCE: (&str, &str, &str, &str, &[&str]) = (
    "token",
    "TokenRequest",
    "authentication.k8s.io",
    "v1",
    &["create"],
);

fn json_as(value: &serde_json::Value, content_type: &'static str) -> Response {
    let mut r = Response::new(Body::from(value.to_string()));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    // Upstream lets relying parties cache both documents for an hour.
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// `/.well-known/openid-configuration`, upstream's fields. The JWKS URI is
/// this server's address, as upstream derives it when `--service-account-jwks-uri`
/// is not given.
pub fn openid_configuration(server_address: &str) -> Response {
    json_as(
        &json!({
            "issuer": ISSUER,
            "jwks_uri": format!("https://{server_address}{JWKS_PATH}"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [super::jwt::ALG],
        }),
        "application/json",
    )
}

/// `/openid/v1/jwks`.
pub fn jwks(keys: &Keys) -> Response {
    json_as(&keys.jwks(), "application/jwk-set+json")
}

//! ServiceAccount tokens (issue #17): the signing key ([`keys`]), ES256 JWTs
//! ([`jwt`]), the `serviceaccounts/<name>/token` TokenRequest subresource
//! ([`token_request`]), authenticating such tokens against the objects they are
//! bound to ([`bound`]; signatures checked once per token, [`verified`]; the
//! bound objects as the store has them now, [`bound_objects`]), TokenReview and
//! SelfSubjectReview ([`review`]), and the OIDC discovery documents
//! ([`discovery`]).
//!
//! The issuer and the API audience are upstream's defaults for a cluster
//! named `cluster.local` (k3s passes the same `--service-account-issuer`; the
//! API audiences default to the issuer).

pub mod bound;
pub mod bound_objects;
pub mod discovery;
pub mod jwt;
pub mod keys;
pub mod review;
pub mod token_request;
pub mod verified;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Method};
use skiff_api::StatusError;

pub use keys::Keys;

use crate::authn::User;
use crate::response;
use crate::server::Api;

/// `--service-account-issuer`: the `iss` of every token.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// `--api-audiences`: a token must name one of these to authenticate to the API.
pub const API_AUDIENCE: &str = ISSUER;

pub fn api_audiences() -> Vec<String> {
    vec![API_AUDIENCE.to_string()]
}

/// The paths this module serves itself: none of them is a stored resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    OpenIdConfiguration,
    Jwks,
    TokenReviews,
    SelfSubjectReviews,
}

pub fn route(path: &str) -> Option<Route> {
    match path.trim_end_matches('/') {
        discovery::OPENID_CONFIGURATION_PATH => Some(Route::OpenIdConfiguration),
        discovery::JWKS_PATH => Some(Route::Jwks),
        "/apis/authentication.k8s.io/v1/tokenreviews" => Some(Route::TokenReviews),
        "/apis/authentication.k8s.io/v1/selfsubjectreviews" => Some(Route::SelfSubjectReviews),
        _ => None,
    }
}

/// Serves one of [`Route`]'s paths for an authenticated `user`.
pub async fn serve(
    api: &Api,
    user: &User,
    route: Route,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let result = match (route, method.as_str()) {
        (Route::OpenIdConfiguration, "GET" | "HEAD") => {
            Ok(discovery::openid_configuration(&api.server_address))
        }
        (Route::Jwks, "GET" | "HEAD") => Ok(discovery::jwks(&api.service_account_keys)),
        (Route::TokenReviews, "POST") => review::token_review(api, headers, body).await,
        (Route::SelfSubjectReviews, "POST") => {
            review::self_subject_review(user, headers, body).await
        }
        _ => Err(StatusError::method_not_allowed()),
    };
    result.unwrap_or_else(|e| response::error(&e))
}

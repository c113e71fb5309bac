//! `TokenReview` (does this token authenticate, as whom, for which audiences)
//! and `SelfSubjectReview` (who am I: `kubectl auth whoami`), both
//! `authentication.k8s.io/v1`, created and answered, never stored.

use axum::body::Body;
use axum::response::Response;
use chrono::{SecondsFormat, Utc};
use http::HeaderMap;
use serde_json::{json, Value};
use skiff_api::StatusError;

use super::{bound, jwt};
use crate::authn::{self, User};
use crate::server::Api;
use crate::{body, response};

const API_VERSION: &str = "authentication.k8s.io/v1";

/// `UserInfo` as upstream writes it: `uid` and `extra` only when set.
pub fn user_info(user: &User) -> Value {
    let mut u = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        u["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        u["extra"] = json!(*user.extra);
    }
    u
}

async fn decode(headers: &HeaderMap, body: Body, kind: &str) -> Result<Value, StatusError> {
    let bytes = body::read(body).await?;
    let obj = body::decode_object(&body::content_type(headers), &bytes)?;
    let given = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if !given.is_empty() && given != kind {
        return Err(StatusError::bad_request(format!(
            "the body must be a {kind}, not {given}"
        )));
    }
    Ok(obj)
}

/// Authenticates `token` as a request's bearer token would be: a
/// service-account JWT for the given audiences, or any other token the
/// server knows (those are for the API audiences only).
async fn review(
    api: &Api,
    token: &str,
    audiences: &[String],
) -> Result<Result<bound::Authenticated, String>, StatusError> {
    let asked = (!audiences.is_empty()).then_some(audiences);
    if jwt::looks_like_jwt(token) {
        return bound::authenticate(api, token, asked).await;
    }
    let api_audiences = super::api_audiences();
    let wanted = asked.unwrap_or(&api_audiences);
    let common: Vec<String> = api_audiences
        .iter()
        .filter(|a| wanted.contains(a))
        .cloned()
        .collect();
    if common.is_empty() {
        return Ok(Err(
            "the token is not valid for the requested audiences".into()
        ));
    }
    let mut headers = HeaderMap::new();
    let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {token}")) else {
        return Ok(Err("invalid bearer token".into()));
    };
    headers.insert(http::header::AUTHORIZATION, value);
    match authn::authenticate(api, &headers).await {
        Ok(user) => Ok(Ok(bound::Authenticated {
            user,
            audiences: common,
        })),
        Err(e) if e.code == 401 => Ok(Err("invalid bearer token".into())),
        Err(e) => Err(e),
    }
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`.
pub async fn token_review(
    api: &Api,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, StatusError> {
    let req = decode(headers, body, "TokenReview").await?;
    let token = req
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if token.is_empty() {
        return Err(StatusError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let audiences: Vec<String> = req
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let status = match review(api, token, &audiences).await? {
        Ok(a) => json!({
            "authenticated": true,
            "user": user_info(&a.user),
            "audiences": a.audiences,
        }),
        Err(why) => {
            tracing::debug!(reason = %why, "token review: not authenticated");
            json!({"user": {}, "error": why})
        }
    };
    let mut spec = req.get("spec").cloned().unwrap_or(json!({}));
    if !spec.is_object() {
        spec = json!({});
    }
    Ok(response::json(
        201,
        &json!({
            "kind": "TokenReview",
            "apiVersion": API_VERSION,
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": status,
        }),
    ))
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: the requester.
pub async fn self_subject_review(
    user: &User,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, StatusError> {
    // A SelfSubjectReview asks nothing: its body is only checked when it can be
    // read. kubectl sends protobuf, whose schemas (crates/protobuf) do not have
    // this kind, and upstream ignores the body anyway.
    if body::content_type(headers) == body::PROTOBUF {
        body::read(body).await?;
    } else {
        decode(headers, body, "SelfSubjectReview").await?;
    }
    Ok(response::json(
        201,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": API_VERSION,
            "metadata": {"creationTimestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)},
            "status": {"userInfo": user_info(user)},
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn user_info_has_uid_and_extra_only_when_set() {
        let admin = user_info(&User::admin());
        assert_eq!(
            admin,
            json!({"username": "admin", "groups": ["system:masters", "system:authenticated"]})
        );
        let mut extra = BTreeMap::new();
        extra.insert(bound::EXTRA_POD_NAME.to_string(), vec!["web-0".to_string()]);
        let sa = user_info(&User::service_account("ns", "web", "u1", extra));
        assert_eq!(sa["username"], "system:serviceaccount:ns:web");
        assert_eq!(sa["uid"], "u1");
        assert_eq!(
            sa["groups"],
            json!([
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                "system:authenticated"
            ])
        );
        assert_eq!(
            sa["extra"]["authentication.kubernetes.io/pod-name"],
            json!(["web-0"])
        );
    }
}

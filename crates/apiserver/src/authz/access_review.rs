//! `authorization.k8s.io/v1` reviews: created, answered and never stored, as
//! upstream serves them (`kubectl auth can-i` and `--list`):
//!
//! - `SelfSubjectAccessReview`: may I do this?
//! - `SubjectAccessReview`: may this user (and groups) do this?
//! - `LocalSubjectAccessReview`: the same, in the namespace of the path;
//! - `SelfSubjectRulesReview`: what may I do in this namespace?
//!
//! Each answer is the decision a request would get ([`super::policy`]).

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Method};
use serde_json::{json, Value};
use skiff_api::registry::Resource;
use skiff_api::validation::FieldError;
use skiff_api::StatusError;

use super::{policy, Attributes, Decision};
use crate::authn::User;
use crate::{body, response};

pub const GROUP: &str = "authorization.k8s.io";
const API_VERSION: &str = "authorization.k8s.io/v1";
const PREFIX: &str = "/apis/authorization.k8s.io/v1/";

/// A create-only review resource of `authorization.k8s.io/v1`.
const fn review(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group: GROUP,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        status: false,
        scale: false,
        has_spec: true,
        storage: plural,
    }
}

pub static LOCAL_SUBJECT_ACCESS_REVIEWS: Resource = review(
    "localsubjectaccessreviews",
    "localsubjectaccessreview",
    "LocalSubjectAccessReview",
    true,
);
pub static SELF_SUBJECT_ACCESS_REVIEWS: Resource = review(
    "selfsubjectaccessreviews",
    "selfsubjectaccessreview",
    "SelfSubjectAccessReview",
    false,
);
pub static SELF_SUBJECT_RULES_REVIEWS: Resource = review(
    "selfsubjectrulesreviews",
    "selfsubjectrulesreview",
    "SelfSubjectRulesReview",
    false,
);
pub static SUBJECT_ACCESS_REVIEWS: Resource = review(
    "subjectaccessreviews",
    "subjectaccessreview",
    "SubjectAccessReview",
    false,
);

/// Resources served outside the registry, for discovery to list (upstream's order).
pub static RESOURCES: &[&Resource] = &[
    &LOCAL_SUBJECT_ACCESS_REVIEWS,
    &SELF_SUBJECT_ACCESS_REVIEWS,
    &SELF_SUBJECT_RULES_REVIEWS,
    &SUBJECT_ACCESS_REVIEWS,
];

/// The review a path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    SelfSubjectAccess,
    SubjectAccess,
    LocalSubjectAccess { namespace: String },
    SelfSubjectRules,
}

impl Route {
    fn resource(&self) -> &'static Resource {
        match self {
            Route::SelfSubjectAccess => &SELF_SUBJECT_ACCESS_REVIEWS,
            Route::SubjectAccess => &SUBJECT_ACCESS_REVIEWS,
            Route::LocalSubjectAccess { .. } => &LOCAL_SUBJECT_ACCESS_REVIEWS,
            Route::SelfSubjectRules => &SELF_SUBJECT_RULES_REVIEWS,
        }
    }
}

pub fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix(PREFIX)?.trim_end_matches('/');
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["selfsubjectaccessreviews"] => Some(Route::SelfSubjectAccess),
        ["subjectaccessreviews"] => Some(Route::SubjectAccess),
        ["selfsubjectrulesreviews"] => Some(Route::SelfSubjectRules),
        ["namespaces", ns, "localsubjectaccessreviews"] if !ns.is_empty() => {
            Some(Route::LocalSubjectAccess {
                namespace: ns.to_string(),
            })
        }
        _ => None,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn invalid(route: &Route, field: &str, value: Value, detail: &str) -> StatusError {
    StatusError::invalid(
        route.resource(),
        "",
        &[FieldError::invalid(field, value, detail)],
    )
}

/// The request a `SubjectAccessReviewSpec` describes, for `user`.
fn spec_attributes(route: &Route, spec: &Value, user: User) -> Result<Attributes, StatusError> {
    let resource = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    match (resource, non_resource) {
        (Some(r), None) => Ok(Attributes::resource(
            user,
            str_at(r, "verb"),
            str_at(r, "group"),
            str_at(r, "resource"),
        )
        .subresource(str_at(r, "subresource"))
        .name(str_at(r, "name"))
        .namespace(str_at(r, "namespace"))),
        (None, Some(n)) => Ok(Attributes::non_resource(
            user,
            str_at(n, "verb"),
            str_at(n, "path"),
        )),
        _ => Err(invalid(
            route,
            "spec.resourceAttributes",
            resource.cloned().unwrap_or(Value::Null),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

/// The user a `SubjectAccessReviewSpec` names (as given: no groups added).
fn spec_user(route: &Route, spec: &Value) -> Result<User, StatusError> {
    let name = str_at(spec, "user").to_string();
    let groups = strings(spec.get("groups"));
    if name.is_empty() && groups.is_empty() {
        return Err(invalid(
            route,
            "spec.user",
            json!(""),
            "at least one of user or group must be specified",
        ));
    }
    let extra = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), strings(Some(v))))
                .collect()
        })
        .map(std::sync::Arc::new)
        .unwrap_or_default();
    Ok(User {
        name,
        groups,
        uid: str_at(spec, "uid").to_string(),
        extra,
    })
}

fn access_status(decision: &Decision) -> Value {
    let mut status = json!({"allowed": decision.is_allowed()});
    if !decision.reason().is_empty() {
        status["reason"] = json!(decision.reason());
    }
    status
}

async fn decode(route: &Route, headers: &HeaderMap, body: Body) -> Result<Value, StatusError> {
    let bytes = body::read(body).await?;
    let media = body::content_type(headers);
    let obj = if media == body::PROTOBUF {
        super::review_proto::decode(&bytes)?
    } else {
        body::decode_object(&media, &bytes)?
    };
    let kind = route.resource().kind;
    let given = str_at(&obj, "kind");
    if !given.is_empty() && given != kind {
        return Err(StatusError::bad_request(format!(
            "the body must be a {kind}, not {given}"
        )));
    }
    Ok(obj)
}

/// Answers one review for `user` (the requester) with the authorizers the
/// server decides its own requests with (the node graph too, so a review of
/// a node's access answers as the request would be decided).
pub async fn serve(
    authorizers: policy::Authorizers<'_>,
    user: &User,
    route: Route,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    if method != Method::POST {
        return response::error(&StatusError::method_not_allowed());
    }
    let answer = async {
        let req = decode(&route, headers, body).await?;
        let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
        let status = match &route {
            Route::SelfSubjectAccess => {
                let attrs = spec_attributes(&route, &spec, user.clone())?;
                access_status(&policy::decide(authorizers, &attrs))
            }
            Route::SubjectAccess => {
                let attrs = spec_attributes(&route, &spec, spec_user(&route, &spec)?)?;
                access_status(&policy::decide(authorizers, &attrs))
            }
            Route::LocalSubjectAccess { namespace } => {
                let attrs = spec_attributes(&route, &spec, spec_user(&route, &spec)?)?;
                if attrs.namespace_str() != namespace {
                    return Err(StatusError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {namespace}"
                    )));
                }
                access_status(&policy::decide(authorizers, &attrs))
            }
            Route::SelfSubjectRules => {
                let ns = str_at(&spec, "namespace");
                let mut review = match authorizers.rbac {
                    Some(i) => i.rules_for(user, ns),
                    None => super::RulesReview {
                        incomplete: true,
                        evaluation_error: Some("the authorization index is not loaded yet".into()),
                        ..Default::default()
                    },
                };
                review.incomplete |= policy::rules_incomplete(user);
                review.to_status()
            }
        };
        Ok::<_, StatusError>(json!({
            "kind": route.resource().kind,
            "apiVersion": API_VERSION,
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": status,
        }))
    };
    match answer.await {
        Ok(v) => response::json(201, &v),
        Err(e) => response::error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_paths() {
        assert_eq!(
            route("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
            Some(Route::SelfSubjectAccess)
        );
        assert_eq!(
            route("/apis/authorization.k8s.io/v1/namespaces/d/localsubjectaccessreviews"),
            Some(Route::LocalSubjectAccess {
                namespace: "d".into()
            })
        );
        assert_eq!(route("/apis/authorization.k8s.io/v1/bogus"), None);
        assert_eq!(route("/apis/authorization.k8s.io/v1"), None);
    }

    #[test]
    fn specs_become_attributes_or_upstreams_refusals() {
        let r = Route::SubjectAccess;
        let spec = json!({"user": "jane", "groups": ["devs"],
            "resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "d"}});
        let attrs = spec_attributes(&r, &spec, spec_user(&r, &spec).unwrap()).unwrap();
        assert_eq!(attrs.user.groups, ["devs"]);
        assert_eq!(attrs.namespace_str(), "d");
        let e = spec_user(&r, &json!({})).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e
            .message
            .contains("at least one of user or group must be specified"));
        let both = json!({"resourceAttributes": {}, "nonResourceAttributes": {}});
        let e = spec_attributes(&r, &both, User::admin()).unwrap_err();
        assert!(e
            .message
            .contains("exactly one of nonResourceAttributes or resourceAttributes"));
    }
}

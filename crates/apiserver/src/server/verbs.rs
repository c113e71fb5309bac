//! The verbs on a resource (get, list, watch, create, update, patch, delete,
//! deletecollection and the known subresources): apart from the dispatcher so
//! that what a verb does is read without the routing around it.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Method};
use serde_json::Value;
use skiff_api::StatusError;

use super::Api;
use crate::authn;
use crate::delete::{self, DeleteOptions};
use crate::request::{Query, Target};
use crate::rest::{self, WriteOptions};
use crate::{body, response, watch};

/// Who writes, for escalation checks on RBAC objects.
pub(super) struct Writer<'a> {
    pub(super) user: &'a authn::User,
    pub(super) index: Option<&'a crate::authz::RbacIndex>,
}

impl Writer<'_> {
    /// Refuses an RBAC object that would grant more than the writer holds.
    fn check_escalation(&self, t: &Target, obj: &Value) -> Result<(), StatusError> {
        use crate::authz::escalation;
        match escalation::Kind::of(t.resource) {
            Some(kind) => escalation::check(
                self.index,
                self.user,
                t.resource,
                kind,
                t.namespace.as_deref().unwrap_or(""),
                obj,
            ),
            None => Ok(()),
        }
    }
}

pub(super) async fn resource_request(
    api: &Api,
    who: &Writer<'_>,
    t: &Target,
    method: &Method,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
) -> (&'static str, Response) {
    let verb = match (method.as_str(), t.name.is_some()) {
        ("GET", true) if q.flag("watch") => "watch",
        ("GET", true) => "get",
        ("GET", false) if q.flag("watch") => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        // A subresource created on an object (pods/<name>/eviction,
        // serviceaccounts/<name>/token).
        ("POST", true) if matches!(t.subresource.as_deref(), Some("eviction" | "token")) => {
            "create"
        }
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return ("", response::error(&StatusError::method_not_allowed())),
    };
    if !t.resource.verbs.contains(&verb) && verb != "watch" {
        return (verb, response::error(&StatusError::method_not_allowed()));
    }
    let result = run_verb(api, who, t, verb, q, headers, body).await;
    (verb, result.unwrap_or_else(|e| response::error(&e)))
}

async fn run_verb(
    api: &Api,
    who: &Writer<'_>,
    t: &Target,
    verb: &str,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, StatusError> {
    if let Some(sub) = t.subresource.as_deref() {
        let known = match sub {
            "status" => t.resource.status,
            "scale" => t.resource.scale,
            "finalize" => t.resource.kind == "Namespace",
            "eviction" => t.resource.kind == "Pod" && verb == "create",
            "token" => t.resource.kind == "ServiceAccount" && verb == "create",
            "approval" => t.resource.kind == "CertificateSigningRequest" && verb == "update",
            "ephemeralcontainers" => {
                t.resource.kind == "Pod" && matches!(verb, "get" | "update" | "patch")
            }
            _ => false,
        };
        if !known {
            return Err(StatusError::no_such_resource());
        }
    }
    crate::node_restriction::admit(api, who.user, t, verb).await?;
    match verb {
        "get" => rest::get_response(api, t, q, headers).await,
        "list" => rest::list(api, t, q, headers).await,
        // A watch on a single object is its collection's watch filtered by name.
        "watch" => watch::watch(api, t, q, headers).await,
        "create" if t.subresource.as_deref() == Some("eviction") => {
            let bytes = body::read(body).await?;
            crate::eviction::evict(api, t, q, headers, &bytes).await
        }
        "create" if t.subresource.as_deref() == Some("token") => {
            let bytes = body::read(body).await?;
            crate::node_restriction::admit_token(api, who.user, t, headers, &bytes).await?;
            crate::serviceaccount::token_request::create(api, t, headers, &bytes).await
        }
        "create" => {
            let bytes = body::read(body).await?;
            let opts = WriteOptions::from_request(q, headers)?;
            let (mut obj, warnings) = rest::decode_body(t, headers, &bytes, &opts)?;
            if t.resource.kind == "CertificateSigningRequest" {
                crate::csr::admit_create(who.user, t.resource, &mut obj)?;
            }
            who.check_escalation(t, &obj)?;
            crate::node_restriction::admit_create(who.user, t, &obj)?;
            let created = rest::create(api, t, obj, &opts).await?;
            let created = rest::render_one(headers, q, t.resource, created);
            Ok(response::with_warnings(
                response::json(201, &created),
                &warnings,
            ))
        }
        "update" if t.subresource.as_deref() == Some("approval") => {
            let bytes = body::read(body).await?;
            crate::csr::approve(api, who.user, who.index, t, headers, &bytes, q).await
        }
        "update" => {
            let bytes = body::read(body).await?;
            let opts = WriteOptions::from_request(q, headers)?;
            let (obj, warnings) = rest::decode_body(t, headers, &bytes, &opts)?;
            who.check_escalation(t, &obj)?;
            let updated = crate::node_restriction::update(api, who.user, t, obj, &opts).await?;
            let updated = rest::render_one(headers, q, t.resource, updated);
            Ok(response::with_warnings(
                response::json(200, &updated),
                &warnings,
            ))
        }
        "patch" => {
            let bytes = body::read(body).await?;
            let check = |obj: &Value| who.check_escalation(t, obj);
            let (code, obj) =
                crate::node_restriction::patch(api, who.user, t, q, headers, &bytes, &check)
                    .await?;
            let obj = rest::render_one(headers, q, t.resource, obj);
            Ok(response::json(code, &obj))
        }
        "delete" => {
            let bytes = body::read(body).await?;
            let opts = DeleteOptions::parse(q, &body::content_type(headers), &bytes)?;
            let obj = delete::delete(api, t, &opts).await?;
            let obj = rest::render_one(headers, q, t.resource, obj);
            Ok(response::json(200, &obj))
        }
        "deletecollection" => {
            let bytes = body::read(body).await?;
            let opts = DeleteOptions::parse(q, &body::content_type(headers), &bytes)?;
            Ok(response::json(
                200,
                &delete::delete_collection(api, t, q, &opts).await?,
            ))
        }
        _ => Err(StatusError::method_not_allowed()),
    }
}

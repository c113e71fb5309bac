//! PATCH in its four media types, and server-side apply (which may create).

use http::HeaderMap;
use serde_json::Value;
use skiff_api::StatusError;
use skiff_patch::GroupKind;

use crate::body;
use crate::request::{Query, Target};
use crate::rest::{self, Result, WriteOptions};
use crate::server::Api;

const ACCEPTED: &[&str] = &[
    body::JSON_PATCH,
    body::MERGE_PATCH,
    body::STRATEGIC_PATCH,
    body::APPLY_PATCH,
];

fn patch_error(e: skiff_patch::Error) -> StatusError {
    StatusError::unprocessable(e.to_string())
}

/// A check of the object a patch would write, run on every attempt before
/// the write (escalation prevention on RBAC objects: the result, not the
/// patch, is what may or may not grant too much).
pub type Check<'a> = &'a (dyn Fn(&Value) -> Result<()> + Sync);

/// Applies a PATCH request; returns the HTTP code (201 when apply created) and object.
pub async fn patch(
    api: &Api,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<(u16, Value)> {
    patch_checked(api, t, q, headers, bytes, &|_| Ok(())).await
}

/// [`patch`], refused when `check` refuses the object it would write.
pub async fn patch_checked(
    api: &Api,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    bytes: &[u8],
    check: Check<'_>,
) -> Result<(u16, Value)> {
    let media = body::content_type(headers);
    if !ACCEPTED.contains(&media.as_str()) {
        return Err(StatusError::unsupported_media_type(ACCEPTED));
    }
    // Custom resources have no strategic merge rules: upstream refuses the type.
    if media == body::STRATEGIC_PATCH && skiff_api::crd::definition_of(t.resource).is_some() {
        let accepted: Vec<&str> = ACCEPTED
            .iter()
            .copied()
            .filter(|m| *m != body::STRATEGIC_PATCH)
            .collect();
        return Err(StatusError::unsupported_media_type(&accepted));
    }
    let mut opts = WriteOptions::from_request(q, headers)?;
    let patch = body::parse_text(&media, bytes)?;
    let gk = GroupKind {
        group: t.resource.group.to_string(),
        kind: t.resource.kind.to_string(),
    };
    if media == body::APPLY_PATCH {
        let manager = opts.field_manager.clone().ok_or_else(|| {
            StatusError::bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set",
            )
        })?;
        opts.field_manager = None; // apply records its own ownership
        return apply(api, t, &opts, patch, &manager, q.flag("force"), check).await;
    }
    let scale = t.subresource.as_deref() == Some("scale");
    let f = |cur: &Value| -> Result<Value> {
        let base = if scale {
            rest::scale_of(cur)?
        } else {
            cur.clone()
        };
        let mut out = match media.as_str() {
            body::JSON_PATCH => skiff_patch::json_patch(&base, &patch).map_err(patch_error)?,
            body::MERGE_PATCH => skiff_patch::merge_patch(&base, &patch),
            _ => {
                let kind = if scale {
                    GroupKind {
                        group: "autoscaling".into(),
                        kind: "Scale".into(),
                    }
                } else {
                    gk.clone()
                };
                skiff_patch::strategic_merge_patch(&base, &patch, &kind).map_err(patch_error)?
            }
        };
        if scale {
            let replicas = out
                .pointer("/spec/replicas")
                .cloned()
                .unwrap_or(Value::Null);
            let rv = out.pointer("/metadata/resourceVersion").cloned();
            let mut obj = cur.clone();
            skiff_api::crd::set_spec_replicas(t.resource, &mut obj, replicas);
            if let (Some(rv), Some(m)) =
                (rv, obj.get_mut("metadata").and_then(Value::as_object_mut))
            {
                m.insert("resourceVersion".into(), rv);
            }
            out = obj;
        }
        check(&out)?;
        Ok(out)
    };
    let obj = rest::patch_with(api, t, &opts, f).await?;
    let obj = if scale { rest::scale_of(&obj)? } else { obj };
    Ok((200, obj))
}

async fn apply(
    api: &Api,
    t: &Target,
    opts: &WriteOptions,
    applied: Value,
    manager: &str,
    force: bool,
    check: Check<'_>,
) -> Result<(u16, Value)> {
    let gk = &GroupKind {
        group: t.resource.group.to_string(),
        kind: t.resource.kind.to_string(),
    };
    let (applied, _warnings) = body::check_object(t.resource, applied, opts.validation, &[])?;
    let name = t.name.clone().unwrap_or_default();
    if rest::name_of(&applied).is_some_and(|n| n != name) {
        return Err(StatusError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            rest::name_of(&applied).unwrap_or_default()
        )));
    }
    let now = crate::strategy::now_rfc3339();
    // A resourceVersion in the applied configuration is a precondition;
    // without one, lost races are retried on the fresh object (as a patch).
    let asked = applied
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        .map(str::to_string);
    let deadline = tokio::time::Instant::now() + rest::RETRY_DEADLINE;
    loop {
        let live = api
            .objects
            .get_opt(t.resource, t.namespace.as_deref(), &name)
            .await?;
        if let Some(rv) = &asked {
            let current = live
                .as_ref()
                .and_then(|l| l.pointer("/metadata/resourceVersion"))
                .and_then(Value::as_str);
            if current != Some(rv.as_str()) {
                return Err(match live {
                    Some(_) => StatusError::stale(t.resource, &name),
                    None => StatusError::not_found(t.resource, &name),
                });
            }
        }
        let merged = skiff_patch::apply::apply(live.as_ref(), &applied, manager, force, gk, &now)
            .map_err(|e| apply_error(t, &name, e))?;
        check(&merged)?;
        let lost = match live {
            None => {
                let mut obj = merged;
                obj["metadata"]["name"] = Value::String(name.clone());
                match rest::create(api, t, obj, opts).await {
                    // Another applier created it first: apply to theirs.
                    Err(e) if e.reason == "AlreadyExists" => e,
                    other => return other.map(|o| (201, o)),
                }
            }
            Some(old) => match rest::write_update(api, t, &old, merged, opts).await {
                Err(e) if rest::lost_race(&e) => e,
                other => return other.map(|o| (200, o)),
            },
        };
        // With a precondition, the race lost is the caller's conflict.
        if asked.is_some() {
            return Err(lost);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(rest::retries_timed_out());
        }
    }
}

fn apply_error(t: &Target, name: &str, e: skiff_patch::apply::ApplyError) -> StatusError {
    match &e {
        skiff_patch::apply::ApplyError::Conflicts(conflicts) => {
            let mut err = StatusError::apply_conflict(t.resource, name, &e.to_string());
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| serde_json::json!({"reason": "FieldManagerConflict", "message": c.cause_message(), "field": c.path}))
                .collect();
            if let Some(d) = err.details.as_mut() {
                d["causes"] = Value::Array(causes);
            }
            err
        }
        skiff_patch::apply::ApplyError::Invalid(_) => StatusError::unprocessable(e.to_string()),
    }
}

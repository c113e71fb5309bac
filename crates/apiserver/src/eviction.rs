//! `POST pods/<name>/eviction` (policy/v1 `Eviction`): what `kubectl drain`
//! uses to move pods off a node. The pod is deleted with the Eviction's
//! `deleteOptions`, as upstream's eviction REST does when no disruption budget
//! stands in the way. skiff serves no PodDisruptionBudgets yet, so none does.

use axum::response::Response;
use http::HeaderMap;
use serde_json::{json, Value};

use crate::body;
use crate::delete::{self, DeleteOptions};
use crate::request::{Query, Target};
use crate::response;
use crate::server::Api;
use skiff_api::StatusError;

pub async fn evict(
    api: &Api,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, StatusError> {
    let media = body::content_type(headers);
    let eviction = body::decode_object(&media, bytes)?;
    let name = t.name.as_deref().unwrap_or_default();
    check(&eviction, name)?;
    let opts = match eviction.get("deleteOptions") {
        Some(o) if o.is_object() => DeleteOptions::from_value(q, o)?,
        _ => DeleteOptions::from_value(q, &json!({}))?,
    };
    let pod = Target {
        subresource: None,
        ..t.clone()
    };
    delete::delete(api, &pod, &opts).await?;
    Ok(response::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// The body must be an Eviction naming the pod of the URL (upstream's checks
/// and words).
fn check(eviction: &Value, name: &str) -> Result<(), StatusError> {
    let kind = eviction.get("kind").and_then(Value::as_str).unwrap_or("");
    if !kind.is_empty() && kind != "Eviction" {
        return Err(StatusError::bad_request(format!(
            "the body of an eviction must be an Eviction, not {kind}"
        )));
    }
    let given = eviction
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if given != name {
        return Err(StatusError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eviction_must_name_the_pod() {
        let ok =
            json!({"kind": "Eviction", "apiVersion": "policy/v1", "metadata": {"name": "web-1"}});
        assert!(check(&ok, "web-1").is_ok());
        let other = json!({"kind": "Eviction", "metadata": {"name": "web-2"}});
        let e = check(&other, "web-1").unwrap_err();
        assert!(format!("{e:?}").contains("name in URL does not match name in Eviction object"));
        assert!(check(
            &json!({"kind": "Pod", "metadata": {"name": "web-1"}}),
            "web-1"
        )
        .is_err());
    }
}

//! What a read asks of the cache (`resourceVersion`, `resourceVersionMatch`, a continue
//! token's revision), and a list body assembled from the objects' encoded bytes.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use skiff_api::StatusError;
use skiff_store::Revision;

use super::{Cached, Freshness};
use crate::request::Query;

fn parse_revision(rv: &str) -> Result<Revision, StatusError> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| StatusError::bad_request(format!("invalid resource version: {rv}")))
}

/// The state a list wants, as upstream reads `resourceVersion`,
/// `resourceVersionMatch`, `limit` and `continue`.
pub fn list_freshness(
    q: &Query,
    limited: bool,
    continue_revision: Option<Revision>,
) -> Result<Freshness, StatusError> {
    let rv = q.get("resourceVersion").unwrap_or("");
    let matching = q.get("resourceVersionMatch").unwrap_or("");
    if let Some(r) = continue_revision {
        if !rv.is_empty() && rv != "0" {
            return Err(StatusError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        return Ok(Freshness::Exact(r));
    }
    if !matching.is_empty() && rv.is_empty() {
        return Err(StatusError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    match (matching, rv) {
        ("", "") => Ok(Freshness::Consistent),
        ("" | "NotOlderThan", "0") => Ok(Freshness::Any),
        ("Exact", "0") => Err(StatusError::bad_request(
            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        )),
        ("NotOlderThan", rv) => Ok(Freshness::NotOlderThan(parse_revision(rv)?)),
        ("Exact", rv) => Ok(Freshness::Exact(parse_revision(rv)?)),
        // Upstream's legacy rule: a page of a list at a given revision is that
        // revision exactly; without a limit, that revision or newer.
        ("", rv) if limited => Ok(Freshness::Exact(parse_revision(rv)?)),
        ("", rv) => Ok(Freshness::NotOlderThan(parse_revision(rv)?)),
        (other, _) => Err(StatusError::bad_request(format!(
            "unsupported resourceVersionMatch value: {other:?}, supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

/// The state a get wants. Without a resourceVersion, a consistent read: the cache
/// once it has the store's current revision (as upstream's consistent reads from
/// cache), the store itself when the cache cannot say so in time.
pub fn get_freshness(q: &Query) -> Result<Option<Freshness>, StatusError> {
    match q.get("resourceVersion").unwrap_or("") {
        "" => Ok(Some(Freshness::Consistent)),
        "0" => Ok(Some(Freshness::Any)),
        rv => Ok(Some(Freshness::NotOlderThan(parse_revision(rv)?))),
    }
}

/// upstream's answer to a continue token older than the cache's window.
pub fn continue_expired() -> StatusError {
    let mut e = StatusError::expired(0, 0);
    e.message = "The provided continue parameter is too old to display a consistent list result. \
You can start a new list without the continue parameter, or use the continue token in this \
response to retrieve the remainder of the results. Continuing with the provided token results \
in an inconsistent list - objects that were created, modified, or deleted between the time \
the first chunk was returned and now may show up in the list."
        .into();
    e
}

/// `{"kind":..,"apiVersion":..,"metadata":..,"items":[...]}` with the items' bytes
/// copied as they are: nothing is serialised again.
pub fn list_body(
    kind: &str,
    api_version: &str,
    metadata: &Value,
    items: &[std::sync::Arc<Cached>],
) -> Bytes {
    let head = serde_json::json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
    let head = serde_json::to_vec(&head).unwrap_or_default();
    let size = head.len() + 16 + items.iter().map(|c| c.json.len() + 1).sum::<usize>();
    let mut b = BytesMut::with_capacity(size);
    // `head` is an object: reopen it before its closing brace.
    b.put_slice(&head[..head.len().saturating_sub(1)]);
    b.put_slice(b",\"items\":[");
    for (i, c) in items.iter().enumerate() {
        if i > 0 {
            b.put_u8(b',');
        }
        b.put_slice(&c.json);
    }
    b.put_slice(b"]}");
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
    }

    #[test]
    fn resource_versions_read_as_upstream() {
        use Freshness::*;
        for (query, limited, want) in [
            ("", false, Consistent),
            ("resourceVersion=0", false, Any),
            ("resourceVersion=0", true, Any),
            ("resourceVersion=7", false, NotOlderThan(7)),
            ("resourceVersion=7", true, Exact(7)),
            (
                "resourceVersion=7&resourceVersionMatch=NotOlderThan",
                true,
                NotOlderThan(7),
            ),
            (
                "resourceVersion=7&resourceVersionMatch=Exact",
                false,
                Exact(7),
            ),
        ] {
            assert_eq!(
                list_freshness(&q(query), limited, None).ok(),
                Some(want),
                "{query}"
            );
        }
        assert_eq!(list_freshness(&q(""), true, Some(9)).ok(), Some(Exact(9)));
        for bad in [
            "resourceVersionMatch=Exact",
            "resourceVersion=0&resourceVersionMatch=Exact",
            "resourceVersion=x",
            "resourceVersion=3&resourceVersionMatch=Newest",
        ] {
            assert_eq!(
                list_freshness(&q(bad), false, None).map_err(|e| e.code),
                Err(400),
                "{bad}"
            );
        }
        assert!(list_freshness(&q("resourceVersion=5"), true, Some(9)).is_err());
    }

    #[test]
    fn a_list_body_is_valid_json_with_the_items_as_stored() {
        let items: Vec<_> = ["a", "b"]
            .iter()
            .map(|n| {
                let services = skiff_api::registry::lookup("", "v1", "services").expect("services");
                let v = serde_json::json!({"metadata": {"name": n}});
                Arc::new(Cached::from_value(services, &v, 2))
            })
            .collect();
        let meta = serde_json::json!({"resourceVersion": "5"});
        let body = list_body("ServiceList", "v1", &meta, &items);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["items"][1]["metadata"]["name"], "b");
        assert_eq!(v["metadata"]["resourceVersion"], "5");
        let empty = list_body("ServiceList", "v1", &meta, &[]);
        let v: Value = serde_json::from_slice(&empty).expect("json");
        assert_eq!(v["items"], serde_json::json!([]));
    }
}

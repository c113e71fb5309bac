//! The protobuf bodies of `authorization.k8s.io/v1` reviews, which kubectl
//! sends (`kubectl auth can-i` uses a typed client, and typed clients speak
//! `application/vnd.kubernetes.protobuf`). Only the spec matters to an
//! answer, so only the spec is read: the `k8s\0` + `runtime.Unknown`
//! envelope, then the review's field 2 (`spec`) by upstream's field numbers
//! (`k8s.io/api/authorization/v1/generated.proto`). Metadata and status are
//! skipped; so is any field this does not know.

use serde_json::{json, Map, Value};
use skiff_api::StatusError;

const MAGIC: &[u8] = b"k8s\0";

/// One field of a message: its number and, for a length-delimited one, its bytes.
struct Field<'a> {
    number: u64,
    bytes: Option<&'a [u8]>,
}

fn malformed() -> StatusError {
    StatusError::bad_request("unable to decode protobuf body: malformed message")
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, StatusError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(malformed)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(malformed())
}

/// The fields of one message, in order.
fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>, StatusError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (number, wire) = (tag >> 3, tag & 7);
        let bytes = match wire {
            0 => {
                varint(buf, &mut pos)?;
                None
            }
            1 => {
                pos = pos.checked_add(8).ok_or_else(malformed)?;
                None
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| malformed())?;
                let end = pos.checked_add(len).ok_or_else(malformed)?;
                let b = buf.get(pos..end).ok_or_else(malformed)?;
                pos = end;
                Some(b)
            }
            5 => {
                pos = pos.checked_add(4).ok_or_else(malformed)?;
                None
            }
            _ => return Err(malformed()),
        };
        if pos > buf.len() {
            return Err(malformed());
        }
        out.push(Field { number, bytes });
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, StatusError> {
    String::from_utf8(b.to_vec()).map_err(|_| malformed())
}

/// A message of string fields, by number, as a JSON object; repeated numbers
/// in `lists` become arrays.
fn strings(buf: &[u8], names: &[(u64, &str)], lists: &[u64]) -> Result<Value, StatusError> {
    let mut obj = Map::new();
    for f in fields(buf)? {
        let (Some(b), Some((_, name))) = (f.bytes, names.iter().find(|(n, _)| *n == f.number))
        else {
            continue;
        };
        let s = Value::String(text(b)?);
        if lists.contains(&f.number) {
            let entry = obj.entry(name.to_string()).or_insert_with(|| json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(s);
            }
        } else {
            obj.insert(name.to_string(), s);
        }
    }
    Ok(Value::Object(obj))
}

const RESOURCE_ATTRIBUTES: &[(u64, &str)] = &[
    (1, "namespace"),
    (2, "verb"),
    (3, "group"),
    (4, "version"),
    (5, "resource"),
    (6, "subresource"),
    (7, "name"),
];
const NON_RESOURCE_ATTRIBUTES: &[(u64, &str)] = &[(1, "path"), (2, "verb")];

/// `extra` of a SubjectAccessReviewSpec: a map entry (key 1, ExtraValue 2,
/// whose field 1 is the repeated values).
fn extra_entry(buf: &[u8], extra: &mut Map<String, Value>) -> Result<(), StatusError> {
    let mut key = String::new();
    let mut values = Vec::new();
    for f in fields(buf)? {
        match (f.number, f.bytes) {
            (1, Some(b)) => key = text(b)?,
            (2, Some(b)) => {
                for v in fields(b)? {
                    if let (1, Some(s)) = (v.number, v.bytes) {
                        values.push(Value::String(text(s)?));
                    }
                }
            }
            _ => {}
        }
    }
    extra.insert(key, Value::Array(values));
    Ok(())
}

/// The spec of a review of `kind`, as its JSON form.
fn spec(kind: &str, buf: &[u8]) -> Result<Value, StatusError> {
    if kind == "SelfSubjectRulesReview" {
        return strings(buf, &[(1, "namespace")], &[]);
    }
    let mut obj = Map::new();
    let mut extra = Map::new();
    for f in fields(buf)? {
        let Some(b) = f.bytes else { continue };
        match f.number {
            1 => {
                obj.insert(
                    "resourceAttributes".into(),
                    strings(b, RESOURCE_ATTRIBUTES, &[])?,
                );
            }
            2 => {
                obj.insert(
                    "nonResourceAttributes".into(),
                    strings(b, NON_RESOURCE_ATTRIBUTES, &[])?,
                );
            }
            3 => {
                obj.insert("user".into(), Value::String(text(b)?));
            }
            4 => {
                let groups = obj.entry("groups").or_insert_with(|| json!([]));
                if let Some(a) = groups.as_array_mut() {
                    a.push(Value::String(text(b)?));
                }
            }
            5 => extra_entry(b, &mut extra)?,
            6 => {
                obj.insert("uid".into(), Value::String(text(b)?));
            }
            _ => {}
        }
    }
    if !extra.is_empty() {
        obj.insert("extra".into(), Value::Object(extra));
    }
    Ok(Value::Object(obj))
}

/// Decodes a protobuf review body into `{apiVersion, kind, spec}`.
pub fn decode(body: &[u8]) -> Result<Value, StatusError> {
    let unknown = body.strip_prefix(MAGIC).ok_or_else(|| {
        StatusError::bad_request("unable to decode protobuf body: no k8s\\0 prefix")
    })?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for f in fields(unknown)? {
        match (f.number, f.bytes) {
            (1, Some(type_meta)) => {
                for t in fields(type_meta)? {
                    match (t.number, t.bytes) {
                        (1, Some(b)) => api_version = text(b)?,
                        (2, Some(b)) => kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, Some(b)) => raw = b,
            _ => {}
        }
    }
    let mut spec_json = json!({});
    for f in fields(raw)? {
        if let (2, Some(b)) = (f.number, f.bytes) {
            spec_json = spec(&kind, b)?;
        }
    }
    Ok(json!({"apiVersion": api_version, "kind": kind, "spec": spec_json}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_self_subject_access_review_as_kubectl_sends_it() {
        let attrs = [
            field(1, b"default"),
            field(2, b"list"),
            field(5, b"services"),
        ]
        .concat();
        let review = [field(1, &[]), field(2, &field(1, &attrs))].concat();
        let type_meta = [
            field(1, b"authorization.k8s.io/v1"),
            field(2, b"SelfSubjectAccessReview"),
        ]
        .concat();
        let body = [MAGIC, &field(1, &type_meta), &field(2, &review)].concat();
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                   "spec": {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "services"}}})
        );
        assert_eq!(decode(b"k8s\0\x0a\x05ab").unwrap_err().code, 400);
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
    }
}

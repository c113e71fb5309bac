//! Request bodies: size limit, media types (JSON, YAML, Kubernetes protobuf),
//! kind checks and field validation, each failure a precise `Status`.

use axum::body::Body;
use http::HeaderMap;
use http_body_util::BodyExt;
use serde_json::Value;
use skiff_api::registry::Resource;
use skiff_api::{typed, StatusError};

/// Upstream's request size limit for object bodies.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub const JSON: &str = "application/json";
pub const YAML: &str = "application/yaml";
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
pub const JSON_PATCH: &str = "application/json-patch+json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const STRATEGIC_PATCH: &str = "application/strategic-merge-patch+json";
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// The media type of the body, lower-cased, parameters dropped.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(JSON)
        .split(';')
        .next()
        .unwrap_or(JSON)
        .trim()
        .to_ascii_lowercase()
}

pub async fn read(body: Body) -> Result<bytes::Bytes, StatusError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(StatusError::too_large(MAX_BODY))
        }
        Err(e) => Err(StatusError::bad_request(format!(
            "error reading request body: {e}"
        ))),
    }
}

/// Parses JSON or YAML text into a value.
pub fn parse_text(media: &str, bytes: &[u8]) -> Result<Value, StatusError> {
    if media == YAML || media == APPLY_PATCH {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| StatusError::bad_request("the request body is not valid UTF-8"))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| StatusError::bad_request(format!("error converting YAML to JSON: {e}")))
    } else {
        serde_json::from_slice(bytes).map_err(|e| {
            StatusError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }
}

/// Decodes a create/update body of any accepted media type into a JSON object.
pub fn decode_object(media: &str, bytes: &[u8]) -> Result<Value, StatusError> {
    let v = match media {
        JSON | YAML | "text/yaml" => parse_text(if media == JSON { JSON } else { YAML }, bytes)?,
        PROTOBUF => skiff_protobuf::decode(bytes).map_err(|e| match e {
            skiff_protobuf::Error::UnsupportedKind { .. } => {
                StatusError::unsupported_media_type(&[JSON, YAML])
            }
            other => StatusError::bad_request(format!("unable to decode protobuf body: {other}")),
        })?,
        _ => return Err(StatusError::unsupported_media_type(&[JSON, YAML, PROTOBUF])),
    };
    if !v.is_object() {
        return Err(StatusError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    Ok(v)
}

/// Paths of keys that appear twice in one JSON object (`spec.replicas`), which
/// a parse into a map would silently collapse; Strict validation rejects them.
pub fn duplicate_fields(bytes: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

    struct Walk<'a> {
        path: String,
        out: &'a mut Vec<String>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) {
                    self.out.push(path.clone());
                }
                map.next_value_seed(Walk {
                    path,
                    out: &mut *self.out,
                })?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Walk {
                    path: format!("{}[{i}]", self.path),
                    out: &mut *self.out,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }

    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    // Malformed JSON is reported by the real parse; here it just ends the walk.
    let _ = Walk {
        path: String::new(),
        out: &mut out,
    }
    .deserialize(&mut de);
    out
}

/// How unknown fields are treated (`fieldValidation`); upstream's default is Warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(v: Option<&str>) -> Result<Self, StatusError> {
        match v {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => Err(StatusError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}"
            ))),
        }
    }
}

/// Checks `apiVersion`/`kind` against the URL (filling them in when absent, as
/// upstream defaults them from the URL), then decodes through the typed struct.
/// Returns the pruned object and the warnings to send back.
pub fn check_object(
    resource: &Resource,
    mut obj: Value,
    validation: FieldValidation,
    duplicates: &[String],
) -> Result<(Value, Vec<String>), StatusError> {
    let expected_av = resource.api_version();
    let av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let kind = obj.get("kind").and_then(Value::as_str).map(str::to_string);
    if let Some(av) = &av {
        if av != &expected_av {
            return Err(StatusError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({expected_av})"
            )));
        }
    }
    if let Some(kind) = &kind {
        if kind != resource.kind {
            return Err(StatusError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                resource.kind
            )));
        }
    }
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), Value::String(expected_av.clone()));
        o.insert("kind".into(), Value::String(resource.kind.to_string()));
    }
    let decoded = typed::decode(resource, obj).map_err(|e| {
        StatusError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {}",
            resource.kind, resource.version, resource.kind, e
        ))
    })?;
    let mut warnings = Vec::new();
    let list: Vec<String> = decoded
        .unknown_fields
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .chain(
            duplicates
                .iter()
                .map(|f| format!("duplicate field \"{f}\"")),
        )
        .collect();
    if !list.is_empty() {
        match validation {
            FieldValidation::Strict => {
                return Err(StatusError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    resource.kind,
                    resource.version,
                    resource.kind,
                    list.join(", ")
                )))
            }
            FieldValidation::Warn => warnings = list,
            FieldValidation::Ignore => {}
        }
    }
    Ok((decoded.object, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_api::registry::lookup;

    #[test]
    fn strict_rejects_unknown_fields_with_upstream_wording() {
        let svc = lookup("", "v1", "services").unwrap();
        let err = check_object(
            svc,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"bogus": 1}}),
            FieldValidation::Strict,
            &[],
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "Service in version \"v1\" cannot be handled as a Service: strict decoding error: unknown field \"spec.bogus\""
        );
        let (obj, warn) = check_object(
            svc,
            json!({"metadata": {"name": "x"}, "spec": {"bogus": 1}}),
            FieldValidation::Warn,
            &[],
        )
        .unwrap();
        assert_eq!(warn, vec!["unknown field \"spec.bogus\""]);
        assert_eq!(obj["kind"], "Service");
    }

    #[test]
    fn duplicates_are_found_with_paths() {
        let d = duplicate_fields(br#"{"a":1,"spec":{"r":1,"r":2,"l":[{"x":1,"x":2}]},"a":3}"#);
        assert_eq!(d, vec!["spec.r", "spec.l[0].x", "a"]);
        assert!(duplicate_fields(b"{not json").is_empty());
    }

    #[test]
    fn wrong_kind_for_url() {
        let svc = lookup("", "v1", "services").unwrap();
        let err = check_object(
            svc,
            json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
            FieldValidation::Strict,
            &[],
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
    }
}

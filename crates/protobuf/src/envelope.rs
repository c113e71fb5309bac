//! The request-body envelope: the `k8s\0` prefix and `runtime.Unknown`
//! {1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType}.

use serde_json::{Map, Value};

use crate::decode::{Decoder, Path, UnknownField};
use crate::error::{Error, Malformation, Result};
use crate::schema;
use crate::wire::{Reader, WireValue, LEN};

/// The 4 bytes every Kubernetes protobuf body starts with.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Whether a `Content-Type` header value names Kubernetes protobuf (parameters such as
/// `; charset=...` and letter case are ignored).
pub fn is_protobuf_content_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// A decoded object plus the field numbers that were skipped because the schema does not
/// know them (upstream ignores them too; a server may report them under strict field
/// validation).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The JSON object, with `kind` and `apiVersion` set.
    pub object: Value,
    /// Skipped fields, in the order they were met.
    pub unknown_fields: Vec<UnknownField>,
}

/// Decodes a Kubernetes protobuf request body (`k8s\0` + `runtime.Unknown`) into the JSON
/// object upstream would have seen.
pub fn decode(body: &[u8]) -> Result<Value> {
    decode_detailed(body).map(|d| d.object)
}

/// Like [`decode`], and also reports skipped unknown fields.
pub fn decode_detailed(body: &[u8]) -> Result<Decoded> {
    let payload = body.strip_prefix(&MAGIC[..]).ok_or(Error::MissingMagic)?;
    let envelope = Envelope::parse(payload)?;
    if !envelope.content_encoding.is_empty() {
        return Err(Error::UnsupportedContentEncoding(envelope.content_encoding));
    }
    decode_object(&envelope.api_version, &envelope.kind, envelope.raw)
}

/// Decodes the protobuf encoding of one object (no prefix, no envelope) of the given type.
pub fn decode_object(api_version: &str, kind: &str, raw: &[u8]) -> Result<Decoded> {
    let message = schema::root(api_version, kind).ok_or_else(|| Error::UnsupportedKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    })?;
    let mut decoder = Decoder::default();
    let fields = decoder.message(message, raw, &Path::ROOT, 0)?;
    let mut object = Map::with_capacity(fields.len() + 2);
    object.insert("kind".to_string(), Value::String(kind.to_string()));
    object.insert(
        "apiVersion".to_string(),
        Value::String(api_version.to_string()),
    );
    object.extend(fields);
    Ok(Decoded {
        object: Value::Object(object),
        unknown_fields: decoder.unknown,
    })
}

/// Whether [`decode`] has a schema for this type.
pub fn is_supported(api_version: &str, kind: &str) -> bool {
    schema::root(api_version, kind).is_some()
}

/// The (apiVersion, kind) pairs [`decode`] understands.
pub fn supported_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    schema::roots()
}

/// The parsed `runtime.Unknown`.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn parse(data: &'a [u8]) -> Result<Self> {
        let mut envelope = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
        };
        let mut reader = Reader::new(data);
        while let Some((number, value)) = reader.field().map_err(malformed)? {
            match (number, value) {
                (1, WireValue::Len(type_meta)) => {
                    let mut inner = Reader::new(type_meta);
                    while let Some((n, v)) = inner.field().map_err(malformed)? {
                        match (n, v) {
                            (1, WireValue::Len(s)) => envelope.api_version = lossy(s),
                            (2, WireValue::Len(s)) => envelope.kind = lossy(s),
                            (1 | 2, other) => return Err(wrong_wire_type(n, other)),
                            _ => {}
                        }
                    }
                }
                (2, WireValue::Len(raw)) => envelope.raw = raw,
                (3, WireValue::Len(s)) => envelope.content_encoding = lossy(s),
                // contentType (4) is always empty in request bodies; other numbers are ignored.
                (1..=4, other) if other.wire_type() != LEN => {
                    return Err(wrong_wire_type(number, other))
                }
                _ => {}
            }
        }
        Ok(envelope)
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn malformed(malformation: Malformation) -> Error {
    Error::Malformed {
        message: "Unknown",
        path: "<envelope>".to_string(),
        malformation,
    }
}

fn wrong_wire_type(field: u32, got: WireValue<'_>) -> Error {
    malformed(Malformation::WrongWireType {
        field,
        got: got.wire_type(),
        expected: LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(is_protobuf_content_type(
            "application/vnd.kubernetes.protobuf"
        ));
        assert!(is_protobuf_content_type(
            "Application/VND.Kubernetes.Protobuf ; charset=utf-8"
        ));
        assert!(!is_protobuf_content_type("application/json"));
        assert!(!is_protobuf_content_type(
            "application/vnd.kubernetes.protobuf2"
        ));
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8], encoding: &str) -> Vec<u8> {
        fn len(n: u8, bytes: &[u8], out: &mut Vec<u8>) {
            out.push((n << 3) | 2);
            out.push(u8::try_from(bytes.len()).expect("short"));
            out.extend_from_slice(bytes);
        }
        let mut type_meta = Vec::new();
        len(1, api_version.as_bytes(), &mut type_meta);
        len(2, kind.as_bytes(), &mut type_meta);
        let mut out = MAGIC.to_vec();
        len(1, &type_meta, &mut out);
        len(2, raw, &mut out);
        len(3, encoding.as_bytes(), &mut out);
        len(4, b"", &mut out);
        out
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(decode(b"{\"kind\":\"Pod\"}"), Err(Error::MissingMagic));
        assert_eq!(
            decode(&envelope("example.com/v1", "Widget", b"", "")),
            Err(Error::UnsupportedKind {
                api_version: "example.com/v1".to_string(),
                kind: "Widget".to_string(),
            })
        );
        assert_eq!(
            decode(&envelope("v1", "ConfigMap", b"", "gzip")),
            Err(Error::UnsupportedContentEncoding("gzip".to_string()))
        );
        let err = decode(&[b'k', b'8', b's', 0, 0x0a, 0x09]).expect_err("truncated");
        assert_eq!(err.status_code(), 400);
        assert!(err.to_string().contains("Unknown at <envelope>"), "{err}");
        assert_eq!(
            decode(&envelope("v1", "Nope", b"", ""))
                .expect_err("kind")
                .status_code(),
            415
        );
    }

    #[test]
    fn minimal_object() {
        // A ConfigMap with no fields at all still gets metadata (a non-pointer struct).
        let object = decode(&envelope("v1", "ConfigMap", b"", "")).expect("decode");
        assert_eq!(
            object,
            serde_json::json!({
                "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"creationTimestamp": null}
            })
        );
        assert!(is_supported("apps/v1", "Deployment"));
        assert!(supported_kinds().any(|k| k == ("v1", "Service")));
    }
}

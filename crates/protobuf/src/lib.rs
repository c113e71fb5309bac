//! Decodes the Kubernetes protobuf request bodies kubectl sends
//! (`Content-Type: application/vnd.kubernetes.protobuf`) into the JSON object upstream
//! would have received.
//!
//! Start at [`decode`]: it checks the `k8s\0` prefix, reads the `runtime.Unknown`
//! envelope, picks the message schema by (apiVersion, kind) and returns a
//! `serde_json::Value` with `kind` and `apiVersion` set, exactly as Go's `encoding/json`
//! would print the typed object (zero-valued `omitempty` fields dropped, explicit zeros of
//! pointer fields such as `spec.replicas` kept). [`decode_detailed`] also lists skipped
//! unknown field numbers; [`Error::UnsupportedKind`] means "no schema" (answer 415).
//!
//! ```
//! // The body `kubectl create namespace moon` sends.
//! let body = include_bytes!("../tests/fixtures/namespace_moon.pb");
//! let object = skiff_protobuf::decode(body)?;
//! assert_eq!(object["kind"], "Namespace");
//! assert_eq!(object["metadata"]["name"], "moon");
//! assert_eq!(object["spec"], serde_json::json!({}));
//! # Ok::<(), skiff_protobuf::Error>(())
//! ```
//!
//! Layout: `wire` reads the protobuf wire format, `schema` holds the message tables (one
//! file per API area), `decode` walks a table over the bytes, `envelope` is the entry
//! point, `format` renders times and durations.

mod decode;
mod envelope;
mod error;
mod format;
mod schema;
mod wire;

pub use decode::{UnknownField, MAX_DEPTH};
pub use envelope::{
    decode, decode_detailed, decode_object, is_protobuf_content_type, is_supported,
    supported_kinds, Decoded, CONTENT_TYPE, MAGIC,
};
pub use error::{Error, Malformation, Result};

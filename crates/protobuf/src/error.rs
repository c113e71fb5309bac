//! Errors returned by the decoder.

/// What is wrong with a malformed protobuf payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformation {
    /// The data ended in the middle of a tag, varint, or length-delimited value.
    #[error("data ends in the middle of a value")]
    Truncated,
    /// A varint is longer than ten bytes.
    #[error("varint longer than 10 bytes")]
    VarintOverflow,
    /// A length prefix points past the end of the enclosing message.
    #[error("length {0} is larger than the remaining data")]
    LengthOutOfBounds(u64),
    /// A tag with field number 0.
    #[error("field number 0 is not allowed")]
    FieldNumberZero,
    /// A field number above 2^29 - 1.
    #[error("field number {0} is out of range")]
    FieldNumberOutOfRange(u64),
    /// Wire types 3/4 (groups) or 6/7 (undefined).
    #[error("unsupported wire type {0}")]
    UnsupportedWireType(u8),
    /// A known field arrived with the wrong wire type.
    #[error("field {field} has wire type {got}, expected {expected}")]
    WrongWireType {
        /// The field number.
        field: u32,
        /// The wire type found in the data.
        got: u8,
        /// The wire type the schema requires.
        expected: u8,
    },
    /// An `IntOrString` whose type is neither 0 (int) nor 1 (string).
    #[error("IntOrString type {0} is neither 0 (int) nor 1 (string)")]
    InvalidIntOrStringType(u64),
    /// A `RawExtension` or `FieldsV1` payload is not valid JSON.
    #[error("embedded raw JSON is not valid")]
    InvalidRawJson,
}

/// Errors from [`crate::decode`] and friends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The body does not start with the 4-byte prefix `k8s\0`.
    #[error("body does not start with the Kubernetes protobuf prefix \"k8s\\0\"")]
    MissingMagic,
    /// The envelope names a type this crate has no schema for (answer 415).
    #[error("protobuf decoding of kind {kind:?} in API version {api_version:?} is not supported")]
    UnsupportedKind {
        /// `apiVersion` from the envelope (may be empty).
        api_version: String,
        /// `kind` from the envelope (may be empty).
        kind: String,
    },
    /// The envelope says the object bytes are compressed or otherwise encoded.
    #[error("unsupported protobuf content encoding {0:?}")]
    UnsupportedContentEncoding(String),
    /// The bytes are not a valid protobuf encoding of the expected message.
    #[error("malformed protobuf {message} at {path}: {malformation}")]
    Malformed {
        /// The protobuf message type being decoded (`Unknown` for the envelope).
        message: &'static str,
        /// JSON-style path of that message (`<envelope>` for the envelope).
        path: String,
        /// What is wrong.
        malformation: Malformation,
    },
    /// Messages nest deeper than [`crate::MAX_DEPTH`].
    #[error("protobuf messages nest deeper than {limit} levels at {path}")]
    TooDeep {
        /// JSON-style path where the limit was hit.
        path: String,
        /// The limit.
        limit: usize,
    },
}

impl Error {
    /// The HTTP status an API server should answer with: 415 Unsupported Media Type when
    /// there is no schema for the kind or the encoding, 400 Bad Request for broken data.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::UnsupportedKind { .. } | Error::UnsupportedContentEncoding(_) => 415,
            _ => 400,
        }
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The one error type of this crate (apply conflicts have their own, see `apply`).

/// Why a patch could not be applied. Messages follow upstream's wording where
/// kubectl users may see them in a `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A JSON pointer that does not start with `/` or has a bad escape.
    #[error("invalid JSON pointer: {0:?}")]
    InvalidPointer(String),
    /// A JSON patch operation is malformed (no `op`, no `path`, unknown op, ...).
    #[error("invalid JSON patch operation: {0}")]
    InvalidOperation(String),
    /// A JSON patch operation names a location that does not exist.
    #[error("{op} operation does not apply: doc is missing path: {path:?}: missing value")]
    MissingPath { op: String, path: String },
    /// A JSON patch array index is out of range or not a number.
    #[error("{op} operation does not apply: invalid array index in path {path:?}")]
    BadIndex { op: String, path: String },
    /// A JSON patch `test` operation found a different value.
    #[error("testing value {path} failed: test failed")]
    TestFailed { path: String },
    /// A strategic merge patch or a document is not of the expected shape.
    #[error("{0}")]
    BadPatch(String),
}

/// `Result` defaulting to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

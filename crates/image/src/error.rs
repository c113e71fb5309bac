//! The two error types: [`Error`] for local store operations and [`PullError`],
//! whose variants are the distinct reasons kubelet and containerd report.

use std::path::PathBuf;

/// A store, import or configuration failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A `registries.yaml` that does not parse: the file and the field.
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    /// An archive or layout to import that is not what it should be.
    #[error("{0}")]
    Invalid(String),
    /// A layer failed while unpacking (import); same reasons as a pull's.
    #[error(transparent)]
    Pull(#[from] PullError),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a pull failed. Each message is complete and worded like containerd's
/// (`failed to pull and unpack image "docker.io/library/x:1": ...`), so the agent
/// can put it after kubelet's `Failed to pull image "x:1": ` as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    /// The reference does not parse (kubelet's `InvalidImageName`).
    #[error("{0}")]
    InvalidReference(String),
    /// No such repository, tag or digest at any endpoint.
    #[error("{0}")]
    NotFound(String),
    /// The registry refused the credentials (or their absence).
    #[error("{0}")]
    Unauthorized(String),
    /// No endpoint answered: connection refused, no route, timeouts.
    #[error("{0}")]
    Unreachable(String),
    /// A manifest list / index without a linux/amd64 (host platform) image.
    #[error("{0}")]
    NoMatchingPlatform(String),
    /// Content whose sha256 is not the digest it was fetched by.
    #[error("{0}")]
    DigestMismatch(String),
    /// A layer that does not decompress or unpack, or an unsupported media type.
    #[error("{0}")]
    CorruptLayer(String),
    /// No space left on the store's filesystem.
    #[error("{0}")]
    DiskFull(String),
    /// Anything else (registry 5xx, local IO, bad manifests).
    #[error("{0}")]
    Other(String),
}

impl PullError {
    /// The same kind of error with `prefix: ` put before its message.
    pub(crate) fn prefixed(self, prefix: &str) -> Self {
        let p = |m: String| format!("{prefix}: {m}");
        match self {
            PullError::InvalidReference(m) => PullError::InvalidReference(p(m)),
            PullError::NotFound(m) => PullError::NotFound(p(m)),
            PullError::Unauthorized(m) => PullError::Unauthorized(p(m)),
            PullError::Unreachable(m) => PullError::Unreachable(p(m)),
            PullError::NoMatchingPlatform(m) => PullError::NoMatchingPlatform(p(m)),
            PullError::DigestMismatch(m) => PullError::DigestMismatch(p(m)),
            PullError::CorruptLayer(m) => PullError::CorruptLayer(p(m)),
            PullError::DiskFull(m) => PullError::DiskFull(p(m)),
            PullError::Other(m) => PullError::Other(p(m)),
        }
    }

    /// A local IO error, recognising a full disk.
    pub(crate) fn from_io(context: &str, e: &std::io::Error) -> Self {
        if e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull {
            PullError::DiskFull(format!("{context}: no space left on device"))
        } else {
            PullError::Other(format!("{context}: {e}"))
        }
    }

    /// How informative the error is when several endpoints failed: a definite
    /// answer (not found, refused) beats "could not connect".
    pub(crate) fn rank(&self) -> u8 {
        match self {
            PullError::Unreachable(_) => 0,
            PullError::Other(_) => 1,
            PullError::NotFound(_) => 2,
            _ => 3,
        }
    }
}

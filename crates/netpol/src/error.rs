//! The enforcer's errors.

/// Why the enforcer could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad netpol configuration: {0}")]
    Config(String),
    #[error("running {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("nft transaction failed: {0}")]
    Nft(String),
    #[error("{cmd} failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("watch: {0}")]
    Watch(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

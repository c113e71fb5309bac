//! skiff's image store: OCI images pulled from registries (through k3s-style
//! mirrors) or imported from `docker save` / OCI layout archives, kept
//! content-addressed on disk with every layer unpacked once, ready for the agent
//! to mount an overlayfs over and run with `runc`.
//!
//! Start at [`ImageStore`]: [`ImageStore::open`] a root directory with a
//! [`RegistryConfig`] (from `registries.yaml`), then [`ImageStore::get`] (local,
//! no network) or [`ImageStore::pull`]; the [`Image`] gives the
//! [`ImageConfig`] (entrypoint, cmd, env, user, ...) and the layer directories.
//! [`normalize`] is the reference grammar (`busybox` ->
//! `docker.io/library/busybox:latest`). The store layout is described in
//! `store.rs`, the layer format (overlayfs whiteouts) in `unpack.rs`, and the
//! README says how mirrors and import work.

mod config;
mod error;
mod image;
mod import;
mod pull;
mod reference;
mod store;
mod unpack;

pub use config::{AuthConfig, Credential, Endpoint, HostConfig, Mirror, RegistryConfig, TlsConfig};
pub use error::{Error, PullError, Result};
pub use image::{Image, ImageConfig, ImageSummary};
pub use reference::{normalize, Reference, ReferenceError};
pub use store::ImageStore;

//! Patching of Kubernetes objects held as `serde_json::Value`, with no IO.
//!
//! Where to start:
//! - [`json_patch`] (RFC 6902, `application/json-patch+json`),
//! - [`merge_patch`] (RFC 7386, `application/merge-patch+json`),
//! - [`strategic_merge_patch`] (`application/strategic-merge-patch+json`), driven by
//!   the per-kind list keys in [`schema`],
//! - [`apply::apply`] for server-side apply (`application/apply-patch+yaml`), and
//!   [`apply::record_update`] for the `metadata.managedFields` bookkeeping of
//!   every other write; [`apply::conflict_message`] words a 409.
//!
//! All take and return `serde_json::Value`s and never panic on bad input: a
//! malformed patch is an [`Error`] (or an [`apply::ApplyError`]).

pub mod apply;
mod error;
mod json_patch;
mod merge_patch;
mod pointer;
pub mod schema;
mod strategic;

pub use error::{Error, Result};
pub use json_patch::json_patch;
pub use merge_patch::merge_patch;
pub use schema::GroupKind;
pub use strategic::strategic_merge_patch;

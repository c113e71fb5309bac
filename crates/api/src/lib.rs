//! The skiff resource model, pure and free of IO.
//!
//! Start at [`registry`]: the static table of every resource skiff serves. The
//! API server routes, stores and discovers through it. [`status`] builds the
//! `Status` errors clients see, [`validation`] holds the field-error type and the
//! name and label rules every kind shares.

pub mod admission;
pub mod canonical;
pub mod crd;
pub mod cron;
pub mod defaults;
pub mod ephemeral;
pub mod fields;
pub mod ingress_validation;
pub mod pdb;
pub mod registry;
pub mod selector;
pub mod service;
pub mod status;
pub mod table;
pub mod typed;
pub mod validate;
pub mod validation;
pub mod workload_validation;

pub use registry::{Resource, RESOURCES};
pub use status::StatusError;
pub use validation::FieldError;

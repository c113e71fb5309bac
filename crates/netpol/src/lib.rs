//! skiff's NetworkPolicy enforcer: watches NetworkPolicies, Pods and Namespaces
//! and programs one nftables table, `ip skiff-netpol`, that isolates this
//! node's pods as the policies say (networking.k8s.io/v1 semantics).
//!
//! Rule generation is pure (`model`: the cluster reduced to what the data plane
//! needs; `ruleset`: that state -> the desired table; `program`: the in-memory
//! table and the diff between two states as one nft transaction); `sync`
//! drives it from kube-rs watchers and feeds `nft -f -`; `metrics` serves the
//! per-policy denied counters. `trace` follows a packet through a generated
//! table, for tests.

mod error;
pub mod k8s;
pub mod metrics;
pub mod model;
pub mod net;
pub mod program;
pub mod ruleset;
mod sync;
pub mod trace;

pub use error::{Error, Result};
pub use sync::{run, NetpolSettings, DEFAULT_METRICS_LISTEN};

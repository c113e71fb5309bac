//! skiff's service proxy: watches Services and EndpointSlices and programs one
//! nftables table, `ip skiff`, so ClusterIPs, node ports, external and
//! load-balancer addresses reach the services' endpoints.
//!
//! Rule generation is pure (`ruleset`: service -> fragment; `program`: the
//! in-memory table and the diff between two states as one nft transaction);
//! `sync` drives it from kube-rs watchers and feeds `nft -f -`; `lb` makes the
//! node answer for load-balancer addresses, those it wins in an election per
//! address over Leases (`election`: the pure rule; `announce`: the Lease IO).
//! `trace` follows a packet through a generated table, for tests.

pub mod announce;
pub mod election;
mod error;
pub mod k8s;
pub mod lb;
pub mod metrics;
pub mod model;
pub mod net;
pub mod program;
pub mod ruleset;
mod sync;
pub mod trace;

pub use error::{Error, Result};
pub use sync::{run, ProxySettings};

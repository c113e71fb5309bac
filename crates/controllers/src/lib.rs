//! The cluster controllers of skiff, as ordinary kube-rs clients: they list and
//! watch through the API server and write back through it, so they would run
//! unchanged against a real cluster.
//!
//! Start at [`run`]: it starts one informer (reflector cache) per kind in
//! [`runtime`], routes every change to the work queues of the controllers that
//! care, and runs one worker per controller. Each controller module has a pure
//! `desired(...)` function (table-tested) and a thin `reconcile` that writes the
//! difference:
//!
//! - [`endpointslice`]: Services with a selector -> EndpointSlices;
//!   [`mirroring`]: user-written Endpoints of selector-less Services -> EndpointSlices;
//! - [`endpoints`]: Services with a selector -> legacy v1 Endpoints;
//! - [`replicaset`], [`deployment`], [`statefulset`]: workloads -> pods;
//! - [`scheduler`]: pending pods -> nodes; [`gc`]: dependents of deleted owners.

pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod gc;
pub mod mirroring;
pub mod nodeutil;
pub mod pods;
pub mod replicaset;
pub mod runtime;
pub mod scheduler;
pub mod selector;
pub mod statefulset;

pub use runtime::run;

/// Errors of the controllers: API calls, or objects that cannot be handled.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the controllers need to know beyond the API server itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Which controllers to run (`endpointslice`, `endpointslicemirroring`,
    /// `endpoints`, `replicaset`, `deployment`, `statefulset`, `scheduler`,
    /// `garbagecollector`); empty means all.
    pub enabled: Vec<String>,
    /// Endpoints per EndpointSlice (upstream `--max-endpoints-per-slice`, 100).
    pub max_endpoints_per_slice: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: Vec::new(),
            max_endpoints_per_slice: 100,
        }
    }
}

impl Settings {
    pub fn enabled(&self, controller: &str) -> bool {
        self.enabled.is_empty() || self.enabled.iter().any(|c| c == controller)
    }
}

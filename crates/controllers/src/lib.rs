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
//!   [`job`], [`cronjob`] (CronJobs -> Jobs), [`daemonset`] (one pod per
//!   eligible node), [`replicationcontroller`], routed by [`workloads`];
//! - [`scheduler`]: pending pods -> nodes; [`gc`]: dependents of deleted owners;
//! - [`nodeipam`]: Nodes -> pod CIDRs; [`nodelifecycle`]: silent nodes -> Unknown
//!   conditions, taints and not-ready pods; [`taint_eviction`]: pods on
//!   NoExecute-tainted nodes -> deleted; [`podgc`]: pods no node will finish ->
//!   force-deleted;
//! - [`serviceaccounts`]: a `default` ServiceAccount in every namespace;
//!   [`rootca`]: the `kube-root-ca.crt` ConfigMap in every namespace (both
//!   through [`per_namespace`], with their own small watches);
//! - [`disruption`]: PodDisruptionBudgets' status from the pods they select.
//!
//! With several servers on one store, [`leader::run_controllers`] runs all of
//! them only on the server holding the `kube-system/kube-controller-manager`
//! Lease ([`leader`], upstream's `--leader-elect`).

pub mod clients;
pub mod cronjob;
pub mod daemonset;
pub mod daemonset_history;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod gc;
pub mod job;
pub mod leader;
pub mod mirroring;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod nodeutil;
pub mod per_namespace;
pub mod podgc;
pub mod pods;
pub mod replicaset;
pub mod replicationcontroller;
pub mod rootca;
pub mod runtime;
pub mod scheduler;
pub mod selector;
pub mod serviceaccounts;
pub mod statefulset;
pub mod taint_eviction;
pub mod workloads;

use std::time::Duration;

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
    /// `endpoints`, `replicaset`, `deployment`, `statefulset`, `job`,
    /// `cronjob`, `ttl-after-finished`, `daemonset`, `replicationcontroller`, `scheduler`,
    /// `garbagecollector`, `nodeipam`, `nodelifecycle`,
    /// `taint-eviction-controller`, `pod-garbage-collector`, `serviceaccount`,
    /// `root-ca-cert-publisher`, `disruption`); empty means all.
    pub enabled: Vec<String>,
    /// Endpoints per EndpointSlice (upstream `--max-endpoints-per-slice`, 100).
    pub max_endpoints_per_slice: usize,
    /// The cluster's pod network, cut into node ranges by `nodeipam`
    /// (upstream `--cluster-cidr`; `None` turns node IPAM off, as upstream's
    /// `--allocate-node-cidrs=false`). Default `10.244.0.0/16`.
    pub cluster_cidr: Option<String>,
    /// The prefix length of each node's range (upstream `--node-cidr-mask-size`, 24).
    pub node_cidr_mask_size: u8,
    /// How long a node may go without a heartbeat before it is marked Unknown
    /// (upstream `--node-monitor-grace-period`, 40 s).
    pub node_monitor_grace_period: Duration,
    /// The same for a node that never posted a status (upstream
    /// `--node-startup-grace-period`, 60 s).
    pub node_startup_grace_period: Duration,
    /// How often every node is looked at besides its own deadline (upstream
    /// `--node-monitor-period`, 5 s).
    pub node_monitor_period: Duration,
    /// NoExecute taints per second in a healthy zone (upstream
    /// `--node-eviction-rate`, 0.1: one node every 10 s).
    pub node_eviction_rate: f64,
    /// How long a pod's Node must be missing before the pod is force-deleted
    /// (upstream's fixed `quarantineTime` of the pod GC, 40 s; no upstream flag).
    pub pod_gc_quarantine: Duration,
    /// Run the controllers only while this server holds the leader Lease
    /// (upstream `--leader-elect`); `None`: always, as a lone server.
    pub leader_election: Option<leader::LeaderElection>,
    /// The cluster CA (PEM) the `root-ca-cert-publisher` copies into every
    /// namespace; `None` turns that controller off.
    pub root_ca_file: Option<std::path::PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: Vec::new(),
            max_endpoints_per_slice: 100,
            cluster_cidr: Some("10.244.0.0/16".into()),
            node_cidr_mask_size: 24,
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            node_monitor_period: Duration::from_secs(5),
            node_eviction_rate: 0.1,
            pod_gc_quarantine: Duration::from_secs(40),
            leader_election: None,
            root_ca_file: None,
        }
    }
}

impl Settings {
    pub fn enabled(&self, controller: &str) -> bool {
        self.enabled.is_empty() || self.enabled.iter().any(|c| c == controller)
    }
}

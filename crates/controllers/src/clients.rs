//! Which client each controller writes with (issue #17), as upstream's
//! kube-controller-manager with `--use-service-account-credentials`: the shared
//! informers and the leader Lease use the controller manager's own identity
//! (`system:kube-controller-manager`), and each controller writes, and records
//! its Events, as its own ServiceAccount in `kube-system`, whose role
//! (`system:controller:<account>`) grants only what that controller does. The
//! scheduler, which upstream runs apart, writes as `system:kube-scheduler`.
//!
//! The caller says how a client for a user is made ([`Clients::new`]); tests,
//! and anything that runs every controller with one credential, pass one client
//! for all ([`Clients::from`]).

use std::collections::HashMap;
use std::sync::Arc;

use kube::Client;

/// Where upstream keeps the controllers' ServiceAccounts.
pub const ACCOUNT_NAMESPACE: &str = "kube-system";
/// The controller manager's own user: informers and leader election.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// The scheduler's user.
pub const SCHEDULER_USER: &str = "system:kube-scheduler";

/// One controller's identity: its name in [`crate::Settings::enabled`], the
/// user it writes as, and the component name its Events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub controller: &'static str,
    /// A ServiceAccount in [`ACCOUNT_NAMESPACE`], or (`account: None`) the user
    /// [`SCHEDULER_USER`].
    pub account: Option<&'static str>,
    pub event_component: &'static str,
}

impl Identity {
    /// The user name this controller's requests carry.
    pub fn user(&self) -> String {
        match self.account {
            Some(a) => format!("system:serviceaccount:{ACCOUNT_NAMESPACE}:{a}"),
            None => SCHEDULER_USER.to_string(),
        }
    }
}

const fn sa(
    controller: &'static str,
    account: &'static str,
    event_component: &'static str,
) -> Identity {
    Identity {
        controller,
        account: Some(account),
        event_component,
    }
}

/// Every controller skiff runs, by upstream's account names
/// (kube-controller-manager's `names` and its bootstrap policy).
pub const IDENTITIES: &[Identity] = &[
    sa(
        "endpointslice",
        "endpointslice-controller",
        "endpointslice-controller",
    ),
    sa(
        "endpointslicemirroring",
        "endpointslicemirroring-controller",
        "endpointslice-mirroring-controller",
    ),
    sa("endpoints", "endpoint-controller", "endpoint-controller"),
    sa(
        "replicaset",
        "replicaset-controller",
        "replicaset-controller",
    ),
    sa(
        "deployment",
        "deployment-controller",
        "deployment-controller",
    ),
    sa(
        "statefulset",
        "statefulset-controller",
        "statefulset-controller",
    ),
    sa("job", "job-controller", "job-controller"),
    sa("cronjob", "cronjob-controller", "cronjob-controller"),
    sa(
        "ttl-after-finished",
        "ttl-after-finished-controller",
        "ttl-after-finished-controller",
    ),
    sa("daemonset", "daemon-set-controller", "daemonset-controller"),
    sa(
        "replicationcontroller",
        "replication-controller",
        "replication-controller",
    ),
    sa(
        "garbagecollector",
        "generic-garbage-collector",
        "garbage-collector-controller",
    ),
    // Upstream's node IPAM and node lifecycle both run as node-controller.
    sa("nodeipam", "node-controller", "cidrAllocator"),
    sa("nodelifecycle", "node-controller", "node-controller"),
    sa(
        "taint-eviction-controller",
        "taint-eviction-controller",
        "taint-eviction-controller",
    ),
    sa(
        "pod-garbage-collector",
        "pod-garbage-collector",
        "pod-garbage-collector",
    ),
    sa(
        "serviceaccount",
        "service-account-controller",
        "service-account-controller",
    ),
    sa(
        "root-ca-cert-publisher",
        "root-ca-cert-publisher",
        "root-ca-cert-publisher",
    ),
    sa("disruption", "disruption-controller", "controllermanager"),
    Identity {
        controller: "scheduler",
        account: None,
        event_component: "default-scheduler",
    },
];

/// The identity of the controller `controller` (a [`crate::Settings`] name).
pub fn identity(controller: &str) -> Option<&'static Identity> {
    IDENTITIES.iter().find(|i| i.controller == controller)
}

/// The clients of the controllers: one shared (informers, leader election)
/// and one per identity. Cheap to clone.
#[derive(Clone)]
pub struct Clients {
    shared: Client,
    /// By user name (two controllers may share one, as node-controller).
    by_user: Arc<HashMap<String, Client>>,
}

impl Clients {
    /// `shared` for the informers and the Lease, and `make(user)` for each
    /// controller's identity (see [`IDENTITIES`]), each made once.
    pub fn new<E>(
        shared: Client,
        mut make: impl FnMut(&str) -> Result<Client, E>,
    ) -> Result<Self, E> {
        let mut by_user = HashMap::new();
        for id in IDENTITIES {
            let user = id.user();
            if let std::collections::hash_map::Entry::Vacant(slot) = by_user.entry(user) {
                let client = make(slot.key())?;
                slot.insert(client);
            }
        }
        Ok(Self {
            shared,
            by_user: Arc::new(by_user),
        })
    }

    /// The controller manager's client: informers, caches, leader election.
    pub fn shared(&self) -> &Client {
        &self.shared
    }

    /// The client controller `controller` writes with; the shared one for a
    /// name [`IDENTITIES`] does not know (a bug, caught in tests).
    pub fn of(&self, controller: &str) -> Client {
        debug_assert!(
            identity(controller).is_some(),
            "no identity for controller {controller}"
        );
        identity(controller)
            .and_then(|i| self.by_user.get(&i.user()))
            .unwrap_or(&self.shared)
            .clone()
    }

    /// The client of the controller whose Events say `component`.
    pub fn for_event_component(&self, component: &str) -> Client {
        IDENTITIES
            .iter()
            .find(|i| i.event_component == component)
            .and_then(|i| self.by_user.get(&i.user()))
            .unwrap_or(&self.shared)
            .clone()
    }
}

/// One client for everything (tests, a single credential).
impl From<Client> for Clients {
    fn from(client: Client) -> Self {
        Self {
            shared: client,
            by_user: Arc::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_controller_name_has_an_identity_with_upstreams_account() {
        for name in [
            "endpointslice",
            "endpointslicemirroring",
            "endpoints",
            "replicaset",
            "deployment",
            "statefulset",
            "job",
            "cronjob",
            "ttl-after-finished",
            "daemonset",
            "replicationcontroller",
            "garbagecollector",
            "nodeipam",
            "nodelifecycle",
            "taint-eviction-controller",
            "pod-garbage-collector",
            "serviceaccount",
            "root-ca-cert-publisher",
            "disruption",
            "scheduler",
        ] {
            assert!(identity(name).is_some(), "{name}");
        }
        assert_eq!(
            identity("deployment").map(Identity::user).as_deref(),
            Some("system:serviceaccount:kube-system:deployment-controller")
        );
        assert_eq!(
            identity("scheduler").map(Identity::user).as_deref(),
            Some(SCHEDULER_USER)
        );
        assert_eq!(
            identity("nodeipam").map(Identity::user),
            identity("nodelifecycle").map(Identity::user)
        );
    }
}

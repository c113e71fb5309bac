//! Upstream's serviceaccounts-controller: a `default` ServiceAccount in every
//! namespace that is not terminating, made again if deleted. Pods that name
//! no account run as it (the ServiceAccount admission), and the API server
//! refuses pods whose account does not exist.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;

use crate::per_namespace::{self, Ensure};

/// The account every namespace gets.
pub const DEFAULT: &str = "default";

pub fn desired(namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Runs until dropped: `informers` watches, `writer` makes the accounts.
pub async fn run(informers: Client, writer: Client) {
    per_namespace::run(
        informers,
        writer,
        Ensure {
            controller: "serviceaccount",
            name: DEFAULT,
            desired: Box::new(desired),
            // Only existence matters: what users change in it is theirs.
            up_to_date: |_, _| true,
            merge: |_, _| {},
        },
    )
    .await
}

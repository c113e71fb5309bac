//! A kube-rs client running inside a pod, as controllers and operators do:
//! `kube::Client::try_default()` finds no kubeconfig and falls back to the
//! in-cluster configuration (`KUBERNETES_SERVICE_HOST`/`PORT`, the service
//! account's `token`, `ca.crt` and `namespace` under
//! /var/run/secrets/kubernetes.io/serviceaccount). It prints who the API server
//! says it is (a SelfSubjectReview, as `kubectl auth whoami`) and the Services
//! of its namespace, one line each, and exits non-zero on any error.
//!
//! Run by crates/skiff/tests/security.rs from an image built there.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, PostParams};
use kube::Client;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("in_cluster: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), kube::Error> {
    let client = Client::try_default().await?;
    let namespace = client.default_namespace().to_string();

    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
    println!("USERNAME {}", user.username.unwrap_or_default());
    for group in user.groups.unwrap_or_default() {
        println!("GROUP {group}");
    }
    println!("NAMESPACE {namespace}");

    let services: Api<Service> = Api::namespaced(client, &namespace);
    for svc in services.list(&ListParams::default()).await? {
        println!(
            "SERVICE {} {}",
            svc.metadata.name.unwrap_or_default(),
            svc.spec.and_then(|s| s.cluster_ip).unwrap_or_default()
        );
    }
    Ok(())
}

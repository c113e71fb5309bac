//! What the controllers' integration tests share: an in-process API server.

use std::sync::Arc;
use std::time::Duration;

use skiff_store::MemoryBackend;

/// An API server on a memory store, on a free loopback port, and its admin client.
pub async fn api_server(dir: &std::path::Path) -> (skiff_apiserver::Running, kube::Client) {
    let server = skiff_apiserver::start(
        skiff_apiserver::Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.to_path_buf(),
            compact_interval: Duration::from_secs(3600),
            compact_keep: 1000,
            services: Default::default(),
            admission: Default::default(),
            tls_sans: Vec::new(),
            audit: None,
        },
        Arc::new(MemoryBackend::new()),
    )
    .await
    .expect("API server");
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    let client = kube::Client::try_from(config).expect("client");
    (server, client)
}

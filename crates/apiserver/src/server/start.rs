//! Start-up, in order: credentials, listener, the built-in namespaces, the
//! default join token, then the lifecycle tasks. Apart from the dispatcher
//! because it runs once, before any request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use serde_json::json;
use skiff_api::registry;
use skiff_store::Backend;
use tokio::sync::Notify;

use super::dispatch::dispatch;
use super::{Api, Config, Running};
use crate::objects::Objects;
use crate::request::Target;
use crate::rest::{self, WriteOptions};
use crate::{body, join, metrics::Metrics, namespaces, pki, server_join};

/// How long start-up waits for the first RBAC index before serving anyway.
const RBAC_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Namespaces every cluster has from the start.
pub const BUILTIN_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn bootstrap(api: &Api) -> Result<()> {
    let ns = registry::lookup("", "v1", "namespaces").context("namespaces resource")?;
    let opts = WriteOptions {
        dry_run: false,
        validation: body::FieldValidation::Strict,
        field_manager: None,
    };
    for name in BUILTIN_NAMESPACES {
        if let Some(old) = api
            .objects
            .get_opt(ns, None, name)
            .await
            .map_err(|e| anyhow::anyhow!(e))?
        {
            // Stored before namespaces carried their name label: an update
            // through the strategy puts it on.
            if old
                .pointer("/metadata/labels")
                .and_then(|l| l.get(crate::strategy::NAMESPACE_NAME_LABEL))
                .is_none()
            {
                let t = Target {
                    resource: ns,
                    namespace: None,
                    name: Some((*name).to_string()),
                    subresource: None,
                };
                rest::patch_with(api, &t, &opts, |cur| Ok(cur.clone()))
                    .await
                    .map_err(|e| anyhow::anyhow!("labelling namespace {name}: {e}"))?;
            }
            continue;
        }
        let t = Target {
            resource: ns,
            namespace: None,
            name: None,
            subresource: None,
        };
        match rest::create(api, &t, json!({"metadata": {"name": name}}), &opts).await {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(anyhow::anyhow!("creating namespace {name}: {e}")),
        }
    }
    crate::services::builtin::ensure(api).await;
    crate::rbac::ensure(api).await?;
    Ok(())
}

/// Turns off Nagle's algorithm on every accepted connection: watch events and
/// list pages go out in several writes, and without it each waits ~40 ms for the
/// client's delayed ACK (measured in bench/api).
#[derive(Clone, Copy)]
struct NoDelay;

impl<S: Send + 'static> axum_server::accept::Accept<tokio::net::TcpStream, S> for NoDelay {
    type Stream = tokio::net::TcpStream;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        std::future::ready(stream.set_nodelay(true).map(|()| (stream, service)))
    }
}

/// Compacts the store's history periodically, as kube-apiserver asks etcd to.
async fn compactor(api: Arc<Api>, every: Duration, keep: i64) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let backend = api.objects.backend().clone();
        let r = tokio::task::spawn_blocking(move || {
            let target = backend.current_revision()? - keep;
            if target > backend.compacted_revision() {
                backend.compact(target)?;
            }
            Ok::<_, skiff_store::Error>(target)
        })
        .await;
        match r {
            Ok(Ok(rev)) => tracing::debug!(revision = rev, "compacted"),
            Ok(Err(e)) => tracing::warn!(error = %e, "compaction failed"),
            Err(e) => tracing::warn!(error = %e, "compaction task failed"),
        }
    }
}

/// Starts the API server: credentials, listener, built-in objects, then serving.
pub async fn start(config: Config, backend: Arc<dyn Backend>) -> Result<Running> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let url = format!("https://{host}:{}", addr.port());
    let mut sans = vec![addr.ip().to_string()];
    sans.extend(config.tls_sans.iter().cloned());
    let creds = pki::ensure(&config.data_dir, &url, &sans)?;
    let kubelet_tls = crate::podstream::client_tls(&creds)?;
    let server_token = server_join::ensure_server_token(&config.data_dir, &creds.ca_pem)?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(
        crate::x509::server_config(&creds.ca_pem, &creds.cert_pem, &creds.key_pem)?,
    ));

    let metrics = Metrics::default();
    let auditor = match &config.audit {
        Some(settings) => Some(Arc::new(crate::audit::Auditor::start(
            settings,
            metrics.audit.clone(),
        )?)),
        None => None,
    };
    let api = Arc::new(Api {
        cache: crate::cache::Caches::new(backend.clone()),
        objects: Objects::new(backend),
        metrics,
        admin_token: creds.admin_token.clone(),
        ca: creds.ca(),
        kubelet_tls,
        server_address: format!("{host}:{}", addr.port()),
        namespaces_changed: Notify::new(),
        services: crate::services::State::new(&config.services),
        admission: config.admission,
        data_dir: config.data_dir.clone(),
        service_account_keys: crate::serviceaccount::Keys::ensure(&config.data_dir)?,
        rbac: Default::default(),
        node_graph: Default::default(),
        namespace_cache: Default::default(),
        bound_objects: Default::default(),
        auditor,
    });
    // The watch cache's feed follows the store from now on.
    api.cache.start();
    crate::services::load(&api)
        .await
        .map_err(|e| anyhow::anyhow!("loading service allocations: {e}"))?;
    // A store that has no kube-system yet is new: it gets a new default join token.
    let fresh = {
        let ns = registry::lookup("", "v1", "namespaces").context("namespaces resource")?;
        api.objects
            .get_opt(ns, None, "kube-system")
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .is_none()
    };
    bootstrap(&api).await?;
    // Requests are authorized with the index from the first listing on: wait
    // for it (the store just answered bootstrap) rather than refuse everyone
    // but system:masters for the first moments.
    tokio::spawn(crate::authz::live::run(api.clone()));
    tokio::spawn(crate::authz::node::live::run(api.clone()));
    if !api.rbac.wait_ready(RBAC_READY_TIMEOUT).await {
        tracing::warn!("RBAC index not built yet; only system:masters is allowed until it is");
    }
    // Listed alongside: nodes reach their pods' objects from the first moment.
    if !api.node_graph.wait_ready(RBAC_READY_TIMEOUT).await {
        tracing::warn!("node graph not listed yet; nodes reach no pod's secrets until it is");
    }
    let join_token = join::ensure_default_token(&api, &config.data_dir, fresh).await?;
    tokio::spawn(crate::services::run(api.clone()));
    tokio::spawn(namespaces::lifecycle(api.clone()));
    tokio::spawn(crate::namespace_cache::run(api.clone()));
    tokio::spawn(crate::csr::signer::run(api.clone()));
    tokio::spawn(crate::apiservices::run(api.clone()));
    tokio::spawn(crate::crd::run(api.clone()));
    tokio::spawn(compactor(
        api.clone(),
        config.compact_interval,
        config.compact_keep,
    ));

    let app = Router::new().fallback(dispatch).with_state(api);
    let handle = axum_server::Handle::new();
    let acceptor = crate::x509::PeerCertAcceptor::new(
        axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(NoDelay),
    );
    let server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(handle.clone());
    let task = tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
    tracing::info!(%url, kubeconfig = %creds.kubeconfig_path.display(), "API server listening");
    Ok(Running {
        url,
        kubeconfig: creds.kubeconfig_path,
        addr,
        join_token,
        join_token_file: config.data_dir.join(join::NODE_TOKEN_FILE),
        server_token: server_token.to_string(),
        server_token_file: config.data_dir.join(server_join::SERVER_TOKEN_FILE),
        handle,
        task,
    })
}

//! Log output of the in-process components (API server, proxy, agent, ...).

/// Sends the components' `tracing` events to stderr: warnings and errors by
/// default (a failed nft transaction or a stopped watcher explains a stalled
/// measurement), more with `RUST_LOG` (e.g. `RUST_LOG=skiff_proxy=debug`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

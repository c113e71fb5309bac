//! The tokio runtimes a benchmark runs its parts on.

use std::time::Duration;

/// A multi-thread runtime named `name`, with `workers` threads (one per core when
/// `None`). Idle pool threads are kept: otherwise they exit between phases and
/// are re-spawned mid-measurement.
pub fn runtime(
    name: &'static str,
    workers: Option<usize>,
) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder
        .enable_all()
        .thread_name(name)
        .thread_keep_alive(Duration::from_secs(3600))
        .build()
}

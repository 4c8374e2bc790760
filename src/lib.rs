//! Minion as a library: the server's parts (node, HTTP API, peer port, adapters' glue) and the
//! CLI verbs. The `minion` binary (`src/main.rs`) wires them together; the fuzz targets and tests
//! drive the real handlers through it.

pub mod adapters;
pub mod api;
pub mod autoscaler;
pub mod backup_file;
pub mod bench;
pub mod bench_deps;
pub mod bench_progress;
pub mod bench_schedule;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod disk_space;
pub mod dispatch;
pub mod ingest;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod pool;
pub mod proposer;
pub mod schedule_cli;
pub mod serve;
pub mod stall;
pub mod task_waits;
pub mod tracing_setup;
pub mod worker;

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}

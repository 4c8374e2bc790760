//! The v1 HTTP API (axum). Reads come from the applied state; writes go through raft.

pub mod adapters;
pub mod admin;
pub mod agents;
pub mod answer;
pub mod backup;
pub mod cluster;
pub mod error;
pub mod events;
pub mod extract;
pub mod feed;
pub mod health;
pub mod leases;
pub mod middleware;
pub mod openapi;
pub mod queues;
pub mod router;
pub mod settings;
pub mod tasks;
pub mod views;

use metrics_exporter_prometheus::PrometheusHandle;

pub use error::ApiError;
pub use health::OPENAPI;

use crate::node::Node;

/// What every handler reads. Shared behind one `Arc`: axum clones the state for each request,
/// and cloning the node's handles field by field was a tenth of a submit's CPU.
pub type AppState = std::sync::Arc<App>;

pub struct App {
    pub node: Node,
    pub metrics: PrometheusHandle,
    /// Forwards requests to the leader and probes peers (keep-alive connections).
    pub http: reqwest::Client,
    /// Authentication and per-token rate limits.
    pub auth: std::sync::Arc<crate::auth::Auth>,
    /// The open event streams (closed at shutdown).
    pub events: std::sync::Arc<events::Streams>,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub use router::router;

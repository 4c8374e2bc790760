//! The v1 HTTP API (axum). Reads come from the applied state; writes go through raft.

pub mod adapters;
pub mod admin;
pub mod agents;
pub mod answer;
pub mod auth;
pub mod backup;
pub mod children;
pub mod cluster;
pub mod console;
pub mod disk;
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
pub mod schedules;
pub mod settings;
pub mod tasks;
pub mod views;

use metrics_exporter_prometheus::PrometheusHandle;

pub use error::ApiError;
pub use health::OPENAPI;

use crate::config::Config;
use crate::dispatch::Hub;
use crate::node::Node;
use crate::proposer::Proposer;
use crate::task_waits::TaskWaits;
use minion_raft::SharedState;

/// What every handler reads. Shared behind one `Arc`: axum clones the state for each request,
/// and cloning the node's handles field by field was a tenth of a submit's CPU.
pub type AppState = std::sync::Arc<App>;

/// Handlers use the narrow handles — `proposer` to write, `state` to read, `config`, `hub` — and
/// `node` only for what concerns the node as a whole (cluster membership, snapshots, storage
/// figures, adapter reports).
pub struct App {
    pub proposer: Proposer,
    pub state: SharedState,
    pub config: std::sync::Arc<Config>,
    pub hub: Hub,
    /// Producers waiting for tasks to finish.
    pub waits: TaskWaits,
    pub node: Node,
    pub metrics: PrometheusHandle,
    /// Forwards requests to the leader and probes peers (keep-alive connections).
    pub http: reqwest::Client,
    /// Authentication and per-token rate limits.
    pub auth: std::sync::Arc<crate::api::auth::Auth>,
    /// The open event streams (closed at shutdown).
    pub events: std::sync::Arc<events::Streams>,
}

impl App {
    /// The handlers' state for `node`, with its narrow handles taken from it.
    pub fn new(
        node: Node,
        metrics: PrometheusHandle,
        http: reqwest::Client,
        auth: std::sync::Arc<auth::Auth>,
        events: std::sync::Arc<events::Streams>,
    ) -> App {
        App {
            proposer: node.proposer.clone(),
            state: node.state.clone(),
            config: node.config.clone(),
            hub: node.hub.clone(),
            waits: TaskWaits::new(node.state.clone()),
            node,
            metrics,
            http,
            auth,
            events,
        }
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub use router::router;

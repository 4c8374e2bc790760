//! Backup and restore: `GET /v1/admin/backup` writes the replicated state at one applied index as
//! a framed file; `POST /v1/admin/restore` loads such a file into a cluster that has never held a
//! task, through the log, so every member of the new cluster gets it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use minion_engine::{Command, Outcome, StateImage};
use minion_storage::frame;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ApiError;
use super::ApiResult;
use super::AppState;

/// Version of the [`Backup`] layout.
pub const BACKUP_FORMAT: u32 = 1;

/// A backup file's body (inside the usual frame: version byte and CRC-32).
#[derive(Debug, Serialize, Deserialize)]
pub struct Backup {
    pub format: u32,
    /// The cluster and node it was taken from, for the operator's records.
    pub cluster_id: String,
    pub node_id: u64,
    /// The log index the state is exactly as of.
    pub applied_index: u64,
    pub taken_ms: u64,
    pub image: StateImage,
}

impl Backup {
    pub fn decode(bytes: &[u8]) -> Result<Backup, String> {
        let b: Backup = frame::decode(bytes).map_err(|e| format!("not a Minion backup file: {e}"))?;
        if b.format != BACKUP_FORMAT {
            return Err(format!("backup format {} is not supported (this build reads {BACKUP_FORMAT})", b.format));
        }
        Ok(b)
    }
}

/// The state as of the applied index (a linearizable read on the leader), as a backup file.
pub async fn backup(State(s): State<AppState>) -> ApiResult<Response> {
    let (image, applied_index) = {
        let g = s.node.state.read();
        // Copying the image copies pointers (tasks are shared); encoding happens outside the lock.
        (g.engine.image(), g.applied.last_applied.map(|l| l.index).unwrap_or(0))
    };
    let b = Backup {
        format: BACKUP_FORMAT,
        cluster_id: s.node.identity.cluster_id().unwrap_or_default(),
        node_id: s.node.config.node_id,
        applied_index,
        taken_ms: crate::node::now_ms(),
        image,
    };
    let tasks = b.image.tasks.len();
    let bytes = tokio::task::spawn_blocking(move || frame::encode(&b))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    tracing::info!(applied_index, tasks, bytes = bytes.len(), "backup taken");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::HeaderName::from_static("x-minion-applied-index"), applied_index.to_string()),
        ],
        bytes,
    )
        .into_response())
}

/// Load a backup into this (empty) cluster. Refused, changing nothing, when the file is damaged
/// or not a backup (400) or when the cluster already holds state (409).
pub async fn restore(
    State(s): State<AppState>,
    Extension(caller): Extension<crate::auth::Caller>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let b = Backup::decode(&body).map_err(ApiError::bad_request)?;
    let tasks = b.image.tasks.len();
    let agents = b.image.agents.len();
    let cmd = Command::Audited { actor: caller.actor(), cmd: Box::new(Command::Restore { image: Box::new(b.image) }) };
    let out = s.node.propose(cmd).await??;
    if !matches!(out, Outcome::Done) {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("restore answered {out:?}")));
    }
    tracing::warn!(tasks, agents, from_cluster = %b.cluster_id, from_index = b.applied_index, "backup restored");
    Ok(Json(json!({
        "restored_tasks": tasks,
        "restored_agents": agents,
        "from_cluster": b.cluster_id,
        "from_applied_index": b.applied_index,
        "taken_ms": b.taken_ms,
    })))
}

//! Backup and restore: `GET /v1/admin/backup` streams the replicated state at one applied index
//! as a backup file; `POST /v1/admin/restore` loads one into a cluster that has never held a task,
//! through the log as a stream of bounded entries, so every member of the new cluster gets it.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use minion_engine::{Command, Outcome};
use serde_json::json;

use super::error::ApiError;
use super::ApiResult;
use super::AppState;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

fn temp_path(s: &AppState, what: &str) -> std::path::PathBuf {
    s.config.data_dir.join(format!("{what}-{:016x}.tmp", rand::random::<u64>()))
}

/// The state as of one applied index (a consistent read while writes go on), streamed.
#[utoipa::path(
    get,
    path = "/v1/admin/backup",
    tag = "admin",
    summary = "A consistent backup file of the whole state",
    responses(
        (status = 200, description = "the backup (binary)", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn backup(State(s): State<AppState>) -> ApiResult<Response> {
    let path = temp_path(&s, "backup");
    let storage = s.node.storage.clone();
    let origin = format!("cluster {} node {}", s.node.identity.cluster_id().unwrap_or_default(), s.config.node_id);
    let p = path.clone();
    let written = tokio::task::spawn_blocking(move || storage.export_backup(&p, origin)).await.map_err(internal)?;
    let (index, records, bytes) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("taking the backup: {e}"),
            ));
        }
    };
    let file = tokio::fs::File::open(&path).await.map_err(internal)?;
    // The open file stays readable; the name goes now, so nothing is left behind.
    let _ = tokio::fs::remove_file(&path).await;
    tracing::info!(applied_index = ?index, records, bytes, "backup taken");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, bytes.to_string()),
            (header::HeaderName::from_static("x-minion-applied-index"), index.unwrap_or(0).to_string()),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

/// Load a backup into this (empty) cluster. Refused, changing nothing, when the file is damaged
/// or not a backup (400) or when the cluster already holds state (409). The body is kept in a
/// temporary file in the data directory, checked whole, then sent through the log in entries of
/// bounded size.
#[utoipa::path(
    post,
    path = "/v1/admin/restore",
    tag = "admin",
    summary = "Load a backup into an empty cluster",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "what was restored", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "the cluster is not empty", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn restore(
    State(s): State<AppState>,
    Extension(caller): Extension<crate::api::auth::Caller>,
    body: Body,
) -> ApiResult<Json<serde_json::Value>> {
    let path = temp_path(&s, "restore");
    let out = restore_from(&s, &caller, body, &path).await;
    let _ = tokio::fs::remove_file(&path).await;
    out
}

async fn restore_from(
    s: &AppState,
    caller: &crate::api::auth::Caller,
    body: Body,
    path: &std::path::Path,
) -> ApiResult<Json<serde_json::Value>> {
    {
        use http_body_util::BodyExt;
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::File::create(path).await.map_err(internal)?;
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| super::error::body_error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                f.write_all(&data).await.map_err(internal)?;
            }
        }
        f.flush().await.map_err(internal)?;
    }
    let p = path.to_path_buf();
    let summary = tokio::task::spawn_blocking(move || crate::backup_file::inspect(&p))
        .await
        .map_err(internal)?
        .map_err(ApiError::bad_request)?;
    let restore_id = format!("{:016x}", rand::random::<u64>());
    s.proposer.propose(Command::RestoreBegin { restore_id: restore_id.clone() }).await??;
    // Records flow from a reader thread to here in bounded batches, one log entry each.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<minion_engine::Record>>(2);
    let batch_bytes = (s.config.entry_bytes_max / 2).clamp(64 << 10, 4 << 20);
    let p = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        crate::backup_file::records(&p, batch_bytes, |batch| {
            tx.blocking_send(batch).map_err(|_| "the restore was abandoned".to_string())
        })
    });
    let mut total = 0u64;
    while let Some(records) = rx.recv().await {
        total += records.len() as u64;
        let out = s.proposer.propose(Command::RestoreRecords { restore_id: restore_id.clone(), records }).await??;
        if !matches!(out, Outcome::Done) {
            return Err(internal(format!("restore answered {out:?}")));
        }
    }
    let meta = reader.await.map_err(internal)?.map_err(ApiError::bad_request)?;
    let end = Command::RestoreEnd { restore_id, records_total: total, meta: Box::new(meta) };
    let cmd = Command::Audited { actor: caller.actor(), cmd: Box::new(end) };
    let out = s.proposer.propose(cmd).await??;
    if !matches!(out, Outcome::Done) {
        return Err(internal(format!("restore answered {out:?}")));
    }
    tracing::warn!(tasks = summary.tasks, agents = summary.agents, from = %summary.origin, from_index = ?summary.applied_index, "backup restored");
    Ok(Json(json!({
        "restored_tasks": summary.tasks,
        "restored_agents": summary.agents,
        "restored_records": total,
        "from": summary.origin,
        "from_applied_index": summary.applied_index,
        "taken_ms": summary.taken_ms,
        "format": summary.format,
    })))
}

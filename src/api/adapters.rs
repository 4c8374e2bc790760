//! Ingest and export adapters: their reports, and ingest records refused as tasks.

use super::answer::unexpected;
use super::error::ApiError;
use super::extract::JsonBody;
use super::views::*;
use super::{ApiResult, AppState};
use crate::api::auth::Caller;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use minion_engine::{Command, Outcome};
use serde_json::json;

/// Ingest records that could not become tasks, recorded as `rejected` (deduplicated by key).
#[utoipa::path(
    post,
    path = "/v1/rejections",
    tag = "ingest",
    summary = "Record ingest records that could not become tasks (state rejected, deduplicated by key)",
    request_body = RejectionsIn,
    responses(
        (status = 201, description = "recorded", body = BatchOut),
        (status = 200, description = "all duplicates", body = BatchOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn reject(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<RejectionsIn>,
) -> ApiResult<Response> {
    for r in &b.records {
        caller.check_queue(&r.queue)?;
    }
    let records = b.records.into_iter().map(rejected_record).collect();
    let out = s.proposer.propose(Command::Reject { records }).await??;
    let Outcome::Submitted(results) = out else { return Err(unexpected(out)) };
    let created = results.iter().any(|r| !r.duplicate);
    let list: Vec<SubmittedOut> = results.iter().map(|r| SubmittedOut { id: r.id, duplicate: r.duplicate }).collect();
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "tasks": list }))).into_response())
}

/// An adapter (ingest or export, embedded or a separate process) reports its status; the leader
/// keeps the latest report of each in memory.
#[utoipa::path(
    put,
    path = "/v1/adapters/{name}",
    tag = "ingest",
    summary = "An adapter reports its status (lag, position, errors)",
    request_body = Object,
    params(
        ("name" = String, Path, description = "adapter name")
    ),
    responses(
        (status = 204, description = "kept"),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn report_adapter(
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<serde_json::Value>,
) -> ApiResult<StatusCode> {
    s.node.adapters.report(&name, b).map_err(ApiError::bad_request)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/v1/adapters",
    tag = "ingest",
    summary = "Ingest and export adapters and their last reports (kept by the leader)",
    responses(
        (status = 200, description = "adapters", body = Object)
    )
)]
pub(super) async fn list_adapters(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "adapters": s.node.adapters.list() }))
}

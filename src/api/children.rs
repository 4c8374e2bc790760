//! Parent and child tasks: a leased task submits children under its lease, and gives its lease
//! back to wait for them.

use super::answer::{task_answer, unexpected};
use super::error::ApiError;
use super::extract::{JsonBody, PathId};
use super::views::*;
use super::{ApiResult, AppState};
use crate::api::auth::Caller;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use minion_engine::{Command, FlowExt, Outcome, TaskFlow};

#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/children",
    tag = "agents",
    summary = "Submit children of a leased task under its lease (one atomic batch; members may depend on each other by idempotency key)",
    request_body = ChildrenIn,
    params(
        ("id" = u64, Path, description = "the parent task's id"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context kept with every child created")
    ),
    responses(
        (status = 201, description = "created", body = BatchOut),
        (status = 200, description = "every child was a duplicate of an earlier task with the same idempotency key", body = BatchOut),
        (status = 400, description = "invalid request or malformed JSON, or over 1,000 children", body = minion_client::wire::ErrorOut),
        (status = 404, description = "unknown parent (or one outside the token's queues)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "stale lease token, or the parent is not leased", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn spawn_children(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    headers: HeaderMap,
    JsonBody(b): JsonBody<ChildrenIn>,
) -> ApiResult<(StatusCode, Json<BatchOut>)> {
    let Path(id) = path?;
    caller.check_lease_holder(&s, id)?;
    if b.tasks.is_empty() {
        return Err(ApiError::bad_request("tasks: at least one child"));
    }
    for t in &b.tasks {
        caller.check_queue(&t.queue)?;
    }
    let mut flows = task_flows(&b.tasks).map_err(ApiError::bad_request)?;
    flows.resize_with(b.tasks.len(), TaskFlow::default);
    for f in &mut flows {
        f.ext.push(FlowExt::Parent(id));
        f.ext.push(FlowExt::ParentLease(b.lease_token));
    }
    let tasks = b.tasks.into_iter().map(new_task).collect();
    let trace_parent = crate::tracing_setup::trace_parent(&headers);
    let out = s.proposer.propose(Command::SubmitWith { tasks, flows, trace_parent }).await??;
    let Outcome::Submitted(results) = out else { return Err(unexpected(out)) };
    let status = if results.iter().any(|r| !r.duplicate) { StatusCode::CREATED } else { StatusCode::OK };
    let tasks = results.iter().map(|r| SubmittedOut { id: r.id, duplicate: r.duplicate }).collect();
    Ok((status, Json(BatchOut { tasks })))
}

#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/wait-children",
    tag = "agents",
    summary = "Give the lease back to wait for the task's unfinished children (state waiting_children; ready again, with their outcomes, once all have finished); with none unfinished the task stays leased",
    request_body = WaitChildrenIn,
    params(
        ("id" = u64, Path, description = "the parent task's id")
    ),
    responses(
        (status = 200, description = "the task: waiting_children, or still leased when no child is unfinished (its children show their outcomes)", body = TaskOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 404, description = "unknown task (or one outside the token's queues)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "stale lease token or wrong task state", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn wait_children(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    JsonBody(b): JsonBody<WaitChildrenIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    caller.check_lease_holder(&s, id)?;
    task_answer(&s, s.proposer.propose(Command::WaitChildren { task_id: id, lease_token: b.lease_token }).await??)
}

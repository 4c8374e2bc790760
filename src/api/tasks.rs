//! Producers' routes: submit, read, list, wait for, cancel and retry tasks.

use super::answer::{audited, task_answer, task_not_found, unexpected, view};
use super::error::ApiError;
use super::extract::{json_error, EmptyIn, OptionalJson, PathId};
use super::views::*;
use super::{ApiResult, AppState};
use crate::api::auth::Caller;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use minion_engine::legacy::TaskFlowV1;
use minion_engine::{Command, Outcome, Submitted, TaskFilter, TaskState};
use serde_json::json;
use std::time::Duration;

#[utoipa::path(
    post,
    path = "/v1/tasks",
    tag = "tasks",
    summary = "Submit one task, or {\"tasks\": [...]} as one atomic batch (up to 10,000)",
    request_body = minion_client::wire::SubmitIn,
    params(
        ("traceparent" = Option<String>, Header, description = "W3C trace context kept with every task created and handed to the agent that claims it")
    ),
    responses(
        (status = 201, description = "created (one task: SubmittedOut; a batch: BatchOut)", body = SubmittedOut),
        (status = 200, description = "every task was a duplicate of an earlier one with the same idempotency key", body = SubmittedOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn submit(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // `{"tasks": [...]}` is an atomic batch; anything else is one task.
    let (batch, tasks) = match serde_json::from_slice::<SubmitIn>(&body).map_err(json_error)? {
        SubmitIn::Batch(b) => (true, b.tasks),
        SubmitIn::One(t) => (false, vec![t]),
    };
    for t in &tasks {
        caller.check_queue(&t.queue)?;
    }
    let flows = task_flows(&tasks).map_err(ApiError::bad_request)?;
    let tasks = tasks.into_iter().map(new_task).collect();
    let trace_parent = crate::tracing_setup::trace_parent(&headers);
    // The oldest command that says it all, so that replicas of the release before concurrency
    // keys keep applying submits that do not use them (a rolling upgrade).
    let cmd = match (trace_parent, flows.is_empty()) {
        (trace_parent, false) if flows.iter().any(|f| !f.ext.is_empty()) => {
            Command::SubmitWith { tasks, flows, trace_parent }
        }
        (trace_parent, false) => {
            let flows = flows.iter().map(TaskFlowV1::from_current).collect();
            Command::SubmitFlow { tasks, flows, trace_parent }
        }
        (Some(trace_parent), true) => Command::SubmitTraced { tasks, trace_parent },
        (None, true) => Command::Submit { tasks },
    };
    let out = s.proposer.propose(cmd).await??;
    let Outcome::Submitted(results) = out else { return Err(unexpected(out)) };
    let to_out = |r: &Submitted| SubmittedOut { id: r.id, duplicate: r.duplicate };
    let created = results.iter().any(|r| !r.duplicate);
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    if batch {
        let list: Vec<SubmittedOut> = results.iter().map(to_out).collect();
        Ok((status, Json(json!({ "tasks": list }))).into_response())
    } else {
        let first = results.first().map(to_out).ok_or_else(|| unexpected(Outcome::Done))?;
        Ok((status, Json(first)).into_response())
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GetTaskQuery {
    /// Wait up to this long (capped by `claim_wait_ms_max`) for the task to finish.
    #[serde(default)]
    wait_ms: u64,
}

/// A task; with `wait_ms`, the answer comes once it is finished (succeeded, dead, cancelled or
/// rejected) or the wait is over, whichever is first.
#[utoipa::path(
    get,
    path = "/v1/tasks/{id}",
    tag = "tasks",
    summary = "A task with its attempts and progress history; with wait_ms, answered once it is finished or the wait is over",
    params(
        ("id" = u64, Path, description = "task id"),
        ("wait_ms" = Option<u64>, Query, description = "long-poll up to this long for the task to finish (at most the node's claim_wait_ms_max)")
    ),
    responses(
        (status = 200, description = "the task", body = TaskOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 404, description = "unknown task (or one outside the token's queues)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn get_task(
    State(s): State<AppState>,
    path: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    q: Result<Query<GetTaskQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    let Query(q) = q?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.min(s.config.claim_wait_ms_max));
    loop {
        // Registered before the read, so that a finish applied in between is not missed.
        let wait = (tokio::time::Instant::now() < deadline).then(|| s.waits.register(id));
        let live = s.state.read().engine.live_task(id).cloned();
        let rec = match live {
            Some(r) => r,
            None => minion_engine::task_record(s.state.records(), id)?.ok_or_else(|| task_not_found(id))?,
        };
        let Some(mut wait) = wait.filter(|_| !rec.state.is_terminal()) else {
            return Ok(Json(view(&s, rec)?));
        };
        tokio::select! {
            _ = &mut wait.rx => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/tasks",
    tag = "tasks",
    summary = "List tasks from the ledger with filters and cursor pagination (ascending id)",
    params(
        ListQuery
    ),
    responses(
        (status = 200, description = "a page", body = TaskList),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn list_tasks(
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<TaskList>> {
    let Query(q) = q?;
    let state = match q.state.as_deref() {
        Some(st) => Some(TaskState::parse(st).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown state {st:?}; one of waiting, ready, delayed, leased, succeeded, failed, dead, cancelled, rejected"
            ))
        })?),
        None => None,
    };
    let filter = TaskFilter {
        queue: q.queue,
        state,
        kind: q.kind,
        agent: q.agent,
        created_from_ms: q.created_from_ms,
        created_before_ms: q.created_before_ms,
        after: q.after,
        limit: q.limit.unwrap_or(100),
    };
    let shared = s.state.clone();
    let (tasks, next) = tokio::task::spawn_blocking(move || -> Result<_, minion_engine::ColdError> {
        let (recs, next) = minion_engine::list(shared.records(), &filter)?;
        let mut tasks = Vec::with_capacity(recs.len());
        for r in recs {
            tasks.push(super::answer::full_view(&shared, r)?);
        }
        Ok((tasks, next))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(Json(TaskList { tasks, next }))
}

#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/cancel",
    tag = "tasks",
    summary = "Cancel an unfinished task (a leased one loses its lease); an empty body is fine",
    request_body = CancelIn,
    params(
        ("id" = u64, Path, description = "task id")
    ),
    responses(
        (status = 200, description = "the cancelled task", body = TaskOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 404, description = "unknown task (or one outside the token's queues)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "stale lease token or wrong task state", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn cancel(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    OptionalJson(body): OptionalJson<CancelIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    let cmd = audited(&caller, Command::Cancel { task_id: id, reason: body.reason });
    task_answer(&s, s.proposer.propose(cmd).await??)
}

#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/retry",
    tag = "tasks",
    summary = "Make a dead, cancelled or failed task ready now; dead and cancelled tasks get max_attempts more attempts",
    params(
        ("id" = u64, Path, description = "task id")
    ),
    responses(
        (status = 200, description = "the task", body = TaskOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 404, description = "unknown task (or one outside the token's queues)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "stale lease token or wrong task state", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn retry(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    OptionalJson(_body): OptionalJson<EmptyIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    task_answer(&s, s.proposer.propose(audited(&caller, Command::Retry { task_id: id })).await??)
}

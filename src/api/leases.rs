//! Agents' work under leases: claim, progress, complete, fail, extend, batch acknowledgements.

use super::answer::{claimed, task_answer, unexpected};
use super::error::ApiError;
use super::extract::{JsonBody, PathId};
use super::views::*;
use super::{ApiResult, AppState};
use crate::api::auth::Caller;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use minion_engine::{Ack, Command, Outcome};
use serde_json::json;
use std::time::Duration;

#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/progress",
    tag = "agents",
    summary = "Report progress or partial output (kept as history, sent to event streams)",
    request_body = ProgressIn,
    params(
        ("id" = u64, Path, description = "task id")
    ),
    responses(
        (status = 200, description = "the task", body = TaskOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 404, description = "unknown task (or one outside the token's queues)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "stale lease token or wrong task state", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn progress(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    JsonBody(b): JsonBody<ProgressIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    caller.check_lease_holder(&s, id)?;
    let cmd = Command::Progress { task_id: id, lease_token: b.lease_token, percent: b.percent, message: b.message };
    task_answer(&s, s.proposer.propose(cmd).await??)
}

#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/complete",
    tag = "agents",
    summary = "Complete with a result",
    request_body = CompleteIn,
    params(
        ("id" = u64, Path, description = "task id")
    ),
    responses(
        (status = 200, description = "the task", body = TaskOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 404, description = "unknown task (or one outside the token's queues)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "stale lease token or wrong task state", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn complete(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    JsonBody(b): JsonBody<CompleteIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    caller.check_lease_holder(&s, id)?;
    let result = b.result.map(|r| r.get().to_string());
    task_answer(&s, s.proposer.propose(Command::Complete { task_id: id, lease_token: b.lease_token, result }).await??)
}

/// Complete or fail many leased tasks in one round trip. The request is checked whole (a
/// malformed item refuses all of it); then each acknowledgement stands alone: the answer lists,
/// in order, the task's new state or why that one changed nothing.
#[utoipa::path(
    post,
    path = "/v1/acks",
    tag = "agents",
    summary = "Complete or fail up to 1,000 leased tasks in one request; each succeeds or is refused on its own",
    request_body = AcksIn,
    responses(
        (status = 200, description = "one result per acknowledgement, in order", body = AcksOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn acknowledge(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<AcksIn>,
) -> ApiResult<Json<serde_json::Value>> {
    let max = minion_engine::config::limits::ACK_BATCH_MAX;
    if b.acks.is_empty() || b.acks.len() > max {
        return Err(ApiError::bad_request(format!("acks must hold 1 to {max} items")));
    }
    // A token bound to some agents acknowledges only their leases (all of the request or none).
    caller.check_lease_holders(&s, b.acks.iter().map(|a| a.id))?;
    let mut acks = Vec::with_capacity(b.acks.len());
    let mut ids = Vec::with_capacity(b.acks.len());
    for (i, a) in b.acks.into_iter().enumerate() {
        ids.push(a.id);
        acks.push(match (a.outcome, a.error) {
            (AckOutcome::Complete, None) => Ack::Complete {
                task_id: a.id,
                lease_token: a.lease_token,
                result: a.result.map(|r| r.get().to_string()),
            },
            (AckOutcome::Fail, Some(error)) if a.result.is_none() => {
                Ack::Fail { task_id: a.id, lease_token: a.lease_token, error }
            }
            (AckOutcome::Complete, Some(_)) => {
                return Err(ApiError::bad_request(format!("acks[{i}]: a complete carries no error")))
            }
            (AckOutcome::Fail, Some(_)) => {
                return Err(ApiError::bad_request(format!("acks[{i}]: a fail carries no result")))
            }
            (AckOutcome::Fail, None) => return Err(ApiError::bad_request(format!("acks[{i}]: a fail needs an error"))),
        });
    }
    let out = s.proposer.propose(Command::Acknowledge { acks }).await??;
    let Outcome::Batch(outs) = out else { return Err(unexpected(out)) };
    if outs.len() != ids.len() {
        return Err(unexpected(Outcome::Batch(outs)));
    }
    let results = ids
        .into_iter()
        .zip(outs)
        .map(|(id, r)| match r {
            Ok(Outcome::Task(t)) => Ok(AckOut { id, ok: true, state: Some(state_out(t.state)), error: None }),
            Ok(other) => Err(unexpected(other)),
            Err(r) => {
                let (_, code) = super::error::rejection_code(r.code);
                Ok(AckOut {
                    id,
                    ok: false,
                    state: None,
                    error: Some(ErrorBody { code: code.to_string(), message: r.message }),
                })
            }
        })
        .collect::<ApiResult<Vec<AckOut>>>()?;
    Ok(Json(json!({ "results": results })))
}

#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/fail",
    tag = "agents",
    summary = "Fail the attempt: retry after backoff, or dead after the last attempt",
    request_body = FailIn,
    params(
        ("id" = u64, Path, description = "task id")
    ),
    responses(
        (status = 200, description = "the task", body = TaskOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 404, description = "unknown task (or one outside the token's queues)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "stale lease token or wrong task state", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn fail(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    JsonBody(b): JsonBody<FailIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    caller.check_lease_holder(&s, id)?;
    task_answer(
        &s,
        s.proposer.propose(Command::Fail { task_id: id, lease_token: b.lease_token, error: b.error }).await??,
    )
}

#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/extend",
    tag = "agents",
    summary = "Extend the lease from now by lease_ms (default: the task's lease_ms)",
    request_body = ExtendIn,
    params(
        ("id" = u64, Path, description = "task id")
    ),
    responses(
        (status = 200, description = "the task", body = TaskOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 404, description = "unknown task (or one outside the token's queues)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "stale lease token or wrong task state", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn extend(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    JsonBody(b): JsonBody<ExtendIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    caller.check_lease_holder(&s, id)?;
    task_answer(
        &s,
        s.proposer.propose(Command::Extend { task_id: id, lease_token: b.lease_token, lease_ms: b.lease_ms }).await??,
    )
}

/// Lease up to `max` tasks, long-polling up to `wait_ms` when none is ready.
///
/// The claim first goes to the engine (which validates it and leases what is ready). If that finds
/// nothing, the agent waits in the leader's dispatch hub: when tasks become ready, the queue's
/// strategy picks among the waiting agents. A claim also counts as a heartbeat.
#[utoipa::path(
    post,
    path = "/v1/claims",
    tag = "agents",
    summary = "Lease up to max ready tasks, long-polling up to wait_ms",
    request_body = ClaimIn,
    responses(
        (status = 200, description = "leased tasks (possibly none)", body = ClaimOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn claim(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<ClaimIn>,
) -> ApiResult<Json<serde_json::Value>> {
    for q in &b.queues {
        caller.check_queue(q)?;
    }
    // Nothing about the agent is kept (not even its liveness) before its id is known to be valid.
    minion_engine::config::validate_agent_id(&b.agent_id)?;
    caller.check_agent(&s, &b.agent_id)?;
    let wait = Duration::from_millis(b.wait_ms.min(s.config.claim_wait_ms_max));
    let out = s.hub.claim(&b.agent_id, &b.queues, &b.capabilities, b.max, wait).await??;
    let Outcome::Claimed(tasks) = out else { return Err(unexpected(out)) };
    claimed(&s, tasks).map(Json)
}

//! How handlers turn the engine's outcomes into answers (and audit administrative commands).

use super::error::ApiError;
use super::views::*;
use super::{ApiResult, AppState};
use crate::api::auth::Caller;
use axum::http::StatusCode;
use axum::Json;
use minion_engine::{Command, Outcome, TaskRecord};
use serde_json::json;

pub(super) fn task_not_found(id: u64) -> ApiError {
    ApiError::not_found(format!("task {id} not found"))
}

pub(super) fn unexpected(out: Outcome) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected engine outcome {out:?}"))
}

/// The API's view of a task record: its payload and progress read back from the records.
pub(super) fn view(s: &AppState, rec: TaskRecord) -> ApiResult<TaskOut> {
    Ok(full_view(&s.state, rec)?)
}

/// A task with its payload, progress and dependencies read back from the records.
pub(super) fn full_view(
    state: &minion_raft::SharedState,
    rec: TaskRecord,
) -> Result<TaskOut, minion_engine::ColdError> {
    let trace = rec.trace_parent.clone();
    let mut rec = rec;
    let flow = rec.flow.take();
    let mut out = task_out(&state.view(rec)?, trace);
    flow_out(&mut out, state.records(), flow.as_deref())?;
    Ok(out)
}

pub(super) fn task_answer(s: &AppState, out: Outcome) -> ApiResult<Json<TaskOut>> {
    match out {
        Outcome::Task(t) => Ok(Json(view(s, *t)?)),
        other => Err(unexpected(other)),
    }
}

/// An administrative command, recorded in the audit trail under the caller's name.
pub(super) fn audited(caller: &Caller, cmd: Command) -> Command {
    Command::Audited { actor: caller.actor(), cmd: Box::new(cmd) }
}

/// A claim's answer: the leased tasks with their payloads, each with its trace context.
pub(super) fn claimed(s: &AppState, tasks: Vec<TaskRecord>) -> ApiResult<serde_json::Value> {
    let tasks: Vec<TaskOut> = tasks.into_iter().map(|t| view(s, t)).collect::<ApiResult<_>>()?;
    Ok(json!({ "tasks": tasks }))
}

pub(super) fn agent_json(s: &AppState, a: &minion_engine::Agent) -> serde_json::Value {
    serde_json::to_value(agent_out(a, s.hub.last_seen_ms_ago(&a.id))).unwrap_or(serde_json::Value::Null)
}

pub(super) fn agent_answer(s: &AppState, out: Outcome) -> ApiResult<Json<serde_json::Value>> {
    match out {
        Outcome::Agent(a) => Ok(Json(agent_json(s, &a))),
        other => Err(unexpected(other)),
    }
}

//! Schedules: tasks created from a template on a cron expression or a fixed interval.

use super::answer::audited;
use super::error::ApiError;
use super::extract::JsonBody;
use super::{ApiResult, AppState};
use crate::api::auth::Caller;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use minion_client::wire::{MissedPolicy, ScheduleIn, ScheduleList, ScheduleOut, ScheduledTask, TaskIn};
use minion_engine::schedule::{Missed, Schedule, ScheduleDef};
use minion_engine::Command;
use serde_json::value::RawValue;

/// The engine's definition of a schedule from the wire's.
fn def(name: String, s: ScheduleIn) -> ApiResult<ScheduleDef> {
    let missed = match (s.missed, s.catch_up) {
        (MissedPolicy::Skip, None) => Missed::Skip,
        (MissedPolicy::Skip, Some(_)) => return Err(ApiError::bad_request("catch_up goes with missed: catch_up")),
        (MissedPolicy::CatchUp, n) => Missed::CatchUp(n.unwrap_or(1)),
    };
    let t = s.task;
    Ok(ScheduleDef {
        name,
        cron: s.cron,
        every_ms: s.every_ms,
        timezone: s.timezone,
        task: super::views::new_task(TaskIn {
            queue: t.queue,
            kind: t.kind,
            payload: t.payload,
            capabilities: t.capabilities,
            priority: t.priority,
            max_attempts: t.max_attempts,
            lease_ms: t.lease_ms,
            stall_timeout_ms: t.stall_timeout_ms,
            ..TaskIn::default()
        }),
        missed,
        paused: s.paused,
    })
}

fn view(s: &Schedule) -> ScheduleOut {
    let d = &s.def;
    let (missed, catch_up) = match d.missed {
        Missed::Skip => (MissedPolicy::Skip, None),
        Missed::CatchUp(n) => (MissedPolicy::CatchUp, Some(n)),
    };
    ScheduleOut {
        name: d.name.clone(),
        cron: d.cron.clone(),
        timezone: d.timezone.clone(),
        every_ms: d.every_ms,
        task: ScheduledTask {
            queue: d.task.queue.clone(),
            kind: d.task.kind.clone(),
            // Stored as the JSON text the API checked.
            payload: RawValue::from_string(d.task.payload.clone()).ok(),
            capabilities: d.task.capabilities.clone(),
            priority: d.task.priority,
            max_attempts: d.task.max_attempts,
            lease_ms: d.task.lease_ms,
            stall_timeout_ms: d.task.stall_timeout_ms,
        },
        missed,
        catch_up,
        paused: d.paused,
        set_ms: s.set_ms,
        next_ms: s.next_ms,
        last_run_ms: s.last_run_ms,
        last_task_id: s.last_task_id,
        fired: s.fired,
        skipped: s.skipped,
        last_error: s.last_error.clone(),
    }
}

#[utoipa::path(
    get,
    path = "/v1/schedules",
    tag = "schedules",
    summary = "Every schedule with its next due time, last run and counts",
    responses(
        (status = 200, description = "schedules, by name", body = minion_client::wire::ScheduleList)
    )
)]
pub(super) async fn list_schedules(State(s): State<AppState>) -> Json<ScheduleList> {
    let g = s.state.read();
    Json(ScheduleList { schedules: g.engine.schedules().map(view).collect() })
}

#[utoipa::path(
    get,
    path = "/v1/schedules/{name}",
    tag = "schedules",
    summary = "One schedule with its next due time, last run and counts",
    params(
        ("name" = String, Path, description = "schedule name")
    ),
    responses(
        (status = 200, description = "the schedule", body = minion_client::wire::ScheduleOut),
        (status = 404, description = "no such schedule", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn get_schedule(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<ScheduleOut>> {
    let g = s.state.read();
    let found = g.engine.schedule(&name).ok_or_else(|| ApiError::not_found(format!("no schedule {name}")))?;
    Ok(Json(view(found)))
}

#[utoipa::path(
    put,
    path = "/v1/schedules/{name}",
    tag = "schedules",
    summary = "Create or replace a schedule (a replaced one keeps its counts; its times start again from now)",
    request_body = minion_client::wire::ScheduleIn,
    params(
        ("name" = String, Path, description = "schedule name")
    ),
    responses(
        (status = 200, description = "the schedule", body = minion_client::wire::ScheduleOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn put_schedule(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ScheduleIn>,
) -> ApiResult<Json<ScheduleOut>> {
    let cmd = Command::PutSchedule { def: def(name.clone(), body)? };
    s.proposer.propose(audited(&caller, cmd)).await??;
    get_schedule(State(s), Path(name)).await
}

#[utoipa::path(
    delete,
    path = "/v1/schedules/{name}",
    tag = "schedules",
    summary = "Delete a schedule (the tasks it created stay)",
    params(
        ("name" = String, Path, description = "schedule name")
    ),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such schedule", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn delete_schedule(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.proposer.propose(audited(&caller, Command::DeleteSchedule { name })).await??;
    Ok(StatusCode::NO_CONTENT)
}

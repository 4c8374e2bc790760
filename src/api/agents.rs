//! The agent registry's routes: register, list, heartbeat, drain, deregister.

use super::answer::{agent_answer, agent_json, audited};
use super::error::ApiError;
use super::extract::{JsonBody, OptionalJson};
use super::views::*;
use super::{ApiResult, AppState};
use crate::api::auth::Caller;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use minion_engine::Command;
use serde_json::json;

#[utoipa::path(
    post,
    path = "/v1/agents",
    tag = "agents",
    summary = "Register an agent (again: a new incarnation, releasing the old one's leases)",
    request_body = AgentIn,
    responses(
        (status = 201, description = "the agent", body = AgentOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn register_agent(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<AgentIn>,
) -> ApiResult<Response> {
    caller.check_agent(&s, &b.id)?;
    let spec = minion_engine::AgentSpec {
        id: b.id.clone(),
        name: if b.name.is_empty() { b.id.clone() } else { b.name },
        capabilities: b.capabilities,
        max_concurrency: b.max_concurrency,
        labels: b.labels,
    };
    let out = s.proposer.propose(Command::RegisterAgent { spec }).await??;
    s.hub.seen(&b.id);
    let body = agent_answer(&s, out)?;
    Ok((StatusCode::CREATED, body).into_response())
}

#[derive(serde::Deserialize)]
pub(super) struct AgentsQuery {
    /// Agents per page (default and most: [`AGENTS_PAGE_MAX`]).
    limit: Option<usize>,
    /// The `next` of the page before: agents after this id.
    after: Option<String>,
}

pub(super) const AGENTS_PAGE_MAX: usize = 1_000;

/// Agents in id order, a page at a time; `next` is set when there are more.
#[utoipa::path(
    get,
    path = "/v1/agents",
    tag = "agents",
    summary = "Registered agents in id order with status and statistics, a page at a time",
    params(
        ("limit" = Option<usize>, Query, description = "1..1000, default 1000"),
        ("after" = Option<String>, Query, description = "the next of the page before")
    ),
    responses(
        (status = 200, description = "agents", body = AgentList),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn list_agents(
    State(s): State<AppState>,
    q: Result<Query<AgentsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(AGENTS_PAGE_MAX).clamp(1, AGENTS_PAGE_MAX);
    let g = s.state.read();
    let mut page: Vec<&minion_engine::Agent> = g.engine.agents_after(q.after.as_deref()).take(limit + 1).collect();
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|a| a.id.clone())
    } else {
        None
    };
    let agents: Vec<serde_json::Value> = page.into_iter().map(|a| agent_json(&s, a)).collect();
    Ok(Json(json!({ "agents": agents, "next": next })))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{id}",
    tag = "agents",
    summary = "One agent",
    params(
        ("id" = String, Path, description = "agent id")
    ),
    responses(
        (status = 200, description = "the agent", body = AgentOut),
        (status = 404, description = "unknown agent", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn get_agent(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    let g = s.state.read();
    let a = g.engine.agent(&id).ok_or_else(|| ApiError::not_found(format!("agent {id} not found")))?;
    Ok(Json(agent_json(&s, a)))
}

/// Liveness only: no log write. Refused for an unknown, dead or replaced incarnation.
#[utoipa::path(
    post,
    path = "/v1/agents/{id}/heartbeat",
    tag = "agents",
    summary = "Liveness (kept on the leader, not written to the log)",
    request_body = HeartbeatIn,
    params(
        ("id" = String, Path, description = "agent id")
    ),
    responses(
        (status = 200, description = "alive", body = Object),
        (status = 404, description = "unknown agent", body = minion_client::wire::ErrorOut),
        (status = 409, description = "dead or stale incarnation", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn heartbeat(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson<HeartbeatIn>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.check_agent(&s, &id)?;
    let (status, incarnation) = {
        let g = s.state.read();
        let a = g.engine.agent(&id).ok_or_else(|| ApiError::not_found(format!("agent {id} not found")))?;
        (a.status, a.incarnation)
    };
    if status == minion_engine::AgentStatus::Dead {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong_state",
            format!("agent {id} is dead; register it again"),
        ));
    }
    if b.incarnation.is_some_and(|i| i != incarnation) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "stale_incarnation",
            format!("agent {id} is now incarnation {incarnation}; register again"),
        ));
    }
    s.hub.seen(&id);
    Ok(Json(json!({ "id": id, "status": status, "incarnation": incarnation })))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{id}/drain",
    tag = "agents",
    summary = "Give the agent nothing new; it keeps its in-flight tasks",
    params(
        ("id" = String, Path, description = "agent id")
    ),
    responses(
        (status = 200, description = "the agent", body = AgentOut),
        (status = 404, description = "unknown agent", body = minion_client::wire::ErrorOut),
        (status = 409, description = "dead", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn drain_agent(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.check_agent(&s, &id)?;
    let out = s.proposer.propose(audited(&caller, Command::DrainAgent { id })).await??;
    agent_answer(&s, out)
}

#[utoipa::path(
    delete,
    path = "/v1/agents/{id}",
    tag = "agents",
    summary = "Deregister: release its leases at once and forget it",
    params(
        ("id" = String, Path, description = "agent id")
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 404, description = "unknown agent", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn deregister_agent(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.check_agent(&s, &id)?;
    s.proposer.propose(audited(&caller, Command::DeregisterAgent { id })).await??;
    Ok(StatusCode::NO_CONTENT)
}

//! Queues (settings, counts, KEDA's depth) and the autoscaler's pools and decisions.

use super::answer::audited;
use super::error::ApiError;
use super::extract::JsonBody;
use super::{ApiResult, AppState};
use crate::api::auth::Caller;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use minion_client::wire::{LimitsIn, LimitsOut, RateSpec};
use minion_engine::rate::Rate;
use minion_engine::{Command, KeyLimits, QueueConfig};
use serde_json::json;

#[utoipa::path(
    get,
    path = "/v1/queues",
    tag = "queues",
    summary = "Every queue with its counts by state and oldest ready age",
    responses(
        (status = 200, description = "queues", body = Object)
    )
)]
pub(super) async fn list_queues(State(s): State<AppState>) -> Json<serde_json::Value> {
    let g = s.state.read();
    let stats: Vec<_> = g.engine.queue_names().iter().map(|q| g.engine.queue_stats(q)).collect();
    Json(json!({ "queues": stats }))
}

#[utoipa::path(
    get,
    path = "/v1/queues/{name}",
    tag = "queues",
    summary = "A queue's effective configuration, its overrides and stats",
    params(
        ("name" = String, Path, description = "queue name")
    ),
    responses(
        (status = 200, description = "the queue", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn get_queue(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    minion_engine::config::validate_queue_name(&name)?;
    let g = s.state.read();
    Ok(Json(json!({
        "name": name,
        "config": g.engine.queue_settings(&name),
        "overrides": g.engine.queue_config(&name).cloned().unwrap_or_default(),
        "stats": g.engine.queue_stats(&name),
    })))
}

/// One queue's depth in the flat shape KEDA's metrics-api scaler reads (`valueLocation: ready`,
/// or `backlog` for ready + delayed + leased). An unknown or empty queue reads 0.
#[utoipa::path(
    get,
    path = "/v1/metrics/queues/{name}",
    tag = "operations",
    summary = "One queue's depth as flat numbers for KEDA's metrics-api scaler (0 for an unknown or empty queue)",
    params(
        ("name" = String, Path, description = "queue name")
    ),
    responses(
        (status = 200, description = "ready, delayed, in_flight, backlog, oldest_ready_age_seconds", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn queue_metric(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    minion_engine::config::validate_queue_name(&name)?;
    let g = s.state.read();
    let st = g.engine.queue_stats(&name);
    Ok(Json(json!({
        "queue": name,
        "ready": st.ready,
        "delayed": st.delayed,
        "in_flight": st.leased,
        "backlog": st.ready + st.delayed + st.leased,
        "oldest_ready_age_seconds": st.oldest_ready_age_ms as f64 / 1000.0,
    })))
}

#[utoipa::path(
    put,
    path = "/v1/queues/{name}",
    tag = "queues",
    summary = "Replace a queue's overrides (fields left out use the engine defaults)",
    request_body = minion_engine::QueueConfig,
    params(
        ("name" = String, Path, description = "queue name")
    ),
    responses(
        (status = 200, description = "the queue", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn put_queue(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(config): JsonBody<QueueConfig>,
) -> ApiResult<Json<serde_json::Value>> {
    s.proposer.propose(audited(&caller, Command::SetQueue { name: name.clone(), config })).await??;
    get_queue(State(s), Path(name)).await
}

#[utoipa::path(
    get,
    path = "/v1/queues/{name}/limits",
    tag = "queues",
    summary = "A queue's concurrency and rate limits and fairness, leased tasks per key and keys at their limit",
    params(
        ("name" = String, Path, description = "queue name")
    ),
    responses(
        (status = 200, description = "the limits", body = minion_client::wire::LimitsOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn get_limits(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<LimitsOut>> {
    minion_engine::config::validate_queue_name(&name)?;
    let v = s.state.read().engine.queue_limits(&name);
    let spec = |r: Rate| RateSpec { starts: r.starts, period_ms: r.period_ms };
    Ok(Json(LimitsOut {
        queue: name,
        concurrency_per_key: v.limits.per_key,
        key_concurrency: v.limits.overrides,
        rate: v.limits.queue_rate.map(spec),
        rate_per_key: v.limits.key_rate.map(spec),
        key_rate: v.limits.key_rates.into_iter().map(|(k, r)| (k, spec(r))).collect(),
        leased_by_key: v.leased,
        keys_at_limit: v.keys_at_limit as u64,
        keys_rate_limited: v.keys_rate_limited as u64,
        rate_limited_until_ms: v.queue_rate_limited_until_ms,
        fair: v.limits.fair,
        last_served_key: v.last_served_key,
    }))
}

#[utoipa::path(
    put,
    path = "/v1/queues/{name}/limits",
    tag = "queues",
    summary = "Replace a queue's concurrency and rate limits and fairness (an empty object removes them)",
    request_body = minion_client::wire::LimitsIn,
    params(
        ("name" = String, Path, description = "queue name")
    ),
    responses(
        (status = 200, description = "the limits", body = minion_client::wire::LimitsOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn put_limits(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<LimitsIn>,
) -> ApiResult<Json<LimitsOut>> {
    let rate = |r: RateSpec| Rate { starts: r.starts, period_ms: r.period_ms };
    let limits = KeyLimits {
        per_key: body.concurrency_per_key,
        overrides: body.key_concurrency,
        queue_rate: body.rate.map(rate),
        key_rate: body.rate_per_key.map(rate),
        key_rates: body.key_rate.into_iter().map(|(k, r)| (k, rate(r))).collect(),
        fair: body.fair,
    };
    let cmd = Command::SetLimits { queue: name.clone(), rules: limits.to_rules() };
    s.proposer.propose(audited(&caller, cmd)).await??;
    get_limits(State(s), Path(name)).await
}

/// Every pool's desired and current worker count and last decision, keyed by pool name, so that
/// KEDA's metrics-api scaler can read `pools.<name>.desired`.
#[utoipa::path(
    get,
    path = "/v1/autoscaler",
    tag = "autoscaler",
    summary = "Every configured pool's desired and current workers and last decision, keyed by pool name",
    responses(
        (status = 200, description = "pools", body = Object)
    )
)]
pub(super) async fn autoscaler(State(s): State<AppState>) -> Json<serde_json::Value> {
    let pools: serde_json::Map<String, serde_json::Value> = s
        .node
        .autoscalers
        .views()
        .into_iter()
        .map(|v| (v.name.clone(), serde_json::to_value(&v).unwrap_or(serde_json::Value::Null)))
        .collect();
    Json(json!({ "pools": pools }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionsQuery {
    pool: String,
    limit: Option<usize>,
}

/// A pool's decisions, newest first.
#[utoipa::path(
    get,
    path = "/v1/autoscaler/decisions",
    tag = "autoscaler",
    summary = "A pool's decisions, newest first: desired, previous, rule, inputs",
    params(
        ("pool" = Option<String>, Query, description = "the pool"),
        ("limit" = Option<usize>, Query, description = "how many")
    ),
    responses(
        (status = 200, description = "decisions", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn autoscaler_decisions(
    State(s): State<AppState>,
    q: Result<Query<DecisionsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100).clamp(1, crate::autoscaler::DECISIONS_KEPT);
    let decisions = s
        .node
        .autoscalers
        .decisions(&q.pool, limit)
        .ok_or_else(|| ApiError::not_found(format!("pool {} is not configured", q.pool)))?;
    Ok(Json(json!({ "pool": q.pool, "decisions": decisions })))
}

//! Health, readiness, metrics, statistics and the OpenAPI document.

use super::error::ApiError;
use super::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The OpenAPI document, checked in at `docs/openapi.json` and served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "operations",
    summary = "Engine, dedup, raft and storage figures",
    responses(
        (status = 200, description = "figures", body = Object)
    )
)]
pub(super) async fn stats(State(s): State<AppState>) -> Json<serde_json::Value> {
    let m = s.node.raft.metrics().borrow().clone();
    let g = s.state.read();
    let queues: Vec<_> = g.engine.queue_names().iter().map(|q| g.engine.queue_stats(q)).collect();
    Json(json!({
        "tasks": g.engine.task_count(),
        "live_tasks": g.engine.live_count(),
        "queues": queues,
        "dedup": { "keys": g.engine.dedup_keys(), "stats": g.engine.dedup_stats() },
        "counters": g.engine.counters(),
        "raft": {
            "node_id": s.config.node_id,
            "leader": m.current_leader,
            "term": m.current_term,
            "last_log_index": m.last_log_index,
            "applied_index": m.last_applied.map(|l| l.index),
            "snapshot_index": m.snapshot.map(|l| l.index),
        },
        "storage": {
            "durability": s.config.durability.as_str(),
            "state_bytes": s.node.storage.store.size_on_disk(),
            "log_bytes": s.node.log.wal_bytes(),
            "overlay_bytes": s.state.records().overlay().bytes(),
        },
    }))
}

#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    summary = "This document",
    responses(
        (status = 200, description = "the OpenAPI document", body = Object)
    )
)]
pub(super) async fn openapi() -> impl IntoResponse {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    (h, OPENAPI)
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness: the process answers",
    responses(
        (status = 200, description = "ok", body = Object)
    )
)]
pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when this node knows a leader and has applied what it has committed.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: the node has a leader and has applied what it knows to be committed",
    responses(
        (status = 200, description = "ready", body = Object),
        (status = 503, description = "not ready", body = Object)
    )
)]
pub(super) async fn readyz(State(s): State<AppState>) -> Response {
    let m = s.node.raft.metrics().borrow().clone();
    let leader = m.current_leader;
    if leader.is_none() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "no known leader").into_response();
    }
    Json(json!({ "status": "ready", "leader": leader, "applied_index": m.last_applied.map(|l| l.index) }))
        .into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "text exposition format", body = String, content_type = "text/plain")
    )
)]
pub(super) async fn prometheus(State(s): State<AppState>) -> impl IntoResponse {
    let text = crate::metrics::render(&s.metrics, &s.node);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

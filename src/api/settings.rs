//! The cluster's engine settings (`/v1/config`): replicated state, changed only here (audited,
//! admin only) or by a new cluster's first leader from its configuration file.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use minion_engine::{Command, EngineConfig};
use serde_json::json;

use super::answer::audited;
use super::error::ApiError;
use super::extract::JsonBody;
use super::{ApiResult, AppState};
use crate::api::auth::Caller;

/// The engine settings every node applies, and whether this node's file says otherwise.
#[utoipa::path(
    get,
    path = "/v1/config",
    tag = "operations",
    summary = "The engine settings the cluster applies (the defaults of every queue)",
    responses(
        (status = 200, description = "engine and this_node_file_differs", body = Object)
    )
)]
pub async fn get_config(State(s): State<AppState>) -> Json<serde_json::Value> {
    let engine = s.state.read().engine.config().clone();
    let differs = engine != s.config.engine;
    Json(json!({ "engine": engine, "this_node_file_differs": differs }))
}

/// Change some engine settings: the fields given replace the cluster's, the rest stay.
#[utoipa::path(
    put,
    path = "/v1/config",
    tag = "operations",
    summary = "Change engine settings: the fields given replace the cluster's, the rest stay (audited)",
    request_body = minion_engine::EngineConfig,
    responses(
        (status = 200, description = "the settings", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn put_config(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(changes): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Json<serde_json::Value>> {
    let current = s.state.read().engine.config().clone();
    let mut merged = match serde_json::to_value(&current) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => {
            let msg = "the engine settings are not a JSON object";
            return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg));
        }
    };
    merged.extend(changes);
    let config: EngineConfig = serde_json::from_value(serde_json::Value::Object(merged))
        .map_err(|e| ApiError::bad_request(format!("engine settings: {e}")))?;
    config.validate()?;
    s.proposer.propose(audited(&caller, Command::Configure { config })).await??;
    Ok(get_config(State(s)).await)
}

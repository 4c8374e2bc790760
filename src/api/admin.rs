//! Tokens and the audit trail (admin only; the route check is in [`crate::auth`]).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use minion_engine::{AuditEntry, Command, Role, Token};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ApiError;
use super::extract::JsonBody;
use super::{ApiResult, AppState};
use crate::api::auth::{bearer, sha256, Caller};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    pub name: String,
    /// admin, producer, worker, reader or metrics.
    pub role: String,
    #[serde(default)]
    pub queues: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    /// Agent-id patterns (`*` any run of characters) the token may act as when it claims,
    /// registers, heartbeats, drains or acknowledges; empty: any agent.
    #[serde(default)]
    pub agents: Vec<String>,
    /// The token stops working this long after it was created.
    pub expires_in_ms: Option<u64>,
    pub rate_per_sec: Option<u32>,
}

/// A token as listed: never its secret or the secret's hash.
#[derive(Debug, Serialize)]
pub struct TokenOut<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub role: &'static str,
    pub queues: &'a [String],
    pub deny: &'a [String],
    pub created_ms: u64,
    pub created_by: &'a str,
    pub expires_ms: Option<u64>,
    pub revoked_ms: Option<u64>,
    pub rate_per_sec: Option<u32>,
    /// Agent-id patterns it may act as; empty: any agent.
    pub agents: Vec<String>,
    /// Neither revoked nor expired.
    pub active: bool,
}

fn token_out<'a>(engine: &minion_engine::State, t: &'a Token, now: u64) -> TokenOut<'a> {
    TokenOut {
        id: &t.id,
        name: &t.name,
        role: t.role.as_str(),
        queues: &t.queues,
        deny: &t.deny,
        created_ms: t.created_ms,
        created_by: &t.created_by,
        expires_ms: t.expires_ms,
        revoked_ms: t.revoked_ms,
        rate_per_sec: t.rate_per_sec,
        agents: engine.token_agents(&t.id).map(|a| a.to_vec()).unwrap_or_default(),
        active: t.active(now),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Create a token; the answer holds its bearer value, which is shown this once and kept nowhere.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "admin",
    summary = "Create an API token (the answer's token is shown once)",
    request_body = TokenIn,
    responses(
        (status = 201, description = "the token with its bearer value", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn create_token(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<TokenIn>,
) -> ApiResult<Response> {
    let role = Role::parse(&b.role).ok_or_else(|| {
        ApiError::bad_request(format!("unknown role {:?}; one of admin, producer, worker, reader, metrics", b.role))
    })?;
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let (id, secret) = (hex(&id), hex(&secret));
    let now = crate::clock::now_ms();
    let token = Token {
        id: id.clone(),
        name: b.name,
        role,
        queues: b.queues,
        deny: b.deny,
        secret_sha256: sha256(&secret),
        created_ms: now,
        created_by: caller.actor(),
        expires_ms: b.expires_in_ms.map(|d| now.saturating_add(d)),
        revoked_ms: None,
        rate_per_sec: b.rate_per_sec,
    };
    token.validate().map_err(ApiError::bad_request)?;
    minion_engine::access::validate_agent_patterns(&b.agents).map_err(ApiError::bad_request)?;
    let create = if b.agents.is_empty() {
        Command::CreateToken { token: token.clone() }
    } else {
        Command::CreateBoundToken { token: token.clone(), agents: b.agents }
    };
    let cmd = Command::Audited { actor: caller.actor(), cmd: Box::new(create) };
    s.proposer.propose(cmd).await??;
    let mut out = serde_json::to_value(token_out(&s.state.read().engine, &token, now)).unwrap_or_default();
    out["token"] = json!(bearer(&id, &secret));
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "admin",
    summary = "Every token (never a secret)",
    responses(
        (status = 200, description = "tokens", body = Object)
    )
)]
pub async fn list_tokens(State(s): State<AppState>) -> Json<serde_json::Value> {
    let now = crate::clock::now_ms();
    let g = s.state.read();
    let tokens: Vec<TokenOut<'_>> = g.engine.tokens().map(|t| token_out(&g.engine, t, now)).collect();
    Json(json!({ "tokens": tokens }))
}

#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    tag = "admin",
    summary = "Revoke a token on every node",
    params(
        ("id" = String, Path, description = "token id")
    ),
    responses(
        (status = 200, description = "the token, inactive", body = Object),
        (status = 404, description = "unknown token", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn revoke_token(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let cmd = Command::Audited { actor: caller.actor(), cmd: Box::new(Command::RevokeToken { id: id.clone() }) };
    s.proposer.propose(cmd).await??;
    let now = crate::clock::now_ms();
    let g = s.state.read();
    let t = g.engine.token(&id).ok_or_else(|| ApiError::not_found(format!("no token {id}")))?;
    Ok(Json(serde_json::to_value(token_out(&g.engine, t, now)).unwrap_or_default()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries after this sequence number.
    #[serde(default)]
    pub after: u64,
    pub limit: Option<usize>,
}

/// The audit trail, oldest first, in pages (`next` is the `after` of the next page).
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "admin",
    summary = "The audit trail of administrative actions, oldest first",
    params(
        ("after" = Option<u64>, Query, description = "entries after this sequence number"),
        ("limit" = Option<usize>, Query, description = "how many")
    ),
    responses(
        (status = 200, description = "entries", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn audit(
    State(s): State<AppState>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    let g = s.state.read();
    let entries: Vec<&AuditEntry> = g.engine.audit_after(q.after).take(limit + 1).collect();
    let next = (entries.len() > limit).then(|| entries[limit - 1].seq);
    Ok(Json(json!({ "entries": &entries[..entries.len().min(limit)], "next": next })))
}

/// Record an administrative action done outside the engine (membership changes).
pub async fn note(s: &AppState, caller: &Caller, action: &str, target: String, detail: String) {
    let cmd = Command::AuditNote { actor: caller.actor(), action: action.to_string(), target, detail };
    if let Err(e) = s.proposer.propose(cmd).await {
        tracing::warn!(action, error = %e, "could not record an audit entry");
    }
}

/// Who the presented token is: its role and queue patterns (any role may ask).
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "operations",
    summary = "The caller's role and queue patterns, as the node identifies its token",
    responses(
        (status = 200, description = "the caller", body = minion_client::wire::WhoAmIOut),
        (status = 401, description = "no token, or an unknown, expired or revoked one", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn whoami(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<minion_client::wire::WhoAmIOut> {
    let (name, queues, deny) = match &caller {
        Caller::Anonymous => ("anonymous".to_string(), Vec::new(), Vec::new()),
        Caller::AdminToken => ("admin".to_string(), Vec::new(), Vec::new()),
        Caller::Token(t) => (t.name.clone(), t.queues.clone(), t.deny.clone()),
    };
    Json(minion_client::wire::WhoAmIOut {
        auth: s.auth.enabled,
        role: caller.role().as_str().to_string(),
        name,
        queues,
        deny,
    })
}

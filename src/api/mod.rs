//! The v1 HTTP API (axum). Reads come from the applied state; writes go through raft.

pub mod admin;
pub mod backup;
pub mod cluster;
pub mod error;
pub mod events;
pub mod openapi;
pub mod settings;
pub mod views;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use minion_engine::{Ack, Command, Outcome, QueueConfig, Submitted, TaskFilter, TaskRecord, TaskState};
use serde::de::DeserializeOwned;
use serde_json::json;
use serde_json::value::RawValue;

pub use error::ApiError;
use views::*;

use crate::auth::Caller;
use crate::node::Node;

/// The OpenAPI document, checked in at `docs/openapi.json` and served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// What every handler reads. Shared behind one `Arc`: axum clones the state for each request,
/// and cloning the node's handles field by field was a tenth of a submit's CPU.
pub type AppState = std::sync::Arc<App>;

pub struct App {
    pub node: Node,
    pub metrics: PrometheusHandle,
    /// Forwards requests to the leader and probes peers (keep-alive connections).
    pub http: reqwest::Client,
    /// Authentication and per-token rate limits.
    pub auth: std::sync::Arc<crate::auth::Auth>,
    /// The open event streams (closed at shutdown).
    pub events: std::sync::Arc<events::Streams>,
}

type ApiResult<T> = Result<T, ApiError>;

/// JSON body extractor whose rejections use the API's error shape.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(ApiError::from(e)),
        }
    }
}

/// Like [`JsonBody`], but an empty body means `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| error::body_error(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        serde_json::from_slice(&bytes).map(OptionalJson).map_err(json_error)
    }
}

fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::bad_request(format!("invalid request body: {e}")),
        _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("malformed JSON: {e}")),
    }
}

pub fn router(state: AppState) -> Router {
    let body_max = state.node.config.body_bytes_max;
    let restore_max = state.node.config.restore_bytes_max;
    Router::new()
        .route("/v1/tasks", post(submit).get(list_tasks))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/tasks/{id}/events", get(events::task_events))
        .route("/v1/events", get(events::node_events))
        .route("/v1/rejections", post(reject))
        .route("/v1/adapters", get(list_adapters))
        .route("/v1/adapters/{name}", put(report_adapter))
        .route("/v1/tasks/{id}/cancel", post(cancel))
        .route("/v1/tasks/{id}/retry", post(retry))
        .route("/v1/tasks/{id}/progress", post(progress))
        .route("/v1/tasks/{id}/complete", post(complete))
        .route("/v1/acks", post(acknowledge))
        .route("/v1/tasks/{id}/fail", post(fail))
        .route("/v1/tasks/{id}/extend", post(extend))
        .route("/v1/claims", post(claim))
        .route("/v1/agents", post(register_agent).get(list_agents))
        .route("/v1/agents/{id}", get(get_agent).delete(deregister_agent))
        .route("/v1/agents/{id}/heartbeat", post(heartbeat))
        .route("/v1/agents/{id}/drain", post(drain_agent))
        .route("/v1/queues", get(list_queues))
        .route("/v1/queues/{name}", get(get_queue).put(put_queue))
        .route("/v1/stats", get(stats))
        .route("/v1/config", get(settings::get_config).put(settings::put_config))
        .route("/v1/autoscaler", get(autoscaler))
        .route("/v1/autoscaler/decisions", get(autoscaler_decisions))
        .route("/v1/metrics/queues/{name}", get(queue_metric))
        .route("/v1/changes", get(changes))
        .route("/v1/dedup", get(list_dedup))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/node", get(cluster::node_info))
        .route("/v1/cluster/members", post(cluster::add_member))
        .route("/v1/cluster/members/{id}", delete(cluster::remove))
        .route("/v1/cluster/members/{id}/promote", post(cluster::promote))
        .route("/v1/cluster/members/{id}/replace", post(cluster::replace))
        .route("/v1/tokens", post(admin::create_token).get(admin::list_tokens))
        .route("/v1/tokens/{id}", delete(admin::revoke_token))
        .route("/v1/audit", get(admin::audit))
        .route("/v1/admin/backup", get(backup::backup))
        .route("/v1/admin/restore", post(backup::restore).layer(DefaultBodyLimit::max(restore_max)))
        .route("/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(state.clone(), cluster::route_to_leader))
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::authenticate))
        .layer(middleware::from_fn(crate::metrics::track_http))
        .layer(middleware::from_fn(crate::tracing_setup::http_span))
        .layer(middleware::from_fn(error_shape))
        .layer(DefaultBodyLimit::max(body_max))
        .layer(middleware::from_fn_with_state((body_max, restore_max), content_length_limit))
        .with_state(state)
}

/// Refuse a declared body over the limit before reading any of it.
async fn content_length_limit(
    State((body_max, restore_max)): State<(usize, usize)>,
    req: Request,
    next: Next,
) -> Response {
    // A backup being restored is the one body allowed to be large.
    let max = if req.uri().path() == "/v1/admin/restore" { restore_max } else { body_max };
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let Some(declared) = declared.filter(|n| *n > max as u64) else {
        // Whatever the route and extractor, and without a declared length (chunked): the body
        // stops at the limit, and reading past it fails with 413.
        let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, max)));
        return next.run(req).await;
    };
    // Read and discard a moderately oversized body before answering: a client still sending when
    // the connection closes sees a reset instead of the 413. Far larger bodies are not read.
    if declared <= (max as u64).saturating_mul(OVERSIZE_DRAIN_FACTOR) {
        use http_body_util::BodyExt;
        let mut body = req.into_body();
        while let Some(Ok(_frame)) = body.frame().await {}
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body of {declared} bytes is over the limit of {max} bytes"),
    )
    .into_response()
}

/// Oversized bodies up to this multiple of the limit are drained before the 413 is sent.
const OVERSIZE_DRAIN_FACTOR: u64 = 4;

/// Give axum's own plain-text rejections (405 and the like) the API's JSON error shape.
async fn error_shape(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || resp.status().is_success() || resp.status().is_redirection() {
        return resp;
    }
    let status = resp.status();
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    };
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    ApiError::new(status, code, reason).into_response()
}

async fn fallback() -> ApiError {
    ApiError::not_found("no such route; see /v1/openapi.json")
}

pub(crate) fn task_not_found(id: u64) -> ApiError {
    ApiError::not_found(format!("task {id} not found"))
}

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
async fn submit(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // `{"tasks": [...]}` is an atomic batch; anything else is one task.
    let keys: serde_json::Map<String, serde_json::Value> =
        match serde_json::from_slice::<std::collections::BTreeMap<String, &RawValue>>(&body) {
            Ok(m) => m.into_keys().map(|k| (k, serde_json::Value::Null)).collect(),
            Err(e) => return Err(json_error(e)),
        };
    let batch = keys.contains_key("tasks");
    let tasks: Vec<TaskIn> = if batch {
        serde_json::from_slice::<BatchIn>(&body).map_err(json_error)?.tasks
    } else {
        vec![serde_json::from_slice::<TaskIn>(&body).map_err(json_error)?]
    };
    for t in &tasks {
        caller.check_queue(&t.queue)?;
    }
    let tasks = tasks.into_iter().map(new_task).collect();
    let cmd = match crate::tracing_setup::trace_parent(&headers) {
        Some(trace_parent) => Command::SubmitTraced { tasks, trace_parent },
        None => Command::Submit { tasks },
    };
    let out = s.node.propose(cmd).await??;
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

/// Ingest records that could not become tasks, recorded as `rejected` (deduplicated by key).
#[utoipa::path(
    post,
    path = "/v1/rejections",
    tag = "ingest",
    summary = "Record ingest records that could not become tasks (state rejected, deduplicated by key)",
    request_body = RejectionsIn,
    responses(
        (status = 201, description = "recorded", body = BatchOut),
        (status = 200, description = "all duplicates", body = BatchOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 413, description = "request body over the limit", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
async fn reject(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<RejectionsIn>,
) -> ApiResult<Response> {
    for r in &b.records {
        caller.check_queue(&r.queue)?;
    }
    let records = b.records.into_iter().map(rejected_record).collect();
    let out = s.node.propose(Command::Reject { records }).await??;
    let Outcome::Submitted(results) = out else { return Err(unexpected(out)) };
    let created = results.iter().any(|r| !r.duplicate);
    let list: Vec<SubmittedOut> = results.iter().map(|r| SubmittedOut { id: r.id, duplicate: r.duplicate }).collect();
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "tasks": list }))).into_response())
}

/// An adapter (ingest or export, embedded or a separate process) reports its status; the leader
/// keeps the latest report of each in memory.
#[utoipa::path(
    put,
    path = "/v1/adapters/{name}",
    tag = "ingest",
    summary = "An adapter reports its status (lag, position, errors)",
    request_body = Object,
    params(
        ("name" = String, Path, description = "adapter name")
    ),
    responses(
        (status = 204, description = "kept"),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
async fn report_adapter(
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<serde_json::Value>,
) -> ApiResult<StatusCode> {
    s.node.adapters.report(&name, b).map_err(ApiError::bad_request)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/v1/adapters",
    tag = "ingest",
    summary = "Ingest and export adapters and their last reports (kept by the leader)",
    responses(
        (status = 200, description = "adapters", body = Object)
    )
)]
async fn list_adapters(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "adapters": s.node.adapters.list() }))
}

fn unexpected(out: Outcome) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("unexpected engine outcome {out:?}"))
}

/// The API's view of a task record: its payload and progress read back from the records.
fn view(s: &AppState, rec: TaskRecord) -> ApiResult<TaskOut> {
    let trace = rec.trace_parent.clone();
    let task = s.node.state.view(rec)?;
    Ok(task_out(&task, trace))
}

fn task_answer(s: &AppState, out: Outcome) -> ApiResult<Json<TaskOut>> {
    match out {
        Outcome::Task(t) => Ok(Json(view(s, *t)?)),
        other => Err(unexpected(other)),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GetTaskQuery {
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
async fn get_task(
    State(s): State<AppState>,
    path: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    q: Result<Query<GetTaskQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    let Query(q) = q?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.min(s.node.config.claim_wait_ms_max));
    loop {
        // Woken by every applied entry; armed before the read so that none is missed between.
        let changed = s.node.state.changed().notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let live = s.node.state.read().engine.live_task(id).cloned();
        let rec = match live {
            Some(r) => r,
            None => minion_engine::task_record(s.node.state.records(), id)?.ok_or_else(|| task_not_found(id))?,
        };
        if rec.state.is_terminal() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(view(&s, rec)?));
        }
        tokio::select! {
            _ = &mut changed => {}
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
async fn list_tasks(
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<TaskList>> {
    let Query(q) = q?;
    let state = match q.state.as_deref() {
        Some(st) => Some(TaskState::parse(st).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown state {st:?}; one of ready, delayed, leased, succeeded, failed, dead, cancelled, rejected"
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
    let shared = s.node.state.clone();
    let (tasks, next) = tokio::task::spawn_blocking(move || -> Result<_, minion_engine::ColdError> {
        let (recs, next) = minion_engine::list(shared.records(), &filter)?;
        let mut tasks = Vec::with_capacity(recs.len());
        for r in recs {
            let trace = r.trace_parent.clone();
            tasks.push(task_out(&shared.view(r)?, trace));
        }
        Ok((tasks, next))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(Json(TaskList { tasks, next }))
}

type PathId = Result<Path<u64>, axum::extract::rejection::PathRejection>;

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
async fn cancel(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    OptionalJson(body): OptionalJson<CancelIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    let cmd = audited(&caller, Command::Cancel { task_id: id, reason: body.reason });
    task_answer(&s, s.node.propose(cmd).await??)
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
async fn retry(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    OptionalJson(_body): OptionalJson<EmptyIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    task_answer(&s, s.node.propose(audited(&caller, Command::Retry { task_id: id })).await??)
}

/// An administrative command, recorded in the audit trail under the caller's name.
fn audited(caller: &Caller, cmd: Command) -> Command {
    Command::Audited { actor: caller.actor(), cmd: Box::new(cmd) }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyIn {}

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
async fn progress(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    JsonBody(b): JsonBody<ProgressIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    caller.check_lease_holder(&s, id)?;
    let cmd = Command::Progress { task_id: id, lease_token: b.lease_token, percent: b.percent, message: b.message };
    task_answer(&s, s.node.propose(cmd).await??)
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
async fn complete(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    JsonBody(b): JsonBody<CompleteIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    caller.check_lease_holder(&s, id)?;
    let result = b.result.map(|r| r.get().to_string());
    task_answer(&s, s.node.propose(Command::Complete { task_id: id, lease_token: b.lease_token, result }).await??)
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
async fn acknowledge(
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
    let out = s.node.propose(Command::Acknowledge { acks }).await??;
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
                let (_, code) = error::rejection_code(r.code);
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
async fn fail(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    JsonBody(b): JsonBody<FailIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    caller.check_lease_holder(&s, id)?;
    task_answer(&s, s.node.propose(Command::Fail { task_id: id, lease_token: b.lease_token, error: b.error }).await??)
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
async fn extend(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathId,
    JsonBody(b): JsonBody<ExtendIn>,
) -> ApiResult<Json<TaskOut>> {
    let Path(id) = path?;
    caller.check_lease_holder(&s, id)?;
    task_answer(
        &s,
        s.node.propose(Command::Extend { task_id: id, lease_token: b.lease_token, lease_ms: b.lease_ms }).await??,
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
async fn claim(
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
    let hub = &s.node.hub;
    hub.seen(&b.agent_id);
    let wait = Duration::from_millis(b.wait_ms.min(s.node.config.claim_wait_ms_max));
    let cmd = Command::Claim {
        agent_id: b.agent_id.clone(),
        queues: b.queues.clone(),
        capabilities: b.capabilities.clone(),
        max: b.max,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let out = crate::dispatch::claim_detached(&s.node, cmd).await??;
    let Outcome::Claimed(tasks) = out else { return Err(unexpected(out)) };
    if !tasks.is_empty() || wait.is_zero() {
        return claimed(&s, tasks).map(Json);
    }
    let mut reg = hub.register(&b.agent_id, &b.queues, &b.capabilities, b.max, deadline);
    let tasks = tokio::select! {
        got = &mut reg.rx => got.unwrap_or_default(),
        _ = tokio::time::sleep_until(deadline) => {
            if hub.withdraw(reg.id) {
                Vec::new()
            } else {
                // Picked just as the deadline passed: its claim is in flight. Wait for it briefly;
                // if it comes later, the leases are released unused.
                match tokio::time::timeout(Duration::from_secs(5), &mut reg.rx).await {
                    Ok(Ok(tasks)) => tasks,
                    _ => Vec::new(),
                }
            }
        }
    };
    claimed(&s, tasks).map(Json)
}

/// A claim's answer: the leased tasks with their payloads, each with its trace context.
fn claimed(s: &AppState, tasks: Vec<TaskRecord>) -> ApiResult<serde_json::Value> {
    let tasks: Vec<TaskOut> = tasks.into_iter().map(|t| view(s, t)).collect::<ApiResult<_>>()?;
    Ok(json!({ "tasks": tasks }))
}

fn agent_json(s: &AppState, a: &minion_engine::Agent) -> serde_json::Value {
    serde_json::to_value(agent_out(a, s.node.hub.last_seen_ms_ago(&a.id))).unwrap_or(serde_json::Value::Null)
}

fn agent_answer(s: &AppState, out: Outcome) -> ApiResult<Json<serde_json::Value>> {
    match out {
        Outcome::Agent(a) => Ok(Json(agent_json(s, &a))),
        other => Err(unexpected(other)),
    }
}

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
async fn register_agent(
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
    let out = s.node.propose(Command::RegisterAgent { spec }).await??;
    s.node.hub.seen(&b.id);
    let body = agent_answer(&s, out)?;
    Ok((StatusCode::CREATED, body).into_response())
}

#[derive(serde::Deserialize)]
struct AgentsQuery {
    /// Agents per page (default and most: [`AGENTS_PAGE_MAX`]).
    limit: Option<usize>,
    /// The `next` of the page before: agents after this id.
    after: Option<String>,
}

const AGENTS_PAGE_MAX: usize = 1_000;

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
async fn list_agents(
    State(s): State<AppState>,
    q: Result<Query<AgentsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(AGENTS_PAGE_MAX).clamp(1, AGENTS_PAGE_MAX);
    let g = s.node.state.read();
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
async fn get_agent(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    let g = s.node.state.read();
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
async fn heartbeat(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson<HeartbeatIn>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.check_agent(&s, &id)?;
    let (status, incarnation) = {
        let g = s.node.state.read();
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
    s.node.hub.seen(&id);
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
async fn drain_agent(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.check_agent(&s, &id)?;
    let out = s.node.propose(audited(&caller, Command::DrainAgent { id })).await??;
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
async fn deregister_agent(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.check_agent(&s, &id)?;
    s.node.propose(audited(&caller, Command::DeregisterAgent { id })).await??;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/v1/queues",
    tag = "queues",
    summary = "Every queue with its counts by state and oldest ready age",
    responses(
        (status = 200, description = "queues", body = Object)
    )
)]
async fn list_queues(State(s): State<AppState>) -> Json<serde_json::Value> {
    let g = s.node.state.read();
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
async fn get_queue(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    minion_engine::config::validate_queue_name(&name)?;
    let g = s.node.state.read();
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
async fn queue_metric(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<serde_json::Value>> {
    minion_engine::config::validate_queue_name(&name)?;
    let g = s.node.state.read();
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
async fn autoscaler(State(s): State<AppState>) -> Json<serde_json::Value> {
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
struct DecisionsQuery {
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
async fn autoscaler_decisions(
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
async fn put_queue(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(config): JsonBody<QueueConfig>,
) -> ApiResult<Json<serde_json::Value>> {
    s.node.propose(audited(&caller, Command::SetQueue { name: name.clone(), config })).await??;
    get_queue(State(s), Path(name)).await
}

#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "operations",
    summary = "Engine, dedup, raft and storage figures",
    responses(
        (status = 200, description = "figures", body = Object)
    )
)]
async fn stats(State(s): State<AppState>) -> Json<serde_json::Value> {
    let m = s.node.raft.metrics().borrow().clone();
    let g = s.node.state.read();
    let queues: Vec<_> = g.engine.queue_names().iter().map(|q| g.engine.queue_stats(q)).collect();
    Json(json!({
        "tasks": g.engine.task_count(),
        "live_tasks": g.engine.live_count(),
        "queues": queues,
        "dedup": { "keys": g.engine.dedup_keys(), "stats": g.engine.dedup_stats() },
        "counters": g.engine.counters(),
        "raft": {
            "node_id": s.node.config.node_id,
            "leader": m.current_leader,
            "term": m.current_term,
            "last_log_index": m.last_log_index,
            "applied_index": m.last_applied.map(|l| l.index),
            "snapshot_index": m.snapshot.map(|l| l.index),
        },
        "storage": {
            "durability": s.node.config.durability.as_str(),
            "state_bytes": s.node.storage.store.size_on_disk(),
            "log_bytes": s.node.log.wal_bytes(),
            "overlay_bytes": s.node.state.records().overlay().bytes(),
        },
    }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

fn change_json(c: &minion_engine::Change) -> serde_json::Value {
    use minion_engine::Change;
    match c {
        Change::Task(t, trace) => json!({"type": "task", "task": task_out(t, trace.clone())}),
        Change::TaskRemoved(id) => json!({"type": "task_removed", "id": id}),
        Change::Agent(a) => json!({"type": "agent", "agent": a}),
        Change::AgentRemoved(id) => json!({"type": "agent_removed", "id": id}),
        Change::Dedup(k, e) => {
            json!({"type": "dedup", "queue": k.queue, "key": k.key, "task_id": e.task_id, "expires_ms": e.expires_ms})
        }
        Change::DedupRemoved(k) => json!({"type": "dedup_removed", "queue": k.queue, "key": k.key}),
        Change::Queue(name, config) => json!({"type": "queue", "name": name, "config": config}),
        Change::QueueRemoved(name) => json!({"type": "queue_removed", "name": name}),
    }
}

/// The change feed: whole log entries with index > `after`. 410 `compacted` when entries after
/// `after` were already purged from the feed; the reader then backfills from the ledger.
#[utoipa::path(
    get,
    path = "/v1/changes",
    tag = "feed",
    summary = "The change feed: whole log entries after a position, each with the full new records it changed",
    params(
        ("after" = Option<u64>, Query, description = "last log index already processed (default 0)"),
        ("limit" = Option<usize>, Query, description = "records per page, 1..10000 (whole entries)")
    ),
    responses(
        (status = 200, description = "entries, next and applied_index", body = Object),
        (status = 410, description = "entries after `after` were purged: backfill from /v1/tasks", body = minion_client::wire::ErrorOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
async fn changes(
    State(s): State<AppState>,
    q: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(1_000).clamp(1, 10_000);
    let applied = s.node.state.read().applied.last_applied.map(|l| l.index).unwrap_or(0);
    let records = s.node.state.records().clone();
    let after = q.after;
    // The entries are read before the watermark (`feed_page`): a purge in between shows as a gap
    // (410), never as entries silently missing.
    let (entries, gap) = tokio::task::spawn_blocking(move || -> Result<_, minion_engine::ColdError> {
        let page = records.feed_page(after, limit)?;
        let gap = page.gap_after(after);
        let mut out = Vec::with_capacity(page.entries.len());
        for (index, touched) in page.entries {
            out.push((index, minion_engine::changes::materialize(&records, &touched)?));
        }
        Ok((out, gap))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    // Entries that changed nothing are never stored, so a gap in indexes proves nothing; what was
    // purged is recorded as a watermark.
    if let Some(purged_before) = gap {
        return Err(ApiError::new(
            StatusCode::GONE,
            "compacted",
            format!("the change feed no longer holds entries {}..{purged_before}; backfill from /v1/tasks", after + 1),
        ));
    }
    let next = entries.last().map(|(i, _)| *i).unwrap_or(after);
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|(index, cs)| json!({"index": index, "changes": cs.iter().map(change_json).collect::<Vec<_>>()}))
        .collect();
    Ok(Json(json!({ "entries": list, "next": next, "applied_index": applied })))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DedupQuery {
    after_queue: Option<String>,
    after_key: Option<String>,
    limit: Option<usize>,
}

/// Live idempotency keys in (queue, key) order, paged: for exporters' backfill.
#[utoipa::path(
    get,
    path = "/v1/dedup",
    tag = "feed",
    summary = "Live idempotency keys in (queue, key) order, paged (for exporters' backfill)",
    params(
        ("after_queue" = Option<String>, Query, description = "with after_key: the position"),
        ("after_key" = Option<String>, Query, description = "with after_queue"),
        ("limit" = Option<usize>, Query, description = "1..10000, default 1000")
    ),
    responses(
        (status = 200, description = "keys and more", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
async fn list_dedup(
    State(s): State<AppState>,
    q: Result<Query<DedupQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(1_000).clamp(1, 10_000);
    let after = match (q.after_queue, q.after_key) {
        (Some(queue), Some(key)) => Some(minion_engine::DedupKey { queue, key }),
        (None, None) => None,
        _ => return Err(ApiError::bad_request("after_queue and after_key go together")),
    };
    let records = s.node.state.records().clone();
    let page = tokio::task::spawn_blocking(move || {
        use minion_engine::{Cold, Key, Kind};
        records.scan(Kind::Dedup, after.map(Key::Dedup).as_ref(), limit)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    let keys: Vec<serde_json::Value> = page
        .into_iter()
        .filter_map(|r| match r {
            minion_engine::Record::Dedup(k, e) => {
                Some(json!({"queue": k.queue, "key": k.key, "task_id": e.task_id, "expires_ms": e.expires_ms}))
            }
            _ => None,
        })
        .collect();
    let done = keys.len() < limit;
    Ok(Json(json!({ "keys": keys, "more": !done })))
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
async fn openapi() -> impl IntoResponse {
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
async fn healthz() -> Json<serde_json::Value> {
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
async fn readyz(State(s): State<AppState>) -> Response {
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
async fn prometheus(State(s): State<AppState>) -> impl IntoResponse {
    let text = crate::metrics::render(&s.metrics, &s.node);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

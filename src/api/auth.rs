//! Who is calling, and may they: bearer tokens, roles, queue patterns and per-token rate limits.
//!
//! Authentication is on unless the API listens on loopback only (development), or `auth` says
//! otherwise. A request carries `Authorization: Bearer <token>`: either the bootstrap admin token
//! from the configuration (`admin_token`), or an API token `mn_<id>_<secret>` created through the
//! API, whose SHA-256 is replicated state. Both are compared in constant time. Then the route must
//! be one the token's role allows, the queues it names must match the token's patterns, and the
//! token must be within its rate.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use minion_engine::{Role, Token};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::error::ApiError;
use crate::api::AppState;

/// The identity a request runs as, put in the request's extensions by [`authenticate`].
#[derive(Debug, Clone)]
pub enum Caller {
    /// Authentication is off (loopback development mode): everything is allowed.
    Anonymous,
    /// The bootstrap admin token from the configuration.
    AdminToken,
    Token(Arc<Token>),
}

impl Caller {
    pub fn role(&self) -> Role {
        match self {
            Caller::Anonymous | Caller::AdminToken => Role::Admin,
            Caller::Token(t) => t.role,
        }
    }

    /// How the audit trail names the caller.
    pub fn actor(&self) -> String {
        match self {
            Caller::Anonymous => "anonymous".into(),
            Caller::AdminToken => "admin-token".into(),
            Caller::Token(t) => format!("token:{} ({})", t.id, t.name),
        }
    }

    pub fn allows_queue(&self, queue: &str) -> bool {
        match self {
            Caller::Token(t) => t.allows_queue(queue),
            _ => true,
        }
    }

    /// Refuse (403) a queue outside the token's patterns.
    pub fn check_queue(&self, queue: &str) -> Result<(), ApiError> {
        if self.allows_queue(queue) {
            return Ok(());
        }
        Err(forbidden(format!("this token may not use queue {queue:?}")))
    }

    /// The agent-id patterns the caller may act as; `None`: any agent.
    pub fn agent_patterns(&self, s: &AppState) -> Option<Arc<Vec<String>>> {
        match self {
            Caller::Token(t) => s.state.read().engine.token_agents(&t.id),
            _ => None,
        }
    }

    /// Refuse (403) acting as agent `id` for a token bound to other agents.
    pub fn check_agent(&self, s: &AppState, id: &str) -> Result<(), ApiError> {
        match self.agent_patterns(s) {
            Some(p) if !minion_engine::access::agent_allowed(&p, id) => {
                Err(forbidden(format!("this token may not act as agent {id:?}")))
            }
            _ => Ok(()),
        }
    }

    /// Refuse (403) touching task `id`'s lease for a token bound to agents other than its
    /// holder. A task not leased (or unknown) is left to the engine to refuse.
    pub fn check_lease_holder(&self, s: &AppState, id: minion_engine::TaskId) -> Result<(), ApiError> {
        self.check_lease_holders(s, [id])
    }

    /// [`Caller::check_lease_holder`] for many tasks (a batch of acknowledgements), under one read
    /// of the state; nothing is read for a caller bound to no agents.
    pub fn check_lease_holders(
        &self,
        s: &AppState,
        ids: impl IntoIterator<Item = minion_engine::TaskId>,
    ) -> Result<(), ApiError> {
        let Caller::Token(t) = self else { return Ok(()) };
        let g = s.state.read();
        let Some(patterns) = g.engine.token_agents(&t.id) else { return Ok(()) };
        for id in ids {
            let holder = g.engine.live_task(id).and_then(|t| t.lease.as_ref().map(|l| l.agent_id.as_str()));
            if let Some(a) = holder.filter(|a| !minion_engine::access::agent_allowed(&patterns, a)) {
                return Err(forbidden(format!("task {id} is leased to agent {a:?}, which this token may not act as")));
            }
        }
        Ok(())
    }

    /// Refuse (403) a request that would span every queue, for a token restricted to some.
    pub fn check_unrestricted(&self, what: &str) -> Result<(), ApiError> {
        match self {
            Caller::Token(t) if t.restricted() => {
                Err(forbidden(format!("this token is restricted to some queues; {what}")))
            }
            _ => Ok(()),
        }
    }
}

pub fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// Authentication settings and the per-token rate limiters of this node.
pub struct Auth {
    pub enabled: bool,
    admin_sha256: Option<[u8; 32]>,
    /// Requests per second per token when the token sets none; 0: no limit.
    default_rate: u32,
    limiters: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl Auth {
    pub fn new(enabled: bool, admin_token: Option<&str>, default_rate: u32) -> Auth {
        Auth { enabled, admin_sha256: admin_token.map(sha256), default_rate, limiters: Mutex::new(HashMap::new()) }
    }

    /// Admit one request of `key` at `rate` per second (burst twice that); on refusal, how long
    /// until the next would be admitted.
    fn admit(&self, key: &str, rate: u32) -> Result<(), std::time::Duration> {
        let Some(per_sec) = NonZeroU32::new(rate) else { return Ok(()) };
        let limiter = {
            let mut g = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
            match g.get(key) {
                Some((r, l)) if *r == rate => l.clone(),
                _ => {
                    if g.len() > 100_000 {
                        g.clear(); // revoked and expired tokens' limiters, in the long run
                    }
                    let l = Arc::new(limiter(per_sec));
                    g.insert(key.to_string(), (rate, l.clone()));
                    l
                }
            }
        };
        limiter.check().map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

fn limiter(per_sec: NonZeroU32) -> DefaultDirectRateLimiter {
    let burst = per_sec.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
    governor::RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst))
}

pub fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The bearer value of an API token.
pub fn bearer(id: &str, secret: &str) -> String {
    format!("mn_{id}_{secret}")
}

/// Routes anyone may call: probes, the API description, and the console's files (which hold no
/// data: the console calls the API with the user's token).
fn public(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/v1/openapi.json" | "/" | "/ui" | "/ui/" | "/ui/{file}")
}

/// May `role` call `method route`? Queue patterns are checked by the handlers.
pub fn permits(role: Role, method: &Method, route: &str) -> bool {
    use Role::*;
    if role == Admin {
        return true;
    }
    let get = method == Method::GET;
    let post = method == Method::POST;
    let allowed: &[Role] = match route {
        "/metrics" if get => &[Metrics],
        "/v1/metrics/queues/{name}" if get => &[Metrics, Reader],
        // Pools (`minion pool`, run with a worker token) read the desired counts.
        "/v1/autoscaler" if get => &[Metrics, Reader, Worker],
        "/v1/tasks" if post => &[Producer],
        "/v1/rejections" if post => &[Producer],
        "/v1/adapters/{name}" if method == Method::PUT => &[Producer, Reader],
        "/v1/tasks" | "/v1/tasks/{id}" | "/v1/tasks/{id}/events" if get => &[Producer, Worker, Reader],
        "/v1/events" if get => &[Producer, Reader],
        "/v1/whoami" if get => &[Producer, Worker, Reader, Metrics],
        "/v1/claims"
        | "/v1/tasks/{id}/progress"
        | "/v1/tasks/{id}/complete"
        | "/v1/tasks/{id}/fail"
        | "/v1/tasks/{id}/extend"
        | "/v1/tasks/{id}/children"
        | "/v1/tasks/{id}/wait-children"
        | "/v1/acks"
            if post =>
        {
            &[Worker]
        }
        // A worker drains itself on SIGTERM; a pool drains the workers it stops.
        "/v1/agents" | "/v1/agents/{id}/heartbeat" | "/v1/agents/{id}/drain" if post => &[Worker],
        "/v1/agents/{id}" if method == Method::DELETE => &[Worker],
        "/v1/agents"
        | "/v1/agents/{id}"
        | "/v1/queues"
        | "/v1/queues/{name}"
        | "/v1/queues/{name}/limits"
        | "/v1/schedules"
        | "/v1/schedules/{name}"
        | "/v1/stats"
        | "/v1/config"
        | "/v1/autoscaler/decisions"
        | "/v1/changes"
        | "/v1/dedup"
        | "/v1/adapters"
        | "/v1/cluster"
        | "/v1/cluster/node"
            if get =>
        {
            &[Reader]
        }
        _ => &[],
    };
    allowed.contains(&role)
}

fn unauthorized(message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Identify the caller, check the route against its role and its rate, and record it in the
/// request for the handlers.
pub async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let auth = &s.auth;
    if !auth.enabled || public(&route) {
        req.extensions_mut().insert(Caller::Anonymous);
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented.filter(|p| !p.is_empty()) else {
        metrics::counter!("minion_auth_refused_total", "reason" => "missing").increment(1);
        return unauthorized("this call needs a bearer token (Authorization: Bearer <token>)");
    };
    let caller = match identify(&s, presented) {
        Ok(c) => c,
        Err(reason) => {
            metrics::counter!("minion_auth_refused_total", "reason" => reason).increment(1);
            let msg = match reason {
                "expired" => "the token has expired",
                "revoked" => "the token has been revoked",
                _ => "the token is not valid",
            };
            return unauthorized(msg);
        }
    };
    if !permits(caller.role(), req.method(), &route) {
        metrics::counter!("minion_auth_refused_total", "reason" => "role").increment(1);
        let what = if route.is_empty() { req.uri().path().to_string() } else { route };
        return forbidden(format!("role {} may not call {} {what}", caller.role().as_str(), req.method()))
            .into_response();
    }
    let (key, rate) = match &caller {
        Caller::Token(t) => (t.id.as_str(), t.rate_per_sec.unwrap_or(auth.default_rate)),
        _ => ("admin-token", auth.default_rate),
    };
    if let Err(e) = check_scope(&s, &caller, req.method(), &route, req.uri()) {
        metrics::counter!("minion_auth_refused_total", "reason" => "queue").increment(1);
        return e.into_response();
    }
    if let Err(wait) = auth.admit(key, rate) {
        metrics::counter!("minion_rate_limited_total").increment(1);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("this token is over its rate of {rate} requests/s; retry after {} ms", wait.as_millis()),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Queue patterns, for the routes that name their queue in the path or query. (Routes that name
/// queues in the body, submit, rejections and claims, check in their handlers.) A task outside the
/// token's queues is reported as not found, as if it did not exist.
fn check_scope(
    s: &AppState,
    caller: &Caller,
    method: &Method,
    route: &str,
    uri: &axum::http::Uri,
) -> Result<(), ApiError> {
    let Caller::Token(t) = caller else { return Ok(()) };
    if !t.restricted() {
        return Ok(());
    }
    let segments: Vec<&str> = uri.path().split('/').collect();
    match route {
        _ if route.starts_with("/v1/tasks/{id}") => {
            let Some(id) = segments.get(3).and_then(|v| v.parse::<u64>().ok()) else { return Ok(()) };
            let live = s.state.read().engine.live_task(id).map(|t| t.queue.clone());
            let queue = match live {
                Some(q) => Some(q),
                None => minion_engine::task_record(s.state.records(), id)?.map(|t| t.queue),
            };
            match queue {
                Some(q) if !t.allows_queue(&q) => Err(ApiError::not_found(format!("no task {id}"))),
                _ => Ok(()),
            }
        }
        "/v1/queues/{name}" | "/v1/metrics/queues/{name}" => {
            let name = segments.last().copied().unwrap_or_default();
            caller.check_queue(&percent_decode(name))
        }
        "/v1/queues/{name}/limits" => {
            let name = segments.iter().rev().nth(1).copied().unwrap_or_default();
            caller.check_queue(&percent_decode(name))
        }
        "/v1/tasks" if method == Method::GET => {
            let query = uri.query().unwrap_or_default().as_bytes();
            let queue = form_urlencoded::parse(query).find(|(k, _)| k == "queue").map(|(_, v)| v.into_owned());
            match queue {
                Some(q) => caller.check_queue(&q),
                None => caller.check_unrestricted("list with queue=<a queue it may use>"),
            }
        }
        "/v1/changes" | "/v1/dedup" | "/v1/queues" | "/v1/stats" | "/v1/schedules" | "/v1/schedules/{name}" => {
            caller.check_unrestricted("this call spans every queue")
        }
        _ => Ok(()),
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The caller a bearer value names, or why it names none (never saying which part was wrong).
fn identify(s: &AppState, presented: &str) -> Result<Caller, &'static str> {
    let hash = sha256(presented);
    if let Some(admin) = &s.auth.admin_sha256 {
        if bool::from(admin.ct_eq(&hash)) {
            return Ok(Caller::AdminToken);
        }
    }
    let rest = presented.strip_prefix("mn_").ok_or("invalid")?;
    let (id, secret) = rest.split_once('_').ok_or("invalid")?;
    let token = s.state.read().engine.token_arc(id).ok_or("invalid")?;
    if !bool::from(token.secret_sha256.ct_eq(&sha256(secret))) {
        return Err("invalid");
    }
    if token.revoked_ms.is_some() {
        return Err("revoked");
    }
    if !token.active(crate::clock::now_ms()) {
        return Err("expired");
    }
    Ok(Caller::Token(token))
}

//! Layers that shape requests and answers: body limits, error bodies, the fallback.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Refuse a declared body over the limit before reading any of it.
pub(super) async fn content_length_limit(
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
pub(super) const OVERSIZE_DRAIN_FACTOR: u64 = 4;

/// Give axum's own plain-text rejections (405 and the like) the API's JSON error shape.
pub(super) async fn error_shape(req: Request, next: Next) -> Response {
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

pub(super) async fn fallback() -> ApiError {
    ApiError::not_found("no such route; see /v1/openapi.json")
}

//! One error body for every route: `{"error": {"code": "...", "message": "..."}}`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minion_client::wire::{ErrorBody, ErrorOut};
use minion_engine::{RejectCode, Rejection};

use crate::node::ProposeError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let body = ErrorOut { error: ErrorBody { code: self.code.to_string(), message: self.message } };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Leadership changes and commit timeouts are transient: tell clients when to retry.
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// The HTTP status and error code of an engine refusal.
pub fn rejection_code(code: RejectCode) -> (StatusCode, &'static str) {
    match code {
        RejectCode::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        RejectCode::Invalid => (StatusCode::BAD_REQUEST, "invalid_request"),
        RejectCode::StaleLease => (StatusCode::CONFLICT, "stale_lease"),
        RejectCode::WrongState => (StatusCode::CONFLICT, "wrong_state"),
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let (status, code) = rejection_code(r.code);
        ApiError::new(status, code, r.message)
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NotLeader { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_leader", e.to_string())
            }
            ProposeError::Timeout(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "commit_timeout", e.to_string()),
            ProposeError::Fatal(_) | ProposeError::Closed => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())
            }
            ProposeError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.to_string())
            }
            ProposeError::Internal(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

/// Reading records failed underneath a request: the storage is broken, not the request.
impl From<minion_engine::ColdError> for ApiError {
    fn from(e: minion_engine::ColdError) -> Self {
        tracing::error!(error = %e, "reading records");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => {
                ApiError::bad_request(format!("invalid request body: {}", e.body_text()))
            }
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("malformed JSON: {}", e.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a request body with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) => body_error(e.status(), e.body_text()),
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

pub fn body_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "payload_too_large", format!("request body too large: {text}"))
    } else {
        ApiError::new(status, "invalid_request", text)
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(format!("invalid path: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(format!("invalid query: {}", r.body_text()))
    }
}

//! Writes refused while the node's disk is below its reserve (see `crate::disk_space`).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::disk_space::MIB;

/// Writes that go on while the disk is low: membership changes (replacing or removing a node is
/// how an operator gets out of trouble).
fn exempt(path: &str) -> bool {
    !path.starts_with("/v1/") || path.starts_with("/v1/cluster/")
}

/// Middleware: refuse writes while this node's disk is below the reserve.
pub async fn refuse_writes_when_low(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if write && s.node.disk.low() && !exempt(req.uri().path()) {
        let free = s.node.disk.free_bytes();
        let msg = format!(
            "node {} has {} MiB free on its data directory's disk, below the reserve of {} MiB (disk_reserve_mb): writes are refused until space returns; nothing was written",
            s.config.node_id,
            free / MIB,
            s.config.disk_reserve_mb
        );
        let mut resp = ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", msg).into_response();
        resp.headers_mut().insert("retry-after", HeaderValue::from_static("5"));
        return resp;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_changes_are_exempt() {
        assert!(exempt("/v1/cluster/members"));
        assert!(exempt("/metrics"));
        assert!(!exempt("/v1/tasks"));
        assert!(!exempt("/v1/claims"));
    }
}

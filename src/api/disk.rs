//! Writes refused while the node's disk is below its reserve (see `crate::disk_space`).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::disk_space::MIB;

/// What a node below its reserve refuses: new work and bulk writes (submits, children, retries,
/// rejection records, schedules, backups and restores). Finishing work goes on — claims,
/// completions, failures, progress, extensions, heartbeats — since refusing it would let leases
/// expire and waste attempts, and so do settings, tokens and membership changes (revoking a
/// token or replacing a node must stay possible).
fn refused_when_low(method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        (method.as_str(), segments.as_slice()),
        ("POST", ["", "v1", "tasks"])
            | ("POST", ["", "v1", "tasks", _, "children" | "retry"])
            | ("POST", ["", "v1", "rejections"])
            | ("PUT", ["", "v1", "schedules", _])
            | ("GET", ["", "v1", "admin", "backup"])
            | ("POST", ["", "v1", "admin", "restore"])
    )
}

/// Middleware, on the node that serves the request (after routing to the leader): refuse new
/// work while its disk is below the reserve.
pub async fn refuse_writes_when_low(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if s.node.disk.low() && refused_when_low(req.method(), req.uri().path()) {
        let free = s.node.disk.free_bytes();
        let msg = format!(
            "node {} has {} MiB free on its data directory's disk, below the reserve of {} MiB (disk_reserve_mb): new work is refused until space returns; nothing was written",
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
    fn new_work_is_refused_and_finishing_work_is_not() {
        for (m, p) in [
            (Method::POST, "/v1/tasks"),
            (Method::POST, "/v1/tasks/7/children"),
            (Method::POST, "/v1/tasks/7/retry"),
            (Method::PUT, "/v1/schedules/nightly"),
            (Method::GET, "/v1/admin/backup"),
            (Method::POST, "/v1/admin/restore"),
        ] {
            assert!(refused_when_low(&m, p), "{m} {p}");
        }
        for (m, p) in [
            (Method::GET, "/v1/tasks"),
            (Method::POST, "/v1/claims"),
            (Method::POST, "/v1/tasks/7/complete"),
            (Method::POST, "/v1/tasks/7/fail"),
            (Method::POST, "/v1/acks"),
            (Method::POST, "/v1/agents/a/heartbeat"),
            (Method::DELETE, "/v1/tokens/3"),
            (Method::POST, "/v1/cluster/members/2/replace"),
            (Method::DELETE, "/v1/schedules/nightly"),
        ] {
            assert!(!refused_when_low(&m, p), "{m} {p}");
        }
    }
}

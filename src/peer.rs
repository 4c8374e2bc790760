//! The peer port: raft RPC from other nodes (`/raft/append`, `/raft/vote`, `/raft/snapshot`) and
//! `/raft/info`, which a leader asks before adding a node. Every route needs the cluster secret;
//! client credentials and the client API are never served here.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use minion_raft::network::{HEADER_CLUSTER, HEADER_FROM, HEADER_TO};
use minion_raft::peer::{self, Caller, Refusal};
use serde::{Deserialize, Serialize};

use crate::node::Node;

/// What `/raft/info` tells a leader about to add this node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    pub node_id: u64,
    pub cluster_id: Option<String>,
    /// Whether this node's raft log holds a membership (it belongs to a cluster already).
    pub initialized: bool,
    pub api_addr: String,
    pub raft_addr: String,
}

pub fn router(node: Node) -> Router {
    Router::new()
        .route("/raft/append", post(rpc))
        .route("/raft/stage", post(rpc))
        .route("/raft/vote", post(rpc))
        .route("/raft/snapshot", post(rpc))
        .route("/raft/info", get(info))
        .route(crate::stall::PATH_ALIVE, post(crate::stall::alive))
        .fallback(|| async { refusal(Refusal::NotFound("no such peer route".into())) })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(node)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub fn refusal(r: Refusal) -> Response {
    let status = match &r {
        Refusal::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Refusal::WrongCluster(_) | Refusal::WrongNode(_) => StatusCode::CONFLICT,
        Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::Gone(_) => StatusCode::GONE,
    };
    metrics::counter!("minion_peer_refused_total", "status" => status.as_u16().to_string()).increment(1);
    (status, r.to_string()).into_response()
}

/// Authenticate first, then read the body (so an unauthenticated caller cannot make this node
/// buffer anything), then hand it to raft.
async fn rpc(State(node): State<Node>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let caller = Caller {
        authorization: header(&headers, header::AUTHORIZATION.as_str()),
        cluster: header(&headers, HEADER_CLUSTER),
        from: header(&headers, HEADER_FROM),
        to: header(&headers, HEADER_TO),
    };
    let secret = node.config.cluster_secret.as_deref();
    if let Err(r) = peer::admit(&node.identity, secret, &caller) {
        tracing::warn!(path = uri.path(), from = ?caller.from, error = %r, "peer request refused");
        return refusal(r);
    }
    let bytes: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return refusal(Refusal::BadRequest(format!("reading the body: {e}"))),
    };
    let started = std::time::Instant::now();
    let answer = peer::handle(&node.raft, &node.staging, uri.path(), &bytes).await;
    metrics::histogram!("minion_peer_handle_seconds", "rpc" => uri.path().to_string())
        .record(started.elapsed().as_secs_f64());
    match answer {
        Ok(answer) => ([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response(),
        Err(r) => refusal(r),
    }
}

async fn info(State(node): State<Node>, headers: HeaderMap) -> Response {
    let secret = node.config.cluster_secret.as_deref();
    if let Err(r) = peer::check_secret(secret, header(&headers, header::AUTHORIZATION.as_str())) {
        return refusal(r);
    }
    let initialized = node.raft.is_initialized().await.unwrap_or(true);
    Json(PeerInfo {
        node_id: node.config.node_id,
        cluster_id: node.identity.cluster_id(),
        initialized,
        api_addr: node.me.api_addr.clone(),
        raft_addr: node.me.raft_addr.clone(),
    })
    .into_response()
}

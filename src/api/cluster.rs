//! Cluster membership and status (`/v1/cluster...`), and routing of client requests to the
//! leader: any node accepts every call; a follower forwards it to the leader, and the leader
//! confirms its leadership with a quorum before serving a read (read-index). A read sent with
//! `Minion-Consistency: stale` is served from the receiving node's applied state instead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use minion_raft::{Node as RaftNode, NodeId};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::JsonBody;
use super::{admin, ApiError, ApiResult, AppState};
use crate::api::auth::Caller;
use crate::node::Node;
use crate::peer::PeerInfo;

/// `Minion-Consistency: stale` on a GET: answer from this node's state without asking the leader.
pub const HEADER_CONSISTENCY: &str = "minion-consistency";
/// Set on a request a follower forwards, so that it is never forwarded twice.
pub const HEADER_FORWARDED_BY: &str = "x-minion-forwarded-by";
/// The node that executed the request.
pub const HEADER_NODE: &str = "x-minion-node";

fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
}

/// Routes answered by the receiving node itself, never forwarded.
fn local_route(path: &str) -> bool {
    !path.starts_with("/v1/") || path == "/v1/openapi.json" || path == "/v1/cluster/node"
}

/// The leader as this node knows it, waiting up to `wait` for an election to finish.
async fn known_leader(node: &Node, wait: Duration) -> Option<(NodeId, RaftNode)> {
    if let Some(l) = node.leader() {
        return Some(l);
    }
    // A node that has just joined may know the leader's id before the membership naming its
    // address: wait for both.
    let known = |m: &openraft::RaftMetrics<NodeId, RaftNode>| {
        m.current_leader.is_some_and(|l| m.membership_config.membership().get_node(&l).is_some())
    };
    let _ = node.raft.wait(Some(wait)).metrics(known, "a leader and its address are known").await;
    node.leader()
}

/// Middleware: serve here if this node leads (after read-index for reads), forward otherwise.
pub async fn route_to_leader(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let me = s.config.node_id;
    // axum answers HEAD with the GET handler: a read too.
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    let stale =
        read && req.headers().get(HEADER_CONSISTENCY).and_then(|v| v.to_str().ok()).is_some_and(|v| v == "stale");
    if local_route(req.uri().path()) || stale {
        return stamp(next.run(req).await, me);
    }
    let commit_timeout = Duration::from_millis(s.config.commit_timeout_ms);
    let Some((leader, leader_node)) = known_leader(&s.node, commit_timeout.min(Duration::from_secs(5))).await else {
        return unavailable("no_leader", "no leader is known (an election may be in progress); retry").into_response();
    };
    if leader == me {
        if read {
            match tokio::time::timeout(commit_timeout, s.node.raft.ensure_linearizable()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return unavailable("not_leader", format!("could not confirm leadership for a read: {e}"))
                        .into_response()
                }
                Err(_) => {
                    return unavailable(
                        "commit_timeout",
                        format!(
                            "a quorum did not confirm this node's leadership within {} ms; retry, or read with Minion-Consistency: stale",
                            commit_timeout.as_millis()
                        ),
                    )
                    .into_response()
                }
            }
        }
        return stamp(next.run(req).await, me);
    }
    if let Some(by) = req.headers().get(HEADER_FORWARDED_BY) {
        let by = by.to_str().unwrap_or("?").to_string();
        return unavailable(
            "not_leader",
            format!("node {me} is not the leader (leader: {leader}); the request was already forwarded by node {by}"),
        )
        .into_response();
    }
    forward(&s, req, leader, &leader_node.api_addr).await
}

fn stamp(mut resp: Response, me: NodeId) -> Response {
    resp.headers_mut().insert(HEADER_NODE, HeaderValue::from(me));
    resp
}

/// Hop-by-hop headers a proxy must not pass on.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "upgrade" | "host" | "content-length"
    )
}

async fn forward(s: &AppState, req: Request, leader: NodeId, addr: &str) -> Response {
    let (parts, body) = req.into_parts();
    let max =
        if parts.uri.path() == "/v1/admin/restore" { s.config.restore_bytes_max } else { s.config.body_bytes_max };
    let body = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(e) => return super::error::body_error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response(),
    };
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let scheme = if s.config.tls_cert.is_some() { "https" } else { "http" };
    let mut out = s.http.request(parts.method.clone(), format!("{scheme}://{addr}{path}"));
    for (name, value) in parts.headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
        out = out.header(name, value);
    }
    // Bounded even if the leader stops answering (a paused process keeps its connections open):
    // long enough for the longest claim wait plus a commit.
    let cfg = &s.config;
    let limit = Duration::from_millis(cfg.claim_wait_ms_max + cfg.commit_timeout_ms + 5_000);
    out = out.header(HEADER_FORWARDED_BY, cfg.node_id.to_string()).timeout(limit).body(body);
    let started = std::time::Instant::now();
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            let outcome = if e.is_connect() { "it was not delivered" } else { "its outcome is unknown" };
            return unavailable(
                "unavailable",
                format!("forwarding to the leader (node {leader} at {addr}) failed, {outcome}: {e}; retry"),
            )
            .into_response();
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return unavailable(
                "unavailable",
                format!("reading the leader's answer (node {leader} at {addr}) failed, outcome unknown: {e}"),
            )
            .into_response()
        }
    };
    metrics::histogram!("minion_http_forwarded_seconds").record(started.elapsed().as_secs_f64());
    let mut r = Response::builder().status(status);
    for (name, value) in headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
        r = r.header(name, value);
    }
    r.body(Body::from(bytes)).unwrap_or_else(|e| {
        ApiError::new(StatusCode::BAD_GATEWAY, "internal", format!("relaying the leader's answer: {e}")).into_response()
    })
}

// --- status ---

fn role_of(m: &openraft::RaftMetrics<NodeId, RaftNode>, id: NodeId) -> &'static str {
    if m.membership_config.membership().voter_ids().any(|v| v == id) {
        "voter"
    } else {
        "learner"
    }
}

/// Cluster status as this node sees it (replication lag is known on the leader only).
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "cluster",
    summary = "Leader, term, committed index, members with role, matched index and lag",
    responses(
        (status = 200, description = "the cluster", body = Object),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn status(State(s): State<AppState>) -> Json<Value> {
    Json(status_json(&s.node))
}

fn status_json(node: &Node) -> Value {
    let m = node.raft.metrics().borrow().clone();
    let last = m.last_log_index.unwrap_or(0);
    let replication: BTreeMap<NodeId, Option<u64>> =
        m.replication.as_ref().map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect()).unwrap_or_default();
    let is_leader = m.current_leader == Some(m.id) && m.state == openraft::ServerState::Leader;
    let members: Vec<Value> = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, n)| {
            let matched = if !is_leader {
                None
            } else if *id == m.id {
                Some(last)
            } else {
                replication.get(id).copied().flatten()
            };
            json!({
                "node_id": id,
                "api_addr": n.api_addr,
                "raft_addr": n.raft_addr,
                "role": role_of(&m, *id),
                "leader": m.current_leader == Some(*id),
                "matched_index": matched,
                "lag": if is_leader { Some(last.saturating_sub(matched.unwrap_or(0))) } else { None },
            })
        })
        .collect();
    json!({
        "cluster_id": node.identity.cluster_id(),
        "answered_by": m.id,
        "leader": m.current_leader,
        "term": m.current_term,
        "last_log_index": m.last_log_index,
        "committed_index": node.log.committed_index().unwrap_or(0),
        "applied_index": m.last_applied.map(|l| l.index),
        "joint_consensus": m.membership_config.membership().get_joint_config().len() > 1,
        "members": members,
    })
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeQuery {
    /// Include a SHA-256 of the state's records as of one applied index (`digest_index`; reads
    /// every record).
    #[serde(default)]
    digest: bool,
}

/// This node only: its raft state, what it has applied and, on request, a digest of its state
/// (replicas at the same applied index have equal digests).
#[utoipa::path(
    get,
    path = "/v1/cluster/node",
    tag = "cluster",
    summary = "The node asked (never forwarded): raft state, applied index, snapshots installed, optional state digest",
    params(
        ("digest" = Option<bool>, Query, description = "also a SHA-256 of the applied state")
    ),
    responses(
        (status = 200, description = "the node", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn node_info(
    State(s): State<AppState>,
    q: Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q?;
    let m = s.node.raft.metrics().borrow().clone();
    let applied = s.state.read().applied.last_applied.map(|l| l.index);
    let (digest, digest_index) = if q.digest {
        let storage = s.node.storage.clone();
        let (index, d) = tokio::task::spawn_blocking(move || {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            let index = storage.consistent_scan(|chunk| {
                for (k, v) in chunk {
                    h.update((k.len() as u64).to_le_bytes());
                    h.update(k);
                    h.update((v.len() as u64).to_le_bytes());
                    h.update(v);
                }
                Ok(())
            })?;
            Ok::<_, String>((index, format!("{:x}", h.finalize())))
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e))?;
        (Some(d), index)
    } else {
        (None, None)
    };
    Ok(Json(json!({
        "node_id": m.id,
        "cluster_id": s.node.identity.cluster_id(),
        "state": format!("{:?}", m.state).to_lowercase(),
        "term": m.current_term,
        "leader": m.current_leader,
        "api_addr": s.node.me.api_addr,
        "raft_addr": s.node.me.raft_addr,
        "last_log_index": m.last_log_index,
        "applied_index": applied,
        "snapshot_index": m.snapshot.map(|l| l.index),
        "purged_index": m.purged.map(|l| l.index),
        "snapshots_installed": s.state.snapshots_installed(),
        "millis_since_quorum_ack": m.millis_since_quorum_ack,
        "digest": digest,
        "digest_index": digest_index,
    })))
}

// --- membership ---

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberIn {
    #[schema(value_type = u64)]
    node_id: NodeId,
    /// Peer address of the new node (`host:port`).
    raft_addr: String,
    /// Its client API address; default: what the node itself advertises.
    #[serde(default)]
    api_addr: Option<String>,
    /// Promote to voter once caught up (default: stay a learner).
    #[serde(default)]
    voter: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceIn {
    #[schema(value_type = u64)]
    node_id: NodeId,
    raft_addr: String,
    #[serde(default)]
    api_addr: Option<String>,
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", message)
}

fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, RaftNode>>) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            unavailable("not_leader", format!("this node is not the leader (leader: {:?}); retry", f.leader_id))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => conflict(e.to_string()),
        RaftError::Fatal(e) => unavailable("unavailable", e.to_string()),
    }
}

struct Members {
    voters: BTreeSet<NodeId>,
    nodes: BTreeMap<NodeId, RaftNode>,
}

fn members(node: &Node) -> Members {
    let m = node.raft.metrics().borrow().clone();
    let mem = m.membership_config.membership();
    Members { voters: mem.voter_ids().collect(), nodes: mem.nodes().map(|(k, v)| (*k, v.clone())).collect() }
}

fn check_addr(field: &str, a: &str) -> ApiResult<()> {
    match a.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.contains('/') && p.parse::<u16>().is_ok_and(|p| p != 0) => Ok(()),
        _ => Err(ApiError::bad_request(format!("{field} must be host:port, got {a:?}"))),
    }
}

/// Ask the node at `raft_addr` who it is, with the cluster secret, and refuse to add it unless it
/// is the node named, reachable, has the same secret, and is new or already of this cluster.
async fn probe(s: &AppState, node_id: NodeId, raft_addr: &str, api_addr: Option<String>) -> ApiResult<RaftNode> {
    check_addr("raft_addr", raft_addr)?;
    if let Some(a) = &api_addr {
        check_addr("api_addr", a)?;
    }
    if node_id == 0 {
        return Err(ApiError::bad_request("node_id must be at least 1"));
    }
    let Some(secret) = s.config.cluster_secret.as_deref() else {
        return Err(conflict("this cluster has no cluster_secret configured; restart its nodes with one to add peers"));
    };
    let resp = s
        .node
        .peers
        .client()
        .get(s.node.peers.url(raft_addr, "/raft/info"))
        .bearer_auth(secret)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|e| ApiError::bad_request(format!("node {node_id} at {raft_addr} is unreachable: {e}")))?;
    if resp.status() == StatusCode::UNAUTHORIZED {
        let text = resp.text().await.unwrap_or_default();
        return Err(conflict(format!("node at {raft_addr} refused this cluster's secret: {text}")));
    }
    if !resp.status().is_success() {
        return Err(ApiError::bad_request(format!("node at {raft_addr} answered {} to /raft/info", resp.status())));
    }
    let info: PeerInfo = resp
        .json()
        .await
        .map_err(|e| ApiError::bad_request(format!("node at {raft_addr} is not a Minion peer port: {e}")))?;
    if info.node_id != node_id {
        return Err(conflict(format!("the node at {raft_addr} is node {}, not node {node_id}", info.node_id)));
    }
    let ours = s.node.identity.cluster_id();
    match (&info.cluster_id, info.initialized) {
        (Some(theirs), _) if Some(theirs) != ours.as_ref() => {
            return Err(conflict(format!(
                "node {node_id} belongs to another cluster ({theirs}); start it on an empty data directory with --join"
            )))
        }
        (None, true) => {
            return Err(conflict(format!(
                "node {node_id} has a raft log but no cluster id; use an empty data directory"
            )))
        }
        _ => {}
    }
    Ok(RaftNode { api_addr: api_addr.unwrap_or(info.api_addr), raft_addr: raft_addr.to_string() })
}

/// Add a node as a learner, wait until it has caught up, and optionally promote it.
#[utoipa::path(
    post,
    path = "/v1/cluster/members",
    tag = "cluster",
    summary = "Add a node started with --join; waits until it has caught up",
    request_body = MemberIn,
    responses(
        (status = 200, description = "the membership", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "a membership change is under way", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn add_member(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<MemberIn>,
) -> ApiResult<Response> {
    let current = members(&s.node);
    if let Some(n) = current.nodes.get(&b.node_id) {
        let role = if current.voters.contains(&b.node_id) { "voter" } else { "learner" };
        return Err(conflict(format!("node {} is already a member ({role}, raft {})", b.node_id, n.raft_addr)));
    }
    let new = probe(&s, b.node_id, &b.raft_addr, b.api_addr).await?;
    tracing::info!(node_id = b.node_id, node = %new, "adding a learner");
    let detail = new.to_string();
    s.node.raft.add_learner(b.node_id, new, true).await.map_err(membership_error)?;
    admin::note(&s, &caller, "cluster.add_learner", b.node_id.to_string(), detail).await;
    if b.voter {
        s.node
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([b.node_id])), false)
            .await
            .map_err(membership_error)?;
        admin::note(&s, &caller, "cluster.promote", b.node_id.to_string(), String::new()).await;
    }
    Ok((StatusCode::CREATED, Json(status_json(&s.node))).into_response())
}

type PathNode = Result<Path<NodeId>, axum::extract::rejection::PathRejection>;

fn unknown(id: NodeId) -> ApiError {
    ApiError::not_found(format!("node {id} is not a member of this cluster"))
}

/// Make a learner a voter.
#[utoipa::path(
    post,
    path = "/v1/cluster/members/{id}/promote",
    tag = "cluster",
    summary = "Learner to voter",
    params(
        ("id" = u64, Path, description = "node id")
    ),
    responses(
        (status = 200, description = "the membership", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "refused", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn promote(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathNode,
) -> ApiResult<Json<Value>> {
    let Path(id) = path?;
    let current = members(&s.node);
    if !current.nodes.contains_key(&id) {
        return Err(unknown(id));
    }
    if current.voters.contains(&id) {
        return Err(conflict(format!("node {id} is already a voter")));
    }
    s.node
        .raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(membership_error)?;
    admin::note(&s, &caller, "cluster.promote", id.to_string(), String::new()).await;
    Ok(Json(status_json(&s.node)))
}

/// Remove a node (voter or learner). The last voter cannot be removed.
#[utoipa::path(
    delete,
    path = "/v1/cluster/members/{id}",
    tag = "cluster",
    summary = "Remove a voter or learner (not the last voter)",
    params(
        ("id" = u64, Path, description = "node id")
    ),
    responses(
        (status = 200, description = "the membership", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "refused", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn remove(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathNode,
) -> ApiResult<Json<Value>> {
    let Path(id) = path?;
    let current = members(&s.node);
    if !current.nodes.contains_key(&id) {
        return Err(unknown(id));
    }
    let change = if current.voters.contains(&id) {
        if current.voters.len() == 1 {
            return Err(conflict(format!("node {id} is the last voter; a cluster needs at least one")));
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    s.node.raft.change_membership(change, false).await.map_err(membership_error)?;
    admin::note(&s, &caller, "cluster.remove", id.to_string(), String::new()).await;
    Ok(Json(status_json(&s.node)))
}

/// Replace a (dead) voter by a new node: add the new node as a learner, wait until it has caught
/// up, then swap the voter sets in one joint change.
#[utoipa::path(
    post,
    path = "/v1/cluster/members/{id}/replace",
    tag = "cluster",
    summary = "The new node takes voter {id}'s place",
    request_body = ReplaceIn,
    params(
        ("id" = u64, Path, description = "node id")
    ),
    responses(
        (status = 200, description = "the membership", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut),
        (status = 409, description = "refused", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn replace(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathNode,
    JsonBody(b): JsonBody<ReplaceIn>,
) -> ApiResult<Json<Value>> {
    let Path(old) = path?;
    let current = members(&s.node);
    if !current.voters.contains(&old) {
        return Err(if current.nodes.contains_key(&old) {
            conflict(format!("node {old} is a learner; remove it instead"))
        } else {
            unknown(old)
        });
    }
    if current.nodes.contains_key(&b.node_id) {
        return Err(conflict(format!("node {} is already a member", b.node_id)));
    }
    let new = probe(&s, b.node_id, &b.raft_addr, b.api_addr).await?;
    s.node.raft.add_learner(b.node_id, new, true).await.map_err(membership_error)?;
    let mut voters = current.voters.clone();
    voters.remove(&old);
    voters.insert(b.node_id);
    s.node.raft.change_membership(ChangeMembers::ReplaceAllVoters(voters), false).await.map_err(membership_error)?;
    admin::note(&s, &caller, "cluster.replace", old.to_string(), format!("by node {}", b.node_id)).await;
    Ok(Json(status_json(&s.node)))
}

//! A leader whose disk stalls keeps its followers from electing, for a bounded time.
//!
//! openraft 0.9 waits in its core loop for every append of the leader's log to be flushed, so
//! while the leader's disk stalls it sends no heartbeats, and after an election timeout the
//! followers elect another leader — for a stall of a few hundred milliseconds, a leadership change
//! and the retries of every client. Instead, the leader's own task (which no disk wait blocks)
//! watches the log thread: once a write has been in progress for a heartbeat interval, it tells
//! each voter that it is alive (`/raft/alive` on the peer port, term and leader id, with the
//! cluster secret), and a follower that still follows that leader in that term holds its
//! elections for an election timeout after each such message. After `disk_stall_grace_ms` of one
//! stall the leader stops asking, so a disk that is gone for good still fails over; a leader that
//! crashed or is cut off sends nothing, and elections go on as before. Holding an election off
//! never affects safety (raft's votes and commits are unchanged), only when one starts.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use minion_raft::network::{HEADER_CLUSTER, HEADER_FROM, HEADER_TO};
use minion_raft::peer::{self, Caller};
use serde::{Deserialize, Serialize};

use crate::node::Node;

pub const PATH_ALIVE: &str = "/raft/alive";

/// "I lead in this term, and my disk is slow": what a stalled leader tells its voters.
#[derive(Debug, Serialize, Deserialize)]
pub struct Alive {
    pub term: u64,
    pub leader: u64,
}

impl Node {
    /// Leader side: while the log thread has been writing for longer than a heartbeat interval
    /// (and for less than the grace), tell every other voter that this leader is alive.
    pub async fn run_stall_keepalive(self) {
        let every = Duration::from_millis((self.config.election_timeout_ms / 4).max(20));
        let grace = Duration::from_millis(self.config.disk_stall_grace_ms);
        let mut warned = false;
        loop {
            tokio::time::sleep(every).await;
            let stalled = self.log.stalled_for();
            let Some(stalled) = stalled.filter(|s| *s >= every && *s <= grace) else {
                warned = false;
                continue;
            };
            let m = self.raft.metrics().borrow().clone();
            if m.current_leader != Some(self.config.node_id) || m.state != openraft::ServerState::Leader {
                continue;
            }
            if !warned {
                warned = true;
                tracing::warn!(
                    stalled_ms = stalled.as_millis() as u64,
                    grace_ms = grace.as_millis() as u64,
                    "this node's log write is stalled; holding the followers' elections off for up to the grace"
                );
            }
            metrics::counter!("minion_disk_stall_keepalives_total").increment(1);
            let body = Alive { term: m.current_term, leader: self.config.node_id };
            for (id, member) in m.membership_config.membership().nodes() {
                if *id == self.config.node_id || member.raft_addr.is_empty() {
                    continue;
                }
                let (node, id, addr) = (self.clone(), *id, member.raft_addr.clone());
                let body = serde_json::to_vec(&body).unwrap_or_default();
                tokio::spawn(async move { node.send_alive(id, &addr, body, every).await });
            }
        }
    }

    async fn send_alive(&self, target: u64, addr: &str, body: Vec<u8>, ttl: Duration) {
        let (Some(secret), Some(cluster)) = (self.config.cluster_secret.as_deref(), self.identity.cluster_id()) else {
            return;
        };
        let sent = self
            .peers
            .client()
            .post(self.peers.url(addr, PATH_ALIVE))
            .bearer_auth(secret)
            .header(HEADER_CLUSTER, cluster)
            .header(HEADER_FROM, self.config.node_id.to_string())
            .header(HEADER_TO, target.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .timeout(ttl)
            .body(body)
            .send()
            .await;
        if let Err(e) = sent {
            tracing::debug!(target, error = %e, "telling a follower this leader is alive");
        }
    }

    /// Follower side: re-enable elections once no leader has asked to hold them for an election
    /// timeout.
    pub async fn run_election_hold(self) {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut hold = self.election_hold.lock().unwrap_or_else(|p| p.into_inner());
            if hold.is_some_and(|until| Instant::now() >= until) {
                *hold = None;
                self.raft.runtime_config().elect(true);
                tracing::info!("elections allowed again: the leader no longer reports a stalled disk");
            }
        }
    }
}

/// `/raft/alive`: hold this node's elections off for an election timeout, if it follows the
/// sender in the sender's term. 204 when held; 409 when this node does not follow that leader.
pub async fn alive(State(node): State<Node>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let caller = Caller {
        authorization: h(header::AUTHORIZATION.as_str()),
        cluster: h(HEADER_CLUSTER),
        from: h(HEADER_FROM),
        to: h(HEADER_TO),
    };
    let from = match peer::admit(&node.identity, node.config.cluster_secret.as_deref(), &caller) {
        Ok(from) => from,
        Err(r) => return crate::peer::refusal(r),
    };
    let Ok(a) = serde_json::from_slice::<Alive>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not {\"term\", \"leader\"}").into_response();
    };
    let m = node.raft.metrics().borrow().clone();
    let follows = a.leader == from
        && m.state == openraft::ServerState::Follower
        && m.current_term == a.term
        && m.current_leader == Some(a.leader);
    if !follows {
        return (StatusCode::CONFLICT, "this node does not follow that leader in that term").into_response();
    }
    let until = Instant::now() + Duration::from_millis(node.config.election_timeout_ms * 2);
    let mut hold = node.election_hold.lock().unwrap_or_else(|p| p.into_inner());
    if hold.is_none() {
        tracing::info!(leader = a.leader, "the leader reports a stalled disk; holding elections off");
    }
    *hold = Some(until);
    node.raft.runtime_config().elect(false);
    StatusCode::NO_CONTENT.into_response()
}

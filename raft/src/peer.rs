//! The receiving side of peer RPC, independent of the HTTP server that carries it: check who is
//! calling, decode the frame, hand the message to raft, encode the answer.

use minion_storage::frame;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use subtle::ConstantTimeEq;

use crate::identity::ClusterIdentity;
use crate::network::{PATH_APPEND, PATH_SNAPSHOT, PATH_STAGE, PATH_VOTE};
use crate::staging::{StagingCache, WireAppend, WireEntry};
use crate::{Entry, NodeId, Raft, TypeConfig};

/// Why a peer request was refused before reaching raft. Nothing changes when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    WrongCluster(String),
    #[error("{0}")]
    WrongNode(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A staged entry this node no longer holds: the sender stages it again.
    #[error("{0}")]
    Gone(String),
}

/// What the caller presented.
#[derive(Debug, Default)]
pub struct Caller<'a> {
    pub authorization: Option<&'a str>,
    pub cluster: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
}

/// Authenticate a peer: the shared secret (compared in constant time), the target node id, and the
/// cluster id, which a node that has not joined a cluster yet adopts from its first valid caller.
pub fn admit(identity: &ClusterIdentity, secret: Option<&str>, caller: &Caller<'_>) -> Result<NodeId, Refusal> {
    check_secret(secret, caller.authorization)?;
    let from = caller
        .from
        .and_then(|f| f.parse::<NodeId>().ok())
        .ok_or_else(|| Refusal::BadRequest("missing or invalid x-minion-from".into()))?;
    let to = caller.to.and_then(|t| t.parse::<NodeId>().ok());
    if to != Some(identity.node_id()) {
        return Err(Refusal::WrongNode(format!(
            "this is node {}, not node {}",
            identity.node_id(),
            caller.to.unwrap_or("(none)")
        )));
    }
    let cluster = caller.cluster.filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_hexdigit()));
    let Some(cluster) = cluster else {
        return Err(Refusal::BadRequest("missing or invalid x-minion-cluster".into()));
    };
    identity.adopt(cluster).map_err(|e| match e {
        crate::identity::IdentityError::OtherCluster { .. } => Refusal::WrongCluster(e.to_string()),
        other => Refusal::BadRequest(format!("recording the cluster id: {other}")),
    })?;
    Ok(from)
}

/// The caller's `Authorization: Bearer <secret>` against this node's secret, in constant time.
pub fn check_secret(secret: Option<&str>, authorization: Option<&str>) -> Result<(), Refusal> {
    let Some(secret) = secret else {
        return Err(Refusal::Unauthorized("no cluster secret is configured on this node".into()));
    };
    let presented = authorization.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
    if !bool::from(presented.as_bytes().ct_eq(secret.as_bytes())) {
        return Err(Refusal::Unauthorized("wrong or missing cluster secret".into()));
    }
    Ok(())
}

/// Decode, deliver and answer one peer message. Raft's own errors travel back in the answer.
pub async fn handle(raft: &Raft, staging: &StagingCache, path: &str, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let bad = |e: minion_storage::frame::FrameError| Refusal::BadRequest(format!("undecodable {path} body: {e}"));
    let encoded = match path {
        PATH_APPEND => {
            let w: WireAppend = frame::decode(body).map_err(bad)?;
            let mut entries = Vec::with_capacity(w.entries.len());
            for e in w.entries {
                entries.push(match e {
                    WireEntry::Inline(e) => e,
                    WireEntry::Staged(id) => staging
                        .take(&id)
                        .ok_or_else(|| Refusal::Gone(format!("staged entry {id} is not here (stage it again)")))?,
                });
            }
            let req = AppendEntriesRequest::<TypeConfig> {
                vote: w.vote,
                prev_log_id: w.prev_log_id,
                leader_commit: w.leader_commit,
                entries,
            };
            frame::encode(&raft.append_entries(req).await)
        }
        PATH_STAGE => {
            let e: Entry = frame::decode(body).map_err(bad)?;
            staging.put(e);
            frame::encode(&Ok::<(), openraft::error::RaftError<NodeId>>(()))
        }
        PATH_VOTE => {
            let req: VoteRequest<NodeId> = frame::decode(body).map_err(bad)?;
            frame::encode(&raft.vote(req).await)
        }
        PATH_SNAPSHOT => {
            let req: InstallSnapshotRequest<TypeConfig> = frame::decode(body).map_err(bad)?;
            frame::encode(&raft.install_snapshot(req).await)
        }
        other => return Err(Refusal::NotFound(format!("no peer route {other}"))),
    };
    encoded.map_err(|e| Refusal::BadRequest(format!("encoding the answer: {e}")))
}

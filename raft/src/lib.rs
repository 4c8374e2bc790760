//! openraft glue: Minion's type configuration, the log store over Minion's write-ahead log, the
//! state machine over the engine and the record store, and the network seam.
//!
//! A single node is a cluster of one: writes go through the same Raft log whether or not there are
//! peers, so growing to three nodes needs no data migration. Peers talk over HTTP
//! ([`network`] sends, [`peer`] receives), authenticated by a shared secret and a cluster id
//! ([`identity`]). [`open`] opens a data directory and recovers it.

#[cfg(test)]
mod apply_reads;
pub mod checkpointer;
pub mod identity;
pub mod log_store;
pub mod log_tail;
pub mod network;
pub mod open;
pub mod peer;
pub mod poison;
#[cfg(test)]
mod power_loss;
pub mod snapshot_data;
pub mod staging;
pub mod state_machine;

use std::sync::Mutex;

use minion_engine::{Request, Response};
use minion_storage::wal::LogPos;
use serde::{Deserialize, Serialize};

pub use log_store::LogStore;
pub use open::{open, open_with, OpenOptions, Opened, StorageHandle};
pub use snapshot_data::SnapshotData;
pub use state_machine::{AppliedEvents, SharedState, StateMachine};

pub type NodeId = u64;

/// How to reach a member of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Client API address (`host:port`).
    pub api_addr: String,
    /// Peer (raft RPC) address (`host:port`).
    pub raft_addr: String,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "api={} raft={}", self.api_addr, self.raft_addr)
    }
}

openraft::declare_raft_types!(
    /// Minion's openraft type configuration.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotData,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type StorageError = openraft::StorageError<NodeId>;

pub(crate) fn log_pos(id: &LogId) -> LogPos {
    LogPos { index: id.index, term: id.leader_id.term, node: id.leader_id.node_id }
}

pub(crate) fn log_id(p: &LogPos) -> LogId {
    openraft::LogId::new(openraft::CommittedLeaderId::new(p.term, p.node), p.index)
}

/// How far the log may be physically purged: never past what the state store has made durable,
/// nor past the current snapshot, so the state can always be rebuilt from the snapshot and the log.
#[derive(Debug, Default)]
pub struct PurgeBounds {
    inner: Mutex<(Option<u64>, Option<u64>)>,
    /// Bytes of the current snapshot file (for the snapshot policy).
    pub snapshot_bytes: std::sync::atomic::AtomicU64,
}

impl PurgeBounds {
    pub fn set_state_durable(&self, index: Option<u64>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0 = index;
    }
    pub fn set_snapshot(&self, index: Option<u64>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).1 = index;
    }
    /// The last entry that may be purged, if any.
    pub fn limit(&self) -> Option<u64> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.min(g.1)
    }
}

/// Run blocking storage work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("storage task failed: {e}")),
    }
}

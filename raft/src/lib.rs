//! openraft glue: Minion's type configuration, the log store and state machine over
//! `minion-storage`, and the network seam.
//!
//! A single node is a cluster of one: writes go through the same Raft log whether or not there are
//! peers, so growing to three nodes needs no data migration. Peers talk over HTTP
//! ([`network`] sends, [`peer`] receives), authenticated by a shared secret and a cluster id
//! ([`identity`]).

pub mod identity;
pub mod log_store;
pub mod network;
pub mod peer;
pub mod state_machine;

use std::io::Cursor;

use minion_engine::{Request, Response};
use serde::{Deserialize, Serialize};

pub use log_store::LogStore;
pub use state_machine::{SharedState, StateMachine};

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
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Run blocking storage work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, minion_storage::StorageError> + Send + 'static,
) -> Result<T, minion_storage::StorageError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(minion_storage::StorageError::Io {
            path: Default::default(),
            source: std::io::Error::other(format!("storage task failed: {e}")),
        }),
    }
}

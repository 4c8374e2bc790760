//! The network seam between raft nodes.
//!
//! This build runs one node per cluster: a cluster of one never sends a raft RPC, so every call
//! here answers "unreachable". Peer RPC over HTTP replaces it when clusters of several nodes land.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

use crate::{Node, NodeId, TypeConfig};

#[derive(Debug, Clone, Default)]
pub struct SingleNodeNetwork;

#[derive(Debug, thiserror::Error)]
#[error("node {0} is not reachable: this build runs single-node clusters only")]
struct NoPeers(NodeId);

pub struct NoPeerClient {
    target: NodeId,
}

impl NoPeerClient {
    fn err<E: std::error::Error>(&self) -> RPCError<NodeId, Node, E> {
        RPCError::Unreachable(Unreachable::new(&NoPeers(self.target)))
    }
}

impl RaftNetworkFactory<TypeConfig> for SingleNodeNetwork {
    type Network = NoPeerClient;

    async fn new_client(&mut self, target: NodeId, _node: &Node) -> Self::Network {
        NoPeerClient { target }
    }
}

impl RaftNetwork<TypeConfig> for NoPeerClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        Err(self.err())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>> {
        Err(self.err())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        Err(self.err())
    }
}

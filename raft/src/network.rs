//! Peer RPC between raft nodes: openraft's append, vote and snapshot messages over HTTP.
//!
//! Each message is a POST to the target's raft address (`/raft/append`, `/raft/vote`,
//! `/raft/snapshot`) whose body is a CRC-checked postcard frame (the same framing as the log).
//! The answer is a frame holding `Result<response, RaftError>`. Every request carries the shared
//! cluster secret as a bearer token, the cluster id, and the sender's and target's node ids; the
//! receiving side ([`crate::peer`]) refuses a request that does not match.
//!
//! The client is reqwest (hyper underneath) with keep-alive connections; each call is bounded by
//! the deadline openraft gives it, and a whole snapshot transfer by `snapshot_deadline`.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use minion_storage::frame;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Timeout, Unreachable,
};
use openraft::network::snapshot_transport::{Chunked, SnapshotTransport};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, SnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Snapshot, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::identity::ClusterIdentity;
use crate::staging;
use crate::{Node, NodeId, TypeConfig};

pub const PATH_APPEND: &str = "/raft/append";
pub const PATH_STAGE: &str = "/raft/stage";
pub const PATH_VOTE: &str = "/raft/vote";
pub const PATH_SNAPSHOT: &str = "/raft/snapshot";
pub const HEADER_CLUSTER: &str = "x-minion-cluster";
pub const HEADER_FROM: &str = "x-minion-from";
pub const HEADER_TO: &str = "x-minion-to";

/// How this node reaches its peers.
#[derive(Clone)]
pub struct HttpNetwork {
    inner: Arc<Shared>,
}

/// Mutual TLS between peers: this node's certificate chain and key, and the CA peers chain to.
#[derive(Clone)]
pub struct PeerTls {
    /// PEM: the certificate chain followed by the private key.
    pub identity_pem: Vec<u8>,
    pub ca_pem: Vec<u8>,
}

struct Shared {
    http: reqwest::Client,
    scheme: &'static str,
    secret: Option<String>,
    identity: Arc<ClusterIdentity>,
    snapshot_deadline: Duration,
    /// Large entries staged on (or being uploaded to) each peer: see [`crate::staging`].
    stage: std::sync::Mutex<std::collections::HashMap<NodeId, TargetStage>>,
}

#[derive(Default)]
struct TargetStage {
    staged: std::collections::BTreeSet<(u64, u64, u64)>,
    uploading: std::collections::BTreeSet<(u64, u64, u64)>,
}

fn stage_key(id: &crate::LogId) -> (u64, u64, u64) {
    (id.index, id.leader_id.term, id.leader_id.node_id)
}

impl HttpNetwork {
    /// `local_ip` binds outgoing peer connections to one address (multi-homed hosts; the test
    /// harness uses it to tell peers apart behind a fault-injecting proxy).
    pub fn new(
        identity: Arc<ClusterIdentity>,
        secret: Option<String>,
        local_ip: Option<IpAddr>,
        snapshot_deadline: Duration,
        tls: Option<PeerTls>,
    ) -> Result<HttpNetwork, reqwest::Error> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true)
            .local_address(local_ip);
        let scheme = match &tls {
            Some(t) => {
                // Peers are trusted through the cluster's CA only, never the system's roots.
                b = b
                    .use_rustls_tls()
                    .tls_built_in_root_certs(false)
                    .identity(reqwest::Identity::from_pem(&t.identity_pem)?);
                for c in reqwest::Certificate::from_pem_bundle(&t.ca_pem)? {
                    b = b.add_root_certificate(c);
                }
                "https"
            }
            None => "http",
        };
        let http = b.build()?;
        Ok(HttpNetwork {
            inner: Arc::new(Shared { http, scheme, secret, identity, snapshot_deadline, stage: Default::default() }),
        })
    }

    /// The client peers are called with (its TLS identity included), e.g. to probe a new node.
    pub fn client(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The URL of `path` on the peer port at `addr`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.inner.scheme)
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient { target, node: node.clone(), inner: self.inner.clone() }
    }
}

/// One target peer.
pub struct PeerClient {
    target: NodeId,
    node: Node,
    inner: Arc<Shared>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PeerFailure(String);

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let network = |msg: String| RPCError::Network(NetworkError::new(&PeerFailure(msg)));
        let body = frame::encode(req).map_err(|e| network(format!("encoding the request: {e}")))?;
        self.call_raw(action, path, body, ttl).await
    }

    /// [`PeerClient::call`] with the body already framed.
    async fn call_raw<Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable = |msg: String| RPCError::Unreachable(Unreachable::new(&PeerFailure(msg)));
        let network = |msg: String| RPCError::Network(NetworkError::new(&PeerFailure(msg)));
        let Some(secret) = self.inner.secret.as_deref() else {
            return Err(unreachable("no cluster secret is configured on this node".into()));
        };
        let Some(cluster) = self.inner.identity.cluster_id() else {
            return Err(unreachable("this node has not joined a cluster yet".into()));
        };
        if self.node.raft_addr.is_empty() {
            return Err(unreachable(format!("node {} has no raft address", self.target)));
        }
        let started = std::time::Instant::now();
        let sent = self
            .inner
            .http
            .post(format!("{}://{}{path}", self.inner.scheme, self.node.raft_addr))
            .bearer_auth(secret)
            .header(HEADER_CLUSTER, cluster)
            .header(HEADER_FROM, self.inner.identity.node_id().to_string())
            .header(HEADER_TO, self.target.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(ttl)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.inner.identity.node_id(),
                    target: self.target,
                    timeout: ttl,
                }))
            }
            Err(e) if e.is_connect() => return Err(unreachable(format!("connecting to {}: {e}", self.node.raft_addr))),
            Err(e) => return Err(network(format!("{path} to node {}: {e}", self.target))),
        };
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| network(format!("reading the answer to {path}: {e}")))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            let msg = format!("node {} refused {path} ({status}): {text}", self.target);
            if status == reqwest::StatusCode::GONE {
                // A staged entry the target no longer holds: stage it again, at once.
                self.with_stage(|st| st.staged.clear());
                return Err(network(msg));
            }
            // Refusals (wrong secret, wrong cluster, wrong node) are not fixed by retrying at once.
            return Err(if status.is_client_error() { unreachable(msg) } else { network(msg) });
        }
        metrics::histogram!("minion_peer_rpc_seconds", "rpc" => path.to_string())
            .record(started.elapsed().as_secs_f64());
        let answer: Result<Resp, RaftError<NodeId, E>> =
            frame::decode(&bytes).map_err(|e| network(format!("undecodable answer to {path}: {e}")))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

impl PeerClient {
    fn with_stage<R>(&self, f: impl FnOnce(&mut TargetStage) -> R) -> R {
        let mut g = self.inner.stage.lock().unwrap_or_else(|p| p.into_inner());
        f(g.entry(self.target).or_default())
    }

    /// Upload a large entry to the target's staging cache in a task of its own (openraft cannot
    /// cancel it), with a deadline that grows with its size.
    fn start_upload(&self, e: &crate::Entry) {
        let key = stage_key(&e.log_id);
        if self.with_stage(|st| st.staged.contains(&key) || !st.uploading.insert(key)) {
            return;
        }
        let body = match frame::encode(e) {
            Ok(b) => b,
            Err(err) => {
                tracing::error!(error = %err, "encoding an entry to stage");
                self.with_stage(|st| st.uploading.remove(&key));
                return;
            }
        };
        let bytes = body.len() as u64;
        let deadline =
            Duration::from_secs(10) + Duration::from_millis(bytes * 1_000 / staging::STAGE_BYTES_PER_SEC_MIN);
        let me = PeerClient { target: self.target, node: self.node.clone(), inner: self.inner.clone() };
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r: Result<(), RPCError<NodeId, Node, RaftError<NodeId>>> =
                me.call_raw(RPCTypes::AppendEntries, PATH_STAGE, body, deadline).await;
            me.with_stage(|st| {
                st.uploading.remove(&key);
                if r.is_ok() {
                    st.staged.insert(key);
                }
            });
            match r {
                Ok(()) => {
                    metrics::histogram!("minion_peer_stage_seconds").record(started.elapsed().as_secs_f64());
                    tracing::debug!(target = me.target, index = key.0, bytes, "entry staged");
                }
                Err(e) => {
                    tracing::warn!(target = me.target, index = key.0, bytes, error = %e, "staging an entry failed; it will be tried again")
                }
            }
        });
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    /// Sized by bytes: see [`crate::staging`]. When not every entry could go, a success is
    /// reported as partial, up to the last entry sent.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let prev = rpc.prev_log_id;
        let mut entries = Vec::with_capacity(rpc.entries.len());
        let mut inline = 0usize;
        let mut cut = false;
        let mut used_staged = Vec::new();
        for e in rpc.entries {
            let b = staging::entry_bytes(&e);
            if b >= staging::STAGE_ENTRY_BYTES {
                let key = stage_key(&e.log_id);
                if self.with_stage(|st| st.staged.contains(&key)) {
                    used_staged.push(key);
                    entries.push(staging::WireEntry::Staged(e.log_id));
                    continue;
                }
                self.start_upload(&e);
                cut = true;
                break;
            }
            if inline + b > staging::INLINE_BYTES_MAX && !entries.is_empty() {
                cut = true;
                break;
            }
            inline += b;
            entries.push(staging::WireEntry::Inline(e));
        }
        let last_sent = entries.last().map(|w| match w {
            staging::WireEntry::Inline(e) => e.log_id,
            staging::WireEntry::Staged(id) => *id,
        });
        let empty = entries.is_empty();
        let wire = staging::WireAppend { vote: rpc.vote, prev_log_id: prev, leader_commit: rpc.leader_commit, entries };
        let resp: AppendEntriesResponse<NodeId> =
            self.call(RPCTypes::AppendEntries, PATH_APPEND, &wire, option.hard_ttl()).await?;
        if !used_staged.is_empty() {
            self.with_stage(|st| {
                for k in used_staged {
                    st.staged.remove(&k);
                }
            });
        }
        if !cut {
            return Ok(resp);
        }
        if empty {
            // Only a heartbeat could go while an upload runs: do not spin.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(match resp {
            AppendEntriesResponse::Success => AppendEntriesResponse::PartialSuccess(last_sent.or(prev)),
            other => other,
        })
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>> {
        self.call(RPCTypes::InstallSnapshot, PATH_SNAPSHOT, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(RPCTypes::Vote, PATH_VOTE, &rpc, option.hard_ttl()).await
    }

    /// Chunked transfer (each chunk bounded by `install_snapshot_timeout`), the whole transfer
    /// bounded by the snapshot deadline.
    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let deadline = self.inner.snapshot_deadline;
        let bytes = snapshot.snapshot.len().await.unwrap_or(0);
        let started = std::time::Instant::now();
        match tokio::time::timeout(deadline, Chunked::send_snapshot(self, vote, snapshot, cancel, option)).await {
            Ok(r) => {
                if r.is_ok() {
                    metrics::histogram!("minion_raft_snapshot_send_seconds").record(started.elapsed().as_secs_f64());
                    tracing::info!(target = self.target, bytes, "snapshot sent");
                }
                r
            }
            Err(_) => Err(StreamingError::Timeout(Timeout {
                action: RPCTypes::InstallSnapshot,
                id: self.inner.identity.node_id(),
                target: self.target,
                timeout: deadline,
            })),
        }
    }

    /// After an unreachable peer: retry in 200 ms, doubling up to 2 s.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(
            (0..).map(|i: u32| Duration::from_millis(200u64 << i.min(4)).min(Duration::from_secs(2))),
        )
    }
}

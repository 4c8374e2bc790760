//! A running Minion node: storage, raft, the group-commit proposer and leader housekeeping.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use minion_engine::{Command, Outcome, Request, Response};
use minion_raft::identity::ClusterIdentity;
use minion_raft::network::HttpNetwork;
use minion_raft::{LogStore, Node as RaftNode, NodeId, Raft, SharedState, StorageHandle};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;

use crate::config::Config;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How long [`Node::propose_to_outcome`] waits for a command's outcome at most.
const OUTCOME_WAIT_MS: u64 = 600_000;

/// Why a proposal did not produce an engine answer.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("raft is shutting down: {0}")]
    Fatal(String),
    #[error("the node is shutting down")]
    Closed,
    #[error("not confirmed by a quorum within {0} ms; the outcome is unknown (retry with the same idempotency key)")]
    Timeout(u64),
    #[error("the request is about {bytes} bytes in the log, over the limit of {max} bytes per log entry (entry_bytes_max); send it in smaller parts")]
    TooLarge { bytes: usize, max: usize },
    #[error("internal error: {0}")]
    Internal(String),
}

struct Proposal {
    cmd: Command,
    reply: oneshot::Sender<Result<Response, ProposeError>>,
    /// The proposer's span, linked from the group commit that carries the command.
    span: tracing::Span,
}

/// Handle to the node: cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub raft: Raft,
    pub state: SharedState,
    /// The data directory's storage (checkpoint, state writer, state store).
    pub storage: Arc<StorageHandle>,
    /// The log (committed and synced indexes, bytes).
    pub log: LogStore,
    pub config: Arc<Config>,
    proposals: mpsc::Sender<Proposal>,
    /// Waiting claims, dispatch strategies and agent liveness (leader-side).
    pub hub: crate::dispatch::Hub,
    /// Pool evaluations and their decisions (leader-side).
    pub autoscalers: crate::autoscaler::Autoscalers,
    /// Latest status report of every adapter (leader-side).
    pub adapters: crate::adapters::Adapters,
    /// Node id and cluster id, as recorded in the data directory.
    pub identity: Arc<ClusterIdentity>,
    /// How peers and clients reach this node.
    pub me: RaftNode,
    /// The peer client (with its TLS identity, if any), for probing nodes being added.
    pub peers: HttpNetwork,
    /// Large entries a leader staged here ahead of its appends.
    pub staging: Arc<minion_raft::staging::StagingCache>,
    /// The time this node stamps into what it proposes (its wall clock, bounded).
    pub clock: Arc<crate::clock::LeaderClock>,
    /// Until when this node holds its elections off for a leader whose disk stalls.
    pub election_hold: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Node {
    /// Open the data directory and start raft. A fresh directory forms a cluster of one (unless
    /// `join` is set: then the node waits to be added to a cluster). A node that is the only voter
    /// of its cluster waits until it leads before returning.
    pub async fn start(config: Config, me: RaftNode) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let identity = Arc::new(ClusterIdentity::load(&config.data_dir, config.node_id)?);
        let opts = minion_raft::OpenOptions {
            durability: config.durability,
            cache_bytes: config.storage_cache_bytes,
            segment_bytes: config.wal_segment_bytes,
            writer_queue_bytes: config.state_queue_bytes,
            durable_every: Duration::from_millis(config.state_durable_every_ms),
            origin: format!("node {}", config.node_id),
            feed_retained_entries: config.feed_retained_entries,
        };
        let dir = config.data_dir.clone();
        let opened = tokio::task::spawn_blocking(move || minion_raft::open(&dir, &opts))
            .await
            .context("opening the data directory")?
            .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
        let state = opened.state_machine.shared();
        let clock = Arc::new(crate::clock::LeaderClock::new(config.clock_step_max_ms, state.read().engine.clock()));
        let storage = Arc::new(opened.handle);
        let log = opened.log_store.clone();
        let raft_config = openraft::Config {
            cluster_name: "minion".into(),
            heartbeat_interval: (config.election_timeout_ms / 4).max(20),
            election_timeout_min: config.election_timeout_ms,
            election_timeout_max: config.election_timeout_ms * 2,
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: 1 << 20,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
            max_in_snapshot_log_to_keep: config.snapshot_logs.min(1_000),
            max_payload_entries: 512,
            ..Default::default()
        }
        .validate()
        .context("raft configuration")?;
        let local_ip = Some(config.raft_listen.ip()).filter(|ip| !ip.is_unspecified());
        let peer_tls = match (&config.peer_tls_cert, &config.peer_tls_key, &config.peer_tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
                let mut identity_pem = read(cert)?;
                identity_pem.push(b'\n');
                identity_pem.extend(read(key)?);
                Some(minion_raft::network::PeerTls { identity_pem, ca_pem: read(ca)? })
            }
            _ => None,
        };
        let network = HttpNetwork::new(
            identity.clone(),
            config.cluster_secret.clone(),
            local_ip,
            Duration::from_millis(config.snapshot_transfer_deadline_ms),
            peer_tls,
        )
        .context("building the peer client")?;
        let peers = network.clone();
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, opened.log_store, opened.state_machine)
            .await
            .context("starting raft")?;

        if !raft.is_initialized().await.map_err(|e| anyhow!("raft: {e}"))? {
            if config.join {
                tracing::info!(node_id = config.node_id, %me, "waiting to be added to a cluster (minion cluster add)");
            } else {
                let cluster_id = identity.ensure_new_cluster()?;
                raft.initialize(BTreeMap::from([(config.node_id, me.clone())]))
                    .await
                    .map_err(|e| anyhow!("initialising a cluster of one: {e}"))?;
                tracing::info!(node_id = config.node_id, cluster_id, "initialised a new cluster of one");
            }
        } else if identity.cluster_id().is_none() {
            // A data directory from before cluster ids were recorded: it forms its own cluster.
            identity.ensure_new_cluster()?;
        }
        let sole_voter = {
            let m = raft.metrics().borrow().clone();
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            voters == [config.node_id]
        };
        if sole_voter {
            raft.wait(Some(Duration::from_secs(30)))
                .current_leader(config.node_id, "this node leads its cluster of one")
                .await
                .map_err(|e| anyhow!("waiting for leadership: {e}"))?;
        }

        let (tx, rx) = mpsc::channel(config.group_commit_max * 4);
        let autoscalers = crate::autoscaler::Autoscalers::new(&config.pools);
        let node = Node {
            raft,
            state,
            storage,
            log,
            config: Arc::new(config),
            proposals: tx,
            hub: Default::default(),
            autoscalers,
            adapters: Default::default(),
            identity,
            me,
            peers,
            staging: Default::default(),
            clock,
            election_hold: Default::default(),
        };
        tokio::spawn(node.clone().run_proposer(rx));
        if sole_voter {
            node.on_leadership_gained().await?;
        } else {
            node.warn_if_engine_config_differs();
        }
        tokio::spawn(node.clone().run_leadership());
        tokio::spawn(node.clone().run_housekeeping());
        tokio::spawn(node.clone().run_checkpointer());
        tokio::spawn(node.hub.clone().run(node.clone()));
        tokio::spawn(node.hub.clone().run_liveness(node.clone()));
        tokio::spawn(node.clone().run_stall_keepalive());
        tokio::spawn(node.clone().run_election_hold());
        let every = Duration::from_millis(node.config.autoscale_interval_ms);
        tokio::spawn(node.autoscalers.clone().run(node.clone(), every));
        Ok(node)
    }

    /// Propose a command and wait until it is committed and applied (or the commit timeout).
    /// A command over the log-entry byte cap is refused before it is proposed.
    pub async fn propose(&self, cmd: Command) -> Result<Response, ProposeError> {
        let bytes = cmd.approx_bytes();
        if bytes > self.config.entry_bytes_max {
            return Err(ProposeError::TooLarge { bytes, max: self.config.entry_bytes_max });
        }
        let span = tracing::info_span!("raft.propose", command = cmd.name());
        self.propose_in(cmd, span.clone(), self.config.commit_timeout_ms).instrument(span).await
    }

    async fn propose_in(&self, cmd: Command, span: tracing::Span, limit: u64) -> Result<Response, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.proposals.send(Proposal { cmd, reply, span }).await.map_err(|_| ProposeError::Closed)?;
        match tokio::time::timeout(Duration::from_millis(limit), rx).await {
            Ok(r) => r.map_err(|_| ProposeError::Closed)?,
            Err(_) => Err(ProposeError::Timeout(limit)),
        }
    }

    /// Like [`Node::propose`], but waits for the outcome well past the commit timeout (up to
    /// [`OUTCOME_WAIT_MS`]): for commands whose effects must be undone when their caller has
    /// given up, such as a claim whose leases never reached the agent.
    pub async fn propose_to_outcome(&self, cmd: Command) -> Result<Response, ProposeError> {
        let span = tracing::info_span!("raft.propose", command = cmd.name());
        let limit = self.config.commit_timeout_ms.max(OUTCOME_WAIT_MS);
        self.propose_in(cmd, span.clone(), limit).instrument(span).await
    }

    /// Follow leadership: leader-only work starts on gaining it, and waiting long-polls return
    /// (empty) the moment it is lost so that agents retry against the new leader.
    async fn run_leadership(self) {
        let mut metrics = self.raft.metrics();
        let mut was_leader = self.is_leader();
        loop {
            if metrics.changed().await.is_err() {
                return;
            }
            let (leader, fatal) = {
                let m = metrics.borrow_and_update();
                (
                    m.current_leader == Some(self.config.node_id) && m.state == openraft::ServerState::Leader,
                    m.running_state
                        .as_ref()
                        .err()
                        .filter(|e| !matches!(e, openraft::error::Fatal::Stopped))
                        .map(|e| e.to_string()),
                )
            };
            if let Some(fatal) = fatal {
                // A failed fsync, a damaged store: a stop, not something to serve around. The
                // next start repairs what can be repaired (rebuilding the state store) and
                // refuses what cannot.
                tracing::error!(error = %fatal, "raft stopped on a fatal error; exiting");
                std::process::exit(70);
            }
            if leader && !was_leader {
                tracing::info!(term = self.raft.metrics().borrow().current_term, "this node is now the leader");
                let node = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = node.on_leadership_gained().await {
                        tracing::warn!(error = %e, "leader start-up work");
                    }
                });
            }
            if !leader && was_leader {
                tracing::info!(leader = ?self.raft.metrics().borrow().current_leader, "this node is no longer the leader");
                self.hub.release_all();
            }
            was_leader = leader;
        }
    }

    /// On becoming leader: record this node's current addresses in the membership (they may have
    /// changed since it joined) and, in a new cluster, replicate this node's engine defaults.
    async fn on_leadership_gained(&self) -> anyhow::Result<()> {
        let recorded = {
            let m = self.raft.metrics().borrow().clone();
            m.membership_config.membership().get_node(&self.config.node_id).cloned()
        };
        if recorded.as_ref() != Some(&self.me) {
            let nodes = BTreeMap::from([(self.config.node_id, self.me.clone())]);
            self.raft
                .change_membership(openraft::ChangeMembers::SetNodes(nodes), true)
                .await
                .map_err(|e| anyhow!("recording this node's addresses: {e}"))?;
            tracing::info!(me = %self.me, "recorded this node's addresses in the membership");
        }
        if self.first_bootstrap() {
            self.propose(Command::Configure { config: self.config.engine.clone() })
                .await
                .map_err(|e| anyhow!("applying engine config: {e}"))?
                .map_err(|r| anyhow!("engine config refused: {}", r.message))?;
            tracing::info!("applied this node's engine settings to the new cluster");
        }
        self.warn_if_engine_config_differs();
        Ok(())
    }

    /// The cluster's engine settings come from a configuration file only once: when its first
    /// leader finds them untouched (defaults) in a cluster that has never held anything. After
    /// that they change only through `PUT /v1/config`, so that a leader with an old file cannot
    /// undo them on an election.
    fn first_bootstrap(&self) -> bool {
        let g = self.state.read();
        g.engine.config() != &self.config.engine && Self::never_configured(&g.engine)
    }

    /// The engine settings were never set: defaults, in a cluster that has never held anything.
    fn never_configured(engine: &minion_engine::State) -> bool {
        engine.config() == &minion_engine::EngineConfig::default() && engine.pristine()
    }

    /// Say so when this node's file names other engine settings than the cluster applies.
    pub fn warn_if_engine_config_differs(&self) {
        let g = self.state.read();
        let cluster = g.engine.config();
        if cluster != &self.config.engine && !Self::never_configured(&g.engine) {
            tracing::warn!(
                file = ?self.config.engine,
                cluster = ?cluster,
                "this node's engine settings differ from the cluster's; the cluster's apply \
                 (change them with `minion config set` or PUT /v1/config)"
            );
        }
    }

    /// The current leader and how to reach it, as this node knows them.
    pub fn leader(&self) -> Option<(NodeId, RaftNode)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id).cloned()?;
        Some((id, node))
    }

    /// Group commit: every command waiting when a slot frees up goes into one log entry, up to
    /// `group_commit_max` commands and `entry_bytes_max` bytes; up to `proposals_in_flight_max`
    /// entries are in flight at once (pipelined: one is appended while another is applied).
    async fn run_proposer(self, mut rx: mpsc::Receiver<Proposal>) {
        let slots = Arc::new(Semaphore::new(self.config.proposals_in_flight_max));
        let max = self.config.group_commit_max;
        let bytes_max = self.config.entry_bytes_max;
        let mut carried: Option<Proposal> = None;
        loop {
            let first = match carried.take() {
                Some(p) => p,
                None => match rx.recv().await {
                    Some(p) => p,
                    None => break,
                },
            };
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let mut bytes = first.cmd.approx_bytes();
            let mut group = vec![first];
            while group.len() < max {
                match rx.try_recv() {
                    Ok(p) => {
                        let b = p.cmd.approx_bytes();
                        if bytes + b > bytes_max {
                            carried = Some(p);
                            break;
                        }
                        bytes += b;
                        group.push(p);
                    }
                    Err(_) => break,
                }
            }
            metrics::histogram!("minion_raft_group_bytes").record(bytes as f64);
            let (raft, now) = (self.raft.clone(), self.clock.now());
            tokio::spawn(async move {
                let _permit = permit;
                commit_group(raft, now, group).await;
            });
        }
    }

    /// Leader housekeeping: when something is due (a timer, a lease expiry, a dedup or retention
    /// expiry), propose a `Tick` so every replica applies it at the same log position.
    async fn run_housekeeping(self) {
        let mut interval = tokio::time::interval(Duration::from_millis(self.config.tick_interval_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let due = self.state.read().engine.next_due();
            // The bounded clock: after a clock stepped back, the engine's timers still come due.
            if due.is_some_and(|t| t <= self.clock.now()) && self.is_leader() {
                if let Err(e) = self.propose(Command::Tick).await {
                    tracing::debug!(error = %e, "housekeeping tick not applied");
                }
            }
        }
    }

    /// Once a second: record in the checkpoint what the log holds durably (so a log that later
    /// loses entries is detected at start, not served), and ask for a snapshot once the log has
    /// grown by `snapshot_log_bytes` (or by the last snapshot's size, if larger) since the last.
    async fn run_checkpointer(self) {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            interval.tick().await;
            if let Err(e) = self.checkpoint().await {
                tracing::error!(error = %e, "writing the checkpoint file failed");
            }
            let since = self.log.bytes_since_snapshot();
            if since > self.config.snapshot_log_bytes.max(self.log.snapshot_bytes()) {
                self.log.note_snapshot_requested();
                if let Err(e) = self.raft.trigger().snapshot().await {
                    tracing::warn!(error = %e, "asking for a snapshot");
                }
            }
        }
    }

    /// Record the durable log position in the checkpoint and save it. Blocking work off the runtime.
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        let synced = self.log.synced_index();
        let committed = self.log.committed_index();
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || {
            storage.checkpointer.update(|cp| {
                let durable = committed.min(synced);
                if durable > cp.log_durable {
                    cp.log_durable = durable;
                }
            });
            storage.checkpointer.save()
        })
        .await??;
        Ok(())
    }

    /// Stop raft, then the storage threads (a last durable point), then save the checkpoint.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Err(e) = self.checkpoint().await {
            tracing::error!(error = %e, "writing the checkpoint file failed");
        }
        let storage = self.storage.clone();
        let _ = tokio::task::spawn_blocking(move || storage.shutdown()).await;
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader == Some(self.config.node_id)
    }
}

async fn commit_group(raft: Raft, now: u64, group: Vec<Proposal>) {
    let span = tracing::info_span!("raft.commit", commands = group.len(), log_index = tracing::field::Empty);
    for p in &group {
        span.follows_from(p.span.id());
    }
    commit_group_in(raft, now, group).instrument(span).await
}

/// One log entry for the group, stamped with `now` (the leader's bounded clock).
async fn commit_group_in(raft: Raft, now: u64, mut group: Vec<Proposal>) {
    let started = Instant::now();
    let n = group.len();
    if n == 1 {
        let p = group.pop().map(|p| (p.cmd, p.reply));
        if let Some((cmd, reply)) = p {
            let res = write(&raft, Request { now_ms: now, cmd }).await;
            let _ = reply.send(res);
        }
    } else {
        let (cmds, replies): (Vec<Command>, Vec<_>) = group.into_iter().map(|p| (p.cmd, p.reply)).unzip();
        match write(&raft, Request { now_ms: now, cmd: Command::Batch { cmds } }).await {
            Ok(Ok(Outcome::Batch(outs))) if outs.len() == replies.len() => {
                for (out, reply) in outs.into_iter().zip(replies) {
                    let _ = reply.send(Ok(out));
                }
            }
            Ok(other) => {
                // The engine always answers a batch with one outcome per command; anything else
                // is a bug, not a bad request.
                let msg = format!("group commit of {} commands answered {other:?}", replies.len());
                tracing::error!("{msg}");
                for reply in replies {
                    let _ = reply.send(Err(ProposeError::Internal(msg.clone())));
                }
            }
            Err(e) => {
                let text = e.to_string();
                for reply in replies {
                    let err = match &e {
                        ProposeError::NotLeader { leader } => ProposeError::NotLeader { leader: *leader },
                        ProposeError::Closed => ProposeError::Closed,
                        ProposeError::Timeout(ms) => ProposeError::Timeout(*ms),
                        ProposeError::Fatal(_) => ProposeError::Fatal(text.clone()),
                        ProposeError::TooLarge { bytes, max } => ProposeError::TooLarge { bytes: *bytes, max: *max },
                        ProposeError::Internal(_) => ProposeError::Internal(text.clone()),
                    };
                    let _ = reply.send(Err(err));
                }
            }
        }
    }
    metrics::histogram!("minion_raft_propose_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("minion_raft_group_commands").record(n as f64);
}

async fn write(raft: &Raft, req: Request) -> Result<Response, ProposeError> {
    match raft.client_write(req).await {
        Ok(resp) => {
            tracing::Span::current().record("log_index", resp.log_id.index);
            Ok(resp.data)
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ProposeError::NotLeader { leader: f.leader_id })
        }
        Err(RaftError::APIError(e)) => Err(ProposeError::Fatal(e.to_string())),
        Err(RaftError::Fatal(e)) => Err(ProposeError::Fatal(e.to_string())),
    }
}

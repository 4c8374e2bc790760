//! A running Minion node: storage, raft, the group-commit proposer and leader housekeeping.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use minion_engine::Command;
use minion_raft::identity::ClusterIdentity;
use minion_raft::network::HttpNetwork;
use minion_raft::{LogStore, Node as RaftNode, NodeId, Raft, SharedState, StorageHandle};

use crate::config::Config;
pub use crate::proposer::ProposeError;
use crate::proposer::{GroupCommit, Proposer};

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
    /// Writes: the group commit into the raft log.
    pub proposer: Proposer,
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
    /// Free space on the data directory's disk, against the reserve.
    pub disk: Arc<crate::disk_space::DiskSpace>,
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
        // Defect (found by the history checker, `tests/network_faults.rs`): openraft restores a
        // node whose saved vote is committed for itself as leader at once, without an election,
        // with the commit index it last recorded — which Minion records lazily, with the
        // checkpoint. Its read index could then be behind entries it had acknowledged before the
        // crash, and a linearizable read answered 404 for an acknowledged task (and after a power
        // loss its log might lack an entry a quorum of followers holds). Its vote is saved again
        // as not committed: the node stands for election like any other (one missing entries
        // cannot win), and the new leader's first entry of its term is in every read index.
        {
            use openraft::storage::RaftLogStorage;
            let mut store = opened.log_store.clone();
            let vote = store.read_vote().await.map_err(|e| anyhow!("reading the vote: {e}"))?;
            if let Some(v) = vote.filter(|v| v.is_committed() && v.leader_id().voted_for() == Some(config.node_id)) {
                let term = v.leader_id().term;
                store
                    .save_vote(&openraft::Vote::new(term, config.node_id))
                    .await
                    .map_err(|e| anyhow!("saving the vote: {e}"))?;
                tracing::info!(term, "led before this start: standing for election instead of resuming as leader");
            }
        }
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

        let proposer = Proposer::start(
            raft.clone(),
            config.node_id,
            clock.clone(),
            GroupCommit {
                commands_max: config.group_commit_max,
                entry_bytes_max: config.entry_bytes_max,
                in_flight_max: config.proposals_in_flight_max,
                commit_timeout_ms: config.commit_timeout_ms,
            },
        );
        let autoscalers = crate::autoscaler::Autoscalers::new(&config.pools);
        let hub = crate::dispatch::Hub::new(proposer.clone(), state.clone(), clock.clone());
        let node = Node {
            raft,
            state,
            storage,
            log,
            config: Arc::new(config),
            proposer,
            hub,
            autoscalers,
            adapters: Default::default(),
            identity,
            me,
            peers,
            staging: Default::default(),
            clock,
            election_hold: Default::default(),
            disk: Default::default(),
        };
        if sole_voter {
            node.on_leadership_gained().await?;
        } else {
            node.warn_if_engine_config_differs();
        }
        tokio::spawn(node.clone().run_leadership());
        tokio::spawn(node.clone().run_housekeeping());
        tokio::spawn(node.clone().run_checkpointer());
        tokio::spawn(node.hub.clone().run());
        tokio::spawn(node.hub.clone().run_liveness(crate::dispatch::Liveness {
            heartbeat_timeout_ms: node.config.agent_heartbeat_timeout_ms,
            forget_after_ms: node.config.agent_forget_ms,
        }));
        tokio::spawn(node.clone().run_stall_keepalive());
        tokio::spawn(node.clone().run_election_hold());
        tokio::spawn(node.disk.clone().run(
            node.config.data_dir.clone(),
            node.config.disk_reserve_mb,
            Duration::from_millis(500),
        ));
        let every = Duration::from_millis(node.config.autoscale_interval_ms);
        tokio::spawn(node.autoscalers.clone().run(
            node.proposer.clone(),
            node.state.clone(),
            node.config.autoscale_webhook_url.clone(),
            every,
        ));
        Ok(node)
    }

    /// Follow leadership: leader-only work starts on gaining it, and waiting long-polls return
    /// (empty) the moment it is lost so that agents retry against the new leader.
    async fn run_leadership(self) {
        let mut metrics = self.raft.metrics();
        let mut was_leader = self.proposer.is_leader();
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
            self.proposer
                .propose(Command::Configure { config: self.config.engine.clone() })
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

    /// Leader housekeeping: when something is due (a timer, a lease expiry, a schedule's run, a
    /// dedup or retention expiry), propose a `Tick` so every replica applies it at the same log
    /// position. It wakes at the next due time, or after `tick_interval_ms` at the latest (so a
    /// timer that comes due on a follower that becomes leader waits at most that long, and work
    /// still due after a tick, such as a long sweep done in parts, is retried at that pace).
    async fn run_housekeeping(self) {
        let tick = self.config.tick_interval_ms;
        loop {
            let due = self.state.read().engine.next_due();
            // The bounded clock: after a clock stepped back, the engine's timers still come due.
            let now = self.clock.now();
            let wait = match due {
                Some(t) if t > now => (t - now).min(tick),
                _ => tick,
            };
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let due = self.state.read().engine.next_due();
            if due.is_some_and(|t| t <= self.clock.now()) && self.proposer.is_leader() {
                if let Err(e) = self.proposer.propose(Command::Tick).await {
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
}

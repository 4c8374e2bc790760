//! The write handle: propose a command to the raft log and wait for its answer; and the group
//! commit behind it, which packs the commands waiting into pipelined log entries.
//!
//! Everything that writes (handlers, dispatch, liveness, housekeeping) holds a [`Proposer`], not
//! the whole node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use minion_engine::{Command, Outcome, Request, Response};
use minion_raft::{NodeId, Raft};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;

use crate::clock::LeaderClock;

/// How long [`Proposer::propose_to_outcome`] waits for a command's outcome at most.
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

/// Proposes commands and answers whether this node leads: cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    proposals: mpsc::Sender<Proposal>,
    raft: Raft,
    node_id: NodeId,
    commit_timeout_ms: u64,
    entry_bytes_max: usize,
}

/// How the group commit packs and pipelines entries.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// Commands per log entry at most.
    pub commands_max: usize,
    /// Bytes per log entry at most (a single command over it is refused).
    pub entry_bytes_max: usize,
    /// Log entries proposed and not yet answered at most.
    pub in_flight_max: usize,
    pub commit_timeout_ms: u64,
}

impl Proposer {
    /// The handle and the group commit behind it (running until every handle is gone).
    pub fn start(raft: Raft, node_id: NodeId, clock: Arc<LeaderClock>, g: GroupCommit) -> Proposer {
        let (tx, rx) = mpsc::channel(g.commands_max * 4);
        tokio::spawn(run_group_commit(rx, raft.clone(), clock, g));
        Proposer {
            proposals: tx,
            raft,
            node_id,
            commit_timeout_ms: g.commit_timeout_ms,
            entry_bytes_max: g.entry_bytes_max,
        }
    }

    /// Propose a command and wait until it is committed and applied (or the commit timeout).
    /// A command over the log-entry byte cap is refused before it is proposed.
    pub async fn propose(&self, cmd: Command) -> Result<Response, ProposeError> {
        let bytes = cmd.approx_bytes();
        if bytes > self.entry_bytes_max {
            return Err(ProposeError::TooLarge { bytes, max: self.entry_bytes_max });
        }
        let span = tracing::info_span!("raft.propose", command = cmd.name());
        self.propose_in(cmd, span.clone(), self.commit_timeout_ms).instrument(span).await
    }

    async fn propose_in(&self, cmd: Command, span: tracing::Span, limit: u64) -> Result<Response, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.proposals.send(Proposal { cmd, reply, span }).await.map_err(|_| ProposeError::Closed)?;
        match tokio::time::timeout(Duration::from_millis(limit), rx).await {
            Ok(r) => r.map_err(|_| ProposeError::Closed)?,
            Err(_) => Err(ProposeError::Timeout(limit)),
        }
    }

    /// Like [`Proposer::propose`], but waits for the outcome well past the commit timeout (up to
    /// [`OUTCOME_WAIT_MS`]): for commands whose effects must be undone when their caller has
    /// given up, such as a claim whose leases never reached the agent.
    pub async fn propose_to_outcome(&self, cmd: Command) -> Result<Response, ProposeError> {
        let span = tracing::info_span!("raft.propose", command = cmd.name());
        let limit = self.commit_timeout_ms.max(OUTCOME_WAIT_MS);
        self.propose_in(cmd, span.clone(), limit).instrument(span).await
    }

    /// How long a proposal waits for its commit.
    pub fn commit_timeout_ms(&self) -> u64 {
        self.commit_timeout_ms
    }

    /// Whether this node leads (what it proposes is committed by it rather than refused).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }
}

/// Group commit: every command waiting when a slot frees up goes into one log entry, up to
/// `commands_max` commands and `entry_bytes_max` bytes; up to `in_flight_max` entries are in
/// flight at once (pipelined: one is appended while another is applied).
async fn run_group_commit(mut rx: mpsc::Receiver<Proposal>, raft: Raft, clock: Arc<LeaderClock>, g: GroupCommit) {
    let slots = Arc::new(Semaphore::new(g.in_flight_max));
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
        while group.len() < g.commands_max {
            match rx.try_recv() {
                Ok(p) => {
                    let b = p.cmd.approx_bytes();
                    if bytes + b > g.entry_bytes_max {
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
        let (raft, now) = (raft.clone(), clock.now());
        tokio::spawn(async move {
            let _permit = permit;
            commit_group(raft, now, group).await;
        });
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

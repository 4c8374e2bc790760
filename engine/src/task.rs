//! The task record: what the ledger keeps about one task.

use serde::{Deserialize, Serialize};

/// Task ids are assigned inside apply, in log order, starting at 1.
pub type TaskId = u64;
/// Wall-clock milliseconds since the Unix epoch, as stamped by the leader into each log entry.
pub type TimeMs = u64;
/// A fencing token: strictly increasing across every lease the engine ever grants.
pub type LeaseToken = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Claimable now.
    Ready,
    /// Submitted with a run-at in the future; invisible until due.
    Delayed,
    /// Held by an agent under a lease.
    Leased,
    /// Finished with a result.
    Succeeded,
    /// An attempt failed; waiting for its retry backoff before becoming ready again.
    Failed,
    /// Out of attempts.
    Dead,
    /// Cancelled by a user.
    Cancelled,
    /// A record an ingest adapter could not turn into a task (undecodable, oversize, invalid
    /// fields); kept in the ledger with the reason and the source position. Never claimable.
    Rejected,
    /// Submitted with dependencies that have not all finished; becomes ready (or delayed) when
    /// they have (appended last: states are part of the log format and of index keys).
    Waiting,
    /// Gave its lease back to wait for its unfinished children; ready again once they have all
    /// finished (appended last).
    WaitingChildren,
}

impl TaskState {
    pub const COUNT: usize = 10;
    pub const ALL: [TaskState; TaskState::COUNT] = [
        TaskState::Ready,
        TaskState::Delayed,
        TaskState::Leased,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Dead,
        TaskState::Cancelled,
        TaskState::Rejected,
        TaskState::Waiting,
        TaskState::WaitingChildren,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Ready => "ready",
            TaskState::Delayed => "delayed",
            TaskState::Leased => "leased",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
            TaskState::Rejected => "rejected",
            TaskState::Waiting => "waiting",
            TaskState::WaitingChildren => "waiting_children",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Terminal states are subject to retention and accept no agent operation.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled | TaskState::Rejected)
    }

    /// Waiting for other tasks to finish: its dependencies or its children.
    pub fn is_waiting(self) -> bool {
        matches!(self, TaskState::Waiting | TaskState::WaitingChildren)
    }

    /// Its position in [`TaskState::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How one attempt ended.
///
/// Externally tagged (serde's default): the binary log format cannot decode internally tagged
/// enums. The HTTP API renders its own flat shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    Failed {
        error: String,
    },
    /// The lease ran out before the agent finished.
    LeaseExpired,
    /// The task was cancelled while leased.
    Cancelled,
    /// The agent missed its heartbeats or was deregistered; the lease was released at once.
    AgentDead,
    /// The agent registered again (a new incarnation); the old incarnation's lease was released.
    AgentRestarted,
    /// The agent reported no progress within the task's stall timeout.
    Stalled,
    /// The lease was given back unused (the claim's requester had gone); not counted.
    Released,
    /// The task's deadline passed while it was leased (appended last: outcomes are part of the
    /// record format).
    DeadlineExceeded,
    /// The agent gave the lease back to wait for the task's children; not counted (appended
    /// last).
    WaitingChildren,
}

impl AttemptOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed { .. } => "failed",
            AttemptOutcome::LeaseExpired => "lease_expired",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::AgentDead => "agent_dead",
            AttemptOutcome::AgentRestarted => "agent_restarted",
            AttemptOutcome::Stalled => "stalled",
            AttemptOutcome::Released => "released",
            AttemptOutcome::DeadlineExceeded => "deadline_exceeded",
            AttemptOutcome::WaitingChildren => "waiting_children",
        }
    }
}

/// One lease of the task to one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based attempt number.
    pub number: u32,
    pub agent_id: String,
    pub lease_token: LeaseToken,
    pub started_ms: TimeMs,
    pub ended_ms: Option<TimeMs>,
    pub outcome: Option<AttemptOutcome>,
}

/// A progress report from the agent holding the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressEvent {
    pub at_ms: TimeMs,
    pub attempt: u32,
    pub percent: Option<u8>,
    pub message: Option<String>,
}

/// The current lease on a task in state `leased`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub token: LeaseToken,
    pub agent_id: String,
    /// The registered agent's incarnation at claim time; 0 for an agent that never registered.
    pub incarnation: u64,
    pub expires_ms: TimeMs,
    /// Released as stalled when no progress arrives by then (tasks with a stall timeout only).
    pub stall_deadline_ms: Option<TimeMs>,
}

/// The full ledger record of a task.
///
/// `payload` and `result` hold JSON text exactly as the producer and agent sent it; the engine never
/// parses them (the binary log format cannot carry self-describing JSON values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub queue: String,
    pub kind: String,
    pub payload: String,
    pub capabilities: Vec<String>,
    pub priority: i32,
    pub idempotency_key: Option<String>,
    pub max_attempts: u32,
    /// Attempts allowed before the task is dead; raised by a manual retry.
    pub attempt_limit: u32,
    pub lease_ms: u64,
    /// Longest the holder may go without reporting progress.
    pub stall_timeout_ms: Option<u64>,
    pub state: TaskState,
    pub created_ms: TimeMs,
    pub updated_ms: TimeMs,
    /// When a delayed or failed task becomes ready; when a ready task became ready.
    pub run_at_ms: TimeMs,
    pub lease: Option<Lease>,
    pub attempts: Vec<Attempt>,
    pub progress: Vec<ProgressEvent>,
    /// Progress events dropped from the front of `progress` once it reached its bound.
    pub progress_dropped: u64,
    pub result: Option<String>,
    pub last_error: Option<String>,
    pub finished_ms: Option<TimeMs>,
    /// When retention removes a finished task from the ledger (fixed when it finishes).
    pub purge_after_ms: Option<TimeMs>,
    pub cancel_reason: Option<String>,
}

impl Task {
    /// The agent of the most recent attempt, if any.
    pub fn last_agent(&self) -> Option<&str> {
        self.attempts.last().map(|a| a.agent_id.as_str())
    }

    pub fn attempt_count(&self) -> u32 {
        self.attempts.len() as u32
    }
}

//! Commands (what goes into the log) and their outcomes (what apply answers).

use serde::{Deserialize, Serialize};

use crate::config::{EngineConfig, QueueConfig};
use crate::record::{Record, TaskRecord};
use crate::task::{LeaseToken, TaskId, TimeMs};

/// One log entry's application payload: a command and the leader's clock when it was proposed.
///
/// Apply never reads the local clock; `now_ms` is the only time it knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub now_ms: TimeMs,
    pub cmd: Command,
}

/// A task as submitted by a producer, before the engine gives it an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NewTask {
    pub queue: String,
    pub kind: String,
    /// JSON text.
    pub payload: String,
    pub capabilities: Vec<String>,
    pub priority: i32,
    pub idempotency_key: Option<String>,
    /// Absolute run time; wins over `delay_ms` when both are given.
    pub run_at_ms: Option<TimeMs>,
    pub delay_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub lease_ms: Option<u64>,
    pub stall_timeout_ms: Option<u64>,
}

/// An agent's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentSpec {
    pub id: String,
    pub name: String,
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Submit tasks atomically: all are accepted or none.
    Submit {
        tasks: Vec<NewTask>,
    },
    /// Lease up to `max` ready tasks from `queues` whose required capabilities the agent has.
    Claim {
        agent_id: String,
        queues: Vec<String>,
        capabilities: Vec<String>,
        max: u32,
    },
    Progress {
        task_id: TaskId,
        lease_token: LeaseToken,
        percent: Option<u8>,
        message: Option<String>,
    },
    Complete {
        task_id: TaskId,
        lease_token: LeaseToken,
        result: Option<String>,
    },
    Fail {
        task_id: TaskId,
        lease_token: LeaseToken,
        error: String,
    },
    Extend {
        task_id: TaskId,
        lease_token: LeaseToken,
        lease_ms: Option<u64>,
    },
    /// Give a lease back unused (its claim never reached the agent): the task is ready again at
    /// once and the attempt does not count against its limit.
    Release {
        task_id: TaskId,
        lease_token: LeaseToken,
    },
    Cancel {
        task_id: TaskId,
        reason: Option<String>,
    },
    /// Manual retry of a dead or cancelled task.
    Retry {
        task_id: TaskId,
    },
    SetQueue {
        name: String,
        config: QueueConfig,
    },
    Configure {
        config: EngineConfig,
    },
    /// Register an agent, or start a new incarnation of a known one (releasing the old one's leases).
    RegisterAgent {
        spec: AgentSpec,
    },
    /// Stop giving the agent new tasks; it keeps what it holds.
    DrainAgent {
        id: String,
    },
    /// Remove the agent: its leases are released at once.
    DeregisterAgent {
        id: String,
    },
    /// The leader saw no heartbeat in time from these (agent id, incarnation) pairs.
    AgentsDead {
        agents: Vec<(String, u64)>,
    },
    /// Housekeeping only: promote due tasks, expire leases and dedup keys, apply retention.
    Tick,
    /// Several commands in one log entry (group commit); each gets its own outcome.
    Batch {
        cmds: Vec<Command>,
    },
    /// Record ingest records that could not become tasks, in state `rejected` (appended last:
    /// variant indices are part of the log format).
    Reject {
        records: Vec<RejectedRecord>,
    },
    /// A submit with the producer's W3C trace context (`traceparent`), kept with every task it
    /// creates and handed to the agent that claims one (appended last, like `Reject`).
    SubmitTraced {
        tasks: Vec<NewTask>,
        trace_parent: String,
    },
    /// Start loading a backup into a cluster that has never held a task, agent or queue setting;
    /// other writes are refused until [`Command::RestoreEnd`].
    RestoreBegin {
        restore_id: String,
    },
    /// Records of the backup, in bounded batches.
    RestoreRecords {
        restore_id: String,
        records: Vec<Record>,
    },
    /// The backup's counters; RAM is rebuilt from the records and writes resume.
    RestoreEnd {
        restore_id: String,
        records_total: u64,
        meta: Box<crate::state::Meta>,
    },
    /// Create an API token; only the hash of its secret is in the command (appended last).
    CreateToken {
        token: crate::access::Token,
    },
    /// Revoke a token; it stays listed, marked revoked.
    RevokeToken {
        id: String,
    },
    /// An administrative command, recorded in the audit trail (with who asked) when it succeeds.
    Audited {
        actor: String,
        cmd: Box<Command>,
    },
    /// An administrative action outside the engine (a membership change), for the audit trail.
    AuditNote {
        actor: String,
        action: String,
        target: String,
        detail: String,
    },
    /// Complete or fail many leased tasks in one entry (appended last). Each acknowledgement is
    /// checked and applied on its own, in order; the outcome is a [`Outcome::Batch`] with one
    /// answer per acknowledgement.
    Acknowledge {
        acks: Vec<Ack>,
    },
    /// Remove agents that have been dead for the node's `agent_forget_ms`, as (agent id,
    /// incarnation) pairs: one that registered again since is kept (appended last).
    ForgetAgents {
        agents: Vec<(String, u64)>,
    },
    /// Create a token that may act only as agents whose ids match `agents` (glob patterns, `*`
    /// any run of characters); empty: any agent, as [`Command::CreateToken`] (appended last).
    CreateBoundToken {
        token: crate::access::Token,
        agents: Vec<String>,
    },
    /// A submit whose tasks may depend on others (`flows[i]` belongs to `tasks[i]`; as long as
    /// `tasks` or empty for none), with the producer's trace context if it sent one (appended
    /// last).
    SubmitFlow {
        tasks: Vec<NewTask>,
        flows: Vec<crate::legacy::TaskFlowV1>,
        trace_parent: Option<String>,
    },
    /// [`Command::SubmitFlow`] with flows that may carry a concurrency key and later settings
    /// (appended last; what this release proposes).
    SubmitWith {
        tasks: Vec<NewTask>,
        flows: Vec<crate::flow::TaskFlow>,
        trace_parent: Option<String>,
    },
    /// Replace a queue's concurrency limits (an empty list removes them; appended last).
    SetLimits {
        queue: String,
        rules: Vec<crate::key_limits::LimitRule>,
    },
    /// Create or replace a schedule (appended last).
    PutSchedule {
        def: crate::schedule::ScheduleDef,
    },
    /// Delete a schedule (appended last).
    DeleteSchedule {
        name: String,
    },
    /// A leased parent gives its lease back to wait for its unfinished children (appended last);
    /// with none unfinished it keeps the lease and the answer says so.
    WaitChildren {
        task_id: TaskId,
        lease_token: LeaseToken,
    },
}

/// One acknowledgement in a [`Command::Acknowledge`]: what `Complete` or `Fail` would say alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ack {
    Complete { task_id: TaskId, lease_token: LeaseToken, result: Option<String> },
    Fail { task_id: TaskId, lease_token: LeaseToken, error: String },
}

/// An ingest record refused as a task: why, and what it was (a JSON description in `payload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RejectedRecord {
    pub queue: String,
    pub kind: String,
    pub reason: String,
    /// JSON text: the source position and (a bounded prefix of) the raw record.
    pub payload: String,
    pub idempotency_key: Option<String>,
}

impl Command {
    /// Rough bytes of the command in a log entry, for the group-commit byte cap.
    pub fn approx_bytes(&self) -> usize {
        let task = |t: &NewTask| {
            64 + t.queue.len()
                + t.kind.len()
                + t.payload.len()
                + t.idempotency_key.as_ref().map_or(0, |k| k.len())
                + t.capabilities.iter().map(|c| c.len() + 1).sum::<usize>()
        };
        64 + match self {
            Command::Submit { tasks } | Command::SubmitTraced { tasks, .. } => tasks.iter().map(task).sum(),
            Command::SubmitFlow { tasks, flows, .. } => {
                tasks.iter().map(task).sum::<usize>() + flows.iter().map(|f| 8 * f.depends_on.len()).sum::<usize>()
            }
            Command::SubmitWith { tasks, flows, .. } => {
                tasks.iter().map(task).sum::<usize>()
                    + flows.iter().map(|f| 8 * f.depends_on.len() + 32 * f.ext.len()).sum::<usize>()
            }
            Command::Reject { records } => records.iter().map(|r| 64 + r.payload.len() + r.reason.len()).sum(),
            Command::Complete { result, .. } => result.as_ref().map_or(0, |r| r.len()),
            Command::Fail { error, .. } => error.len(),
            Command::Progress { message, .. } => message.as_ref().map_or(0, |m| m.len()),
            Command::RestoreRecords { records, .. } => records.iter().map(Record::approx_bytes).sum(),
            Command::Batch { cmds } => cmds.iter().map(Command::approx_bytes).sum(),
            Command::Acknowledge { acks } => acks
                .iter()
                .map(|a| {
                    32 + match a {
                        Ack::Complete { result, .. } => result.as_ref().map_or(0, |r| r.len()),
                        Ack::Fail { error, .. } => error.len(),
                    }
                })
                .sum(),
            Command::Audited { cmd, .. } => cmd.approx_bytes(),
            _ => 256,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Command::Submit { .. } => "submit",
            Command::Reject { .. } => "reject",
            Command::SubmitTraced { .. } | Command::SubmitFlow { .. } | Command::SubmitWith { .. } => "submit",
            Command::RestoreBegin { .. } => "restore_begin",
            Command::RestoreRecords { .. } => "restore_records",
            Command::RestoreEnd { .. } => "restore_end",
            Command::CreateToken { .. } => "create_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::Audited { cmd, .. } => cmd.name(),
            Command::AuditNote { .. } => "audit_note",
            Command::Claim { .. } => "claim",
            Command::Progress { .. } => "progress",
            Command::Complete { .. } => "complete",
            Command::Fail { .. } => "fail",
            Command::Extend { .. } => "extend",
            Command::Release { .. } => "release",
            Command::Cancel { .. } => "cancel",
            Command::Retry { .. } => "retry",
            Command::SetQueue { .. } => "set_queue",
            Command::SetLimits { .. } => "set_limits",
            Command::PutSchedule { .. } => "put_schedule",
            Command::DeleteSchedule { .. } => "delete_schedule",
            Command::WaitChildren { .. } => "wait_children",
            Command::Configure { .. } => "configure",
            Command::RegisterAgent { .. } => "register_agent",
            Command::DrainAgent { .. } => "drain_agent",
            Command::DeregisterAgent { .. } => "deregister_agent",
            Command::AgentsDead { .. } => "agents_dead",
            Command::Tick => "tick",
            Command::Batch { .. } => "batch",
            Command::Acknowledge { .. } => "acknowledge",
            Command::ForgetAgents { .. } => "forget_agents",
            Command::CreateBoundToken { .. } => "create_token",
        }
    }
}

/// Where apply was called from: the log position of the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyMeta {
    pub log_index: u64,
}

/// Result of one submitted task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub id: TaskId,
    /// True when the idempotency key already mapped to this task; nothing was created.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Submitted(Vec<Submitted>),
    /// The leased tasks (records without payloads: the caller reads those back).
    Claimed(Vec<TaskRecord>),
    /// The task after the operation.
    Task(Box<TaskRecord>),
    /// The agent after the operation.
    Agent(Box<crate::agent::Agent>),
    Done,
    Batch(Vec<Result<Outcome, Rejection>>),
}

/// Why a command changed nothing. An expected answer, not a failure of the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Rejection {
    pub code: RejectCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectCode {
    NotFound,
    Invalid,
    /// The lease token is not the task's current lease.
    StaleLease,
    /// The task is in a state that does not allow the operation.
    WrongState,
}

impl Rejection {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Rejection { code, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(RejectCode::Invalid, message)
    }
    pub fn not_found(id: TaskId) -> Self {
        Self::new(RejectCode::NotFound, format!("task {id} not found"))
    }
}

pub type Response = Result<Outcome, Rejection>;

/// Check a W3C `traceparent` (version 00): `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`,
/// lowercase, with neither id all zeros.
pub fn validate_trace_parent(tp: &str) -> Result<(), String> {
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let ok = parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0');
    if ok {
        Ok(())
    } else {
        Err(format!("traceparent {:?} is not a W3C version-00 traceparent (00-<32 hex>-<16 hex>-<2 hex>)", tp))
    }
}

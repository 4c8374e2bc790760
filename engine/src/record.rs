//! The record schema: everything the replicated state holds, as typed records under typed keys.
//!
//! [`crate::State::apply`] answers and returns its [`Effect`]s (puts and deletes of records); the
//! storage layer writes them, encodes each kind in one place, and streams them as snapshots. RAM
//! holds only what dispatch and expiry need (live tasks without their payloads, agents, queues,
//! tokens, counters); finished tasks, payloads, progress histories, idempotency keys and the
//! expiry indexes are records read back through [`crate::Cold`].

use serde::{Deserialize, Serialize};

use crate::access::{AuditEntry, Token};
use crate::agent::Agent;
use crate::config::QueueConfig;
use crate::dedup::{DedupEntry, DedupKey};
use crate::flow::Flow;
use crate::state::Meta;
use crate::task::{Attempt, Lease, ProgressEvent, Task, TaskId, TaskState, TimeMs};

/// Task counts per state, indexed like [`TaskState::ALL`].
pub type StateCounts = [u64; TaskState::COUNT];

/// Task counts as releases before the `waiting` state wrote them (eight states).
pub type StateCounts8 = [u64; 8];

/// Task counts as releases before the `waiting_children` state wrote them (nine states).
pub type StateCounts9 = [u64; 9];

/// Counts written before later states were appended: the same states first, none in the new ones.
pub fn widen_counts<const N: usize>(c: &[u64; N]) -> StateCounts {
    let mut out = StateCounts::default();
    out[..c.len()].copy_from_slice(c);
    out
}

/// A task as stored: everything but its payload and its progress events (records of their own).
/// Live tasks (not terminal) also live in RAM, so this is what dispatch works on.
///
/// `F` is the flow's shape: [`Flow`] now, [`crate::legacy::FlowV2`] in record version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord<F = Flow> {
    pub id: TaskId,
    pub queue: String,
    pub kind: String,
    pub capabilities: Vec<String>,
    pub priority: i32,
    pub idempotency_key: Option<String>,
    pub max_attempts: u32,
    /// Attempts allowed before the task is dead; raised by a manual retry.
    pub attempt_limit: u32,
    pub lease_ms: u64,
    pub stall_timeout_ms: Option<u64>,
    pub state: TaskState,
    pub created_ms: TimeMs,
    pub updated_ms: TimeMs,
    /// When a delayed or failed task becomes ready; when a ready task became ready.
    pub run_at_ms: TimeMs,
    pub lease: Option<Lease>,
    pub attempts: Vec<Attempt>,
    /// Progress events kept: sequence numbers `progress_dropped..progress_dropped + progress_count`.
    pub progress_count: u32,
    /// Events dropped from the front once `progress_count` reached its bound.
    pub progress_dropped: u64,
    pub result: Option<String>,
    pub last_error: Option<String>,
    pub finished_ms: Option<TimeMs>,
    /// When retention removes the finished task (fixed when it finishes).
    pub purge_after_ms: Option<TimeMs>,
    pub cancel_reason: Option<String>,
    /// The W3C `traceparent` it was submitted with.
    pub trace_parent: Option<String>,
    /// Dependencies, deadline and concurrency key, if it was submitted with any (appended in
    /// record version 2: [`crate::legacy::TaskRecordV1`] is the shape before).
    pub flow: Option<Box<F>>,
}

impl<F> TaskRecord<F> {
    pub fn is_live(&self) -> bool {
        !self.state.is_terminal()
    }

    /// The key the record is stored under: live and finished tasks are kept apart, so that a
    /// restart loads the live set without reading the finished ones.
    pub fn key(&self) -> Key {
        if self.is_live() {
            Key::Live(self.id)
        } else {
            Key::Done(self.id)
        }
    }

    /// The capability set as the ready index groups it: sorted, without repeats.
    pub fn capability_set(&self) -> Vec<String> {
        let mut caps = self.capabilities.clone();
        caps.sort();
        caps.dedup();
        caps
    }

    /// The agent of the most recent attempt, if any.
    pub fn last_agent(&self) -> Option<&str> {
        self.attempts.last().map(|a| a.agent_id.as_str())
    }

    /// The full ledger view, with the payload and progress events read back.
    pub fn into_task(self, payload: String, progress: Vec<ProgressEvent>) -> Task {
        Task {
            id: self.id,
            queue: self.queue,
            kind: self.kind,
            payload,
            capabilities: self.capabilities,
            priority: self.priority,
            idempotency_key: self.idempotency_key,
            max_attempts: self.max_attempts,
            attempt_limit: self.attempt_limit,
            lease_ms: self.lease_ms,
            stall_timeout_ms: self.stall_timeout_ms,
            state: self.state,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            run_at_ms: self.run_at_ms,
            lease: self.lease,
            attempts: self.attempts,
            progress,
            progress_dropped: self.progress_dropped,
            result: self.result,
            last_error: self.last_error,
            finished_ms: self.finished_ms,
            purge_after_ms: self.purge_after_ms,
            cancel_reason: self.cancel_reason,
        }
    }

    /// Split a full view into the record, its payload and its progress events.
    pub fn from_task(t: Task, trace_parent: Option<String>) -> (TaskRecord<F>, String, Vec<ProgressEvent>) {
        let rec = TaskRecord {
            id: t.id,
            queue: t.queue,
            kind: t.kind,
            capabilities: t.capabilities,
            priority: t.priority,
            idempotency_key: t.idempotency_key,
            max_attempts: t.max_attempts,
            attempt_limit: t.attempt_limit,
            lease_ms: t.lease_ms,
            stall_timeout_ms: t.stall_timeout_ms,
            state: t.state,
            created_ms: t.created_ms,
            updated_ms: t.updated_ms,
            run_at_ms: t.run_at_ms,
            lease: t.lease,
            attempts: t.attempts,
            progress_count: t.progress.len() as u32,
            progress_dropped: t.progress_dropped,
            result: t.result,
            last_error: t.last_error,
            finished_ms: t.finished_ms,
            purge_after_ms: t.purge_after_ms,
            cancel_reason: t.cancel_reason,
            trace_parent,
            flow: None,
        };
        (rec, t.payload, t.progress)
    }
}

impl<F> TaskRecord<F> {
    /// The same task with its flow converted (for reading older record versions).
    pub fn map_flow<G>(self, f: impl FnOnce(F) -> G) -> TaskRecord<G> {
        let TaskRecord {
            id,
            queue,
            kind,
            capabilities,
            priority,
            idempotency_key,
            max_attempts,
            attempt_limit,
            lease_ms,
            stall_timeout_ms,
            state,
            created_ms,
            updated_ms,
            run_at_ms,
            lease,
            attempts,
            progress_count,
            progress_dropped,
            result,
            last_error,
            finished_ms,
            purge_after_ms,
            cancel_reason,
            trace_parent,
            flow,
        } = self;
        TaskRecord {
            id,
            queue,
            kind,
            capabilities,
            priority,
            idempotency_key,
            max_attempts,
            attempt_limit,
            lease_ms,
            stall_timeout_ms,
            state,
            created_ms,
            updated_ms,
            run_at_ms,
            lease,
            attempts,
            progress_count,
            progress_dropped,
            result,
            last_error,
            finished_ms,
            purge_after_ms,
            cancel_reason,
            trace_parent,
            flow: flow.map(|b| Box::new(f(*b))),
        }
    }
}

impl TaskRecord {
    pub fn concurrency_key(&self) -> Option<&str> {
        self.flow.as_ref().and_then(|f| f.concurrency_key())
    }
}

/// Where a record lives. Within one kind, the derived order is the order storage keeps keys in
/// (big-endian numbers, strings as bytes, `(queue, key)` pairs joined by a NUL byte).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    /// The engine's counters and configuration.
    Meta,
    /// A task that is not finished.
    Live(TaskId),
    /// A finished task (succeeded, dead, cancelled, rejected).
    Done(TaskId),
    Payload(TaskId),
    /// A progress event: (task, sequence number).
    Progress(TaskId, u64),
    /// An idempotency key and the task it names.
    Dedup(DedupKey),
    /// Index: idempotency keys by expiry.
    DedupExpiry(TimeMs, DedupKey),
    /// Index: finished tasks by the time retention removes them.
    Retention(TimeMs, TaskId),
    /// Index: finished tasks by queue and state.
    Finished(String, TaskState, TaskId),
    Queue(String),
    /// Task counts by state of one queue.
    Counts(String),
    Agent(String),
    Token(String),
    Audit(u64),
    /// The agent ids a token may act as (appended last: kinds are part of snapshots).
    TokenAgents(String),
    /// A queue's concurrency limits (appended last).
    Limits(String),
    /// A rate bucket: (queue, concurrency key; `""` for the queue's own) (appended last).
    Rate(String, String),
    /// The key a fair queue served last (appended last).
    Turn(String),
    /// A schedule, by name (appended last).
    Schedule(String),
}

/// The kinds of key, for scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Meta,
    Live,
    Done,
    Payload,
    Progress,
    Dedup,
    DedupExpiry,
    Retention,
    Finished,
    Queue,
    Counts,
    Agent,
    Token,
    Audit,
    TokenAgents,
    Limits,
    Rate,
    Turn,
    Schedule,
}

impl Kind {
    pub const ALL: [Kind; 19] = [
        Kind::Meta,
        Kind::Live,
        Kind::Done,
        Kind::Payload,
        Kind::Progress,
        Kind::Dedup,
        Kind::DedupExpiry,
        Kind::Retention,
        Kind::Finished,
        Kind::Queue,
        Kind::Counts,
        Kind::Agent,
        Kind::Token,
        Kind::Audit,
        Kind::TokenAgents,
        Kind::Limits,
        Kind::Rate,
        Kind::Turn,
        Kind::Schedule,
    ];
}

impl Key {
    pub fn kind(&self) -> Kind {
        match self {
            Key::Meta => Kind::Meta,
            Key::Live(_) => Kind::Live,
            Key::Done(_) => Kind::Done,
            Key::Payload(_) => Kind::Payload,
            Key::Progress(..) => Kind::Progress,
            Key::Dedup(_) => Kind::Dedup,
            Key::DedupExpiry(..) => Kind::DedupExpiry,
            Key::Retention(..) => Kind::Retention,
            Key::Finished(..) => Kind::Finished,
            Key::Queue(_) => Kind::Queue,
            Key::Counts(_) => Kind::Counts,
            Key::Agent(_) => Kind::Agent,
            Key::Token(_) => Kind::Token,
            Key::Audit(_) => Kind::Audit,
            Key::TokenAgents(_) => Kind::TokenAgents,
            Key::Limits(_) => Kind::Limits,
            Key::Rate(..) => Kind::Rate,
            Key::Turn(_) => Kind::Turn,
            Key::Schedule(_) => Kind::Schedule,
        }
    }

    /// The smallest key of a kind.
    pub fn first_of(kind: Kind) -> Key {
        let dk = || DedupKey { queue: String::new(), key: String::new() };
        match kind {
            Kind::Meta => Key::Meta,
            Kind::Live => Key::Live(0),
            Kind::Done => Key::Done(0),
            Kind::Payload => Key::Payload(0),
            Kind::Progress => Key::Progress(0, 0),
            Kind::Dedup => Key::Dedup(dk()),
            Kind::DedupExpiry => Key::DedupExpiry(0, dk()),
            Kind::Retention => Key::Retention(0, 0),
            Kind::Finished => Key::Finished(String::new(), TaskState::Ready, 0),
            Kind::Queue => Key::Queue(String::new()),
            Kind::Counts => Key::Counts(String::new()),
            Kind::Agent => Key::Agent(String::new()),
            Kind::Token => Key::Token(String::new()),
            Kind::Audit => Key::Audit(0),
            Kind::TokenAgents => Key::TokenAgents(String::new()),
            Kind::Limits => Key::Limits(String::new()),
            Kind::Rate => Key::Rate(String::new(), String::new()),
            Kind::Turn => Key::Turn(String::new()),
            Kind::Schedule => Key::Schedule(String::new()),
        }
    }

    /// The task a per-task key belongs to (task records, payloads, progress events).
    pub fn task_id(&self) -> Option<TaskId> {
        match self {
            Key::Live(id) | Key::Done(id) | Key::Payload(id) | Key::Progress(id, _) => Some(*id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    Meta(Meta),
    /// A task as releases before record version 2 wrote it into restore streams in the log; read
    /// only (applied as [`Record::Task`]), never written.
    TaskV1(crate::legacy::TaskRecordV1),
    Payload(TaskId, String),
    Progress(TaskId, u64, ProgressEvent),
    Dedup(DedupKey, DedupEntry),
    DedupExpiry(TimeMs, DedupKey),
    Retention(TimeMs, TaskId),
    Finished(String, TaskState, TaskId),
    Queue(String, QueueConfig),
    /// Counts of the eight states before `waiting`, as earlier releases wrote them into restore
    /// streams in the log; read only (applied as [`Record::Counts`]), never written.
    Counts8(String, StateCounts8),
    Agent(Agent),
    Token(Token),
    Audit(AuditEntry),
    /// A token's agent-id patterns (token id, patterns), for a token bound to some agents
    /// (appended last: records travel in restore commands).
    TokenAgents(String, Vec<String>),
    /// Counts of the nine states before `waiting_children`, as the releases between wrote them
    /// into restore streams in the log; read only (applied as [`Record::Counts`]), never written.
    Counts9(String, StateCounts9),
    /// A task as record version 2 wrote it into restore streams in the log; read only (applied
    /// as [`Record::Task`]), never written.
    TaskV2(crate::legacy::TaskRecordV2),
    /// A queue's concurrency limits (appended last).
    Limits(String, Vec<crate::key_limits::LimitRule>),
    /// A task (appended last; replaces [`Record::TaskV2`]).
    Task(TaskRecord),
    /// A rate bucket's theoretical arrival time in nanoseconds (see [`crate::rate`]) (appended
    /// last).
    Rate(String, String, u64),
    /// The key a fair queue served last (`""`: a task without a key) (appended last).
    Turn(String, String),
    /// A schedule and where it stands (appended last).
    Schedule(Box<crate::schedule::Schedule>),
    /// Task counts by state of one queue (appended last; replaces [`Record::Counts9`]).
    Counts(String, StateCounts),
}

impl Record {
    pub fn key(&self) -> Key {
        match self {
            Record::Meta(_) => Key::Meta,
            Record::Task(t) => t.key(),
            Record::TaskV1(t) => t.key(),
            Record::TaskV2(t) => t.key(),
            Record::Limits(q, _) => Key::Limits(q.clone()),
            Record::Rate(q, k, _) => Key::Rate(q.clone(), k.clone()),
            Record::Turn(q, _) => Key::Turn(q.clone()),
            Record::Schedule(s) => Key::Schedule(s.def.name.clone()),
            Record::Payload(id, _) => Key::Payload(*id),
            Record::Progress(id, seq, _) => Key::Progress(*id, *seq),
            Record::Dedup(k, _) => Key::Dedup(k.clone()),
            Record::DedupExpiry(at, k) => Key::DedupExpiry(*at, k.clone()),
            Record::Retention(at, id) => Key::Retention(*at, *id),
            Record::Finished(q, s, id) => Key::Finished(q.clone(), *s, *id),
            Record::Queue(q, _) => Key::Queue(q.clone()),
            Record::Counts(q, _) | Record::Counts8(q, _) | Record::Counts9(q, _) => Key::Counts(q.clone()),
            Record::Agent(a) => Key::Agent(a.id.clone()),
            Record::Token(t) => Key::Token(t.id.clone()),
            Record::Audit(e) => Key::Audit(e.seq),
            Record::TokenAgents(id, _) => Key::TokenAgents(id.clone()),
        }
    }

    /// Rough bytes, for batching records into bounded log entries.
    pub fn approx_bytes(&self) -> usize {
        64 + match self {
            Record::Task(t) => {
                t.queue.len()
                    + t.kind.len()
                    + t.result.as_ref().map_or(0, |r| r.len())
                    + t.last_error.as_ref().map_or(0, |r| r.len())
                    + t.attempts.iter().map(|a| 48 + a.agent_id.len()).sum::<usize>()
                    + t.flow.as_ref().map_or(0, |f| 16 * (f.depends_on.len() + f.unfinished.len()))
            }
            Record::Payload(_, p) => p.len(),
            Record::Progress(_, _, e) => e.message.as_ref().map_or(0, |m| m.len()),
            Record::Dedup(k, _) | Record::DedupExpiry(_, k) => k.queue.len() + k.key.len(),
            Record::Audit(e) => e.detail.len() + e.target.len(),
            _ => 256,
        }
    }
}

/// One change apply asks storage to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Put(Record),
    Delete(Key),
}

impl Effect {
    pub fn key(&self) -> Key {
        match self {
            Effect::Put(r) => r.key(),
            Effect::Delete(k) => k.clone(),
        }
    }
}

//! Minion's engine: a pure, deterministic state machine for task queues.
//!
//! Every change is a [`Command`] applied by [`State::apply`] with the time stamped into the log
//! entry; no I/O and no local clock. Apply reads what RAM does not hold through [`Cold`] and
//! hands its changes back as [`Effect`]s on typed [`Record`]s ([`State::take_effects`]); the
//! `storage` crate writes and encodes them, the `raft` crate feeds committed entries in log order.

pub mod access;
pub mod agent;
pub mod autoscale;
pub mod backoff;
pub mod changes;
pub mod command;
pub mod config;
pub mod dedup;
pub mod dispatch;
pub mod events;
pub mod flow;
pub mod key_limits;
pub mod legacy;
pub mod memory;
pub mod rate;
pub mod record;
pub mod schedule;
pub mod state;
pub mod store;
pub mod task;

pub use access::{AuditEntry, Role, Token};
pub use agent::{Agent, AgentStats, AgentStatus, OutcomeStats};
pub use changes::{Change, Touched};
pub use command::{
    validate_trace_parent, Ack, AgentSpec, ApplyMeta, Command, NewTask, Outcome, RejectCode, RejectedRecord, Rejection,
    Request, Response, Submitted,
};
pub use config::{EngineConfig, QueueConfig};
pub use dedup::{DedupEntry, DedupKey, DedupStats};
pub use dispatch::{Candidate, Dispatcher, Strategy};
pub use events::{EventBody, TaskEvent};
pub use flow::{
    DepPolicy, DepRef, Flow, FlowExt, TaskFlow, CONCURRENCY_KEY_BYTES_MAX, DEADLINE_ERROR, DEPENDENCIES_MAX,
};
pub use key_limits::{KeyLimits, LimitRule};
pub use memory::Memory;
pub use record::{widen_counts, Effect, Key, Kind, Record, StateCounts, StateCounts8, StateCounts9, TaskRecord};
pub use state::{
    list, task_details, task_record, task_view, Counters, LimitsView, Meta, QueueStats, State, TaskFilter,
};
pub use store::{Cold, ColdError, MemStore};
pub use task::{Attempt, AttemptOutcome, Lease, LeaseToken, ProgressEvent, Task, TaskId, TaskState, TimeMs};

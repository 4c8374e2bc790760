//! Minion's engine: a pure, deterministic state machine for task queues.
//!
//! Every change is a [`Command`] applied by [`State::apply`] with the time stamped into the log
//! entry; no I/O and no local clock. The `storage` crate persists what [`State::take_dirty`]
//! reports, the `raft` crate feeds committed entries in log order.

pub mod access;
pub mod agent;
pub mod autoscale;
pub mod backoff;
pub mod changes;
pub mod command;
pub mod config;
pub mod dedup;
pub mod dispatch;
pub mod state;
pub mod task;

pub use access::{AuditEntry, Role, Token};
pub use agent::{Agent, AgentStats, AgentStatus, OutcomeStats};
pub use changes::Change;
pub use command::{
    validate_trace_parent, AgentSpec, ApplyMeta, Command, NewTask, Outcome, RejectCode, RejectedRecord, Rejection,
    Request, Response, Submitted,
};
pub use config::{EngineConfig, QueueConfig};
pub use dedup::{DedupEntry, DedupKey, DedupStats};
pub use dispatch::{Candidate, Dispatcher, Strategy};
pub use state::{Counters, Dirty, Extra, Meta, QueueStats, State, StateImage, StateImageV1, TaskFilter};
pub use task::{Attempt, AttemptOutcome, Lease, LeaseToken, ProgressEvent, Task, TaskId, TaskState, TimeMs};

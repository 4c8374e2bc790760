//! Task events: what applying an entry did to tasks, for watchers (`/v1/events`).
//!
//! Events are not part of the state: the engine records them only while someone watches
//! ([`crate::State::watch_events`]), and a watcher that missed some catches up from the change
//! feed instead. Every replica produces the same events for the same entry.

use crate::record::TaskRecord;
use crate::task::{ProgressEvent, TaskId, TaskState, TimeMs};

/// One thing that happened to one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEvent {
    pub task_id: TaskId,
    pub queue: String,
    /// The task's kind (what it asks an agent to do).
    pub task_kind: String,
    pub at_ms: TimeMs,
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    /// The task entered `state`; `submitted` when it was just created.
    State {
        state: TaskState,
        submitted: bool,
        attempt: u32,
        agent_id: Option<String>,
        result: Option<String>,
        error: Option<String>,
    },
    /// The holder reported progress (or partial output); `seq` numbers the task's reports.
    Progress { seq: u64, report: ProgressEvent },
}

impl TaskEvent {
    /// The task as it is now, as a state event (what a watcher sees when it joins or catches up).
    pub fn state_of(t: &TaskRecord, submitted: bool) -> TaskEvent {
        let agent_id = match &t.lease {
            Some(l) => Some(l.agent_id.clone()),
            None => t.last_agent().map(str::to_string),
        };
        TaskEvent {
            task_id: t.id,
            queue: t.queue.clone(),
            task_kind: t.kind.clone(),
            at_ms: t.updated_ms,
            body: EventBody::State {
                state: t.state,
                submitted,
                attempt: t.attempts.len() as u32,
                agent_id,
                result: t.result.clone(),
                error: if t.state == TaskState::Cancelled { t.cancel_reason.clone() } else { t.last_error.clone() },
            },
        }
    }

    /// A progress report of `t` (numbered `seq`).
    pub fn progress_of(t: &TaskRecord, seq: u64, report: ProgressEvent) -> TaskEvent {
        TaskEvent {
            task_id: t.id,
            queue: t.queue.clone(),
            task_kind: t.kind.clone(),
            at_ms: report.at_ms,
            body: EventBody::Progress { seq, report },
        }
    }

    /// The event's name on the wire: `submitted`, a state's name, or `progress`.
    pub fn name(&self) -> &'static str {
        match &self.body {
            EventBody::State { submitted: true, .. } => "submitted",
            EventBody::State { state, .. } => state.as_str(),
            EventBody::Progress { .. } => "progress",
        }
    }

    /// True when the task will change no more (unless a user retries it).
    pub fn is_terminal(&self) -> bool {
        matches!(&self.body, EventBody::State { state, .. } if state.is_terminal())
    }
}

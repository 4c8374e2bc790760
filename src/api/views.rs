//! Wire shapes of the v1 API.

use minion_engine::{Attempt, AttemptOutcome, Lease, NewTask, ProgressEvent, Task};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A task as a producer submits it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskIn {
    pub queue: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub payload: Option<Box<RawValue>>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub priority: i32,
    pub idempotency_key: Option<String>,
    /// Absolute run time, milliseconds since the Unix epoch.
    pub run_at_ms: Option<u64>,
    pub delay_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub lease_ms: Option<u64>,
    /// Release the lease when the holder reports no progress for this long.
    pub stall_timeout_ms: Option<u64>,
}

impl TaskIn {
    pub fn into_new(self) -> NewTask {
        NewTask {
            queue: self.queue,
            kind: self.kind,
            payload: self.payload.map(|p| p.get().to_string()).unwrap_or_else(|| "null".into()),
            capabilities: self.capabilities,
            priority: self.priority,
            idempotency_key: self.idempotency_key,
            run_at_ms: self.run_at_ms,
            delay_ms: self.delay_ms,
            max_attempts: self.max_attempts,
            lease_ms: self.lease_ms,
            stall_timeout_ms: self.stall_timeout_ms,
        }
    }
}

/// An ingest record refused as a task (`POST /v1/rejections`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectedIn {
    /// The queue it was meant for (the adapter's default queue).
    pub queue: String,
    #[serde(default = "rejected_kind")]
    pub kind: String,
    pub reason: String,
    /// Where it came from, e.g. `kafka:orders/3@1234` or `redis:orders@1700000000000-0`.
    pub source: String,
    /// A description of the raw record (its size and a bounded prefix).
    #[serde(default)]
    pub record: serde_json::Value,
    pub idempotency_key: Option<String>,
}

fn rejected_kind() -> String {
    "rejected".into()
}

impl RejectedIn {
    pub fn into_record(self) -> minion_engine::RejectedRecord {
        let payload = serde_json::json!({ "source": self.source, "record": self.record }).to_string();
        minion_engine::RejectedRecord {
            queue: self.queue,
            kind: self.kind,
            reason: self.reason,
            payload,
            idempotency_key: self.idempotency_key,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectionsIn {
    pub records: Vec<RejectedIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    pub tasks: Vec<TaskIn>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SubmittedOut {
    pub id: u64,
    pub duplicate: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimIn {
    pub agent_id: String,
    pub queues: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default = "one")]
    pub max: u32,
    #[serde(default)]
    pub wait_ms: u64,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressIn {
    pub lease_token: u64,
    pub percent: Option<u8>,
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteIn {
    pub lease_token: u64,
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
}

/// `POST /v1/acks`: complete or fail many leased tasks in one request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcksIn {
    pub acks: Vec<AckIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckIn {
    pub id: u64,
    pub lease_token: u64,
    pub outcome: AckOutcome,
    /// With `complete`: the result (any JSON).
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
    /// With `fail`: why (required).
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    Complete,
    Fail,
}

/// One acknowledgement's answer: the task's state after it, or why it changed nothing.
#[derive(Debug, Serialize)]
pub struct AckOut {
    pub id: u64,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<minion_engine::TaskState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<super::error::ErrorBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailIn {
    pub lease_token: u64,
    pub error: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendIn {
    pub lease_token: u64,
    pub lease_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CancelIn {
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub queue: Option<String>,
    pub state: Option<String>,
    pub kind: Option<String>,
    pub agent: Option<String>,
    pub created_from_ms: Option<u64>,
    pub created_before_ms: Option<u64>,
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

/// JSON text stored by the engine, emitted verbatim.
fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string())
        .unwrap_or_else(|_| serde_json::value::to_raw_value(text).unwrap_or_else(|_| RawValue::NULL.to_owned()))
}

/// A task as the API returns it: the ledger record with payload and result as JSON.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaskOut {
    pub id: u64,
    pub queue: String,
    pub kind: String,
    pub state: minion_engine::TaskState,
    pub payload: Box<RawValue>,
    pub result: Option<Box<RawValue>>,
    pub capabilities: Vec<String>,
    pub priority: i32,
    pub idempotency_key: Option<String>,
    pub max_attempts: u32,
    pub attempt_limit: u32,
    pub lease_ms: u64,
    pub stall_timeout_ms: Option<u64>,
    pub lease: Option<Lease>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub run_at_ms: u64,
    pub finished_ms: Option<u64>,
    pub last_error: Option<String>,
    pub cancel_reason: Option<String>,
    pub attempts: Vec<AttemptOut>,
    pub progress: Vec<ProgressEvent>,
    pub progress_dropped: u64,
    /// The W3C `traceparent` the task was submitted with (absent when none was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
}

impl TaskOut {
    /// The task as the API shows it, with the trace context it was submitted with.
    pub fn of(t: &Task, trace_parent: Option<String>) -> Self {
        let mut out = TaskOut::from(t);
        out.trace_parent = trace_parent;
        out
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OutcomeOut {
    /// succeeded, failed, lease_expired or cancelled
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AttemptOut {
    pub number: u32,
    pub agent_id: String,
    pub lease_token: u64,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub outcome: Option<OutcomeOut>,
}

impl From<&Attempt> for AttemptOut {
    fn from(a: &Attempt) -> Self {
        AttemptOut {
            number: a.number,
            agent_id: a.agent_id.clone(),
            lease_token: a.lease_token,
            started_ms: a.started_ms,
            ended_ms: a.ended_ms,
            outcome: a.outcome.as_ref().map(|o| OutcomeOut {
                outcome: o.as_str().to_string(),
                error: match o {
                    AttemptOutcome::Failed { error } => Some(error.clone()),
                    _ => None,
                },
            }),
        }
    }
}

impl From<&Task> for TaskOut {
    fn from(t: &Task) -> Self {
        TaskOut {
            id: t.id,
            queue: t.queue.clone(),
            kind: t.kind.clone(),
            state: t.state,
            payload: raw(&t.payload),
            result: t.result.as_deref().map(raw),
            capabilities: t.capabilities.clone(),
            priority: t.priority,
            idempotency_key: t.idempotency_key.clone(),
            max_attempts: t.max_attempts,
            attempt_limit: t.attempt_limit,
            lease_ms: t.lease_ms,
            stall_timeout_ms: t.stall_timeout_ms,
            lease: t.lease.clone(),
            created_ms: t.created_ms,
            updated_ms: t.updated_ms,
            run_at_ms: t.run_at_ms,
            finished_ms: t.finished_ms,
            last_error: t.last_error.clone(),
            cancel_reason: t.cancel_reason.clone(),
            attempts: t.attempts.iter().map(AttemptOut::from).collect(),
            progress: t.progress.clone(),
            progress_dropped: t.progress_dropped,
            trace_parent: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TaskList {
    pub tasks: Vec<TaskOut>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentIn {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default = "one")]
    pub max_concurrency: u32,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatIn {
    /// The incarnation the agent registered as; a stale one is refused.
    pub incarnation: Option<u64>,
}

/// An agent as the API returns it: the replicated record plus the leader's liveness view.
#[derive(Debug, Serialize)]
pub struct AgentOut<'a> {
    #[serde(flatten)]
    pub agent: &'a minion_engine::Agent,
    /// Milliseconds since this node last heard from the agent (leader only).
    pub last_seen_ms_ago: Option<u64>,
}

/// The data of one task event on an event stream (`/v1/events`, `/v1/tasks/{id}/events`); the
/// SSE event's name says what happened (`submitted`, a state's name, or `progress`).
#[derive(Debug, Serialize, Deserialize)]
pub struct EventOut {
    pub task_id: u64,
    pub queue: String,
    /// The task's kind.
    pub kind: String,
    pub at_ms: u64,
    /// State events: the state entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The attempt it concerns (1 for the first); 0 before the first claim.
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// `succeeded`: the result (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<RawValue>>,
    /// `failed` and `dead`: the last error; `cancelled`: the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `progress`: the report's number (from 0, per task; a client drops numbers it has seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// `progress`: the message, or a piece of partial output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl EventOut {
    pub fn of(e: &minion_engine::TaskEvent) -> EventOut {
        use minion_engine::EventBody;
        let mut out = EventOut {
            task_id: e.task_id,
            queue: e.queue.clone(),
            kind: e.task_kind.clone(),
            at_ms: e.at_ms,
            state: None,
            attempt: 0,
            agent_id: None,
            result: None,
            error: None,
            seq: None,
            percent: None,
            message: None,
        };
        match &e.body {
            EventBody::State { state, attempt, agent_id, result, error, .. } => {
                out.state = Some(state.as_str().to_string());
                out.attempt = *attempt;
                out.agent_id = agent_id.clone();
                out.result = result.as_deref().map(raw);
                out.error = error.clone();
            }
            EventBody::Progress { seq, report } => {
                out.seq = Some(*seq);
                out.attempt = report.attempt;
                out.percent = report.percent;
                out.message = report.message.clone();
            }
        }
        out
    }
}

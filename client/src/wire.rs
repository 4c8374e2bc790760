//! The request and response bodies of the v1 API, as the server reads and writes them and as
//! clients send and receive them. Payloads and results are any JSON, kept as raw JSON text.
//!
//! Input types refuse unknown fields (a misspelt field is an error, not silently ignored); output
//! types accept them (a newer server may add fields).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

/// A task as a producer submits it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskIn {
    pub queue: String,
    /// What the task asks an agent to do (agents route on it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Any JSON (`null` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub payload: Option<Box<RawValue>>,
    /// Capabilities the claiming agent must all have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Higher first.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub priority: i32,
    /// A second submit with the same key (per queue, while the key lives) returns the first task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Absolute run time, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Release the lease when the holder reports no progress for this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_timeout_ms: Option<u64>,
    /// Tasks this one waits for (it is `waiting` until all have finished): ids of existing
    /// tasks, or the idempotency keys of other tasks in the same batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependencyRef>,
    /// What a dependency that ends dead, cancelled or rejected does to this task (default
    /// `cancel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_dependency_failure: Option<DependencyPolicy>,
    /// Finish by then (milliseconds since the Unix epoch), across all attempts, or be `dead`
    /// with the error `deadline`; wins over `deadline_in_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The same, relative to the submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_in_ms: Option<u64>,
    /// Tasks of one queue with the same key share the queue's per-key concurrency limit (see
    /// `PUT /v1/queues/{name}/limits`); 1 to 256 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
}

/// A dependency in a submit: a task id, or the idempotency key of another task in the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum DependencyRef {
    Id(u64),
    Key(String),
}

/// What a dependency that did not succeed does to the task waiting on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DependencyPolicy {
    /// The waiting task is cancelled, and the tasks waiting on it after it.
    #[default]
    Cancel,
    /// The waiting task runs anyway and sees how its dependency ended.
    RunAnyway,
}

impl TaskIn {
    /// A task for `queue` with `payload` (serialized now) and defaults for the rest.
    pub fn new(queue: impl Into<String>, payload: &impl Serialize) -> Result<TaskIn, serde_json::Error> {
        Ok(TaskIn {
            queue: queue.into(),
            payload: Some(serde_json::value::to_raw_value(payload)?),
            ..TaskIn::default()
        })
    }
}

/// `POST /v1/tasks` with several tasks: one atomic batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    pub tasks: Vec<TaskIn>,
}

/// The body of `POST /v1/tasks`: one task, or `{"tasks": [...]}` (an atomic batch of up to
/// 10,000). The server tells them apart by the `tasks` field.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum SubmitIn {
    Batch(BatchIn),
    One(TaskIn),
}

/// An ingest record refused as a task (`POST /v1/rejections`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

fn rejected_kind() -> String {
    "rejected".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RejectionsIn {
    pub records: Vec<RejectedIn>,
}

/// The answer to a submit of one task (and, per task, of a batch).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmittedOut {
    pub id: u64,
    /// True when an idempotency key matched an earlier task: `id` is that task.
    pub duplicate: bool,
}

/// The answer to a batch submit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchOut {
    pub tasks: Vec<SubmittedOut>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimIn {
    pub agent_id: String,
    pub queues: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default = "one")]
    pub max: u32,
    /// Long-poll up to this long for a task (capped by the server).
    #[serde(default)]
    pub wait_ms: u64,
}

fn one() -> u32 {
    1
}

/// The answer to a claim: the tasks leased (possibly none).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimOut {
    pub tasks: Vec<TaskOut>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProgressIn {
    pub lease_token: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// A message, or a piece of partial output (≤ 4,096 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CompleteIn {
    pub lease_token: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub result: Option<Box<RawValue>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FailIn {
    pub lease_token: u64,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtendIn {
    pub lease_token: u64,
    /// The lease runs this long from now (default: the task's `lease_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// Children submitted by a leased task, under its lease (`POST /v1/tasks/{id}/children`): one
/// atomic batch, whose members may depend on each other by idempotency key as in a submit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChildrenIn {
    /// The parent's current lease token.
    pub lease_token: u64,
    pub tasks: Vec<TaskIn>,
}

/// A parent's lease token (`POST /v1/tasks/{id}/wait-children`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WaitChildrenIn {
    pub lease_token: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CancelIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/acks`: complete or fail many leased tasks in one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcksIn {
    pub acks: Vec<AckIn>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AckIn {
    pub id: u64,
    pub lease_token: u64,
    pub outcome: AckOutcome,
    /// With `complete`: the result (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub result: Option<Box<RawValue>>,
    /// With `fail`: why (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    Complete,
    Fail,
}

/// One acknowledgement's answer: the task's state after it, or why it changed nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AckOut {
    pub id: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcksOut {
    pub results: Vec<AckOut>,
}

/// `GET /v1/tasks` filters and paging.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_from_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Ready,
    Delayed,
    Leased,
    Succeeded,
    Failed,
    Dead,
    Cancelled,
    Rejected,
    /// Waiting for the tasks it depends on to finish.
    Waiting,
    /// Gave its lease back to wait for its children; ready again once they have all finished.
    WaitingChildren,
}

impl TaskState {
    /// Final states: the task changes no more (unless a user retries it).
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled | TaskState::Rejected)
    }
}

/// A task as the API returns it: the ledger record with payload and result as JSON.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskOut {
    pub id: u64,
    pub queue: String,
    pub kind: String,
    pub state: TaskState,
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub payload: Box<RawValue>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub result: Option<Box<RawValue>>,
    pub capabilities: Vec<String>,
    pub priority: i32,
    pub idempotency_key: Option<String>,
    pub max_attempts: u32,
    pub attempt_limit: u32,
    pub lease_ms: u64,
    pub stall_timeout_ms: Option<u64>,
    pub lease: Option<LeaseOut>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub run_at_ms: u64,
    pub finished_ms: Option<u64>,
    pub last_error: Option<String>,
    pub cancel_reason: Option<String>,
    pub attempts: Vec<AttemptOut>,
    pub progress: Vec<ProgressOut>,
    pub progress_dropped: u64,
    /// The W3C `traceparent` the task was submitted with (absent when none was given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
    /// The tasks it depends on, each as it is now (with its result once it succeeded); absent for
    /// a task submitted without dependencies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependencyOut>,
    /// What a failed dependency does to it (tasks with dependencies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_dependency_failure: Option<DependencyPolicy>,
    /// When it is dead unless finished (tasks submitted with a deadline only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The concurrency key it was submitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// The task that submitted it under its lease (children only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<u64>,
    /// Its children, in the order submitted, each as it is now (with its result once it
    /// succeeded); absent for a task without children.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<DependencyOut>,
}

/// A task's dependency or child, as the task's view and its claim show it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DependencyOut {
    pub id: u64,
    /// Absent when the dependency has left the ledger (retention).
    pub state: Option<TaskState>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub result: Option<Box<RawValue>>,
    pub last_error: Option<String>,
}

impl TaskOut {
    /// The lease's fencing token (tasks in state `leased`).
    pub fn lease_token(&self) -> Option<u64> {
        self.lease.as_ref().map(|l| l.token)
    }
}

/// The current lease on a task in state `leased`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseOut {
    /// The fencing token: every operation on the task under this lease names it.
    pub token: u64,
    pub agent_id: String,
    pub incarnation: u64,
    pub expires_ms: u64,
    pub stall_deadline_ms: Option<u64>,
}

/// A progress report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProgressOut {
    pub at_ms: u64,
    pub attempt: u32,
    pub percent: Option<u8>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutcomeOut {
    /// succeeded, failed, lease_expired or cancelled
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptOut {
    pub number: u32,
    pub agent_id: String,
    pub lease_token: u64,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub outcome: Option<OutcomeOut>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskList {
    pub tasks: Vec<TaskOut>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentIn {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default = "one")]
    pub max_concurrency: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatIn {
    /// The incarnation the agent registered as; a stale one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
}

/// Completions, failures and their latency, overall or for one capability.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutcomeStatsOut {
    pub completed: u64,
    pub failed: u64,
    pub latency_ewma_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentStatsOut {
    pub in_flight: u32,
    pub overall: OutcomeStatsOut,
    pub by_capability: BTreeMap<String, OutcomeStatsOut>,
}

/// An agent as the API returns it: the replicated record plus the leader's liveness view.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentOut {
    pub id: String,
    pub name: String,
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub labels: BTreeMap<String, String>,
    /// active, draining or dead
    pub status: String,
    /// Changes on every registration; leases of an earlier incarnation were released.
    pub incarnation: u64,
    pub registered_ms: u64,
    pub updated_ms: u64,
    pub stats: AgentStatsOut,
    /// Milliseconds since the leader last heard from the agent.
    pub last_seen_ms_ago: Option<u64>,
}

/// A page of agents.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentList {
    pub agents: Vec<AgentOut>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<String>,
}

/// The data of one task event on an event stream (`/v1/events`, `/v1/tasks/{id}/events`); the
/// SSE event's name says what happened (`submitted`, a state's name, or `progress`).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventOut {
    pub task_id: u64,
    pub queue: String,
    /// The task's kind.
    pub kind: String,
    pub at_ms: u64,
    /// State events: the state entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
    /// The attempt it concerns (1 for the first); 0 before the first claim.
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// `succeeded`: the result (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
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

/// `GET /v1/whoami`: who the presented token is and what it may touch (what a console needs to
/// show only what the caller can do).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmIOut {
    /// False on a node with authentication off (every caller is an admin).
    pub auth: bool,
    /// `admin`, `producer`, `worker`, `reader` or `metrics`.
    pub role: String,
    /// The token's name (`admin` for the bootstrap token, `anonymous` without authentication).
    pub name: String,
    /// Queue patterns it may touch (empty: all) and those it may not.
    pub queues: Vec<String>,
    pub deny: Vec<String>,
}

/// `{"code", "message"}`: the error of a whole response (under `"error"`) or of one item of a
/// batch answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// `starts` task starts per `period_ms` (bursts of up to `starts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// 1 to 1,000,000.
    pub starts: u32,
    /// 1 ms to 31 days.
    pub period_ms: u64,
}

/// A queue's limits, as `PUT /v1/queues/{name}/limits` replaces them. Concurrency: a key with
/// neither a limit of its own nor `concurrency_per_key` is unlimited; 0 holds a key's tasks back.
/// Rates: task starts per period in the whole queue (`rate`) and per key (`rate_per_key`,
/// `key_rate`); a key with neither has no rate of its own. Fairness (`fair`): claims serve the
/// queue's keys round robin within a priority (tasks without a key as one more key) instead of
/// oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitsIn {
    /// Tasks with one concurrency key leased at once, for every key without a limit of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_per_key: Option<u32>,
    /// Limits of single keys (they win over `concurrency_per_key`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_concurrency: BTreeMap<String, u32>,
    /// Task starts in the whole queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSpec>,
    /// Task starts per concurrency key, for every key without a rate of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_key: Option<RateSpec>,
    /// Rates of single keys (they win over `rate_per_key`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_rate: BTreeMap<String, RateSpec>,
    /// Serve keys round robin within a priority instead of oldest first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fair: bool,
}

/// A queue's limits and where its keys stand.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitsOut {
    pub queue: String,
    pub concurrency_per_key: Option<u32>,
    pub key_concurrency: BTreeMap<String, u32>,
    #[serde(default)]
    pub rate: Option<RateSpec>,
    #[serde(default)]
    pub rate_per_key: Option<RateSpec>,
    #[serde(default)]
    pub key_rate: BTreeMap<String, RateSpec>,
    /// Leased tasks per concurrency key (keys with none left out).
    pub leased_by_key: BTreeMap<String, u32>,
    /// Keys with ready tasks that no claim may take now (at their concurrency limit, or waiting
    /// for their rate).
    pub keys_at_limit: u64,
    /// Keys that have used up their rate for now.
    #[serde(default)]
    pub keys_rate_limited: u64,
    /// When the queue's own rate allows its next start (engine clock, epoch ms), if it allows
    /// none now.
    #[serde(default)]
    pub rate_limited_until_ms: Option<u64>,
    /// Keys take turns within a priority.
    #[serde(default)]
    pub fair: bool,
    /// In a fair queue, the key served last (`""`: a task without a key); the next claim starts
    /// after it.
    #[serde(default)]
    pub last_served_key: Option<String>,
}

/// What a schedule does with runs missed while no leader fired them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Fire the latest missed run if it is at most 60 s old; skip the others.
    #[default]
    Skip,
    /// Fire the latest `catch_up` missed runs, oldest first; skip older ones.
    CatchUp,
}

/// The task each run of a schedule submits: a submit's fields without an idempotency key (each
/// run gets `schedule:{name}:{time}`), a run time, a delay or dependencies.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduledTask {
    pub queue: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Any JSON (`null` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub payload: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_timeout_ms: Option<u64>,
}

/// A schedule as `PUT /v1/schedules/{name}` sets it: exactly one of `cron` (5 fields, or 6 with
/// seconds first; in `timezone`, default UTC) and `every_ms` (from the time it is set).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// 1 s to 366 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
    pub task: ScheduledTask,
    #[serde(default)]
    pub missed: MissedPolicy,
    /// With `missed: catch_up`: how many missed runs to fire at most (1 to 1,000; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<u32>,
    /// A paused schedule fires nothing until it is set again without `paused`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// A schedule and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleOut {
    pub name: String,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub every_ms: Option<u64>,
    pub task: ScheduledTask,
    pub missed: MissedPolicy,
    pub catch_up: Option<u32>,
    pub paused: bool,
    /// When it was last set (epoch ms; an interval counts from here).
    pub set_ms: u64,
    /// Its next due time (epoch ms), unless paused or it has none left.
    pub next_ms: Option<u64>,
    /// The due time of the last run fired, and the task it created.
    pub last_run_ms: Option<u64>,
    pub last_task_id: Option<u64>,
    /// Runs fired, and runs skipped (missed and not fired).
    pub fired: u64,
    pub skipped: u64,
    /// Why the last run's task could not be submitted, if it could not.
    pub last_error: Option<String>,
}

/// Every schedule, by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleOut>,
}

/// An error response: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorOut {
    pub error: ErrorBody,
}

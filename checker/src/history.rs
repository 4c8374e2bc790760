//! What clients did (the history) and what the cluster holds at the end (the ledger).

use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// An operation a client invoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// `POST /v1/tasks` with an idempotency key.
    Submit { key: String, max_attempts: u32 },
    /// `POST /v1/claims` by an agent.
    Claim { agent: String },
    /// `POST /v1/tasks/{id}/complete`.
    Complete { task: u64, token: u64 },
    /// `POST /v1/tasks/{id}/fail`.
    Fail { task: u64, token: u64 },
    /// `POST /v1/tasks/{id}/progress`.
    Progress { task: u64, token: u64 },
    /// `GET /v1/tasks/{id}` (a linearizable read unless the client asked for a stale one).
    Read { task: u64 },
}

/// A lease a claim handed out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    pub task: u64,
    pub token: u64,
    /// The attempt's number (1 for the first lease of the task).
    pub attempt: u32,
}

/// A task as a read saw it: the parts the model predicts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The wire name (`ready`, `leased`, `succeeded`, ...).
    pub state: String,
    /// How many attempts the task has had (leases handed out).
    pub attempts: u32,
    /// The current lease's token, when leased.
    pub token: Option<u64>,
}

/// What an acknowledged operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ret {
    /// A submit: the task's id.
    Task(u64),
    /// A claim: the leases handed out (possibly none).
    Leases(Vec<Granted>),
    /// Complete, fail, progress.
    Done,
    /// A read: the task, or `None` for 404.
    View(Option<View>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Acknowledged (2xx).
    Ok(Ret),
    /// Refused (4xx): it did not happen. The string is the error code.
    Failed(String),
    /// Timed out, 5xx or a broken connection: it may have happened, at any time after it was
    /// invoked, or never.
    Unknown,
}

/// One operation: who, what, when (µs since the history began), and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub process: usize,
    pub call: Call,
    pub invoked: u64,
    /// `None` when the outcome is unknown.
    pub completed: Option<u64>,
    pub outcome: Outcome,
}

impl Op {
    pub fn ok(&self) -> Option<&Ret> {
        match &self.outcome {
            Outcome::Ok(r) => Some(r),
            _ => None,
        }
    }
}

/// One task of the final ledger, read once every fault had healed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalTask {
    pub id: u64,
    pub key: Option<String>,
    pub max_attempts: u32,
    pub view: View,
    /// Every attempt: (number, lease token, agent).
    pub attempts: Vec<(u32, u64, String)>,
}

pub type Ledger = Vec<FinalTask>;

/// Collects a history from concurrent clients against one clock.
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { start: Instant::now(), ops: Mutex::default() }
    }
}

impl Recorder {
    /// Microseconds since the history began; take it just before sending a request.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Record an operation invoked at `invoked` that has just ended with `outcome`.
    pub fn record(&self, process: usize, call: Call, invoked: u64, outcome: Outcome) {
        let completed = (!matches!(outcome, Outcome::Unknown)).then(|| self.now());
        let op = Op { process, call, invoked, completed, outcome };
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    /// Every operation recorded so far, in the order they completed.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

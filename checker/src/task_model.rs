//! One task as a sequential state machine, and the per-task linearizability check.
//!
//! The model: a task is absent until a submit of its key creates it (a repeated submit changes
//! nothing); a claim leases it when it is waiting (`ready`, `delayed` or `failed`) with the next
//! attempt number and a token; complete and fail need the current token (and are refused for any
//! other); a lease may expire at any moment, which ends the attempt like a fail (the model has
//! no clock, so expiry is a choice the search makes). A read sees the state, the number of
//! attempts, and the token while leased.

use std::collections::BTreeMap;

use crate::history::{Call, Ledger, Op, Outcome, Ret, View};
use crate::leases;
use crate::linear::{self, Entry, Model, Verdict};
use crate::report::{Anomaly, Kind};

/// Error codes of a refused complete, fail or progress that mean the token was not the task's
/// current lease (the engine checks the lease before the request's other fields, so e.g. an
/// `invalid_request` says the opposite, and a 413 or 429 nothing).
pub const LEASE_REFUSALS: [&str; 3] = ["stale_lease", "wrong_state", "not_found"];

/// Configurations one task's search may visit before it is reported undecided.
pub const BUDGET: usize = 200_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Absent,
    /// `ready`, `delayed`, or `failed` (waiting out a retry backoff).
    Waiting,
    Leased,
    Succeeded,
    Dead,
    /// Any other state (cancelled, rejected, ...): the workload makes none.
    Other,
}

pub fn class_of(state: &str) -> Class {
    match state {
        "ready" | "delayed" | "failed" => Class::Waiting,
        "leased" => Class::Leased,
        "succeeded" => Class::Succeeded,
        "dead" => Class::Dead,
        _ => Class::Other,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TaskState {
    pub class: Class,
    pub attempts: u32,
    pub token: Option<u64>,
}

#[derive(Debug)]
pub enum TaskOp {
    Create,
    Lease {
        token: u64,
        attempt: u32,
    },
    /// `ok: false`: refused.
    Complete {
        token: u64,
        ok: bool,
    },
    Fail {
        token: u64,
        ok: bool,
    },
    Progress {
        token: u64,
        ok: bool,
    },
    Read(Option<View>),
}

pub struct TaskModel {
    pub max_attempts: u32,
}

impl TaskModel {
    fn end_attempt(&self, s: &TaskState) -> TaskState {
        let class = if s.attempts >= self.max_attempts { Class::Dead } else { Class::Waiting };
        TaskState { class, attempts: s.attempts, token: None }
    }

    fn holds(s: &TaskState, token: u64) -> bool {
        s.class == Class::Leased && s.token == Some(token)
    }
}

impl Model for TaskModel {
    type State = TaskState;
    type Op = TaskOp;

    fn step(&self, s: &TaskState, op: &TaskOp) -> Vec<TaskState> {
        // The lease may have expired just before this operation.
        let mut before = vec![s.clone()];
        if s.class == Class::Leased {
            before.push(self.end_attempt(s));
        }
        let mut out: Vec<TaskState> = Vec::new();
        for s in before {
            let next = match op {
                TaskOp::Create if s.class == Class::Absent => {
                    Some(TaskState { class: Class::Waiting, attempts: 0, token: None })
                }
                TaskOp::Create => Some(s),
                TaskOp::Lease { token, attempt } => (s.class == Class::Waiting && s.attempts + 1 == *attempt)
                    .then_some(TaskState { class: Class::Leased, attempts: *attempt, token: Some(*token) }),
                TaskOp::Complete { token, ok: true } => Self::holds(&s, *token).then_some(TaskState {
                    class: Class::Succeeded,
                    attempts: s.attempts,
                    token: None,
                }),
                TaskOp::Fail { token, ok: true } => Self::holds(&s, *token).then(|| self.end_attempt(&s)),
                TaskOp::Progress { token, ok: true } => Self::holds(&s, *token).then_some(s),
                TaskOp::Complete { token, ok: false }
                | TaskOp::Fail { token, ok: false }
                | TaskOp::Progress { token, ok: false } => (!Self::holds(&s, *token)).then_some(s),
                TaskOp::Read(None) => (s.class == Class::Absent).then_some(s),
                TaskOp::Read(Some(v)) => (class_of(&v.state) == s.class
                    && v.attempts == s.attempts
                    && (s.class != Class::Leased || v.token == s.token))
                    .then_some(s),
            };
            if let Some(n) = next {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }
}

pub struct Linear {
    pub tasks: usize,
    pub anomalies: Vec<Anomaly>,
    pub undecided: Vec<u64>,
}

/// Check each task's operations, with the ledger's view as a read after everything.
pub fn check(history: &[Op], ledger: &Ledger) -> Linear {
    let end = history.iter().map(|o| o.completed.unwrap_or(o.invoked)).max().unwrap_or(0);
    // Which task each key names: the ledger's, else an acknowledgement's.
    let mut key_task: BTreeMap<&str, u64> = BTreeMap::new();
    for op in history {
        if let (Call::Submit { key, .. }, Some(Ret::Task(id))) = (&op.call, op.ok()) {
            key_task.insert(key, *id);
        }
    }
    for t in ledger {
        if let Some(k) = &t.key {
            key_task.insert(k, t.id);
        }
    }
    let mut per: BTreeMap<u64, (u32, Vec<Entry<TaskOp>>)> = BTreeMap::new();
    let mut add = |task: u64, op: TaskOp, invoked: u64, completed: Option<u64>| {
        per.entry(task).or_insert((u32::MAX, Vec::new())).1.push(Entry { op, invoked, completed });
    };
    for op in history {
        let ok = match &op.outcome {
            Outcome::Ok(_) => Some(true),
            // The refusals that say the token was not the current lease.
            Outcome::Failed(code) if LEASE_REFUSALS.contains(&code.as_str()) => Some(false),
            // Any other refusal (a malformed request, a limit) says nothing about the lease.
            Outcome::Failed(_) if !matches!(op.call, Call::Submit { .. } | Call::Claim { .. } | Call::Read { .. }) => {
                continue
            }
            Outcome::Failed(_) => Some(false),
            Outcome::Unknown => None,
        };
        let at = (op.invoked, op.completed);
        match (&op.call, &op.outcome) {
            (Call::Submit { key, .. }, Outcome::Ok(Ret::Task(id))) if key_task.get(key.as_str()) == Some(id) => {
                add(*id, TaskOp::Create, at.0, at.1)
            }
            (Call::Submit { key, .. }, Outcome::Unknown) => {
                if let Some(id) = key_task.get(key.as_str()) {
                    add(*id, TaskOp::Create, at.0, None)
                }
            }
            (Call::Claim { .. }, Outcome::Ok(Ret::Leases(ls))) => {
                for g in ls {
                    add(g.task, TaskOp::Lease { token: g.token, attempt: g.attempt }, at.0, at.1);
                }
            }
            (Call::Complete { task, token }, _) => {
                add(*task, TaskOp::Complete { token: *token, ok: ok.unwrap_or(true) }, at.0, at.1)
            }
            (Call::Fail { task, token }, _) => {
                add(*task, TaskOp::Fail { token: *token, ok: ok.unwrap_or(true) }, at.0, at.1)
            }
            (Call::Progress { task, token }, _) => {
                add(*task, TaskOp::Progress { token: *token, ok: ok.unwrap_or(true) }, at.0, at.1)
            }
            (Call::Read { task }, Outcome::Ok(Ret::View(v))) => add(*task, TaskOp::Read(v.clone()), at.0, at.1),
            _ => {}
        }
    }
    // Leases handed out by claims whose answer was lost: in effect some time after the agent's
    // earliest such claim (a lease no claim explains is reported by the lease check; here it
    // may have happened at any time).
    for h in leases::hidden(history, ledger) {
        add(h.task, TaskOp::Lease { token: h.token, attempt: h.attempt }, h.invoked.unwrap_or(0), None);
    }
    let max_by_key: BTreeMap<&str, u32> = history
        .iter()
        .filter_map(|o| match &o.call {
            Call::Submit { key, max_attempts } => Some((key.as_str(), *max_attempts)),
            _ => None,
        })
        .collect();
    for t in ledger {
        let e = per.entry(t.id).or_insert((u32::MAX, Vec::new()));
        e.0 = t.max_attempts;
        e.1.push(Entry { op: TaskOp::Read(Some(t.view.clone())), invoked: end + 1, completed: Some(end + 2) });
    }
    let mut out = Linear { tasks: per.len(), anomalies: Vec::new(), undecided: Vec::new() };
    let in_ledger: std::collections::BTreeSet<u64> = ledger.iter().map(|t| t.id).collect();
    for (task, (max, mut entries)) in per {
        if !in_ledger.contains(&task) {
            // Gone from the ledger: the end state is "absent" (a lost task fails here too).
            entries.push(Entry { op: TaskOp::Read(None), invoked: end + 1, completed: Some(end + 2) });
        }
        let max_attempts = if max == u32::MAX {
            key_task
                .iter()
                .find(|(_, id)| **id == task)
                .and_then(|(k, _)| max_by_key.get(k).copied())
                .unwrap_or(u32::MAX)
        } else {
            max
        };
        let init = TaskState { class: Class::Absent, attempts: 0, token: None };
        match linear::check(&TaskModel { max_attempts }, init, entries, BUDGET) {
            Verdict::Linearizable => {}
            Verdict::Undecided => out.undecided.push(task),
            Verdict::Violation { stuck } => out.anomalies.push(Anomaly::new(Kind::NotLinearizable, Some(task), stuck)),
        }
    }
    out
}

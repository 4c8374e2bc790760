//! The anomalies a check finds, and the check itself.

use serde::Serialize;

use crate::history::{Ledger, Op};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Kind {
    /// An acknowledged submit whose task is not in the ledger.
    LostAck,
    /// Two tasks in the ledger under one idempotency key.
    DuplicateKey,
    /// Acknowledgements of one key that name different tasks.
    ConflictingAcks,
    /// An acknowledged task holding another key than the one submitted.
    WrongKey,
    /// Two leases handed out for the same attempt of a task, or one token twice.
    DoubleGrant,
    /// A later lease with a lower token or attempt number than an earlier one.
    TokenOrder,
    /// An operation under a token succeeded after a later lease of the task was handed out.
    StaleToken,
    /// A lease handed out after the task was acknowledged as finished.
    LeaseAfterFinish,
    /// A lease in the ledger that no claim in flight could have handed out.
    UnexplainedLease,
    /// An acknowledged lease missing from the task's attempts.
    LostLease,
    /// No order of the task's operations explains what the clients saw.
    NotLinearizable,
}

#[derive(Clone, Debug, Serialize)]
pub struct Anomaly {
    pub kind: Kind,
    pub task: Option<u64>,
    pub detail: String,
}

impl Anomaly {
    pub fn new(kind: Kind, task: Option<u64>, detail: String) -> Anomaly {
        Anomaly { kind, task, detail }
    }
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.task {
            Some(t) => write!(f, "{:?} (task {t}): {}", self.kind, self.detail),
            None => write!(f, "{:?}: {}", self.kind, self.detail),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub anomalies: Vec<Anomaly>,
    /// Tasks whose linearizability search ran out of budget (neither proven nor refuted).
    pub undecided: Vec<u64>,
    /// Operations in the history, and of those acknowledged / with unknown outcome.
    pub ops: usize,
    pub acknowledged: usize,
    pub unknown: usize,
    /// Tasks checked for linearizability.
    pub tasks_checked: usize,
}

impl Report {
    pub fn of(&self, kind: Kind) -> usize {
        self.anomalies.iter().filter(|a| a.kind == kind).count()
    }

    pub fn valid(&self) -> bool {
        self.anomalies.is_empty() && self.undecided.is_empty()
    }

    /// The anomalies, one per line.
    pub fn describe(&self) -> String {
        let mut s: Vec<String> = self.anomalies.iter().map(|a| a.to_string()).collect();
        if !self.undecided.is_empty() {
            s.push(format!("undecided (search budget spent): tasks {:?}", self.undecided));
        }
        s.join("\n")
    }
}

/// Every check over a history and the ledger read after it.
pub fn check(history: &[Op], ledger: &Ledger) -> Report {
    let mut report = Report {
        ops: history.len(),
        acknowledged: history.iter().filter(|o| o.ok().is_some()).count(),
        unknown: history.iter().filter(|o| o.completed.is_none()).count(),
        ..Report::default()
    };
    report.anomalies.extend(crate::exactly_once::check(history, ledger));
    report.anomalies.extend(crate::leases::check(history, ledger));
    let lin = crate::task_model::check(history, ledger);
    report.tasks_checked = lin.tasks;
    report.anomalies.extend(lin.anomalies);
    report.undecided = lin.undecided;
    report.anomalies.sort_by_key(|a| (a.kind, a.task));
    report
}

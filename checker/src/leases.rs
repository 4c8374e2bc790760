//! Fencing: a task's leases are handed out one at a time, their tokens rise, and once a later
//! lease is out no operation under an earlier one succeeds (no two valid leases overlap).

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Call, Ledger, Op, Ret};
use crate::report::{Anomaly, Kind};

/// A lease an acknowledged claim handed out.
#[derive(Debug, Clone)]
pub struct Grant<'a> {
    pub task: u64,
    pub token: u64,
    pub attempt: u32,
    pub agent: &'a str,
    /// The claim's index in the history.
    pub op: usize,
    pub invoked: u64,
    pub completed: u64,
}

pub fn grants(history: &[Op]) -> Vec<Grant<'_>> {
    let mut out = Vec::new();
    for (i, op) in history.iter().enumerate() {
        if let (Call::Claim { agent }, Some(Ret::Leases(ls)), Some(done)) = (&op.call, op.ok(), op.completed) {
            for g in ls {
                out.push(Grant {
                    task: g.task,
                    token: g.token,
                    attempt: g.attempt,
                    agent,
                    op: i,
                    invoked: op.invoked,
                    completed: done,
                });
            }
        }
    }
    out
}

/// A lease in the ledger that no acknowledged claim returned: a claim whose outcome its agent
/// never learned handed it out. `invoked` is the earliest such claim of that agent (`None`: the
/// agent had no claim in flight that could have).
#[derive(Debug, Clone)]
pub struct Hidden {
    pub task: u64,
    pub token: u64,
    pub attempt: u32,
    pub agent: String,
    pub invoked: Option<u64>,
}

pub fn hidden(history: &[Op], ledger: &Ledger) -> Vec<Hidden> {
    let seen: BTreeSet<(u64, u64)> = grants(history).iter().map(|g| (g.task, g.token)).collect();
    let mut unknown_claims: BTreeMap<&str, u64> = BTreeMap::new();
    for op in history {
        if let (Call::Claim { agent }, None) = (&op.call, op.completed) {
            let e = unknown_claims.entry(agent.as_str()).or_insert(op.invoked);
            *e = (*e).min(op.invoked);
        }
    }
    let mut out = Vec::new();
    for t in ledger {
        for (attempt, token, agent) in &t.attempts {
            if !seen.contains(&(t.id, *token)) {
                out.push(Hidden {
                    task: t.id,
                    token: *token,
                    attempt: *attempt,
                    agent: agent.clone(),
                    invoked: unknown_claims.get(agent.as_str()).copied(),
                });
            }
        }
    }
    out
}

pub fn check(history: &[Op], ledger: &Ledger) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let grants = grants(history);
    let mut by_task: BTreeMap<u64, Vec<&Grant>> = BTreeMap::new();
    for g in &grants {
        by_task.entry(g.task).or_default().push(g);
    }
    for (task, gs) in &by_task {
        for (i, a) in gs.iter().enumerate() {
            for b in &gs[i + 1..] {
                if a.attempt == b.attempt || a.token == b.token {
                    out.push(Anomaly::new(
                        Kind::DoubleGrant,
                        Some(*task),
                        format!(
                            "attempt {} token {} to {} and attempt {} token {} to {}",
                            a.attempt, a.token, a.agent, b.attempt, b.token, b.agent
                        ),
                    ));
                    continue;
                }
                let (lo, hi) = if a.attempt < b.attempt { (a, b) } else { (b, a) };
                if lo.token > hi.token {
                    out.push(Anomaly::new(
                        Kind::TokenOrder,
                        Some(*task),
                        format!(
                            "attempt {} has token {}, attempt {} token {}",
                            lo.attempt, lo.token, hi.attempt, hi.token
                        ),
                    ));
                } else if hi.completed < lo.invoked {
                    out.push(Anomaly::new(
                        Kind::TokenOrder,
                        Some(*task),
                        format!(
                            "attempt {} was handed out (at {} µs) before attempt {} was asked for (at {} µs)",
                            hi.attempt, hi.completed, lo.attempt, lo.invoked
                        ),
                    ));
                }
            }
        }
    }
    for op in history {
        let (task, token, what) = match &op.call {
            Call::Complete { task, token } => (*task, *token, "complete"),
            Call::Fail { task, token } => (*task, *token, "fail"),
            Call::Progress { task, token } => (*task, *token, "progress"),
            _ => continue,
        };
        let (Some(_), Some(done)) = (op.ok(), op.completed) else { continue };
        for g in by_task.get(&task).into_iter().flatten() {
            if g.token > token && g.completed < op.invoked {
                out.push(Anomaly::new(
                    Kind::StaleToken,
                    Some(task),
                    format!(
                        "{what} under token {token} succeeded (invoked at {} µs), after token {} was handed out to {} (at {} µs)",
                        op.invoked, g.token, g.agent, g.completed
                    ),
                ));
            }
            if what == "complete" && done < g.invoked {
                out.push(Anomaly::new(
                    Kind::LeaseAfterFinish,
                    Some(task),
                    format!(
                        "token {} handed out to {} (asked at {} µs) after a complete was acknowledged (at {done} µs)",
                        g.token, g.agent, g.invoked
                    ),
                ));
            }
        }
    }
    let ledger_tokens: BTreeMap<u64, BTreeSet<(u32, u64)>> =
        ledger.iter().map(|t| (t.id, t.attempts.iter().map(|(n, tok, _)| (*n, *tok)).collect())).collect();
    for g in &grants {
        if !ledger_tokens.get(&g.task).is_some_and(|s| s.contains(&(g.attempt, g.token))) {
            out.push(Anomaly::new(
                Kind::LostLease,
                Some(g.task),
                format!(
                    "attempt {} (token {}) to {} was acknowledged, the ledger lacks it",
                    g.attempt, g.token, g.agent
                ),
            ));
        }
    }
    for h in hidden(history, ledger) {
        if h.invoked.is_none() {
            out.push(Anomaly::new(
                Kind::UnexplainedLease,
                Some(h.task),
                format!(
                    "attempt {} (token {}) went to {}, which had no claim without an answer",
                    h.attempt, h.token, h.agent
                ),
            ));
        }
    }
    out
}

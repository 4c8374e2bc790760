//! Dependencies and deadlines at apply time (see [`crate::flow`] for the rules): checking them at
//! submit, settling waiting tasks when what they wait for finishes, and ending tasks whose
//! deadline passed.
//!
//! A waiting task's record holds what it still waits for; the indexes hold the reverse edges
//! (task → the waiting tasks that wait for it) and the deadlines, so neither a finish nor the
//! clock needs a read. A finish inside an apply is queued and settled at the end of the apply,
//! breadth first, so a cancellation that cascades through a long chain neither recurses nor
//! leaves the apply half done.

use std::collections::{BTreeSet, VecDeque};

use super::{invalid, Fail, State, Step};
use crate::command::{RejectCode, Rejection};
use crate::config::limits;
use crate::flow::{DepPolicy, DepRef, Flow, FlowExt, TaskFlow, DEADLINE_ERROR, DEPENDENCIES_MAX};
use crate::key_limits::validate_concurrency_key;
use crate::record::{Key, Record, TaskRecord};
use crate::store::Cold;
use crate::task::{AttemptOutcome, TaskId, TaskState};

/// The order to create a batch's tasks in so that each comes after the batch members it depends
/// on; refuses references out of the batch and cycles.
pub(super) fn creation_order(flows: &[TaskFlow], n: usize) -> Result<Vec<usize>, Fail> {
    if flows.is_empty() {
        return Ok((0..n).collect());
    }
    if flows.len() != n {
        return Err(invalid(format!("{} dependency lists for {n} tasks", flows.len())));
    }
    let mut needs = vec![0usize; n];
    let mut unlocks: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, f) in flows.iter().enumerate() {
        if f.depends_on.len() > DEPENDENCIES_MAX {
            return Err(invalid(format!("tasks[{i}]: at most {DEPENDENCIES_MAX} dependencies")));
        }
        let batch: BTreeSet<usize> = f
            .depends_on
            .iter()
            .filter_map(|d| match d {
                DepRef::Batch(j) => Some(*j as usize),
                DepRef::Task(_) => None,
            })
            .collect();
        for j in batch {
            if j >= n {
                return Err(invalid(format!("tasks[{i}]: depends on tasks[{j}], but the batch has {n} tasks")));
            }
            if j == i {
                return Err(invalid(format!("tasks[{i}]: a task cannot depend on itself")));
            }
            needs[i] += 1;
            unlocks[j].push(i);
        }
    }
    let mut order = Vec::with_capacity(n);
    let mut free: VecDeque<usize> = (0..n).filter(|i| needs[*i] == 0).collect();
    while let Some(j) = free.pop_front() {
        order.push(j);
        for &i in &unlocks[j] {
            needs[i] -= 1;
            if needs[i] == 0 {
                free.push_back(i);
            }
        }
    }
    if order.len() < n {
        let stuck: Vec<String> = (0..n).filter(|i| needs[*i] > 0).map(|i| format!("tasks[{i}]")).collect();
        return Err(invalid(format!("the dependencies form a cycle through {}", stuck.join(", "))));
    }
    Ok(order)
}

/// How a new task starts, given its flow.
pub(super) enum Start {
    /// Ready or delayed as usual (no dependencies, or all of them finished).
    Free(Option<Flow>),
    /// Waiting for `flow.unfinished`.
    Waiting(Flow),
    /// A dependency ended without success under [`DepPolicy::Cancel`]: the task is created
    /// cancelled, for this reason.
    Cancelled(Flow, String),
}

impl State {
    /// The state of a task that exists (live or finished), `None` if it does not.
    fn task_state(&self, id: TaskId, cold: &dyn Cold) -> Step<Option<TaskState>> {
        if let Some(t) = self.live.get(&id) {
            return Ok(Some(t.state));
        }
        Ok(match self.read(cold, &Key::Done(id))? {
            Some(Record::Task(t)) => Some(t.state),
            _ => None,
        })
    }

    /// Check a batch's flows before anything is written: the existing tasks named exist, the
    /// deadlines are ahead.
    pub(super) fn check_flows(&self, flows: &[TaskFlow], cold: &dyn Cold) -> Step<()> {
        let now = self.meta.clock;
        for (i, f) in flows.iter().enumerate() {
            for d in &f.depends_on {
                if let DepRef::Task(id) = d {
                    if self.task_state(*id, cold)?.is_none() {
                        return Err(Fail::Reject(Rejection::new(
                            RejectCode::NotFound,
                            format!("tasks[{i}]: depends on task {id}, which does not exist"),
                        )));
                    }
                }
            }
            let keys = f.ext.iter().filter(|e| matches!(e, FlowExt::ConcurrencyKey(_))).count();
            if keys > 1 {
                return Err(invalid(format!("tasks[{i}]: one concurrency key per task")));
            }
            if let Some(k) = f.concurrency_key() {
                validate_concurrency_key(k).map_err(|r| invalid(format!("tasks[{i}]: {}", r.message)))?;
            }
            if f.deadline_in_ms.is_some_and(|d| d == 0 || d > limits::TTL_MS_MAX) {
                return Err(invalid(format!(
                    "tasks[{i}]: deadline_in_ms must be between 1 and {}",
                    limits::TTL_MS_MAX
                )));
            }
            if let Some(at) = f.deadline_ms {
                if at <= now || at > now.saturating_add(limits::TTL_MS_MAX) {
                    return Err(invalid(format!(
                        "tasks[{i}]: deadline_ms {at} must be ahead of the engine's clock ({now}) by at most a year"
                    )));
                }
            }
        }
        Ok(())
    }

    /// How the new task `id` starts, its dependencies resolved to ids (`ids[j]` is the id batch
    /// member `j` got, a new task's or the earlier one its idempotency key named). `fresh` are
    /// the ids this submit assigns: one not created yet (a member named through another
    /// member's idempotency key) is unfinished, and its creation is settled like any finish.
    pub(super) fn start_of(
        &self,
        id: TaskId,
        flow: Option<&TaskFlow>,
        ids: &[TaskId],
        fresh: &std::ops::Range<TaskId>,
        cold: &dyn Cold,
    ) -> Step<Start> {
        let Some(flow) = flow.filter(|f| !f.is_empty()) else { return Ok(Start::Free(None)) };
        let now = self.meta.clock;
        let mut depends_on: Vec<TaskId> = Vec::with_capacity(flow.depends_on.len());
        for d in &flow.depends_on {
            let dep = match d {
                DepRef::Task(t) => *t,
                DepRef::Batch(j) => ids[*j as usize],
            };
            if !depends_on.contains(&dep) && dep != id {
                depends_on.push(dep);
            }
        }
        let mut unfinished = Vec::new();
        let mut failed = None;
        for &dep in &depends_on {
            match self.task_state(dep, cold)? {
                Some(TaskState::Succeeded) => {}
                Some(s) if s.is_terminal() => failed = failed.or(Some((dep, s))),
                Some(_) => unfinished.push(dep),
                None if fresh.contains(&dep) => unfinished.push(dep),
                None => return Err(invalid(format!("depends on task {dep}, which does not exist"))),
            }
        }
        let deadline_ms = flow.deadline_ms.or_else(|| flow.deadline_in_ms.map(|d| now.saturating_add(d)));
        let out = Flow {
            depends_on,
            on_dependency_failure: flow.on_dependency_failure,
            unfinished,
            deadline_ms,
            // The parent's lease token was checked at submit; it is not kept.
            ext: flow.ext.iter().filter(|e| !matches!(e, FlowExt::ParentLease(_))).cloned().collect(),
        };
        Ok(match failed {
            Some((dep, s)) if out.on_dependency_failure == DepPolicy::Cancel => {
                Start::Cancelled(Flow { unfinished: Vec::new(), ..out }, failure_reason(dep, s))
            }
            _ if out.unfinished.is_empty() => Start::Free(Some(out)),
            _ => Start::Waiting(out),
        })
    }

    /// Queue a finish for [`State::settle_dependents`] if some waiting task waits for it (called
    /// by [`State::save`] for every change of a task from `before` to `t`).
    pub(super) fn queue_finish(&mut self, t: &TaskRecord, before: Option<&TaskRecord>) {
        if !t.is_live() && before.is_none_or(|b| b.is_live()) && self.idx.waiters.contains_key(&t.id) {
            self.settled.push_back((t.id, t.state));
        }
    }

    /// Tell the dependents of every task that finished in this apply: release those with nothing
    /// left to wait for, cancel those whose policy says so (which may queue more).
    pub(super) fn settle_dependents(&mut self) {
        while let Some((dep, how)) = self.settled.pop_front() {
            let dependents: Vec<TaskId> =
                self.idx.waiters.get(&dep).map(|s| s.iter().copied().collect()).unwrap_or_default();
            for d in dependents {
                let Some(t) = self.live.get(&d) else { continue };
                // A parent waiting for its children resumes however they ended.
                let cancel = how != TaskState::Succeeded
                    && t.state == TaskState::Waiting
                    && t.flow.as_ref().is_some_and(|f| f.on_dependency_failure == DepPolicy::Cancel);
                let cfg = self.effective_config(&t.queue);
                let now = self.meta.clock;
                self.update(d, |t| {
                    let Some(f) = t.flow.as_mut() else { return };
                    f.unfinished.retain(|u| *u != dep);
                    if cancel {
                        t.state = TaskState::Cancelled;
                        t.cancel_reason = Some(failure_reason(dep, how));
                        t.finished_ms = Some(now);
                        t.purge_after_ms = Some(now.saturating_add(cfg.retention_ms));
                    } else if f.unfinished.is_empty() {
                        // Nothing left to wait for: ready now, or delayed to its run time.
                        if t.run_at_ms > now {
                            t.state = TaskState::Delayed;
                        } else {
                            t.state = TaskState::Ready;
                            t.run_at_ms = now;
                        }
                    }
                });
            }
        }
    }

    /// End a task whose deadline has passed: dead, with its lease (if any) ended.
    pub(super) fn miss_deadline(&mut self, id: TaskId) {
        let Some(t) = self.live.get(&id) else { return };
        let cfg = self.effective_config(&t.queue);
        let now = self.meta.clock;
        self.lease_ended(id, Some(false));
        self.update(id, |t| {
            if t.state == TaskState::Leased {
                if let Some(a) = t.attempts.last_mut() {
                    a.ended_ms = Some(now);
                    a.outcome = Some(AttemptOutcome::DeadlineExceeded);
                }
            }
            t.lease = None;
            t.state = TaskState::Dead;
            t.last_error = Some(DEADLINE_ERROR.to_string());
            t.finished_ms = Some(now);
            t.purge_after_ms = Some(now.saturating_add(cfg.retention_ms));
        });
    }
}

fn failure_reason(dep: TaskId, how: TaskState) -> String {
    format!("dependency {dep} is {}", how.as_str())
}

//! Dependencies at apply time: checking them at submit, holding dependents in `waiting`, and
//! settling them when the tasks they wait on finish (see [`crate::deps`] for the rules).
//!
//! RAM holds the dependency records of waiting tasks and the reverse edges (task → the waiting
//! tasks that depend on it), so a finish looks up its dependents without a read. A finish inside
//! an apply is queued and settled at the end of the apply, breadth first, so a cancellation that
//! cascades through a long chain neither recurses nor leaves the apply half done.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{invalid, Fail, State, Step};
use crate::deps::{DepPolicy, DepRef, TaskDeps, TaskFlow, DEPENDENCIES_MAX};
use crate::record::{Key, Record, TaskRecord};
use crate::store::Cold;
use crate::task::{TaskId, TaskState};

/// What RAM keeps about dependencies (rebuilt on load, checked by `validate_ram`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DepGraph {
    /// The dependency records of tasks in state `waiting`.
    pub waiting: BTreeMap<TaskId, TaskDeps>,
    /// Task → the waiting tasks that still wait for it.
    pub waiters: BTreeMap<TaskId, BTreeSet<TaskId>>,
    /// Tasks with waiters that finished in this apply, with how they ended.
    pub settled: VecDeque<(TaskId, TaskState)>,
}

impl DepGraph {
    pub fn add_waiting(&mut self, id: TaskId, deps: TaskDeps) {
        for u in &deps.unfinished {
            self.waiters.entry(*u).or_default().insert(id);
        }
        self.waiting.insert(id, deps);
    }

    /// Forget a task that leaves `waiting`; its record, with nothing left unfinished.
    fn remove_waiting(&mut self, id: TaskId) -> Option<TaskDeps> {
        let mut deps = self.waiting.remove(&id)?;
        for u in std::mem::take(&mut deps.unfinished) {
            if let Some(set) = self.waiters.get_mut(&u) {
                set.remove(&id);
                if set.is_empty() {
                    self.waiters.remove(&u);
                }
            }
        }
        Some(deps)
    }
}

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

/// How a new task starts, given its dependencies.
pub(super) enum Start {
    /// No dependencies: ready or delayed as usual.
    Free,
    /// Waiting for these.
    Waiting(TaskDeps),
    /// Every dependency has finished (its record says how they ended).
    Satisfied(TaskDeps),
    /// A dependency ended without success under [`DepPolicy::Cancel`]: the task is created
    /// cancelled, for this reason.
    Cancelled(TaskDeps, String),
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

    /// Check that the existing tasks a batch names exist (before anything is written).
    pub(super) fn check_dependencies(&self, flows: &[TaskFlow], cold: &dyn Cold) -> Step<()> {
        for (i, f) in flows.iter().enumerate() {
            for d in &f.depends_on {
                if let DepRef::Task(id) = d {
                    if self.task_state(*id, cold)?.is_none() {
                        return Err(Fail::Reject(crate::command::Rejection::new(
                            crate::command::RejectCode::NotFound,
                            format!("tasks[{i}]: depends on task {id}, which does not exist"),
                        )));
                    }
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
        let Some(flow) = flow.filter(|f| !f.is_empty()) else { return Ok(Start::Free) };
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
        let deps = TaskDeps { depends_on, policy: flow.on_dependency_failure, unfinished };
        Ok(match failed {
            Some((dep, s)) if deps.policy == DepPolicy::Cancel => {
                let deps = TaskDeps { unfinished: Vec::new(), ..deps };
                Start::Cancelled(deps, failure_reason(dep, s))
            }
            _ if deps.unfinished.is_empty() => Start::Satisfied(deps),
            _ => Start::Waiting(deps),
        })
    }

    /// Bookkeeping of [`State::save`] for a task changing from `before` to `t`: a task leaving
    /// `waiting` is forgotten by the graph (its record keeps what it depended on), and a finish
    /// that someone waits for is queued for [`State::settle_dependents`].
    pub(super) fn deps_on_save(&mut self, t: &TaskRecord, before: Option<&TaskRecord>) {
        if before.is_some_and(|b| b.state == TaskState::Waiting) && t.state != TaskState::Waiting {
            if let Some(deps) = self.deps.remove_waiting(t.id) {
                self.pending.put(Record::Deps(t.id, deps));
            }
        }
        if !t.is_live() && before.is_none_or(|b| b.is_live()) && self.deps.waiters.contains_key(&t.id) {
            self.deps.settled.push_back((t.id, t.state));
        }
    }

    /// Tell the dependents of every task that finished in this apply: release those with nothing
    /// left to wait for, cancel those whose policy says so (which may queue more).
    pub(super) fn settle_dependents(&mut self) {
        while let Some((dep, how)) = self.deps.settled.pop_front() {
            let dependents = self.deps.waiters.remove(&dep).unwrap_or_default();
            for d in dependents {
                let Some(deps) = self.deps.waiting.get_mut(&d) else { continue };
                deps.unfinished.retain(|u| *u != dep);
                let cancel = how != TaskState::Succeeded && deps.policy == DepPolicy::Cancel;
                if cancel {
                    self.cancel_waiting(d, failure_reason(dep, how));
                } else if deps.unfinished.is_empty() {
                    self.release_waiting(d);
                } else {
                    let deps = deps.clone();
                    self.pending.put(Record::Deps(d, deps));
                }
            }
        }
    }

    /// A waiting task whose dependencies have all finished: ready now, or delayed to its run time.
    fn release_waiting(&mut self, id: TaskId) {
        let now = self.meta.clock;
        self.update(id, |t| {
            if t.run_at_ms > now {
                t.state = TaskState::Delayed;
            } else {
                t.state = TaskState::Ready;
                t.run_at_ms = now;
            }
        });
    }

    fn cancel_waiting(&mut self, id: TaskId, reason: String) {
        let Some(queue) = self.live.get(&id).map(|t| t.queue.clone()) else { return };
        let cfg = self.effective_config(&queue);
        let now = self.meta.clock;
        self.update(id, |t| {
            t.state = TaskState::Cancelled;
            t.cancel_reason = Some(reason);
            t.finished_ms = Some(now);
            t.purge_after_ms = Some(now.saturating_add(cfg.retention_ms));
        });
    }

    /// A task whose record is on disk entered `waiting` (submit or load).
    pub(super) fn hold_waiting(&mut self, id: TaskId, deps: TaskDeps) {
        self.deps.add_waiting(id, deps);
    }

    /// The dependency record of a waiting task, for the read side.
    pub fn waiting_deps(&self, id: TaskId) -> Option<&TaskDeps> {
        self.deps.waiting.get(&id)
    }

    /// Waiting tasks (RAM): how many, and how many edges point at unfinished tasks.
    pub fn dependency_counts(&self) -> (usize, usize) {
        (self.deps.waiting.len(), self.deps.waiters.values().map(BTreeSet::len).sum())
    }
}

fn failure_reason(dep: TaskId, how: TaskState) -> String {
    format!("dependency {dep} is {}", how.as_str())
}

/// A task's dependency record, if it was submitted with dependencies.
pub fn task_deps(cold: &dyn Cold, id: TaskId) -> Result<Option<TaskDeps>, crate::store::ColdError> {
    Ok(match cold.get(&Key::Deps(id))? {
        Some(Record::Deps(_, d)) => Some(d),
        _ => None,
    })
}

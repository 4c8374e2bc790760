//! Parent and child tasks at apply time (see [`crate::flow`] for the rules): checking a child's
//! parent and its lease at submit, listing children on the parent, a parent giving its lease back
//! to wait for its unfinished children, and cancelling a task's unfinished descendants.
//!
//! A child names its parent in its record and the parent lists its children in its own, so both
//! directions survive a restart without an index; a waiting parent's unfinished children are in
//! its record like a waiting task's dependencies, and the same reverse-edge index (`waiters`)
//! wakes it when the last one finishes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{invalid, Fail, State, Step};
use crate::command::{Outcome, Rejection};
use crate::flow::{FlowExt, TaskFlow, CHILDREN_MAX};
use crate::record::{Key, Record};
use crate::store::Cold;
use crate::task::{AttemptOutcome, LeaseToken, TaskId, TaskState};

impl State {
    /// Check the children of a submit: each names one parent, leased under the token it gives,
    /// and no parent goes over [`CHILDREN_MAX`] children.
    pub(super) fn check_parents(&self, flows: &[TaskFlow], cold: &dyn Cold) -> Step<()> {
        let mut counts: BTreeMap<TaskId, usize> = BTreeMap::new();
        for (i, f) in flows.iter().enumerate() {
            let parents = f.ext.iter().filter(|e| matches!(e, FlowExt::Parent(_))).count();
            let tokens = f.ext.iter().filter(|e| matches!(e, FlowExt::ParentLease(_))).count();
            let (parent, token) = match (f.parent(), f.parent_lease()) {
                (None, None) => continue,
                (Some(p), Some(t)) if parents == 1 && tokens == 1 => (p, t),
                _ => {
                    return Err(invalid(format!("tasks[{i}]: a child names one parent and that parent's lease token")))
                }
            };
            let t = self.check_lease(parent, token, cold).map_err(|e| match e {
                Fail::Reject(r) => Fail::Reject(Rejection::new(r.code, format!("tasks[{i}]: parent: {}", r.message))),
                other => other,
            })?;
            let n = counts.entry(parent).or_insert_with(|| t.flow.as_ref().map_or(0, |f| f.children().len()));
            *n += 1;
            if *n > CHILDREN_MAX {
                return Err(invalid(format!("tasks[{i}]: task {parent} may have at most {CHILDREN_MAX} children")));
            }
        }
        Ok(())
    }

    /// Add new children (in id order) to their parent's list.
    pub(super) fn add_children(&mut self, parent: TaskId, children: Vec<TaskId>) {
        self.update(parent, |t| t.flow.get_or_insert_with(Default::default).add_children(children));
    }

    /// A leased parent gives its lease back to wait for its unfinished children; with none
    /// unfinished it keeps the lease (the answer shows it still leased). The attempt ends
    /// `waiting_children` and does not count against the task's attempts.
    pub(super) fn wait_children(&mut self, id: TaskId, token: LeaseToken, cold: &dyn Cold) -> Step<Outcome> {
        let t = self.check_lease(id, token, cold)?;
        let children = t.flow.as_ref().map(|f| f.children()).unwrap_or(&[]);
        let unfinished: Vec<TaskId> = children.iter().copied().filter(|c| self.live.contains_key(c)).collect();
        if unfinished.is_empty() {
            return Ok(Outcome::Task(Box::new(t.clone())));
        }
        let now = self.meta.clock;
        self.lease_ended(id, None);
        let done = self.update(id, |t| {
            if let Some(a) = t.attempts.last_mut() {
                a.ended_ms = Some(now);
                a.outcome = Some(AttemptOutcome::WaitingChildren);
            }
            t.lease = None;
            t.attempt_limit = t.attempt_limit.saturating_add(1);
            t.state = TaskState::WaitingChildren;
            if let Some(f) = t.flow.as_mut() {
                f.unfinished = unfinished;
            }
        });
        done.map(|(_, t)| Outcome::Task(Box::new(t))).ok_or_else(|| Fail::Reject(Rejection::not_found(id)))
    }

    /// Cancel the unfinished descendants of `root` (just cancelled; `children` are its own),
    /// breadth first, also below children that already finished.
    pub(super) fn cancel_descendants(&mut self, root: TaskId, children: Vec<TaskId>, cold: &dyn Cold) -> Step<()> {
        let mut next: VecDeque<TaskId> = children.into();
        let mut seen = BTreeSet::new();
        while let Some(c) = next.pop_front() {
            if !seen.insert(c) {
                continue;
            }
            let grandchildren = match self.live.get(&c) {
                Some(t) => {
                    let g = t.flow.as_ref().map(|f| f.children().to_vec()).unwrap_or_default();
                    self.cancel_live(c, Some(format!("task {root}, which it descends from, was cancelled")));
                    g
                }
                None => match self.read(cold, &Key::Done(c))? {
                    Some(Record::Task(t)) => t.flow.as_ref().map(|f| f.children().to_vec()).unwrap_or_default(),
                    _ => Vec::new(),
                },
            };
            next.extend(grandchildren);
        }
        Ok(())
    }
}

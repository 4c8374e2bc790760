//! Derived indexes over the live tasks: what dispatch and expiry look up. Rebuilt on load and
//! checked against a rebuild by `State::validate`.

use std::collections::{BTreeMap, BTreeSet};

use super::ready::ReadyIndex;
use crate::record::TaskRecord;
use crate::task::{TaskId, TaskState, TimeMs};

/// Priority order within a queue: higher priority first, then lower id (earlier submission).
pub(crate) type ReadyKey = (i64, TaskId);

pub(crate) fn ready_key(t: &TaskRecord) -> ReadyKey {
    (-(t.priority as i64), t.id)
}

/// A sorted, repeat-free capability set.
pub(crate) type CapSet = Vec<String>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Indexes {
    /// Ready tasks per queue, grouped by the capability set they require (a claim looks only at
    /// the groups the agent can serve, so tasks it cannot take never hide the ones it can), with
    /// leased tasks counted per concurrency key.
    pub ready: ReadyIndex,
    /// Ready tasks per queue by the time they became ready (for the oldest one's age).
    pub ready_since: BTreeMap<String, BTreeSet<(TimeMs, TaskId)>>,
    /// Delayed and failed tasks by the time they become ready.
    pub timers: BTreeSet<(TimeMs, TaskId)>,
    /// Leased tasks by lease expiry.
    pub leases: BTreeSet<(TimeMs, TaskId)>,
    /// Leased tasks with a stall timeout, by the time they stall without progress.
    pub stalls: BTreeSet<(TimeMs, TaskId)>,
    /// Unfinished tasks with a deadline, by deadline.
    pub deadlines: BTreeSet<(TimeMs, TaskId)>,
    /// Task → the waiting tasks that still wait for it to finish.
    pub waiters: BTreeMap<TaskId, BTreeSet<TaskId>>,
}

impl Indexes {
    pub fn insert(&mut self, t: &TaskRecord) {
        if let Some(f) = &t.flow {
            if let Some(at) = f.deadline_ms {
                self.deadlines.insert((at, t.id));
            }
            if t.state.is_waiting() {
                for u in &f.unfinished {
                    self.waiters.entry(*u).or_default().insert(t.id);
                }
            }
        }
        match t.state {
            TaskState::Ready => {
                self.ready.insert(&t.queue, t.capability_set(), ready_key(t), t.concurrency_key());
                self.ready_since.entry(t.queue.clone()).or_default().insert((t.run_at_ms, t.id));
            }
            TaskState::Delayed | TaskState::Failed => {
                self.timers.insert((t.run_at_ms, t.id));
            }
            TaskState::Leased => {
                if let Some(k) = t.concurrency_key() {
                    self.ready.leased_changed(&t.queue, k, 1);
                }
                if let Some(l) = &t.lease {
                    self.leases.insert((l.expires_ms, t.id));
                    if let Some(d) = l.stall_deadline_ms {
                        self.stalls.insert((d, t.id));
                    }
                }
            }
            // Waiting tasks wait for their dependencies or children, not for a time: no index.
            TaskState::Waiting
            | TaskState::WaitingChildren
            | TaskState::Succeeded
            | TaskState::Dead
            | TaskState::Cancelled
            | TaskState::Rejected => {}
        }
    }

    pub fn remove(&mut self, t: &TaskRecord) {
        if let Some(f) = &t.flow {
            if let Some(at) = f.deadline_ms {
                self.deadlines.remove(&(at, t.id));
            }
            if t.state.is_waiting() {
                for u in &f.unfinished {
                    if let Some(set) = self.waiters.get_mut(u) {
                        set.remove(&t.id);
                        if set.is_empty() {
                            self.waiters.remove(u);
                        }
                    }
                }
            }
        }
        match t.state {
            TaskState::Ready => {
                self.ready.remove(&t.queue, &t.capability_set(), ready_key(t), t.concurrency_key());
                if let Some(since) = self.ready_since.get_mut(&t.queue) {
                    since.remove(&(t.run_at_ms, t.id));
                    if since.is_empty() {
                        self.ready_since.remove(&t.queue);
                    }
                }
            }
            TaskState::Delayed | TaskState::Failed => {
                self.timers.remove(&(t.run_at_ms, t.id));
            }
            TaskState::Leased => {
                if let Some(k) = t.concurrency_key() {
                    self.ready.leased_changed(&t.queue, k, -1);
                }
                if let Some(l) = &t.lease {
                    self.leases.remove(&(l.expires_ms, t.id));
                    if let Some(d) = l.stall_deadline_ms {
                        self.stalls.remove(&(d, t.id));
                    }
                }
            }
            // Waiting tasks wait for their dependencies or children, not for a time: no index.
            TaskState::Waiting
            | TaskState::WaitingChildren
            | TaskState::Succeeded
            | TaskState::Dead
            | TaskState::Cancelled
            | TaskState::Rejected => {}
        }
    }

    /// The first `max` ready tasks of `queue` whose required capabilities `caps` covers, in
    /// priority order, within the queue's per-key limits and its rates at `now`.
    pub fn claimable(&self, queue: &str, caps: &[String], max: usize, now: TimeMs) -> Vec<ReadyKey> {
        self.ready.claimable(queue, caps, max, now)
    }

    /// When the longest-waiting ready task of `queue` became ready.
    pub fn oldest_ready(&self, queue: &str) -> Option<TimeMs> {
        self.ready_since.get(queue).and_then(|s| s.first()).map(|(t, _)| *t)
    }
}

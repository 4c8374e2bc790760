//! Coordination beyond a plain queue entry: dependencies between tasks and a total deadline.
//!
//! **Dependencies.** A task submitted with `depends_on` is `waiting` until every task it names
//! has finished; then it is ready (or delayed, if its run time is still ahead). A dependency that
//! succeeds is satisfied; one that ends dead, cancelled or rejected is satisfied under
//! [`DepPolicy::RunAnyway`] and cancels the dependent under [`DepPolicy::Cancel`] (which in turn
//! finishes the dependent's own dependents: cancellation cascades down the graph). A task can
//! only name tasks that exist when it is submitted, or other members of its own atomic batch, so
//! a cycle can only form inside one batch, where submit refuses it.
//!
//! **Concurrency key.** A task may carry a key (a tenant, a model provider); a queue may limit
//! how many tasks with one key are leased at once ([`crate::limits`]). Claims skip keys at their
//! limit.
//!
//! **Parent and children.** A leased task may submit children under its lease; each child
//! names its parent ([`FlowExt::Parent`]) and the parent lists its children
//! ([`FlowExt::Children`]). The parent may give its lease back to wait for its unfinished
//! children (`waiting_children`); it is ready again, with the children's outcomes in its view,
//! once all of them have finished, however they ended. Cancelling a task cancels its unfinished
//! descendants. A parent that finishes first leaves its children running.
//!
//! **Deadline.** A task may carry a deadline across all its attempts, apart from its lease: one
//! not finished by then is `dead` with the error `deadline` (a leased one loses its lease, its
//! attempt ending `deadline_exceeded`).

use serde::{Deserialize, Serialize};

use crate::task::{LeaseToken, TaskId, TimeMs};

/// Dependencies one task may name.
pub const DEPENDENCIES_MAX: usize = 1_000;

/// The error a task that missed its deadline ends with.
pub const DEADLINE_ERROR: &str = "deadline";

/// What a dependency that did not succeed does to the task waiting on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepPolicy {
    /// The dependent is cancelled (and its own dependents after it).
    #[default]
    Cancel,
    /// The dependency counts as finished; the dependent runs and sees how it ended.
    RunAnyway,
}

impl DepPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DepPolicy::Cancel => "cancel",
            DepPolicy::RunAnyway => "run_anyway",
        }
    }
}

/// A dependency as submitted: an existing task, or another task of the same atomic batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DepRef {
    Task(TaskId),
    /// The position of a task in the batch being submitted.
    Batch(u32),
}

/// Children one task may have.
pub const CHILDREN_MAX: usize = 1_000;

/// Longest concurrency key.
pub const CONCURRENCY_KEY_BYTES_MAX: usize = 256;

/// Settings a task carries beyond dependencies and a deadline, as a list (in a task's [`Flow`]
/// and in its [`TaskFlow`]) so that later settings are new variants rather than new record
/// shapes: append variants only, never change one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowExt {
    /// Tasks with the same key in one queue share the queue's per-key concurrency limit.
    ConcurrencyKey(String),
    /// On a child: the task that submitted it under its lease.
    Parent(TaskId),
    /// On a parent: its children, in the order they were submitted.
    Children(Vec<TaskId>),
    /// In a submit only, with [`FlowExt::Parent`]: the parent's lease token, which the child is
    /// submitted under (checked, never stored).
    ParentLease(LeaseToken),
}

fn concurrency_key_of(ext: &[FlowExt]) -> Option<&str> {
    ext.iter().find_map(|e| match e {
        FlowExt::ConcurrencyKey(k) => Some(k.as_str()),
        _ => None,
    })
}

fn parent_of(ext: &[FlowExt]) -> Option<TaskId> {
    ext.iter().find_map(|e| match e {
        FlowExt::Parent(p) => Some(*p),
        _ => None,
    })
}

/// What a submitted task asks for beyond [`crate::NewTask`] (kept apart from it: `NewTask` is part
/// of the log format of earlier releases; [`crate::legacy::TaskFlowV1`] is this before `ext`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFlow {
    pub depends_on: Vec<DepRef>,
    pub on_dependency_failure: DepPolicy,
    /// Absolute deadline; wins over `deadline_in_ms` when both are given.
    pub deadline_ms: Option<TimeMs>,
    /// Deadline relative to the submit (the engine's clock).
    pub deadline_in_ms: Option<u64>,
    pub ext: Vec<FlowExt>,
}

impl TaskFlow {
    pub fn is_empty(&self) -> bool {
        self.depends_on.is_empty() && self.deadline_ms.is_none() && self.deadline_in_ms.is_none() && self.ext.is_empty()
    }

    pub fn concurrency_key(&self) -> Option<&str> {
        concurrency_key_of(&self.ext)
    }

    pub fn parent(&self) -> Option<TaskId> {
        parent_of(&self.ext)
    }

    /// The parent's lease token the child is submitted under.
    pub fn parent_lease(&self) -> Option<LeaseToken> {
        self.ext.iter().find_map(|e| match e {
            FlowExt::ParentLease(t) => Some(*t),
            _ => None,
        })
    }
}

/// A task's coordination settings and state, kept in its record (`None` there for a task
/// submitted without any).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Every task it depends on, in the order given, without repeats.
    pub depends_on: Vec<TaskId>,
    pub on_dependency_failure: DepPolicy,
    /// The dependencies that have not finished yet (empty once the task has left `waiting`).
    pub unfinished: Vec<TaskId>,
    /// Past this, an unfinished task is dead with [`DEADLINE_ERROR`].
    pub deadline_ms: Option<TimeMs>,
    /// Appended in record version 3 ([`crate::legacy::FlowV2`] is the shape before).
    pub ext: Vec<FlowExt>,
}

impl Flow {
    pub fn concurrency_key(&self) -> Option<&str> {
        concurrency_key_of(&self.ext)
    }

    pub fn parent(&self) -> Option<TaskId> {
        parent_of(&self.ext)
    }

    /// Its children, in the order they were submitted.
    pub fn children(&self) -> &[TaskId] {
        self.ext
            .iter()
            .find_map(|e| match e {
                FlowExt::Children(c) => Some(c.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    /// Add children to the list.
    pub fn add_children(&mut self, children: Vec<TaskId>) {
        match self.ext.iter_mut().find_map(|e| match e {
            FlowExt::Children(c) => Some(c),
            _ => None,
        }) {
            Some(c) => c.extend(children),
            None => self.ext.push(FlowExt::Children(children)),
        }
    }
}

//! The change feed: what one applied log entry changed, as records an exporter can replay.
//!
//! Every record carries the full new value (or a removal), so replaying a suffix of the feed over
//! any older copy — even an inconsistent one taken while writes went on — converges to the state.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::config::QueueConfig;
use crate::dedup::{DedupEntry, DedupKey};
use crate::state::{Dirty, State};
use crate::task::{Task, TaskId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Task(Arc<Task>),
    TaskRemoved(TaskId),
    Agent(Box<Agent>),
    AgentRemoved(String),
    Dedup(DedupKey, DedupEntry),
    DedupRemoved(DedupKey),
    Queue(String, QueueConfig),
    QueueRemoved(String),
}

/// The records for what `dirty` says changed, read from `state` after the change.
pub fn changes(state: &State, dirty: &Dirty) -> Vec<Change> {
    let mut out = Vec::with_capacity(dirty.tasks.len() + dirty.dedup.len() + dirty.agents.len() + dirty.queues.len());
    for id in &dirty.tasks {
        out.push(match state.task_arc(*id) {
            Some(t) => Change::Task(t),
            None => Change::TaskRemoved(*id),
        });
    }
    for k in &dirty.dedup {
        out.push(match state.dedup_entry(k) {
            Some(e) => Change::Dedup(k.clone(), *e),
            None => Change::DedupRemoved(k.clone()),
        });
    }
    for a in &dirty.agents {
        out.push(match state.agent(a) {
            Some(agent) => Change::Agent(Box::new(agent.clone())),
            None => Change::AgentRemoved(a.clone()),
        });
    }
    for q in &dirty.queues {
        out.push(match state.queue_config(q) {
            Some(c) => Change::Queue(q.clone(), c.clone()),
            None => Change::QueueRemoved(q.clone()),
        });
    }
    out
}

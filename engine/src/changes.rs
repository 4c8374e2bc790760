//! The change feed: which records one applied log entry touched, and their current values as
//! records an exporter can replay.
//!
//! The feed keeps, per entry, only what was touched ([`Touched`]); a reader gets the values as
//! they are when it reads ([`materialize`]). Every change carries a full value (or a removal), so
//! replaying a suffix of the feed over any older copy, even one taken while writes went on,
//! converges to the state.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::config::QueueConfig;
use crate::dedup::{DedupEntry, DedupKey};
use crate::record::{Effect, Key, Record};
use crate::state::{task_details, task_record};
use crate::store::{Cold, ColdError};
use crate::task::{Task, TaskId};

/// Something an entry changed, as the feed names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Touched {
    Task(TaskId),
    Agent(String),
    Dedup(DedupKey),
    Queue(String),
}

/// What the effects of one entry touched (a task for its record, payload or progress).
pub fn touched(effects: &[Effect]) -> Vec<Touched> {
    let mut out = BTreeSet::new();
    for e in effects {
        let t = match e.key() {
            Key::Live(id) | Key::Done(id) | Key::Payload(id) | Key::Progress(id, _) => Touched::Task(id),
            Key::Agent(a) => Touched::Agent(a),
            Key::Dedup(k) => Touched::Dedup(k),
            Key::Queue(q) => Touched::Queue(q),
            _ => continue,
        };
        out.insert(t);
    }
    out.into_iter().collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The task and the trace context it was submitted with.
    Task(Box<Task>, Option<String>),
    TaskRemoved(TaskId),
    Agent(Box<Agent>),
    AgentRemoved(String),
    Dedup(DedupKey, DedupEntry),
    DedupRemoved(DedupKey),
    Queue(String, QueueConfig),
    QueueRemoved(String),
}

/// The current value of each touched thing.
pub fn materialize(cold: &dyn Cold, touched: &[Touched]) -> Result<Vec<Change>, ColdError> {
    let mut out = Vec::with_capacity(touched.len());
    for t in touched {
        out.push(match t {
            Touched::Task(id) => match task_record(cold, *id)? {
                Some(rec) => {
                    let trace = rec.trace_parent.clone();
                    let (payload, progress) = task_details(cold, &rec)?;
                    Change::Task(Box::new(rec.into_task(payload, progress)), trace)
                }
                None => Change::TaskRemoved(*id),
            },
            Touched::Agent(a) => match cold.get(&Key::Agent(a.clone()))? {
                Some(Record::Agent(agent)) => Change::Agent(Box::new(agent)),
                _ => Change::AgentRemoved(a.clone()),
            },
            Touched::Dedup(k) => match cold.get(&Key::Dedup(k.clone()))? {
                Some(Record::Dedup(_, e)) => Change::Dedup(k.clone(), e),
                _ => Change::DedupRemoved(k.clone()),
            },
            Touched::Queue(q) => match cold.get(&Key::Queue(q.clone()))? {
                Some(Record::Queue(_, c)) => Change::Queue(q.clone(), c),
                _ => Change::QueueRemoved(q.clone()),
            },
        });
    }
    Ok(out)
}

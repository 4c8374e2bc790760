//! What an apply will read from disk, named before it runs. The caller reads these records with
//! no lock held and hands them to apply, so that apply, under the engine's write lock, finds
//! them in memory instead of waiting on the state store.
//!
//! Naming is a prediction from RAM only (no I/O): an idempotency key the bloom filter may hold,
//! a task id that is not live (finished: its record is on disk). A record named but not needed
//! costs one read; one needed but not named is read under the lock, as before. The housekeeping
//! sweeps page through their on-disk indexes under the lock (pages of 256 index records, at most
//! `SWEEP_PER_ENTRY_MAX` removals per entry) and are not predicted.

use super::State;
use crate::command::{Ack, Command, Request};
use crate::dedup::DedupKey;
use crate::record::Key;
use crate::task::TaskId;

impl State {
    /// The records `req` will most likely read through `Cold`.
    pub fn cold_keys(&self, req: &Request) -> Vec<Key> {
        let mut out = Vec::new();
        self.cold_keys_of(&req.cmd, &mut out);
        out
    }

    fn cold_keys_of(&self, cmd: &Command, out: &mut Vec<Key>) {
        match cmd {
            Command::Submit { tasks }
            | Command::SubmitTraced { tasks, .. }
            | Command::SubmitFlow { tasks, .. }
            | Command::SubmitWith { tasks, .. } => {
                for t in tasks {
                    self.dedup_key(&t.queue, t.idempotency_key.as_deref(), out);
                }
                // The finished tasks a submit depends on are read for their state.
                let deps: Vec<&crate::flow::DepRef> = match cmd {
                    Command::SubmitFlow { flows, .. } => flows.iter().flat_map(|f| &f.depends_on).collect(),
                    Command::SubmitWith { flows, .. } => flows.iter().flat_map(|f| &f.depends_on).collect(),
                    _ => Vec::new(),
                };
                for d in deps {
                    if let crate::flow::DepRef::Task(id) = d {
                        self.finished_key(*id, out);
                    }
                }
            }
            Command::Reject { records } => {
                for r in records {
                    self.dedup_key(&r.queue, r.idempotency_key.as_deref(), out);
                }
            }
            Command::Progress { task_id, .. }
            | Command::Complete { task_id, .. }
            | Command::Fail { task_id, .. }
            | Command::Extend { task_id, .. }
            | Command::Release { task_id, .. }
            | Command::Cancel { task_id, .. }
            | Command::Retry { task_id } => self.finished_key(*task_id, out),
            Command::Acknowledge { acks } => {
                for a in acks {
                    match a {
                        Ack::Complete { task_id, .. } | Ack::Fail { task_id, .. } => self.finished_key(*task_id, out),
                    }
                }
            }
            Command::Batch { cmds } => {
                for c in cmds {
                    self.cold_keys_of(c, out);
                }
            }
            Command::Audited { cmd, .. } => self.cold_keys_of(cmd, out),
            _ => {}
        }
    }

    fn finished_key(&self, id: TaskId, out: &mut Vec<Key>) {
        if !self.live.contains_key(&id) {
            out.push(Key::Done(id));
        }
    }

    fn dedup_key(&self, queue: &str, key: Option<&str>, out: &mut Vec<Key>) {
        let Some(key) = key else { return };
        if self.dedup.may_contain_parts(queue, key) {
            out.push(Key::Dedup(DedupKey { queue: queue.to_string(), key: key.to_string() }));
        }
    }
}

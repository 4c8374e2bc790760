//! Loading a backup through the log, as a stream of bounded entries: `RestoreBegin` (only into a
//! cluster that has never held a task, agent or queue setting), any number of `RestoreRecords`,
//! then `RestoreEnd` with the backup's counters, which rebuilds RAM from the records. Other writes
//! are refused while a restore is in progress; an interrupted restore is begun again with the
//! same file (records are puts, so sending them twice is harmless).

use super::{invalid, Fail, Meta, State, Step};
use crate::command::{Outcome, RejectCode, Rejection};
use crate::record::{widen_counts, Record};
use crate::store::{Cold, Through};

/// Records in one `RestoreRecords` command at most.
pub const RESTORE_RECORDS_MAX: usize = 100_000;

fn wrong_state(msg: String) -> Fail {
    Fail::Reject(Rejection::new(RejectCode::WrongState, msg))
}

impl State {
    /// Has never held a task, agent, queue setting or idempotency key.
    pub fn pristine(&self) -> bool {
        self.meta.next_id == 1 && self.agents.is_empty() && self.queues.is_empty() && self.meta.dedup_keys == 0
    }

    pub(super) fn restore_begin(&mut self, restore_id: &str) -> Step<Outcome> {
        if restore_id.is_empty() || restore_id.len() > 64 {
            return Err(invalid("a restore id must be 1 to 64 bytes"));
        }
        if self.meta.restoring.is_none() && !self.pristine() {
            return Err(wrong_state(format!(
                "a backup restores only into a cluster that has never held a task, agent or queue setting; \
                 this one has {} tasks (next id {}), {} agents and {} queue settings",
                self.task_count(),
                self.meta.next_id,
                self.agents.len(),
                self.queues.len()
            )));
        }
        self.meta.restoring = Some(restore_id.to_string());
        self.meta.restored_records = 0;
        self.meta_dirty = true;
        Ok(Outcome::Done)
    }

    fn check_restoring(&self, restore_id: &str) -> Step<()> {
        match &self.meta.restoring {
            Some(id) if id == restore_id => Ok(()),
            Some(id) => Err(wrong_state(format!("restore {id} is in progress, not {restore_id}"))),
            None => Err(wrong_state(format!("no restore is in progress (send RestoreBegin {restore_id} first)"))),
        }
    }

    pub(super) fn restore_records(&mut self, restore_id: &str, records: &[Record]) -> Step<Outcome> {
        self.check_restoring(restore_id)?;
        if records.len() > RESTORE_RECORDS_MAX {
            return Err(invalid(format!("at most {RESTORE_RECORDS_MAX} records per restore command")));
        }
        if records.iter().any(|r| matches!(r, Record::Meta(_))) {
            return Err(invalid("the backup's counters travel in RestoreEnd, not as a record"));
        }
        for r in records {
            match r {
                // The backup's audit trail continues this cluster's numbering.
                Record::Audit(e) => {
                    let mut e = e.clone();
                    e.seq = self.meta.next_audit;
                    self.meta.next_audit += 1;
                    self.pending.put(Record::Audit(e));
                }
                Record::Counts8(q, c) => self.pending.put(Record::Counts(q.clone(), widen_counts(c))),
                Record::Counts9(q, c) => self.pending.put(Record::Counts(q.clone(), widen_counts(c))),
                Record::TaskV1(t) => self.pending.put(Record::Task(t.clone().upgrade())),
                Record::TaskV2(t) => self.pending.put(Record::Task(crate::legacy::upgrade_v2(t.clone()))),
                other => self.pending.put(other.clone()),
            }
        }
        self.meta.restored_records += records.len() as u64;
        self.meta_dirty = true;
        Ok(Outcome::Done)
    }

    pub(super) fn restore_end(
        &mut self,
        restore_id: &str,
        records_total: u64,
        backup: &Meta,
        cold: &dyn Cold,
    ) -> Step<Outcome> {
        self.check_restoring(restore_id)?;
        if records_total != self.meta.restored_records {
            return Err(invalid(format!(
                "the backup has {records_total} records but {} arrived; begin the restore again",
                self.meta.restored_records
            )));
        }
        let mut next = State::load(&Through { pending: &self.pending, cold })?;
        let mut meta = backup.clone();
        meta.config = self.meta.config.clone();
        meta.clock = meta.clock.max(self.meta.clock);
        meta.next_audit = self.meta.next_audit;
        meta.restoring = None;
        meta.restored_records = 0;
        next.meta = meta;
        if let Err(v) = next.validate_ram() {
            return Err(invalid(format!("the restored backup is not consistent: {v}")));
        }
        // RAM becomes what the records say; this apply's writes and the local counters stay.
        next.pending = std::mem::take(&mut self.pending);
        next.dirty_counts = std::mem::take(&mut self.dirty_counts);
        next.counters = std::mem::take(&mut self.counters);
        next.applying = self.applying;
        next.meta_dirty = true;
        *self = next;
        Ok(Outcome::Done)
    }
}

//! Housekeeping due at the engine's clock, run at the start of every apply: expire leases and
//! stalls, promote due timers, let rate-limited keys start again, fire due schedules, expire
//! idempotency keys, remove finished tasks past retention.
//! The last two read their on-disk indexes in pages and do at most
//! [`limits::SWEEP_PER_ENTRY_MAX`] removals per applied entry; the rest go on the next one.

use super::{State, Step};
use crate::config::limits;
use crate::dedup::DedupKey;
use crate::record::{Key, Kind, Record};
use crate::store::Cold;
use crate::task::{AttemptOutcome, TaskState, TimeMs};

/// Index records read per page while sweeping.
const SWEEP_PAGE: usize = 256;

impl State {
    pub(super) fn advance(&mut self, cold: &dyn Cold) -> Step<()> {
        let now = self.meta.clock;
        while let Some(&(at, id)) = self.idx.leases.first() {
            if at > now {
                break;
            }
            self.counters.lease_expiries += 1;
            self.end_attempt(id, AttemptOutcome::LeaseExpired, "lease expired".to_string());
        }
        while let Some(&(at, id)) = self.idx.stalls.first() {
            if at > now {
                break;
            }
            self.counters.stalls += 1;
            self.end_attempt(id, AttemptOutcome::Stalled, "no progress within the stall timeout".to_string());
        }
        while let Some(&(at, id)) = self.idx.deadlines.first() {
            if at > now {
                break;
            }
            self.miss_deadline(id);
        }
        while let Some(&(at, id)) = self.idx.timers.first() {
            if at > now {
                break;
            }
            self.update(id, |t| t.state = TaskState::Ready);
        }
        let buckets = self.idx.ready.advance(now);
        self.store_buckets(buckets);
        if self.next_schedule_due().is_some_and(|at| at <= now) {
            self.fire_schedules(cold)?;
        }
        if self.dedup.head.is_some_and(|h| h <= now) {
            self.expire_keys(now, cold)?;
        }
        if self.retention_head.is_some_and(|h| h <= now) {
            self.apply_retention(now, cold)?;
        }
        Ok(())
    }

    /// Remove idempotency keys whose TTL ended at or before `now`.
    fn expire_keys(&mut self, now: TimeMs, cold: &dyn Cold) -> Step<()> {
        let mut removed = 0;
        let mut after: Option<Key> = None;
        loop {
            let page = self.pending.scan(cold, Kind::DedupExpiry, after.as_ref(), SWEEP_PAGE)?;
            let Some(last) = page.last() else {
                self.dedup.head = None;
                return Ok(());
            };
            let page_end = last.key();
            for r in page {
                let Record::DedupExpiry(at, key) = r else { continue };
                if at > now || removed == limits::SWEEP_PER_ENTRY_MAX {
                    self.dedup.head = Some(at);
                    return Ok(());
                }
                self.pending.delete(Key::DedupExpiry(at, key.clone()));
                // The key may have been reused with a later expiry since this index entry.
                if let Some(Record::Dedup(_, e)) = self.read(cold, &Key::Dedup(key.clone()))? {
                    if e.expires_ms == at {
                        self.drop_key(key);
                    }
                }
                removed += 1;
            }
            after = Some(page_end);
        }
    }

    /// A task leaving the ledger takes its idempotency key with it, if the key still names it (a
    /// retention shorter than the key's TTL): a resubmission then creates a new task instead of
    /// answering with the id of one that no longer exists.
    fn forget_key_of(&mut self, t: &crate::record::TaskRecord, cold: &dyn Cold) -> Step<()> {
        let Some(k) = &t.idempotency_key else { return Ok(()) };
        let key = DedupKey { queue: t.queue.clone(), key: k.clone() };
        if let Some(Record::Dedup(_, e)) = self.read(cold, &Key::Dedup(key.clone()))? {
            if e.task_id == t.id {
                self.pending.delete(Key::DedupExpiry(e.expires_ms, key.clone()));
                self.drop_key(key);
            }
        }
        Ok(())
    }

    /// Remove an idempotency key's record (its expiry index entry is the caller's).
    fn drop_key(&mut self, key: DedupKey) {
        self.pending.delete(Key::Dedup(key));
        self.meta.dedup_keys = self.meta.dedup_keys.saturating_sub(1);
        self.meta_dirty = true;
        self.dedup.forget_key();
    }

    /// Remove finished tasks (record, payload, progress, indexes) whose retention ended.
    fn apply_retention(&mut self, now: TimeMs, cold: &dyn Cold) -> Step<()> {
        let mut removed = 0;
        let mut after: Option<Key> = None;
        loop {
            let page = self.pending.scan(cold, Kind::Retention, after.as_ref(), SWEEP_PAGE)?;
            let Some(last) = page.last() else {
                self.retention_head = None;
                return Ok(());
            };
            let page_end = last.key();
            for r in page {
                let Record::Retention(at, id) = r else { continue };
                if at > now || removed == limits::SWEEP_PER_ENTRY_MAX {
                    self.retention_head = Some(at);
                    return Ok(());
                }
                self.pending.delete(Key::Retention(at, id));
                if let Some(Record::Task(t)) = self.read(cold, &Key::Done(id))? {
                    self.forget_key_of(&t, cold)?;
                    self.pending.delete(Key::Done(id));
                    self.pending.delete(Key::Payload(id));
                    self.pending.delete(Key::Finished(t.queue.clone(), t.state, id));
                    for seq in t.progress_dropped..t.progress_dropped + t.progress_count as u64 {
                        self.pending.delete(Key::Progress(id, seq));
                    }
                    self.count(&t.queue, t.state, -1);
                    self.counters.retention_removed += 1;
                }
                removed += 1;
            }
            after = Some(page_end);
        }
    }
}

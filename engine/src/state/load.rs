//! Rebuilding RAM from the records: after a restart, a snapshot install, or a restore. Reads the
//! live set and the small kinds, never the finished tasks, so its cost follows the live set.

use std::sync::Arc;

use growable_bloom_filter::GrowableBloom;

use super::State;
use crate::dedup::Dedup;
use crate::key_limits::KeyLimits;
use crate::record::{Key, Kind, Record};
use crate::store::{Cold, ColdError};

const PAGE: usize = 1_024;

/// Every record of `kind`, in pages.
pub(crate) fn scan_all(cold: &dyn Cold, kind: Kind, mut each: impl FnMut(Record)) -> Result<(), ColdError> {
    let mut after: Option<Key> = None;
    loop {
        let page = cold.scan(kind, after.as_ref(), PAGE)?;
        let n = page.len();
        if let Some(last) = page.last() {
            after = Some(last.key());
        }
        for r in page {
            each(r);
        }
        if n < PAGE {
            return Ok(());
        }
    }
}

fn first_time(cold: &dyn Cold, kind: Kind) -> Result<Option<u64>, ColdError> {
    Ok(cold.scan(kind, None, 1)?.into_iter().next().and_then(|r| match r {
        Record::Retention(at, _) | Record::DedupExpiry(at, _) => Some(at),
        _ => None,
    }))
}

impl State {
    /// The state the records describe. The bloom filter is not built (see
    /// [`State::dedup_rebuild_needed`]); lookups read the exact records until it is.
    pub fn load(cold: &dyn Cold) -> Result<State, ColdError> {
        let mut s = State::default();
        match cold.get(&Key::Meta)? {
            Some(Record::Meta(m)) => s.meta = m,
            Some(other) => return Err(ColdError(format!("the meta key holds {:?}", other.key()))),
            None => s.meta_dirty = true,
        }
        let mut bad = None;
        scan_all(cold, Kind::Live, |r| match r {
            Record::Task(t) if t.is_live() => {
                s.idx.insert(&t);
                s.live.insert(t.id, t);
            }
            other => bad = Some(format!("a live-task key holds {:?}", other.key())),
        })?;
        scan_all(cold, Kind::Queue, |r| {
            if let Record::Queue(q, c) = r {
                s.queues.insert(q, c);
            }
        })?;
        scan_all(cold, Kind::Limits, |r| {
            if let Record::Limits(q, rules) = r {
                s.idx.ready.set_limits(&q, KeyLimits::from_rules(&rules), s.meta.clock);
            }
        })?;
        scan_all(cold, Kind::Rate, |r| {
            if let Record::Rate(q, k, tat) = r {
                s.idx.ready.load_bucket((q, k), tat);
            }
        })?;
        s.idx.ready.rethrottle_all(s.meta.clock);
        scan_all(cold, Kind::Turn, |r| {
            if let Record::Turn(q, k) = r {
                s.idx.ready.load_turn(q, k);
            }
        })?;
        scan_all(cold, Kind::Counts, |r| {
            if let Record::Counts(q, c) = r {
                s.counts.insert(q, c);
            }
        })?;
        scan_all(cold, Kind::Schedule, |r| {
            if let Record::Schedule(sc) = r {
                s.load_schedule(*sc);
            }
        })?;
        scan_all(cold, Kind::Agent, |r| {
            if let Record::Agent(a) = r {
                s.agents.insert(a.id.clone(), a);
            }
        })?;
        scan_all(cold, Kind::Token, |r| {
            if let Record::Token(t) = r {
                s.tokens.insert(t.id.clone(), Arc::new(t));
            }
        })?;
        scan_all(cold, Kind::TokenAgents, |r| {
            if let Record::TokenAgents(id, patterns) = r {
                s.token_agents.insert(id, Arc::new(patterns));
            }
        })?;
        scan_all(cold, Kind::Audit, |r| {
            if let Record::Audit(e) = r {
                s.audit.insert(e.seq, e);
            }
        })?;
        if let Some(what) = bad {
            return Err(ColdError(what));
        }
        s.retention_head = first_time(cold, Kind::Retention)?;
        s.dedup.head = first_time(cold, Kind::DedupExpiry)?;
        Ok(s)
    }

    /// A bloom filter of every idempotency key in the records (for a rebuild).
    pub fn build_bloom(cold: &dyn Cold, keys_hint: u64) -> Result<GrowableBloom, ColdError> {
        let mut bloom = Dedup::new_bloom(keys_hint);
        scan_all(cold, Kind::Dedup, |r| {
            if let Record::Dedup(k, _) = r {
                Dedup::bloom_add(&mut bloom, &k);
            }
        })?;
        Ok(bloom)
    }
}

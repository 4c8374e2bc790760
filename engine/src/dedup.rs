//! Idempotency keys: a growable bloom filter in front of the exact key → task map.
//!
//! The exact store is authoritative and replicated; the bloom filter is a local acceleration
//! structure (not part of the state, rebuilt on load) that answers "certainly new" for most fresh
//! keys without touching the exact store. Keys expire by the log's clock, so every replica removes
//! the same keys at the same log position.

use std::collections::{BTreeMap, BTreeSet};

use growable_bloom_filter::GrowableBloom;
use serde::{Deserialize, Serialize};

use crate::task::{TaskId, TimeMs};

/// Keys are scoped to a queue: the same key in two queues names two tasks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DedupKey {
    pub queue: String,
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupEntry {
    pub task_id: TaskId,
    pub expires_ms: TimeMs,
}

/// Counters of the dedup path, for metrics. Local to a replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DedupStats {
    /// Submissions whose key mapped to a live task.
    pub hits: u64,
    /// Submissions whose key was new.
    pub misses: u64,
    /// Misses answered by the bloom filter alone.
    pub bloom_negatives: u64,
    /// The bloom filter said "maybe" but the exact store had no live key.
    pub bloom_false_positives: u64,
}

const BLOOM_ERROR_RATIO: f64 = 0.01;
const BLOOM_ESTIMATED_KEYS: usize = 100_000;

#[derive(Debug)]
pub struct Dedup {
    exact: BTreeMap<DedupKey, DedupEntry>,
    expiry: BTreeSet<(TimeMs, DedupKey)>,
    bloom: GrowableBloom,
    /// Keys removed since the bloom filter was last rebuilt (a bloom filter cannot forget).
    bloom_stale: usize,
    pub stats: DedupStats,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            exact: BTreeMap::new(),
            expiry: BTreeSet::new(),
            bloom: GrowableBloom::new(BLOOM_ERROR_RATIO, BLOOM_ESTIMATED_KEYS),
            bloom_stale: 0,
            stats: DedupStats::default(),
        }
    }
}

fn bloom_item(k: &DedupKey) -> (&str, &str) {
    (k.queue.as_str(), k.key.as_str())
}

impl Dedup {
    /// The live task for `key` at `now`, if any.
    pub fn lookup(&mut self, key: &DedupKey, now: TimeMs) -> Option<TaskId> {
        if !self.bloom.contains(bloom_item(key)) {
            self.stats.bloom_negatives += 1;
            self.stats.misses += 1;
            return None;
        }
        match self.exact.get(key) {
            Some(e) if e.expires_ms > now => {
                self.stats.hits += 1;
                Some(e.task_id)
            }
            _ => {
                self.stats.bloom_false_positives += 1;
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Like `lookup`, without counting: for reads.
    pub fn peek(&self, key: &DedupKey, now: TimeMs) -> Option<TaskId> {
        self.exact.get(key).filter(|e| e.expires_ms > now).map(|e| e.task_id)
    }

    pub fn insert(&mut self, key: DedupKey, entry: DedupEntry) {
        self.bloom.insert(bloom_item(&key));
        if let Some(old) = self.exact.insert(key.clone(), entry) {
            self.expiry.remove(&(old.expires_ms, key.clone()));
        }
        self.expiry.insert((entry.expires_ms, key));
    }

    /// Remove keys whose TTL ended at or before `now`, at most `max` of them. Returns the keys.
    pub fn expire(&mut self, now: TimeMs, max: usize) -> Vec<DedupKey> {
        let mut gone = Vec::new();
        while gone.len() < max {
            let Some((t, _)) = self.expiry.first() else { break };
            if *t > now {
                break;
            }
            let Some((_, key)) = self.expiry.pop_first() else { break };
            self.exact.remove(&key);
            gone.push(key);
        }
        self.bloom_stale += gone.len();
        if self.bloom_stale > self.exact.len().max(BLOOM_ESTIMATED_KEYS) {
            self.rebuild_bloom();
        }
        gone
    }

    /// Recreate the bloom filter from the live keys, dropping expired ones it still remembers.
    pub fn rebuild_bloom(&mut self) {
        let mut bloom = GrowableBloom::new(BLOOM_ERROR_RATIO, self.exact.len().max(BLOOM_ESTIMATED_KEYS));
        for k in self.exact.keys() {
            bloom.insert(bloom_item(k));
        }
        self.bloom = bloom;
        self.bloom_stale = 0;
    }

    pub fn get(&self, key: &DedupKey) -> Option<&DedupEntry> {
        self.exact.get(key)
    }

    pub fn len(&self) -> usize {
        self.exact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&DedupKey, &DedupEntry)> {
        self.exact.iter()
    }

    /// Keys in order after `after` (exclusive), for paging.
    pub fn range_after(&self, after: Option<&DedupKey>) -> impl Iterator<Item = (&DedupKey, &DedupEntry)> {
        use std::ops::Bound;
        let start = match after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Unbounded,
        };
        self.exact.range((start, Bound::Unbounded))
    }

    /// The earliest expiry, for the housekeeping timer.
    pub fn next_expiry(&self) -> Option<TimeMs> {
        self.expiry.first().map(|(t, _)| *t)
    }

    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        if self.exact.len() != self.expiry.len() {
            return Err(format!("dedup: {} keys but {} expiry entries", self.exact.len(), self.expiry.len()));
        }
        for (k, e) in &self.exact {
            if !self.expiry.contains(&(e.expires_ms, k.clone())) {
                return Err(format!("dedup: key {k:?} missing from the expiry index"));
            }
            if !self.bloom.contains(bloom_item(k)) {
                return Err(format!("dedup: key {k:?} missing from the bloom filter"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(q: &str, key: &str) -> DedupKey {
        DedupKey { queue: q.into(), key: key.into() }
    }

    #[test]
    fn lookup_respects_ttl_and_expire_removes_deterministically() {
        let mut d = Dedup::default();
        d.insert(k("q", "a"), DedupEntry { task_id: 1, expires_ms: 100 });
        d.insert(k("q", "b"), DedupEntry { task_id: 2, expires_ms: 200 });
        assert_eq!(d.lookup(&k("q", "a"), 99), Some(1));
        assert_eq!(d.lookup(&k("q", "a"), 100), None, "a key is dead at its expiry instant");
        assert_eq!(d.lookup(&k("other", "a"), 50), None, "keys are scoped per queue");
        assert_eq!(d.expire(150, 10), vec![k("q", "a")]);
        assert_eq!(d.len(), 1);
        assert_eq!(d.lookup(&k("q", "b"), 150), Some(2));
        d.check_invariants().expect("invariants");
    }

    #[test]
    fn bloom_answers_most_fresh_keys() {
        let mut d = Dedup::default();
        for i in 0..10_000u64 {
            d.insert(k("q", &format!("seen-{i}")), DedupEntry { task_id: i, expires_ms: u64::MAX });
        }
        for i in 0..10_000u64 {
            assert_eq!(d.lookup(&k("q", &format!("new-{i}")), 0), None);
        }
        assert!(d.stats.bloom_negatives > 9_500, "bloom filtered only {}", d.stats.bloom_negatives);
        assert_eq!(d.stats.misses, 10_000);
    }

    #[test]
    fn expire_is_bounded_per_call() {
        let mut d = Dedup::default();
        for i in 0..50u64 {
            d.insert(k("q", &i.to_string()), DedupEntry { task_id: i, expires_ms: 10 });
        }
        assert_eq!(d.expire(10, 20).len(), 20);
        assert_eq!(d.expire(10, 100).len(), 30);
        assert!(d.is_empty());
    }
}

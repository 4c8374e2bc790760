//! Idempotency keys: a growable bloom filter in RAM in front of the exact key → task records.
//!
//! The exact records ([`crate::Key::Dedup`], with their expiry index) are replicated state on disk.
//! The bloom filter is local acceleration, not state: it answers "certainly new" for most fresh
//! keys without a read. It cannot forget, so once enough keys have expired it is rebuilt from the
//! exact records (off the apply path: [`Dedup::begin_rebuild`], a scan by the owner, then
//! [`Dedup::finish_rebuild`]); until the first build after a start every lookup reads the exact
//! record. Keys expire by the log's clock, so every replica removes the same keys at the same log
//! position.

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
/// The smallest capacity a bloom filter is built for (it grows beyond).
pub const BLOOM_ESTIMATED_KEYS: usize = 100_000;

#[derive(Debug, Default)]
pub struct Dedup {
    /// `None` until built after a start: lookups then read the exact record.
    bloom: Option<GrowableBloom>,
    /// Keys expired since the filter was built.
    stale: u64,
    /// Keys inserted while a rebuild runs, added to the new filter when it is installed.
    rebuilding: Option<Vec<(String, String)>>,
    /// The earliest expiry among the exact records (the first expiry-index record).
    pub(crate) head: Option<TimeMs>,
    pub stats: DedupStats,
}

fn item(k: &DedupKey) -> (&str, &str) {
    (k.queue.as_str(), k.key.as_str())
}

impl Dedup {
    /// A new filter sized for `keys`.
    pub fn new_bloom(keys: u64) -> GrowableBloom {
        GrowableBloom::new(BLOOM_ERROR_RATIO, (keys as usize).max(BLOOM_ESTIMATED_KEYS))
    }

    /// Add a key to a filter being built.
    pub fn bloom_add(bloom: &mut GrowableBloom, key: &DedupKey) {
        bloom.insert(item(key));
    }

    /// False only if the key is certainly not in the exact store.
    pub fn may_contain(&self, key: &DedupKey) -> bool {
        self.may_contain_parts(&key.queue, &key.key)
    }

    /// [`Dedup::may_contain`] without building a key (most fresh keys are answered here).
    pub(crate) fn may_contain_parts(&self, queue: &str, key: &str) -> bool {
        self.bloom.as_ref().is_none_or(|b| b.contains((queue, key)))
    }

    pub(crate) fn insert_key(&mut self, key: &DedupKey, expires_ms: TimeMs) {
        if let Some(b) = self.bloom.as_mut() {
            b.insert(item(key));
        }
        if let Some(side) = self.rebuilding.as_mut() {
            side.push((key.queue.clone(), key.key.clone()));
        }
        self.head = Some(self.head.map_or(expires_ms, |h| h.min(expires_ms)));
    }

    pub(crate) fn forget_key(&mut self) {
        self.stale += 1;
    }

    /// Is a (re)build due: never built since the start, or many keys expired since? `keys` is the
    /// number of exact records.
    pub fn needs_rebuild(&self, keys: u64) -> bool {
        self.rebuilding.is_none() && (self.bloom.is_none() || self.stale > keys.max(BLOOM_ESTIMATED_KEYS as u64))
    }

    /// The owner starts scanning the exact records into a new filter.
    pub fn begin_rebuild(&mut self) {
        self.rebuilding = Some(Vec::new());
    }

    /// Install a filter built from a scan that started after [`Dedup::begin_rebuild`]. Ignored
    /// when no rebuild is in progress (the state was replaced meanwhile: a filter of the old one
    /// could miss keys of the new one).
    pub fn finish_rebuild(&mut self, mut bloom: GrowableBloom) {
        let Some(side) = self.rebuilding.take() else { return };
        for (q, k) in side {
            bloom.insert((q.as_str(), k.as_str()));
        }
        self.bloom = Some(bloom);
        self.stale = 0;
    }

    /// Forget a rebuild that failed (the old filter stays).
    pub fn abandon_rebuild(&mut self) {
        self.rebuilding = None;
    }

    pub fn has_bloom(&self) -> bool {
        self.bloom.is_some()
    }

    /// The filter's items and capacity (it grows by adding sub-filters; a rebuild after many
    /// expiries starts it over at the live keys): (0, 0) before it is built.
    pub fn bloom_size(&self) -> (u64, u64) {
        self.bloom.as_ref().map_or((0, 0), |b| (b.len() as u64, b.capacity() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(q: &str, key: &str) -> DedupKey {
        DedupKey { queue: q.into(), key: key.into() }
    }

    #[test]
    fn a_filter_finished_without_a_rebuild_in_progress_is_ignored() {
        let mut d = Dedup::default();
        let mut b = Dedup::new_bloom(10);
        Dedup::bloom_add(&mut b, &k("q", "old"));
        d.finish_rebuild(b);
        assert!(!d.has_bloom(), "a state replaced during a rebuild keeps no filter of the old one");
        assert!(d.may_contain(&k("q", "new")));
    }

    #[test]
    fn without_a_filter_every_key_may_exist_and_a_rebuild_keeps_keys_added_meanwhile() {
        let mut d = Dedup::default();
        assert!(d.may_contain(&k("q", "a")));
        assert!(d.needs_rebuild(0));
        d.begin_rebuild();
        assert!(!d.needs_rebuild(0), "one rebuild at a time");
        let mut b = Dedup::new_bloom(10);
        Dedup::bloom_add(&mut b, &k("q", "old"));
        d.insert_key(&k("q", "during"), 5);
        d.finish_rebuild(b);
        assert!(d.may_contain(&k("q", "old")));
        assert!(d.may_contain(&k("q", "during")));
        assert_eq!(d.head, Some(5));
    }

    #[test]
    fn bloom_answers_most_fresh_keys() {
        let mut d = Dedup::default();
        d.begin_rebuild();
        d.finish_rebuild(Dedup::new_bloom(10_000));
        for i in 0..10_000u64 {
            d.insert_key(&k("q", &format!("seen-{i}")), u64::MAX);
        }
        let negatives = (0..10_000u64).filter(|i| !d.may_contain(&k("q", &format!("new-{i}")))).count();
        assert!(negatives > 9_500, "bloom filtered only {negatives}");
    }
}

//! The ready index: what a claim may take, per queue and capability set, with per-key
//! concurrency limits applied without scanning.
//!
//! Tasks without a concurrency key are claimable as soon as they are ready. Tasks with one wait in
//! their key's chain (priority order); only a chain's head is claimable, and only while the key
//! has fewer leased tasks than its limit. A claim merges the claimable entries of the groups the
//! agent can serve and, each time it takes a key's head, offers the next task of that key if the
//! key still has room, so it looks at O(tasks taken + groups) entries whatever the number of keys
//! at their limit. When a key reaches its limit its heads leave the claimable sets; when a lease
//! of the key ends they come back.
//!
//! Rate limits work the same way: a key whose bucket has no start left at the engine's clock is
//! *throttled* (its heads leave the claimable sets) until the time its next start is allowed,
//! which [`ReadyIndex::next_wake`] offers to housekeeping and [`ReadyIndex::advance`] acts on. A
//! queue's own bucket caps how many tasks one claim takes from the queue. Which buckets are
//! throttled is a function of the buckets and the clock, so a rebuild at the same clock agrees.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::key_limits::KeyLimits;
use crate::rate::{full_at, Rate};
use crate::task::{TaskId, TimeMs};

use super::indexes::{CapSet, ReadyKey};
use super::key_budget::KeyBudget;

/// A fair queue's claimable entries by (priority, key or `""` for a task without one, task).
pub(super) type FairEntry = (i64, String, TaskId);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Group {
    /// Claimable: every ready task without a key, and the head of each key with room.
    open: BTreeMap<ReadyKey, Option<String>>,
    /// Ready tasks with a key, per key, in claim order.
    pub(super) chains: BTreeMap<String, BTreeSet<ReadyKey>>,
    /// In a fair queue: `open` by key within each priority, for round robin (see [`super::fair`]).
    pub(super) fair: Option<BTreeSet<FairEntry>>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.open.is_empty() && self.chains.is_empty()
    }

    fn open_put(&mut self, rk: ReadyKey, key: Option<&str>) {
        if let Some(f) = &mut self.fair {
            f.insert((rk.0, key.unwrap_or_default().to_string(), rk.1));
        }
        self.open.insert(rk, key.map(str::to_string));
    }

    fn open_take(&mut self, rk: &ReadyKey) {
        if let Some(key) = self.open.remove(rk) {
            if let Some(f) = &mut self.fair {
                f.remove(&(rk.0, key.unwrap_or_default(), rk.1));
            }
        }
    }

    /// Keep the fair view of `open` (or drop it).
    fn set_fair(&mut self, fair: bool) {
        self.fair = fair.then(|| self.open.iter().map(|(rk, k)| (rk.0, k.clone().unwrap_or_default(), rk.1)).collect());
    }

    /// Put the head of `key`'s chain into the claimable set (`room`) or take it out.
    fn offer_head(&mut self, key: &str, room: bool) {
        let Some(head) = self.chains.get(key).and_then(|c| c.first()).copied() else { return };
        if room {
            self.open_put(head, Some(key));
        } else {
            self.open_take(&head);
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct QueueReady {
    groups: BTreeMap<CapSet, Group>,
    /// Leased tasks per concurrency key.
    leased: BTreeMap<String, u32>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReadyIndex {
    queues: BTreeMap<String, QueueReady>,
    /// Per-key concurrency limits of the queues that have any.
    limits: BTreeMap<String, KeyLimits>,
    /// Rate buckets: (queue, key; `""` for the queue's own) → theoretical arrival time (ns).
    buckets: BTreeMap<Bucket, u64>,
    /// Buckets without a start left at the clock → when their next start is allowed.
    throttled: BTreeMap<Bucket, TimeMs>,
    /// The same, by time.
    wakes: BTreeSet<(TimeMs, Bucket)>,
    /// Buckets by the time they are full again (and are forgotten).
    refills: BTreeSet<(TimeMs, Bucket)>,
    /// Fair queues: the key each served last (`""`: a task without a key).
    turns: BTreeMap<String, String>,
}

/// A rate bucket: (queue, concurrency key), the key `""` for the queue's own bucket.
pub(crate) type Bucket = (String, String);

/// A bucket's new state, to store (`Some`) or forget (`None`: full).
pub(crate) type BucketChange = (Bucket, Option<u64>);

impl ReadyIndex {
    pub(super) fn room(&self, queue: &str, key: &str, leased: u32) -> bool {
        self.limits.get(queue).is_none_or(|l| l.admits(key, leased))
            && (self.throttled.is_empty() || !self.throttled.contains_key(&(queue.to_string(), key.to_string())))
    }

    fn rate(&self, bucket: &Bucket) -> Option<Rate> {
        let l = self.limits.get(&bucket.0)?;
        if bucket.1.is_empty() {
            l.queue_rate
        } else {
            l.rate_of(&bucket.1)
        }
    }

    /// Starts `bucket` allows at `now` (`u32::MAX`: no rate).
    pub(super) fn allowance(&self, bucket: &Bucket, now: TimeMs) -> u32 {
        match self.rate(bucket) {
            Some(r) => r.allowance(self.buckets.get(bucket).copied().unwrap_or(0), now),
            None => u32::MAX,
        }
    }

    /// Decide again whether `bucket` is throttled at `now`, and offer or withdraw its key's heads.
    fn rethrottle(&mut self, bucket: &Bucket, now: TimeMs) {
        let until = match (self.rate(bucket), self.buckets.get(bucket)) {
            (Some(r), Some(tat)) if r.allowance(*tat, now) == 0 => Some(r.next_start(*tat)),
            _ => None,
        };
        let before = match until {
            Some(t) => self.throttled.insert(bucket.clone(), t),
            None => self.throttled.remove(bucket),
        };
        if before == until {
            return;
        }
        if let Some(t) = before {
            self.wakes.remove(&(t, bucket.clone()));
        }
        if let Some(t) = until {
            self.wakes.insert((t, bucket.clone()));
        }
        let (queue, key) = bucket;
        if !key.is_empty() && before.is_some() != until.is_some() {
            let room = self.room(queue, key, self.leased(queue, key));
            if let Some(q) = self.queues.get_mut(queue) {
                for g in q.groups.values_mut() {
                    g.offer_head(key, room);
                }
            }
        }
    }

    fn put_bucket(&mut self, bucket: Bucket, tat: u64) {
        if let Some(old) = self.buckets.insert(bucket.clone(), tat) {
            self.refills.remove(&(full_at(old), bucket.clone()));
        }
        self.refills.insert((full_at(tat), bucket));
    }

    fn forget_bucket(&mut self, bucket: &Bucket) {
        if let Some(old) = self.buckets.remove(bucket) {
            self.refills.remove(&(full_at(old), bucket.clone()));
        }
    }

    /// A task of `queue` with `key` started at `now`: take a start from its queue's bucket and
    /// its key's, if they have rates. Returns the buckets to store.
    pub fn started(&mut self, queue: &str, key: Option<&str>, now: TimeMs) -> Vec<BucketChange> {
        let Some(l) = self.limits.get(queue) else { return Vec::new() };
        if !l.has_rates() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for bucket in [Some(String::new()), key.map(str::to_string)].into_iter().flatten() {
            let bucket = (queue.to_string(), bucket);
            let Some(r) = self.rate(&bucket) else { continue };
            let tat = r.take(self.buckets.get(&bucket).copied().unwrap_or(0), now);
            self.put_bucket(bucket.clone(), tat);
            self.rethrottle(&bucket, now);
            out.push((bucket, Some(tat)));
        }
        out
    }

    /// The clock reached `now`: buckets whose next start is due are no longer throttled, full
    /// ones are forgotten (returned, to delete).
    pub fn advance(&mut self, now: TimeMs) -> Vec<BucketChange> {
        while let Some((at, bucket)) = self.wakes.first().cloned() {
            if at > now {
                break;
            }
            self.rethrottle(&bucket, now);
            // A bucket stays throttled only with a later wake (never the same one again).
            self.wakes.remove(&(at, bucket));
        }
        let mut out = Vec::new();
        while let Some((at, bucket)) = self.refills.first().cloned() {
            if at > now {
                break;
            }
            self.forget_bucket(&bucket);
            out.push((bucket, None));
        }
        out
    }

    /// The earliest time a throttled bucket allows a start again.
    pub fn next_wake(&self) -> Option<TimeMs> {
        self.wakes.first().map(|(t, _)| *t)
    }

    /// When `queue`'s own bucket allows its next start, if it allows none now.
    pub fn queue_throttled_until(&self, queue: &str) -> Option<TimeMs> {
        self.throttled.get(&(queue.to_string(), String::new())).copied()
    }

    /// Keys of `queue` waiting for their rate.
    pub fn keys_throttled(&self, queue: &str) -> usize {
        self.throttled.range((queue.to_string(), String::from("\0"))..).take_while(|((q, _), _)| q == queue).count()
    }

    /// Load a stored bucket (then [`ReadyIndex::rethrottle_all`]).
    pub fn load_bucket(&mut self, bucket: Bucket, tat: u64) {
        self.put_bucket(bucket, tat);
    }

    /// Decide for every bucket whether it is throttled at `now` (after loading).
    pub fn rethrottle_all(&mut self, now: TimeMs) {
        let all: Vec<Bucket> = self.buckets.keys().cloned().collect();
        for b in all {
            self.rethrottle(&b, now);
        }
    }

    /// Every bucket (to compare with the records).
    pub fn all_buckets(&self) -> &BTreeMap<Bucket, u64> {
        &self.buckets
    }

    fn leased(&self, queue: &str, key: &str) -> u32 {
        self.queues.get(queue).and_then(|q| q.leased.get(key)).copied().unwrap_or(0)
    }

    pub fn insert(&mut self, queue: &str, caps: CapSet, rk: ReadyKey, key: Option<&str>) {
        let room = key.is_some_and(|k| self.room(queue, k, self.leased(queue, k)));
        let fair = self.is_fair(queue);
        let group = self.queues.entry(queue.to_string()).or_default().groups.entry(caps).or_default();
        if fair && group.fair.is_none() {
            group.set_fair(true);
        }
        let Some(key) = key else {
            group.open_put(rk, None);
            return;
        };
        let chain = group.chains.entry(key.to_string()).or_default();
        let old_head = chain.first().copied();
        chain.insert(rk);
        if room && old_head.is_none_or(|h| rk < h) {
            if let Some(h) = old_head {
                group.open_take(&h);
            }
            group.open_put(rk, Some(key));
        }
    }

    pub fn remove(&mut self, queue: &str, caps: &CapSet, rk: ReadyKey, key: Option<&str>) {
        let room = key.is_some_and(|k| self.room(queue, k, self.leased(queue, k)));
        let Some(q) = self.queues.get_mut(queue) else { return };
        let Some(group) = q.groups.get_mut(caps) else { return };
        group.open_take(&rk);
        if let Some(key) = key {
            if let Some(chain) = group.chains.get_mut(key) {
                let was_head = chain.first() == Some(&rk);
                chain.remove(&rk);
                if chain.is_empty() {
                    group.chains.remove(key);
                } else if was_head {
                    group.offer_head(key, room);
                }
            }
        }
        if group.is_empty() {
            q.groups.remove(caps);
        }
        if q.groups.is_empty() && q.leased.is_empty() {
            self.queues.remove(queue);
        }
    }

    /// A task with `key` was leased (`delta` 1) or its lease ended (`delta` -1).
    pub fn leased_changed(&mut self, queue: &str, key: &str, delta: i32) {
        let before = self.leased(queue, key);
        let after = before.saturating_add_signed(delta);
        let (had_room, has_room) = (self.room(queue, key, before), self.room(queue, key, after));
        let q = self.queues.entry(queue.to_string()).or_default();
        if after == 0 {
            q.leased.remove(key);
        } else {
            q.leased.insert(key.to_string(), after);
        }
        if had_room != has_room {
            for g in q.groups.values_mut() {
                g.offer_head(key, has_room);
            }
        }
        if q.groups.is_empty() && q.leased.is_empty() {
            self.queues.remove(queue);
        }
    }

    /// Replace a queue's limits at `now`, re-deciding which keys' heads are claimable. Buckets
    /// of rates that are gone are forgotten (returned, to delete); the others keep their state.
    pub fn set_limits(&mut self, queue: &str, limits: KeyLimits, now: TimeMs) -> Vec<BucketChange> {
        if !limits.fair {
            self.turns.remove(queue);
        }
        if let Some(q) = self.queues.get_mut(queue) {
            for g in q.groups.values_mut().filter(|g| g.fair.is_some() != limits.fair) {
                g.set_fair(limits.fair);
            }
        }
        if limits.is_empty() {
            self.limits.remove(queue);
        } else {
            self.limits.insert(queue.to_string(), limits);
        }
        let mine: Vec<Bucket> = self
            .buckets
            .range((queue.to_string(), String::new())..)
            .take_while(|((q, _), _)| q == queue)
            .map(|(b, _)| b.clone())
            .collect();
        let mut out = Vec::new();
        for b in mine {
            if self.rate(&b).is_none() {
                self.forget_bucket(&b);
                out.push((b.clone(), None));
            }
            self.rethrottle(&b, now);
        }
        self.reoffer_heads(queue);
        out
    }

    /// Offer or withdraw the head of every key of `queue`, as its room says now.
    fn reoffer_heads(&mut self, queue: &str) {
        let Some(q) = self.queues.get(queue) else { return };
        let keys: BTreeSet<String> = q.groups.values().flat_map(|g| g.chains.keys().cloned()).collect();
        for key in keys {
            let room = self.room(queue, &key, self.leased(queue, &key));
            if let Some(q) = self.queues.get_mut(queue) {
                for g in q.groups.values_mut() {
                    g.offer_head(&key, room);
                }
            }
        }
    }

    /// An empty index with the same limits and buckets (for rebuilding it; then
    /// [`ReadyIndex::rethrottle_all`]).
    pub fn copy_limits(&mut self, from: &ReadyIndex) {
        self.limits = from.limits.clone();
        self.turns = from.turns.clone();
        for (b, tat) in &from.buckets {
            self.put_bucket(b.clone(), *tat);
        }
    }

    fn is_fair(&self, queue: &str) -> bool {
        self.limits.get(queue).is_some_and(|l| l.fair)
    }

    /// A claim leased a task of `queue` with `key`: in a fair queue, it is the key served last.
    /// Returns whether that changed (the turn to store).
    pub fn served(&mut self, queue: &str, key: Option<&str>) -> bool {
        let key = key.unwrap_or_default();
        if !self.is_fair(queue) || self.turns.get(queue).is_some_and(|k| k == key) {
            return false;
        }
        self.turns.insert(queue.to_string(), key.to_string());
        true
    }

    /// The key fair `queue` served last.
    pub fn turn(&self, queue: &str) -> Option<&str> {
        self.turns.get(queue).map(String::as_str)
    }

    /// Load a stored turn (after the queue's limits).
    pub fn load_turn(&mut self, queue: String, key: String) {
        self.turns.insert(queue, key);
    }

    /// Every fair queue's turn (to compare with the records).
    pub fn all_turns(&self) -> &BTreeMap<String, String> {
        &self.turns
    }

    /// Every queue's limits.
    pub fn all_limits(&self) -> &BTreeMap<String, KeyLimits> {
        &self.limits
    }

    pub fn limits(&self, queue: &str) -> Option<&KeyLimits> {
        self.limits.get(queue)
    }

    /// Leased tasks per key of `queue`.
    pub fn leased_by_key(&self, queue: &str) -> Option<&BTreeMap<String, u32>> {
        self.queues.get(queue).map(|q| &q.leased)
    }

    /// Keys of `queue` with ready tasks and no room (at or over their limit, or waiting for
    /// their rate).
    pub fn keys_at_limit(&self, queue: &str) -> usize {
        let Some(q) = self.queues.get(queue) else { return 0 };
        let keys: BTreeSet<&String> = q.groups.values().flat_map(|g| g.chains.keys()).collect();
        keys.into_iter().filter(|k| !self.room(queue, k, self.leased(queue, k))).count()
    }

    /// The first `max` tasks of `queue` a claim with capabilities `caps` may take at `now`, in
    /// claim order (priority order; in a fair queue, keys round robin within a priority), taking
    /// at most as many of one key as its limit has room for and as many as the rates of the queue
    /// and the key allow.
    pub fn claimable(&self, queue: &str, caps: &[String], max: usize, now: TimeMs) -> Vec<ReadyKey> {
        let Some(q) = self.queues.get(queue) else { return Vec::new() };
        let limits = self.limits.get(queue);
        let rated = limits.is_some_and(KeyLimits::has_rates);
        let max = if rated { max.min(self.allowance(&(queue.to_string(), String::new()), now) as usize) } else { max };
        if max == 0 {
            return Vec::new();
        }
        let groups: Vec<&Group> =
            q.groups.iter().filter(|(set, _)| set.iter().all(|c| caps.contains(c))).map(|(_, g)| g).collect();
        let mut budget = KeyBudget::new(self, queue, &q.leased, rated, now);
        if limits.is_some_and(|l| l.fair) {
            return super::fair::claim_order(&groups, self.turn(queue), max, &mut budget);
        }
        // Candidates: (task, group, key); a key's next task joins when its head is taken.
        let mut next: BTreeSet<(ReadyKey, usize, Option<&str>)> = BTreeSet::new();
        for (gi, g) in groups.iter().enumerate() {
            next.extend(g.open.iter().take(max).map(|(rk, k)| (*rk, gi, k.as_deref())));
        }
        let mut out = Vec::with_capacity(max.min(next.len()));
        while out.len() < max {
            let Some((rk, gi, key)) = next.pop_first() else { break };
            if let Some(k) = key {
                if !budget.take(k) {
                    continue;
                }
                let chain = &groups[gi].chains[k];
                if let Some(after) = chain.range((Bound::Excluded(rk), Bound::Unbounded)).next() {
                    next.insert((*after, gi, key));
                }
            }
            out.push(rk);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> CapSet {
        Vec::new()
    }

    #[test]
    fn a_key_at_its_limit_is_skipped_and_returns_when_a_lease_ends() {
        let mut ix = ReadyIndex::default();
        ix.set_limits("q", KeyLimits { per_key: Some(1), ..Default::default() }, 0);
        ix.insert("q", caps(), (0, 1), Some("a"));
        ix.insert("q", caps(), (0, 2), Some("a"));
        ix.insert("q", caps(), (0, 3), Some("b"));
        ix.insert("q", caps(), (0, 4), None);
        // One of each key, then the unkeyed task.
        assert_eq!(ix.claimable("q", &[], 10, 0), vec![(0, 1), (0, 3), (0, 4)]);
        ix.remove("q", &caps(), (0, 1), Some("a"));
        ix.leased_changed("q", "a", 1);
        assert_eq!(ix.claimable("q", &[], 10, 0), vec![(0, 3), (0, 4)]);
        assert_eq!(ix.keys_at_limit("q"), 1);
        ix.leased_changed("q", "a", -1);
        assert_eq!(ix.claimable("q", &[], 10, 0), vec![(0, 2), (0, 3), (0, 4)]);
    }

    #[test]
    fn raising_a_limit_lets_a_claim_take_more_of_one_key() {
        let mut ix = ReadyIndex::default();
        for id in 1..=5 {
            ix.insert("q", caps(), (0, id), Some("a"));
        }
        ix.set_limits("q", KeyLimits { per_key: Some(2), ..Default::default() }, 0);
        assert_eq!(ix.claimable("q", &[], 10, 0), vec![(0, 1), (0, 2)]);
        ix.set_limits("q", KeyLimits { per_key: Some(0), ..Default::default() }, 0);
        assert!(ix.claimable("q", &[], 10, 0).is_empty());
        ix.set_limits("q", KeyLimits::default(), 0);
        assert_eq!(ix.claimable("q", &[], 3, 0), vec![(0, 1), (0, 2), (0, 3)]);
    }

    #[test]
    fn a_new_head_of_higher_priority_replaces_the_old_one() {
        let mut ix = ReadyIndex::default();
        ix.set_limits("q", KeyLimits { per_key: Some(1), ..Default::default() }, 0);
        ix.insert("q", caps(), (0, 1), Some("a"));
        ix.insert("q", caps(), (-5, 2), Some("a"));
        assert_eq!(ix.claimable("q", &[], 10, 0), vec![(-5, 2)]);
        ix.remove("q", &caps(), (-5, 2), Some("a"));
        assert_eq!(ix.claimable("q", &[], 10, 0), vec![(0, 1)]);
    }

    #[test]
    fn a_key_out_of_starts_waits_for_its_rate_and_the_queue_rate_caps_a_claim() {
        let mut ix = ReadyIndex::default();
        let rate = |starts| Some(Rate { starts, period_ms: 1_000 });
        ix.set_limits("q", KeyLimits { key_rate: rate(2), queue_rate: rate(3), ..Default::default() }, 0);
        for id in 1..=4 {
            ix.insert("q", caps(), (0, id), Some("a"));
        }
        ix.insert("q", caps(), (0, 5), Some("b"));
        // Two of "a" (its rate), one of "b"; the queue allows three.
        assert_eq!(ix.claimable("q", &[], 10, 0), vec![(0, 1), (0, 2), (0, 5)]);
        for (id, key) in [(1, "a"), (2, "a")] {
            ix.remove("q", &caps(), (0, id), Some(key));
            ix.started("q", Some(key), 0);
        }
        assert_eq!(ix.keys_throttled("q"), 1);
        assert_eq!(ix.claimable("q", &[], 10, 0), vec![(0, 5)]);
        assert_eq!(ix.next_wake(), Some(500));
        ix.remove("q", &caps(), (0, 5), Some("b"));
        ix.started("q", Some("b"), 0);
        assert_eq!(ix.queue_throttled_until("q"), Some(334));
        assert!(ix.claimable("q", &[], 10, 0).is_empty());
        // The queue's next start comes first, then "a"'s.
        assert!(ix.advance(334).is_empty());
        assert!(ix.claimable("q", &[], 10, 334).is_empty(), "a is still out of starts");
        // "b" took one of its two starts: its bucket is full again after half the period.
        assert_eq!(ix.advance(500), vec![(("q".to_string(), "b".to_string()), None)]);
        assert_eq!(ix.claimable("q", &[], 10, 500), vec![(0, 3)], "one start of the queue is back");
        let forgotten = ix.advance(1_001);
        assert_eq!(forgotten.len(), 2, "{forgotten:?}");
        assert!(ix.all_buckets().is_empty());
        assert_eq!(ix.claimable("q", &[], 10, 1_001), vec![(0, 3), (0, 4)]);
    }

    #[test]
    fn removing_a_rate_forgets_its_buckets_and_frees_its_keys() {
        let mut ix = ReadyIndex::default();
        let limits = KeyLimits { key_rate: Some(Rate { starts: 1, period_ms: 60_000 }), ..Default::default() };
        ix.set_limits("q", limits, 0);
        ix.insert("q", caps(), (0, 1), Some("a"));
        ix.insert("q", caps(), (0, 2), Some("a"));
        ix.remove("q", &caps(), (0, 1), Some("a"));
        ix.started("q", Some("a"), 0);
        assert!(ix.claimable("q", &[], 10, 0).is_empty());
        let forgotten = ix.set_limits("q", KeyLimits::default(), 0);
        assert_eq!(forgotten, vec![(("q".to_string(), "a".to_string()), None)]);
        assert_eq!(ix.claimable("q", &[], 10, 0), vec![(0, 2)]);
        assert_eq!(ix.next_wake(), None);
    }
}

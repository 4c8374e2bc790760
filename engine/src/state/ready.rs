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

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::key_limits::KeyLimits;

use super::indexes::{CapSet, ReadyKey};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Group {
    /// Claimable: every ready task without a key, and the head of each key with room.
    open: BTreeMap<ReadyKey, Option<String>>,
    /// Ready tasks with a key, per key, in claim order.
    chains: BTreeMap<String, BTreeSet<ReadyKey>>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.open.is_empty() && self.chains.is_empty()
    }

    /// Put the head of `key`'s chain into the claimable set (`room`) or take it out.
    fn offer_head(&mut self, key: &str, room: bool) {
        let Some(head) = self.chains.get(key).and_then(|c| c.first()).copied() else { return };
        if room {
            self.open.insert(head, Some(key.to_string()));
        } else {
            self.open.remove(&head);
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
}

impl ReadyIndex {
    fn room(&self, queue: &str, key: &str, leased: u32) -> bool {
        self.limits.get(queue).is_none_or(|l| l.admits(key, leased))
    }

    fn leased(&self, queue: &str, key: &str) -> u32 {
        self.queues.get(queue).and_then(|q| q.leased.get(key)).copied().unwrap_or(0)
    }

    pub fn insert(&mut self, queue: &str, caps: CapSet, rk: ReadyKey, key: Option<&str>) {
        let room = key.is_some_and(|k| self.room(queue, k, self.leased(queue, k)));
        let group = self.queues.entry(queue.to_string()).or_default().groups.entry(caps).or_default();
        let Some(key) = key else {
            group.open.insert(rk, None);
            return;
        };
        let chain = group.chains.entry(key.to_string()).or_default();
        let old_head = chain.first().copied();
        chain.insert(rk);
        if room && old_head.is_none_or(|h| rk < h) {
            if let Some(h) = old_head {
                group.open.remove(&h);
            }
            group.open.insert(rk, Some(key.to_string()));
        }
    }

    pub fn remove(&mut self, queue: &str, caps: &CapSet, rk: ReadyKey, key: Option<&str>) {
        let room = key.is_some_and(|k| self.room(queue, k, self.leased(queue, k)));
        let Some(q) = self.queues.get_mut(queue) else { return };
        let Some(group) = q.groups.get_mut(caps) else { return };
        group.open.remove(&rk);
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

    /// Replace a queue's limits, re-deciding which keys' heads are claimable.
    pub fn set_limits(&mut self, queue: &str, limits: KeyLimits) {
        if limits.is_empty() {
            self.limits.remove(queue);
        } else {
            self.limits.insert(queue.to_string(), limits);
        }
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

    /// An empty index with the same limits (for rebuilding it).
    pub fn copy_limits(&mut self, from: &ReadyIndex) {
        self.limits = from.limits.clone();
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

    /// Keys of `queue` with ready tasks and no room (at or over their limit).
    pub fn keys_at_limit(&self, queue: &str) -> usize {
        let Some(q) = self.queues.get(queue) else { return 0 };
        let keys: BTreeSet<&String> = q.groups.values().flat_map(|g| g.chains.keys()).collect();
        keys.into_iter().filter(|k| !self.room(queue, k, self.leased(queue, k))).count()
    }

    /// The first `max` tasks of `queue` a claim with capabilities `caps` may take, in priority
    /// order, taking at most as many of one key as its limit has room for.
    pub fn claimable(&self, queue: &str, caps: &[String], max: usize) -> Vec<ReadyKey> {
        let Some(q) = self.queues.get(queue) else { return Vec::new() };
        let groups: Vec<&Group> =
            q.groups.iter().filter(|(set, _)| set.iter().all(|c| caps.contains(c))).map(|(_, g)| g).collect();
        // Candidates: (task, group, key); a key's next task joins when its head is taken.
        let mut next: BTreeSet<(ReadyKey, usize, Option<&str>)> = BTreeSet::new();
        for (gi, g) in groups.iter().enumerate() {
            next.extend(g.open.iter().take(max).map(|(rk, k)| (*rk, gi, k.as_deref())));
        }
        let mut taken: BTreeMap<&str, u32> = BTreeMap::new();
        let mut out = Vec::with_capacity(max.min(next.len()));
        while out.len() < max {
            let Some((rk, gi, key)) = next.pop_first() else { break };
            if let Some(k) = key {
                let n = taken.entry(k).or_default();
                if !self.room(queue, k, q.leased.get(k).copied().unwrap_or(0) + *n) {
                    continue;
                }
                *n += 1;
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
        ix.set_limits("q", KeyLimits { per_key: Some(1), ..Default::default() });
        ix.insert("q", caps(), (0, 1), Some("a"));
        ix.insert("q", caps(), (0, 2), Some("a"));
        ix.insert("q", caps(), (0, 3), Some("b"));
        ix.insert("q", caps(), (0, 4), None);
        // One of each key, then the unkeyed task.
        assert_eq!(ix.claimable("q", &[], 10), vec![(0, 1), (0, 3), (0, 4)]);
        ix.remove("q", &caps(), (0, 1), Some("a"));
        ix.leased_changed("q", "a", 1);
        assert_eq!(ix.claimable("q", &[], 10), vec![(0, 3), (0, 4)]);
        assert_eq!(ix.keys_at_limit("q"), 1);
        ix.leased_changed("q", "a", -1);
        assert_eq!(ix.claimable("q", &[], 10), vec![(0, 2), (0, 3), (0, 4)]);
    }

    #[test]
    fn raising_a_limit_lets_a_claim_take_more_of_one_key() {
        let mut ix = ReadyIndex::default();
        for id in 1..=5 {
            ix.insert("q", caps(), (0, id), Some("a"));
        }
        ix.set_limits("q", KeyLimits { per_key: Some(2), ..Default::default() });
        assert_eq!(ix.claimable("q", &[], 10), vec![(0, 1), (0, 2)]);
        ix.set_limits("q", KeyLimits { per_key: Some(0), ..Default::default() });
        assert!(ix.claimable("q", &[], 10).is_empty());
        ix.set_limits("q", KeyLimits::default());
        assert_eq!(ix.claimable("q", &[], 3), vec![(0, 1), (0, 2), (0, 3)]);
    }

    #[test]
    fn a_new_head_of_higher_priority_replaces_the_old_one() {
        let mut ix = ReadyIndex::default();
        ix.set_limits("q", KeyLimits { per_key: Some(1), ..Default::default() });
        ix.insert("q", caps(), (0, 1), Some("a"));
        ix.insert("q", caps(), (-5, 2), Some("a"));
        assert_eq!(ix.claimable("q", &[], 10), vec![(-5, 2)]);
        ix.remove("q", &caps(), (-5, 2), Some("a"));
        assert_eq!(ix.claimable("q", &[], 10), vec![(0, 1)]);
    }
}

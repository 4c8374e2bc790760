//! The claim order of a fair queue: within a priority, keys take turns.
//!
//! A fair queue remembers the key it served last (its *turn*; tasks without a key count as the
//! key `""`). A claim takes, at the highest priority any key it may still take has ready, the key
//! that comes next after the turn in key order (wrapping around), takes that key's oldest task
//! and makes it the turn; then again. So a tenant with a thousand tasks queued and a tenant with
//! one alternate, whatever order they were submitted in, and a claim of `n` tasks spreads them
//! over `n` keys when it can.
//!
//! Each group (capability set) keeps its claimable entries ordered by (priority, key, task), so
//! a claim finds the keys after the turn with range lookups: it loads at most as many keys as it
//! still needs at a priority, and when it takes a key's head it follows that key's chain. Keys
//! that cannot take more within this claim (their limit or rate reached) are skipped. The work
//! is O((tasks taken + groups) · log n), whatever the number of keys.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{self, Excluded, Included, Unbounded};

use super::indexes::ReadyKey;
use super::key_budget::KeyBudget;
use super::ready::{FairEntry, Group};
use crate::task::TaskId;

/// A key's candidates at one priority: (task, group).
type Candidates = BTreeSet<(TaskId, usize)>;

/// Up to `max` tasks of a fair queue's `groups`, in claim order, starting after `turn`.
pub(super) fn claim_order<'a>(
    groups: &[&'a Group],
    turn: Option<&str>,
    max: usize,
    budget: &mut KeyBudget<'a>,
) -> Vec<ReadyKey> {
    let mut out = Vec::new();
    let mut turn: Option<String> = turn.map(str::to_string);
    // Keys whose head this claim took have their next task here (it is in no group's fair set).
    let mut later: BTreeSet<(i64, String, TaskId, usize)> = BTreeSet::new();
    let mut level: Option<i64> = None;
    while out.len() < max {
        let Some(p) = next_level(groups, &later, level) else { break };
        level = Some(p);
        let mut ring = load_ring(groups, &later, p, turn.as_deref(), max - out.len(), budget);
        let mut i = 0;
        while out.len() < max && !ring.is_empty() {
            if i >= ring.len() {
                i = 0;
            }
            let (key, cands) = &mut ring[i];
            let Some((id, gi)) = cands.pop_first() else {
                ring.remove(i);
                continue;
            };
            let key: &'a str = match groups[gi].chains.get_key_value(key.as_str()) {
                Some((k, _)) => k.as_str(),
                None => "",
            };
            if !budget.take(key) {
                ring.remove(i);
                continue;
            }
            out.push((p, id));
            turn = Some(key.to_string());
            if let Some(next) = groups[gi].chains.get(key).and_then(|c| c.range((Excluded((p, id)), Unbounded)).next())
            {
                if next.0 == p {
                    ring[i].1.insert((next.1, gi));
                } else {
                    later.insert((next.0, key.to_string(), next.1, gi));
                }
            }
            if ring[i].1.is_empty() {
                ring.remove(i);
            } else {
                i += 1;
            }
        }
    }
    out
}

/// The highest priority below `above` (a larger number) that any group or `later` holds.
fn next_level(groups: &[&Group], later: &BTreeSet<(i64, String, TaskId, usize)>, above: Option<i64>) -> Option<i64> {
    let from = above.map_or(i64::MIN, |p| p + 1);
    let in_groups =
        groups.iter().filter_map(|g| g.fair.as_ref()?.range((from, String::new(), 0)..).next().map(|e| e.0));
    let in_later = later.range((from, String::new(), 0, 0)..).next().map(|e| e.0);
    in_groups.chain(in_later).min()
}

/// Keys after the turn, or (wrapping around) up to and including it.
enum Part {
    All,
    After(String),
    UpTo(String),
}

impl Part {
    fn contains(&self, key: &str) -> bool {
        match self {
            Part::All => true,
            Part::After(t) => key > t.as_str(),
            Part::UpTo(t) => key <= t.as_str(),
        }
    }

    /// The part's entries at priority `p`, as a range of a group's fair set.
    fn bounds(&self, p: i64) -> (Bound<FairEntry>, Bound<FairEntry>) {
        let (start, end) = (Included((p, String::new(), 0)), Excluded((p + 1, String::new(), 0)));
        match self {
            Part::All => (start, end),
            Part::After(t) => (Excluded((p, t.clone(), TaskId::MAX)), end),
            Part::UpTo(t) => (start, Included((p, t.clone(), TaskId::MAX))),
        }
    }
}

/// The keys with tasks at priority `p` the claim may take, in turn order after `turn`, at most
/// `need` of them, each with its candidates at `p`.
fn load_ring<'a>(
    groups: &[&'a Group],
    later: &BTreeSet<(i64, String, TaskId, usize)>,
    p: i64,
    turn: Option<&str>,
    need: usize,
    budget: &mut KeyBudget<'a>,
) -> Vec<(String, Candidates)> {
    let parts = match turn {
        None => vec![Part::All],
        Some(t) => vec![Part::After(t.to_string()), Part::UpTo(t.to_string())],
    };
    let mut ring = Vec::new();
    for part in parts {
        let mut keys: BTreeMap<String, Candidates> = BTreeMap::new();
        for (gi, g) in groups.iter().enumerate() {
            let Some(fair) = &g.fair else { continue };
            let (mut lo, hi) = part.bounds(p);
            let mut found = 0;
            while found < need {
                let Some((_, key, _)) = fair.range((lo.clone(), hi.clone())).next() else { break };
                let key = key.clone();
                let whole = (p, key.clone(), 0)..=(p, key.clone(), TaskId::MAX);
                lo = Excluded((p, key.clone(), TaskId::MAX));
                if !admits(groups, gi, &key, budget) {
                    continue;
                }
                found += 1;
                keys.entry(key).or_default().extend(fair.range(whole).take(need).map(|e| (e.2, gi)));
            }
        }
        for (_, key, id, gi) in later.range((p, String::new(), 0, 0)..(p + 1, String::new(), 0, 0)) {
            if part.contains(key) && admits(groups, *gi, key, budget) {
                keys.entry(key.clone()).or_default().insert((*id, *gi));
            }
        }
        ring.extend(keys.into_iter().take(need - ring.len()));
        if ring.len() >= need {
            break;
        }
    }
    ring
}

/// Whether the claim may take a task of `key` (as group `gi` names it).
fn admits<'a>(groups: &[&'a Group], gi: usize, key: &str, budget: &mut KeyBudget<'a>) -> bool {
    match groups[gi].chains.get_key_value(key) {
        Some((k, _)) => budget.admits(k.as_str()),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::ready::ReadyIndex;
    use crate::key_limits::KeyLimits;

    fn fair(per_key: Option<u32>) -> KeyLimits {
        KeyLimits { fair: true, per_key, ..Default::default() }
    }

    #[test]
    fn keys_take_turns_whatever_the_submission_order() {
        let mut ix = ReadyIndex::default();
        for id in 1..=4 {
            ix.insert("q", Vec::new(), (0, id), Some("a"));
        }
        ix.insert("q", Vec::new(), (0, 5), Some("b"));
        ix.insert("q", Vec::new(), (0, 6), None);
        ix.insert("q", Vec::new(), (0, 7), Some("c"));
        // Not fair yet: oldest first.
        assert_eq!(ix.claimable("q", &[], 3, 0), vec![(0, 1), (0, 2), (0, 3)]);
        ix.set_limits("q", fair(None), 0);
        // "" (no key), a, b, c, then a again.
        assert_eq!(ix.claimable("q", &[], 6, 0), vec![(0, 6), (0, 1), (0, 5), (0, 7), (0, 2), (0, 3)]);
        // After serving "a", the next claim starts at "b".
        assert!(ix.served("q", Some("a")));
        assert!(!ix.served("q", Some("a")));
        assert_eq!(ix.claimable("q", &[], 4, 0), vec![(0, 5), (0, 7), (0, 6), (0, 1)]);
        assert_eq!(ix.claimable("q", &[], 1, 0), vec![(0, 5)]);
        ix.set_limits("q", KeyLimits::default(), 0);
        assert_eq!(ix.turn("q"), None, "turning fairness off forgets the turn");
    }

    #[test]
    fn priority_comes_before_turns_and_limits_still_hold() {
        let mut ix = ReadyIndex::default();
        ix.set_limits("q", fair(Some(1)), 0);
        ix.insert("q", Vec::new(), (0, 1), Some("a"));
        ix.insert("q", Vec::new(), (-5, 2), Some("a"));
        ix.insert("q", Vec::new(), (0, 3), Some("b"));
        ix.insert("q", Vec::new(), (0, 4), Some("b"));
        ix.insert("q", Vec::new(), (-5, 5), None);
        ix.insert("q", Vec::new(), (0, 6), None);
        // Priority 5: "" then a (its one slot); priority 0: b (one slot), then "" again.
        assert_eq!(ix.claimable("q", &[], 10, 0), vec![(-5, 5), (-5, 2), (0, 3), (0, 6)]);
    }

    #[test]
    fn a_key_spread_over_capability_groups_is_one_key() {
        let mut ix = ReadyIndex::default();
        ix.set_limits("q", fair(None), 0);
        ix.insert("q", vec!["gpu".to_string()], (0, 1), Some("a"));
        ix.insert("q", Vec::new(), (0, 2), Some("a"));
        ix.insert("q", Vec::new(), (0, 3), Some("a"));
        ix.insert("q", vec!["gpu".to_string()], (0, 4), Some("b"));
        let gpu = ["gpu".to_string()];
        assert_eq!(ix.claimable("q", &gpu, 4, 0), vec![(0, 1), (0, 4), (0, 2), (0, 3)]);
        assert_eq!(ix.claimable("q", &[], 4, 0), vec![(0, 2), (0, 3)]);
    }
}

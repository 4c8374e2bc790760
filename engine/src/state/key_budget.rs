//! What one claim may still take of each key of a queue, as it takes tasks.

use std::collections::BTreeMap;

use super::ready::ReadyIndex;
use crate::task::TimeMs;

/// What one claim may still take of each key of a queue: room under the key's limit and starts
/// its rate allows, less what the claim took so far.
pub(crate) struct KeyBudget<'a> {
    index: &'a ReadyIndex,
    queue: &'a str,
    leased: &'a BTreeMap<String, u32>,
    rated: bool,
    now: TimeMs,
    /// Per key: taken so far, and the starts its rate allows.
    taken: BTreeMap<&'a str, (u32, u32)>,
}

impl<'a> KeyBudget<'a> {
    pub fn new(
        index: &'a ReadyIndex,
        queue: &'a str,
        leased: &'a BTreeMap<String, u32>,
        rated: bool,
        now: TimeMs,
    ) -> Self {
        KeyBudget { index, queue, leased, rated, now, taken: BTreeMap::new() }
    }

    fn entry(&mut self, key: &'a str) -> (u32, u32) {
        let (index, queue, rated, now) = (self.index, self.queue, self.rated, self.now);
        *self.taken.entry(key).or_insert_with(|| {
            let allowed = if rated { index.allowance(&(queue.to_string(), key.to_string()), now) } else { u32::MAX };
            (0, allowed)
        })
    }

    /// Whether the claim may take one more task with `key` (`""`: without one).
    pub fn admits(&mut self, key: &'a str) -> bool {
        if key.is_empty() {
            return true;
        }
        let (n, allowed) = self.entry(key);
        n < allowed && self.index.room(self.queue, key, self.leased.get(key).copied().unwrap_or(0) + n)
    }

    /// Take one task with `key` if [`KeyBudget::admits`] it.
    pub fn take(&mut self, key: &'a str) -> bool {
        if !self.admits(key) {
            return false;
        }
        if !key.is_empty() {
            if let Some(e) = self.taken.get_mut(key) {
                e.0 += 1;
            }
        }
        true
    }
}

//! A queue's limits. Concurrency: how many tasks with one concurrency key may be leased at once;
//! a queue sets a limit for every key and overrides for single keys; a key with neither is
//! unlimited, and a limit of 0 holds the key's tasks back (ready, not claimable). Rates: how many
//! tasks may start per period, in the whole queue and per key (again for every key, with
//! overrides); see [`crate::rate`]. Fairness: whether claims serve the queue's keys round robin
//! within a priority instead of oldest first.
//!
//! Stored as a list of [`LimitRule`]s (one record per queue) so that later kinds of limits are new
//! variants, not new record shapes; the engine works on the resolved [`KeyLimits`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::Rejection;
use crate::flow::CONCURRENCY_KEY_BYTES_MAX;
use crate::rate::Rate;

/// Keys with an override of their own, per queue.
pub const KEY_OVERRIDES_MAX: usize = 10_000;
/// Largest limit (far above any lease count a queue can reach).
pub const KEY_LIMIT_MAX: u32 = 1_000_000;

/// One rule as stored. Append variants only: the list is part of the record format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitRule {
    /// Tasks with one key leased at once, for every key without a rule of its own.
    KeyConcurrency(u32),
    /// Tasks with this key leased at once.
    KeyConcurrencyOf(String, u32),
    /// Task starts in the whole queue.
    QueueRate(Rate),
    /// Task starts per key, for every key without a rate of its own.
    KeyRate(Rate),
    /// Task starts with this key.
    KeyRateOf(String, Rate),
    /// Serve keys round robin within a priority (tasks without a key form one more key).
    Fair,
}

/// A queue's limits, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    /// The limit of every key without an override; `None`: unlimited.
    pub per_key: Option<u32>,
    pub overrides: BTreeMap<String, u32>,
    /// Task starts in the whole queue.
    pub queue_rate: Option<Rate>,
    /// Task starts per key, for every key without a rate of its own.
    pub key_rate: Option<Rate>,
    pub key_rates: BTreeMap<String, Rate>,
    /// Claims serve keys round robin within a priority.
    pub fair: bool,
}

impl KeyLimits {
    /// The limit of `key`, `None` if it has none.
    pub fn of(&self, key: &str) -> Option<u32> {
        self.overrides.get(key).copied().or(self.per_key)
    }

    /// The rate of `key`, `None` if it has none.
    pub fn rate_of(&self, key: &str) -> Option<Rate> {
        self.key_rates.get(key).copied().or(self.key_rate)
    }

    pub fn is_empty(&self) -> bool {
        self.per_key.is_none()
            && self.overrides.is_empty()
            && self.queue_rate.is_none()
            && self.key_rate.is_none()
            && self.key_rates.is_empty()
            && !self.fair
    }

    /// Whether any start of the queue is rate limited.
    pub fn has_rates(&self) -> bool {
        self.queue_rate.is_some() || self.key_rate.is_some() || !self.key_rates.is_empty()
    }

    /// Whether one more task with `key` may be leased when `leased` are.
    pub fn admits(&self, key: &str, leased: u32) -> bool {
        self.of(key).is_none_or(|limit| leased < limit)
    }

    pub fn from_rules(rules: &[LimitRule]) -> KeyLimits {
        let mut out = KeyLimits::default();
        for r in rules {
            match r {
                LimitRule::KeyConcurrency(n) => out.per_key = Some(*n),
                LimitRule::KeyConcurrencyOf(k, n) => {
                    out.overrides.insert(k.clone(), *n);
                }
                LimitRule::QueueRate(r) => out.queue_rate = Some(*r),
                LimitRule::KeyRate(r) => out.key_rate = Some(*r),
                LimitRule::KeyRateOf(k, r) => {
                    out.key_rates.insert(k.clone(), *r);
                }
                LimitRule::Fair => out.fair = true,
            }
        }
        out
    }

    pub fn to_rules(&self) -> Vec<LimitRule> {
        let mut out: Vec<LimitRule> = self.per_key.map(LimitRule::KeyConcurrency).into_iter().collect();
        out.extend(self.overrides.iter().map(|(k, n)| LimitRule::KeyConcurrencyOf(k.clone(), *n)));
        out.extend(self.queue_rate.map(LimitRule::QueueRate));
        out.extend(self.key_rate.map(LimitRule::KeyRate));
        out.extend(self.key_rates.iter().map(|(k, r)| LimitRule::KeyRateOf(k.clone(), *r)));
        out.extend(self.fair.then_some(LimitRule::Fair));
        out
    }

    /// Refuse limits out of range, keys that no task could carry, too many overrides.
    pub fn validate(&self) -> Result<(), Rejection> {
        if self.overrides.len() > KEY_OVERRIDES_MAX || self.key_rates.len() > KEY_OVERRIDES_MAX {
            return Err(Rejection::invalid(format!("at most {KEY_OVERRIDES_MAX} keys with limits of their own")));
        }
        for r in self.queue_rate.iter().chain(&self.key_rate).chain(self.key_rates.values()) {
            r.validate()?;
        }
        for k in self.key_rates.keys() {
            validate_concurrency_key(k)?;
        }
        let limits = self.per_key.into_iter().chain(self.overrides.values().copied());
        if let Some(n) = limits.into_iter().find(|n| *n > KEY_LIMIT_MAX) {
            return Err(Rejection::invalid(format!("a key's limit must be at most {KEY_LIMIT_MAX}, got {n}")));
        }
        for k in self.overrides.keys() {
            validate_concurrency_key(k)?;
        }
        Ok(())
    }
}

/// A concurrency key: 1 to [`CONCURRENCY_KEY_BYTES_MAX`] bytes.
pub fn validate_concurrency_key(key: &str) -> Result<(), Rejection> {
    if key.is_empty() || key.len() > CONCURRENCY_KEY_BYTES_MAX {
        return Err(Rejection::invalid(format!("concurrency_key must be 1 to {CONCURRENCY_KEY_BYTES_MAX} bytes")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_and_overrides_win() {
        let rate = |starts| Rate { starts, period_ms: 1_000 };
        let l = KeyLimits {
            per_key: Some(2),
            overrides: BTreeMap::from([("big".to_string(), 5), ("off".into(), 0)]),
            queue_rate: Some(rate(100)),
            key_rate: Some(rate(10)),
            key_rates: BTreeMap::from([("big".to_string(), rate(50))]),
            fair: true,
        };
        assert_eq!(KeyLimits::from_rules(&l.to_rules()), l);
        assert_eq!((l.rate_of("big"), l.rate_of("other")), (Some(rate(50)), Some(rate(10))));
        assert_eq!((l.of("big"), l.of("off"), l.of("other")), (Some(5), Some(0), Some(2)));
        assert!(l.admits("other", 1) && !l.admits("other", 2) && !l.admits("off", 0));
        assert!(KeyLimits::default().admits("any", u32::MAX));
    }

    #[test]
    fn validate_refuses_what_no_task_could_use() {
        let too_big = KeyLimits { per_key: Some(KEY_LIMIT_MAX + 1), ..Default::default() };
        assert!(too_big.validate().is_err());
        let empty_key = KeyLimits { overrides: BTreeMap::from([(String::new(), 1)]), ..Default::default() };
        assert!(empty_key.validate().is_err());
        let no_starts = KeyLimits { key_rate: Some(Rate { starts: 0, period_ms: 1 }), ..Default::default() };
        assert!(no_starts.validate().is_err());
        let empty_rate_key = KeyLimits {
            key_rates: BTreeMap::from([(String::new(), Rate { starts: 1, period_ms: 1 })]),
            ..Default::default()
        };
        assert!(empty_rate_key.validate().is_err());
    }
}

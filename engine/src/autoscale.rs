//! Autoscaling policy: how many workers a pool wants, from what its queues and agents show.
//!
//! Pure and deterministic: the leader samples a pool's signals on an interval and asks
//! [`Autoscaler::evaluate`] for a [`Decision`], which names the rule that fired and keeps its
//! inputs, so every decision can be recorded and explained.

use serde::{Deserialize, Serialize};

use crate::task::TimeMs;

/// A pool's signals at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Signals {
    pub now_ms: TimeMs,
    /// Workers the pool has now.
    pub current: u32,
    pub ready: u64,
    pub delayed: u64,
    pub in_flight: u64,
    /// Busy lease slots / all slots of the pool's agents, 0..=1.
    pub utilization: f64,
    pub idle_agents: u32,
    /// Tasks submitted and completed per second over the last interval.
    pub arrival_per_s: f64,
    pub completion_per_s: f64,
    pub oldest_ready_age_ms: u64,
}

/// Thresholds and steps. Every bound carries its unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub min_workers: u32,
    pub max_workers: u32,
    /// Scale up when utilization is at or above this…
    pub scale_up_utilization: f64,
    /// …or when there are more than this many ready tasks per worker…
    pub scale_up_backlog_per_worker: f64,
    /// …or when the oldest ready task has waited this long.
    pub scale_up_oldest_ready_ms: u64,
    /// Scale down when utilization is at or below this and nothing is waiting.
    pub scale_down_utilization: f64,
    pub step_up: u32,
    pub step_down: u32,
    /// After any change, no scale-up for this long.
    pub cooldown_up_ms: u64,
    /// After any change, no scale-down for this long.
    pub cooldown_down_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Slow to add, slower to remove: steady fleets.
    Conservative,
    /// Quick to add in large steps, quick to remove: bursty work, latency first.
    Aggressive,
    /// Adds only under real backlog, removes quickly: cost first.
    CostOptimized,
}

impl Preset {
    pub fn policy(self) -> Policy {
        match self {
            Preset::Conservative => Policy {
                min_workers: 2,
                max_workers: 100,
                scale_up_utilization: 0.85,
                scale_up_backlog_per_worker: 10.0,
                scale_up_oldest_ready_ms: 60_000,
                scale_down_utilization: 0.25,
                step_up: 1,
                step_down: 1,
                cooldown_up_ms: 120_000,
                cooldown_down_ms: 600_000,
            },
            Preset::Aggressive => Policy {
                min_workers: 2,
                max_workers: 100,
                scale_up_utilization: 0.6,
                scale_up_backlog_per_worker: 2.0,
                scale_up_oldest_ready_ms: 5_000,
                scale_down_utilization: 0.2,
                step_up: 5,
                step_down: 2,
                cooldown_up_ms: 15_000,
                cooldown_down_ms: 120_000,
            },
            Preset::CostOptimized => Policy {
                min_workers: 2,
                max_workers: 100,
                scale_up_utilization: 0.95,
                scale_up_backlog_per_worker: 20.0,
                scale_up_oldest_ready_ms: 120_000,
                scale_down_utilization: 0.5,
                step_up: 1,
                step_down: 2,
                cooldown_up_ms: 60_000,
                cooldown_down_ms: 60_000,
            },
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Preset::Conservative.policy()
    }
}

impl Policy {
    /// Refuse a policy that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_workers > self.max_workers {
            return Err(format!("min_workers ({}) exceeds max_workers ({})", self.min_workers, self.max_workers));
        }
        if self.max_workers == 0 || self.max_workers > 10_000 {
            return Err("max_workers must be between 1 and 10000".into());
        }
        for (name, v) in [
            ("scale_up_utilization", self.scale_up_utilization),
            ("scale_down_utilization", self.scale_down_utilization),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, got {v}"));
            }
        }
        if self.scale_down_utilization >= self.scale_up_utilization {
            return Err("scale_down_utilization must be below scale_up_utilization".into());
        }
        if self.scale_up_backlog_per_worker <= 0.0 {
            return Err("scale_up_backlog_per_worker must be positive".into());
        }
        if self.step_up == 0 || self.step_down == 0 {
            return Err("step_up and step_down must be at least 1".into());
        }
        Ok(())
    }
}

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    BelowMin,
    AboveMax,
    Utilization,
    Backlog,
    OldestReady,
    Idle,
    /// A rule wanted to scale up but the up-cooldown holds.
    CooldownUp,
    /// A rule wanted to scale down but the down-cooldown holds.
    CooldownDown,
    Steady,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub at_ms: TimeMs,
    pub previous: u32,
    pub desired: u32,
    pub rule: Rule,
    pub signals: Signals,
}

/// The policy plus its memory: when it last changed the desired count.
#[derive(Debug, Clone, PartialEq)]
pub struct Autoscaler {
    pub policy: Policy,
    last_change_ms: Option<TimeMs>,
}

impl Autoscaler {
    pub fn new(policy: Policy) -> Self {
        Autoscaler { policy, last_change_ms: None }
    }

    fn cooled(&self, now: TimeMs, cooldown_ms: u64) -> bool {
        self.last_change_ms.is_none_or(|t| now >= t.saturating_add(cooldown_ms))
    }

    pub fn evaluate(&mut self, s: Signals) -> Decision {
        let p = self.policy;
        let current = s.current;
        // Rules act on the count clamped into [min, max]; the clamp alone is a decision too.
        let base = current.clamp(p.min_workers, p.max_workers);
        let per_worker = s.ready as f64 / base.max(1) as f64;
        let up_rule = if s.utilization >= p.scale_up_utilization && s.ready > 0 {
            Some(Rule::Utilization)
        } else if per_worker > p.scale_up_backlog_per_worker {
            Some(Rule::Backlog)
        } else if s.ready > 0 && s.oldest_ready_age_ms >= p.scale_up_oldest_ready_ms {
            Some(Rule::OldestReady)
        } else {
            None
        };
        let idle = s.ready == 0 && s.utilization <= p.scale_down_utilization;
        let clamp_rule = if base > current {
            Rule::BelowMin
        } else if base < current {
            Rule::AboveMax
        } else {
            Rule::Steady
        };
        let (desired, rule) = match up_rule {
            Some(_) if base >= p.max_workers => (base, clamp_rule),
            Some(rule) if self.cooled(s.now_ms, p.cooldown_up_ms) => {
                (base.saturating_add(p.step_up).min(p.max_workers), rule)
            }
            Some(_) if base == current => (base, Rule::CooldownUp),
            None if idle && base > p.min_workers => {
                if self.cooled(s.now_ms, p.cooldown_down_ms) {
                    (base.saturating_sub(p.step_down).max(p.min_workers), Rule::Idle)
                } else if base == current {
                    (base, Rule::CooldownDown)
                } else {
                    (base, clamp_rule)
                }
            }
            _ => (base, clamp_rule),
        };
        if desired != current {
            self.last_change_ms = Some(s.now_ms);
        }
        Decision { at_ms: s.now_ms, previous: current, desired, rule, signals: s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(now_ms: u64, current: u32, ready: u64, utilization: f64) -> Signals {
        Signals { now_ms, current, ready, utilization, ..Signals::default() }
    }

    #[test]
    fn presets_are_valid_and_ordered_as_named() {
        for p in [Preset::Conservative, Preset::Aggressive, Preset::CostOptimized] {
            p.policy().validate().expect("preset validates");
        }
        let (c, a) = (Preset::Conservative.policy(), Preset::Aggressive.policy());
        assert!(a.step_up > c.step_up && a.cooldown_up_ms < c.cooldown_up_ms);
        let bad = Policy { min_workers: 10, max_workers: 5, ..Policy::default() };
        assert!(bad.validate().expect_err("invalid").contains("min_workers"));
    }

    #[test]
    fn below_min_with_a_backlog_scales_past_min() {
        let mut a = Autoscaler::new(Policy { cooldown_up_ms: 0, ..Preset::Aggressive.policy() });
        let d = a.evaluate(signals(1, 0, 1_000, 0.0));
        assert_eq!((d.desired, d.rule), (7, Rule::Backlog), "min 2 plus a step of 5");
        let d = a.evaluate(signals(2, 0, 0, 0.0));
        assert_eq!((d.desired, d.rule), (2, Rule::BelowMin));
    }

    #[test]
    fn scales_up_under_a_burst_then_down_when_idle() {
        let mut a = Autoscaler::new(Preset::Aggressive.policy());
        let mut n = 2;
        let mut t = 0;
        for _ in 0..20 {
            t += 20_000;
            let d = a.evaluate(signals(t, n, 1_000, 1.0));
            n = d.desired;
        }
        assert_eq!(n, 100, "a sustained burst reaches max");
        for _ in 0..1_000 {
            t += 20_000;
            n = a.evaluate(signals(t, n, 0, 0.0)).desired;
        }
        assert_eq!(n, 2, "idle returns to min");
    }
}

//! Rate limits: at most `starts` task starts per `period_ms`, with bursts of up to `starts`.
//!
//! A token bucket kept as one number, the generic cell rate algorithm's "theoretical arrival
//! time" (`tat`, nanoseconds on the engine's clock): every start moves it one emission interval
//! `T = period / starts` later, and a start is allowed while `tat` is at most `T × (starts − 1)`
//! ahead of now. Integer arithmetic on the engine's clock only, so every replica computes the
//! same answer; a bucket whose `tat` is not ahead of now is full and need not be stored.

use serde::{Deserialize, Serialize};

use crate::command::Rejection;
use crate::task::TimeMs;

/// The most starts one rate may allow per period.
pub const RATE_STARTS_MAX: u32 = 1_000_000;
/// The longest period (31 days).
pub const RATE_PERIOD_MS_MAX: u64 = 31 * 24 * 3_600_000;

const NS_PER_MS: u64 = 1_000_000;

/// `starts` task starts per `period_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub starts: u32,
    pub period_ms: u64,
}

impl Rate {
    pub fn validate(&self) -> Result<(), Rejection> {
        if !(1..=RATE_STARTS_MAX).contains(&self.starts) {
            return Err(Rejection::invalid(format!(
                "a rate's starts must be 1 to {RATE_STARTS_MAX}, got {}",
                self.starts
            )));
        }
        if !(1..=RATE_PERIOD_MS_MAX).contains(&self.period_ms) {
            return Err(Rejection::invalid(format!(
                "a rate's period_ms must be 1 to {RATE_PERIOD_MS_MAX}, got {}",
                self.period_ms
            )));
        }
        Ok(())
    }

    /// The emission interval in nanoseconds (rounded up: never faster than the rate).
    fn interval(&self) -> u64 {
        (self.period_ms * NS_PER_MS).div_ceil(u64::from(self.starts.max(1)))
    }

    /// How far ahead of now `tat` may be for a start to be allowed.
    fn tolerance(&self) -> u64 {
        self.interval() * u64::from(self.starts.saturating_sub(1))
    }

    /// Starts allowed at `now` by a bucket at `tat` (a missing bucket: `tat` 0).
    pub fn allowance(&self, tat: u64, now: TimeMs) -> u32 {
        let now = now.saturating_mul(NS_PER_MS);
        let Some(slack) = (now + self.tolerance()).checked_sub(tat) else { return 0 };
        let n = slack / self.interval() + 1;
        n.min(u64::from(self.starts)) as u32
    }

    /// The bucket after one start at `now`.
    pub fn take(&self, tat: u64, now: TimeMs) -> u64 {
        tat.max(now.saturating_mul(NS_PER_MS)) + self.interval()
    }

    /// The first millisecond at which a bucket at `tat` allows a start.
    pub fn next_start(&self, tat: u64) -> TimeMs {
        tat.saturating_sub(self.tolerance()).div_ceil(NS_PER_MS)
    }
}

/// When a bucket at `tat` is full again (and may be forgotten): the first millisecond not before it.
pub fn full_at(tat: u64) -> TimeMs {
    tat.div_ceil(NS_PER_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_starts_then_one_per_interval() {
        let r = Rate { starts: 3, period_ms: 300 };
        let mut tat = 0;
        assert_eq!(r.allowance(tat, 1_000), 3);
        for _ in 0..3 {
            tat = r.take(tat, 1_000);
        }
        assert_eq!(r.allowance(tat, 1_000), 0);
        // One start back every 100 ms.
        assert_eq!(r.next_start(tat), 1_100);
        assert_eq!((r.allowance(tat, 1_099), r.allowance(tat, 1_100)), (0, 1));
        assert_eq!(r.allowance(tat, 1_250), 2);
        assert_eq!(r.allowance(tat, 5_000), 3, "never more than a burst");
        assert_eq!(full_at(tat), 1_300);
    }

    #[test]
    fn uneven_intervals_never_exceed_the_rate() {
        // 3 per 1 ms: an interval of 333,334 ns; in any window of 10 ms at most 3 + 30 starts.
        let r = Rate { starts: 3, period_ms: 1 };
        let (mut tat, mut started) = (0u64, 0u32);
        for now in 0..10 {
            let n = r.allowance(tat, now);
            for _ in 0..n {
                tat = r.take(tat, now);
            }
            started += n;
        }
        assert!(started <= 3 + 30, "{started}");
        // Rounding the interval up costs at most one start per step of the clock.
        assert!(started >= 3 + 9 * 2, "{started}");
    }

    #[test]
    fn validate_refuses_empty_and_huge_rates() {
        assert!(Rate { starts: 0, period_ms: 1 }.validate().is_err());
        assert!(Rate { starts: 1, period_ms: 0 }.validate().is_err());
        assert!(Rate { starts: RATE_STARTS_MAX + 1, period_ms: 1 }.validate().is_err());
        assert!(Rate { starts: 1, period_ms: RATE_PERIOD_MS_MAX + 1 }.validate().is_err());
        assert!(Rate { starts: RATE_STARTS_MAX, period_ms: RATE_PERIOD_MS_MAX }.validate().is_ok());
    }
}

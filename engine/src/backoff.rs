//! Retry backoff: exponential with deterministic jitter.
//!
//! Every replica must compute the same retry time, so jitter comes from a hash of the task id and
//! attempt number instead of a random source.

use crate::task::TaskId;

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Delay before retry number `attempt` (1-based: the delay after the first failed attempt is
/// `retry_backoff_ms(id, 1, ..)`).
///
/// The exponential part is `base * 2^(attempt-1)` capped at `max`; the result is "equal jitter":
/// half of it fixed, the other half scaled by a hash `h` of (task, attempt) as `h / 2^64`, in
/// [0, 1). Integer arithmetic only: every replica on every target computes the same value.
pub fn retry_backoff_ms(task_id: TaskId, attempt: u32, base_ms: u64, max_ms: u64) -> u64 {
    if base_ms == 0 {
        return 0;
    }
    let shift = attempt.saturating_sub(1).min(40);
    let exp = base_ms.saturating_mul(1u64 << shift).min(max_ms);
    let half = exp / 2;
    let h = mix64(task_id ^ ((attempt as u64) << 48));
    half + (((exp - half) as u128 * h as u128) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_deterministic_bounded_and_grows() {
        for id in 1..200u64 {
            let mut prev_cap = 0;
            for attempt in 1..12 {
                let d = retry_backoff_ms(id, attempt, 1_000, 60_000);
                assert_eq!(d, retry_backoff_ms(id, attempt, 1_000, 60_000));
                let cap = (1_000u64 << (attempt - 1)).min(60_000);
                assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d} not in [{}, {cap}]", cap / 2);
                assert!(cap >= prev_cap);
                prev_cap = cap;
            }
        }
        assert_eq!(retry_backoff_ms(7, 3, 0, 0), 0);
        // Huge attempt numbers saturate at the cap instead of overflowing.
        assert!(retry_backoff_ms(7, u32::MAX, 1_000, 5_000) <= 5_000);
    }

    /// The jitter is exactly `floor(span * h / 2^64)` at every magnitude, which floating point
    /// (53-bit mantissa) does not give for spans beyond 2^53.
    #[test]
    fn backoff_is_exact_integer_arithmetic() {
        for id in 1..2_000u64 {
            for (base, max) in [(1_000, 60_000), (1 << 60, u64::MAX), (u64::MAX / 3, u64::MAX), (3, 7)] {
                for attempt in [1, 2, 5] {
                    let exp = base.saturating_mul(1u64 << (attempt - 1)).min(max);
                    let half = exp / 2;
                    let h = mix64(id ^ ((attempt as u64) << 48));
                    let want = half + (((exp - half) as u128 * h as u128) >> 64) as u64;
                    assert_eq!(retry_backoff_ms(id, attempt, base, max), want, "id {id} base {base} attempt {attempt}");
                }
            }
        }
    }

    #[test]
    fn jitter_spreads_tasks() {
        let ds: std::collections::BTreeSet<u64> =
            (1..100u64).map(|id| retry_backoff_ms(id, 4, 1_000, 60_000)).collect();
        assert!(ds.len() > 90, "jitter should spread retries, got {} distinct", ds.len());
    }
}

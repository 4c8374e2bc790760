//! The time a leader stamps into the log entries it proposes.
//!
//! The engine's clock is the largest time any applied entry carried, so one proposal stamped with
//! a wrong wall clock moves it for good: a clock stepped forward by X (an NTP step, a VM resumed)
//! would expire every lease and fire every timer X early, and once corrected the engine would sit
//! X ahead with nothing expiring until real time caught up.
//!
//! So a node does not stamp its wall clock as it reads it. It keeps a line of real time: anchored
//! when the process starts (at its wall clock, or at the engine's clock if that is ahead — the
//! node was last run with a clock ahead of this one) and advanced by the monotonic clock, which
//! steps of the wall clock do not move. A proposal carries the wall clock kept within
//! [line, line + `clock_step_max_ms`]: a wall clock behind the line (stepped back, or behind the
//! engine) gives the line, so the engine's time keeps running at the rate of real time; one ahead
//! by more than the bound gives the bound, counted in `minion_clock_clamped_total{direction}` and
//! logged. What this cannot tell apart at start is a node started with a clock ahead from one
//! restarted after downtime: the wall clock at start is believed (see docs/operations.md).

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The wall clock, milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Logged at most this often while the wall clock stays out of bounds.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

pub struct LeaderClock {
    step_max_ms: u64,
    /// Real time at `anchored`, in ms since the epoch.
    anchor_ms: u64,
    anchored: Instant,
    last_warn: Mutex<Option<Instant>>,
}

impl LeaderClock {
    /// Anchor the line now, at the wall clock or at `engine_clock` if that is ahead.
    pub fn new(step_max_ms: u64, engine_clock: u64) -> LeaderClock {
        let wall = now_ms();
        if engine_clock > wall {
            tracing::warn!(
                ahead_ms = engine_clock - wall,
                "the engine's clock is ahead of this node's wall clock (a clock stepped back, or \
                 run ahead before); engine time goes on from the engine's clock at the rate of real time"
            );
        }
        LeaderClock {
            step_max_ms,
            anchor_ms: wall.max(engine_clock),
            anchored: Instant::now(),
            last_warn: Mutex::new(None),
        }
    }

    /// The time to stamp into a proposal.
    pub fn now(&self) -> u64 {
        let wall = now_ms();
        let line = self.anchor_ms + self.anchored.elapsed().as_millis() as u64;
        let high = line + self.step_max_ms;
        if wall > high {
            self.clamped("ahead", wall - line);
            high
        } else if wall < line {
            if line - wall > self.step_max_ms {
                self.clamped("behind", line - wall);
            }
            line
        } else {
            wall
        }
    }

    fn clamped(&self, direction: &'static str, by_ms: u64) {
        metrics::counter!("minion_clock_clamped_total", "direction" => direction).increment(1);
        let mut last = self.last_warn.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                direction,
                by_ms,
                step_max_ms = self.step_max_ms,
                "this node's wall clock jumped away from real time as the monotonic clock measures it; \
                 proposals carry the bounded time instead"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_behind_the_engine_starts_from_the_engine_and_runs_at_real_time() {
        let ahead = now_ms() + 3_600_000;
        let c = LeaderClock::new(1_000, ahead);
        let first = c.now();
        assert!(first >= ahead && first < ahead + 1_000, "{first} vs {ahead}");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let later = c.now();
        assert!(later >= first + 50 && later < first + 1_000, "runs at real time: {first} → {later}");
    }

    #[test]
    fn a_wall_clock_within_bounds_is_used_as_is() {
        let c = LeaderClock::new(1_000, 0);
        let (before, t, after) = (now_ms(), c.now(), now_ms());
        assert!(before <= t && t <= after + 1);
    }
}

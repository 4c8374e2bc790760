//! Schedules: tasks created from a template at the times a cron expression (seconds resolution,
//! in a time zone) or a fixed interval names.
//!
//! A schedule fires inside the replicated state machine, at the engine's clock (the time the
//! leader stamps on each log entry): housekeeping at the start of an apply submits one task per
//! due time, so every replica creates the same tasks at the same log position and a failover can
//! neither lose nor repeat a run. Each run's task carries the idempotency key
//! `schedule:{name}:{time}` (time in epoch ms), so a run also shows where it came from.
//!
//! Runs missed while no leader was there to fire them (downtime, a long election) follow the
//! schedule's policy: [`Missed::Skip`] fires the latest due time if it is at most
//! [`SKIP_GRACE_MS`] old and skips the rest; [`Missed::CatchUp`] fires the latest `n` due times,
//! oldest first, and skips older ones.

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::command::{NewTask, Rejection};
use crate::task::{TaskId, TimeMs};

/// Under [`Missed::Skip`], a due time at most this old still fires.
pub const SKIP_GRACE_MS: u64 = 60_000;
/// Shortest interval (the resolution of cron expressions: one second).
pub const EVERY_MS_MIN: u64 = 1_000;
/// Longest interval.
pub const EVERY_MS_MAX: u64 = 366 * 86_400_000;
/// Most runs one catch-up fires.
pub const CATCH_UP_MAX: u32 = 1_000;
/// Most schedules in a cluster.
pub const SCHEDULES_MAX: usize = 10_000;
/// Longest cron expression and time-zone name.
pub const SPEC_BYTES_MAX: usize = 256;
/// Due times counted (to report how many were skipped) per firing, at most.
const COUNT_MAX: u64 = 10_000;

/// What to do with runs missed while no leader fired them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Missed {
    /// Fire the latest missed run if it is at most [`SKIP_GRACE_MS`] old; skip the others.
    #[default]
    Skip,
    /// Fire the latest `n` missed runs, oldest first; skip older ones.
    CatchUp(u32),
}

/// A schedule as a client defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ScheduleDef {
    pub name: String,
    /// A cron expression: 5 fields, or 6 with seconds first (and an optional year last).
    pub cron: Option<String>,
    /// A fixed interval, from the time the schedule was set.
    pub every_ms: Option<u64>,
    /// IANA time zone of the cron expression (default UTC).
    pub timezone: Option<String>,
    /// The task each run submits (no idempotency key, delay or run time of its own).
    pub task: NewTask,
    pub missed: Missed,
    /// A paused schedule fires nothing; resuming it fires from then on.
    pub paused: bool,
}

/// A schedule and where it stands, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub def: ScheduleDef,
    /// When it was set (the anchor of an interval).
    pub set_ms: TimeMs,
    /// Its next due time (`None`: paused, or no time left, e.g. a cron expression's last year
    /// has passed).
    pub next_ms: Option<TimeMs>,
    /// The due time of the last run fired, and its task.
    pub last_run_ms: Option<TimeMs>,
    pub last_task_id: Option<TaskId>,
    /// Runs fired, and runs skipped (counted up to 10,000 per firing).
    pub fired: u64,
    pub skipped: u64,
    /// Why the last run could not be submitted, if it could not.
    pub last_error: Option<String>,
}

enum When {
    Cron(Box<croner::Cron>, chrono_tz::Tz),
    Every(u64),
}

impl ScheduleDef {
    /// Refuse what could never fire (the template is checked by the engine, like a submit).
    pub fn validate(&self) -> Result<(), Rejection> {
        crate::config::validate_queue_name(&self.name)
            .map_err(|r| Rejection::invalid(r.message.replace("queue", "schedule")))?;
        self.when()?;
        if let Missed::CatchUp(n) = self.missed {
            if n == 0 || n > CATCH_UP_MAX {
                return Err(Rejection::invalid(format!("catch_up must be 1 to {CATCH_UP_MAX} runs")));
            }
        }
        let t = &self.task;
        if t.idempotency_key.is_some() || t.run_at_ms.is_some() || t.delay_ms.is_some() {
            return Err(Rejection::invalid(
                "a schedule's task has no idempotency_key, run_at_ms or delay_ms: each run gets its own key",
            ));
        }
        Ok(())
    }

    fn when(&self) -> Result<When, Rejection> {
        match (&self.cron, self.every_ms) {
            (Some(expr), None) => {
                if expr.len() > SPEC_BYTES_MAX {
                    return Err(Rejection::invalid(format!("cron is longer than {SPEC_BYTES_MAX} bytes")));
                }
                let cron = croner::Cron::from_str(expr)
                    .map_err(|e| Rejection::invalid(format!("cron {expr:?} is not a cron expression: {e}")))?;
                let tz = match &self.timezone {
                    None => chrono_tz::UTC,
                    Some(name) => chrono_tz::Tz::from_str(name)
                        .map_err(|_| Rejection::invalid(format!("timezone {name:?} is not an IANA time zone")))?,
                };
                Ok(When::Cron(Box::new(cron), tz))
            }
            (None, Some(ms)) => {
                if !(EVERY_MS_MIN..=EVERY_MS_MAX).contains(&ms) {
                    return Err(Rejection::invalid(format!("every_ms must be {EVERY_MS_MIN} to {EVERY_MS_MAX}")));
                }
                if self.timezone.is_some() {
                    return Err(Rejection::invalid("timezone applies to cron expressions, not to every_ms"));
                }
                Ok(When::Every(ms))
            }
            _ => Err(Rejection::invalid("a schedule has exactly one of cron and every_ms")),
        }
    }
}

impl When {
    /// The first due time after `t` (strictly), if any.
    fn after(&self, anchor: TimeMs, t: TimeMs) -> Option<TimeMs> {
        match self {
            When::Every(ms) => Some(anchor + ((t.saturating_sub(anchor)) / ms + 1) * ms),
            When::Cron(cron, tz) => {
                let at = tz.timestamp_millis_opt(i64::try_from(t).ok()?).single()?;
                let next = cron.find_next_occurrence(&at, false).ok()?;
                u64::try_from(next.with_timezone(&Utc).timestamp_millis()).ok()
            }
        }
    }

    /// The latest due time at or before `t`, not before `from`.
    fn at_or_before(&self, anchor: TimeMs, from: TimeMs, t: TimeMs) -> Option<TimeMs> {
        let found = match self {
            When::Every(ms) => anchor + (t.checked_sub(anchor)? / ms) * ms,
            When::Cron(cron, tz) => {
                let at = tz.timestamp_millis_opt(i64::try_from(t).ok()?).single()?;
                let prev = cron.find_previous_occurrence(&at, true).ok()?;
                u64::try_from(prev.with_timezone(&Utc).timestamp_millis()).ok()?
            }
        };
        (found >= from).then_some(found)
    }
}

/// A firing: the due times to run (oldest first), how many were skipped, the next due time.
#[derive(Debug, PartialEq, Eq)]
pub struct Firing {
    pub run: Vec<TimeMs>,
    pub skipped: u64,
    pub next_ms: Option<TimeMs>,
}

impl Schedule {
    pub fn new(def: ScheduleDef, now: TimeMs) -> Schedule {
        let mut s = Schedule {
            def,
            set_ms: now,
            next_ms: None,
            last_run_ms: None,
            last_task_id: None,
            fired: 0,
            skipped: 0,
            last_error: None,
        };
        s.next_ms = s.next_after(now);
        s
    }

    /// The first due time after `t`, unless paused.
    pub fn next_after(&self, t: TimeMs) -> Option<TimeMs> {
        if self.def.paused {
            return None;
        }
        self.def.when().ok()?.after(self.set_ms, t)
    }

    /// What to fire at `now` (the next due time has come).
    pub fn firing(&self, now: TimeMs) -> Firing {
        let (Some(first), Ok(when)) = (self.next_ms, self.def.when()) else {
            return Firing { run: Vec::new(), skipped: 0, next_ms: None };
        };
        let keep = match self.def.missed {
            Missed::Skip => 1,
            Missed::CatchUp(n) => n as usize,
        };
        // The latest `keep` due times in [first, now], newest first.
        let mut run = Vec::new();
        let mut t = now;
        while run.len() < keep {
            let Some(at) = when.at_or_before(self.set_ms, first, t) else { break };
            run.push(at);
            let Some(before) = at.checked_sub(1) else { break };
            t = before;
        }
        run.reverse();
        if self.def.missed == Missed::Skip {
            run.retain(|at| now - at <= SKIP_GRACE_MS);
        }
        // Due times before the ones run are skipped (counted up to COUNT_MAX).
        let oldest_run = run.first().copied().unwrap_or(now.saturating_add(1));
        let mut skipped = 0;
        let mut at = Some(first);
        while let Some(a) = at.filter(|a| *a < oldest_run && *a <= now && skipped < COUNT_MAX) {
            skipped += 1;
            at = when.after(self.set_ms, a);
        }
        Firing { run, skipped, next_ms: when.after(self.set_ms, now) }
    }

    /// The idempotency key of the run due at `at`.
    pub fn run_key(&self, at: TimeMs) -> String {
        format!("schedule:{}:{at}", self.def.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(cron: Option<&str>, every_ms: Option<u64>, missed: Missed) -> ScheduleDef {
        ScheduleDef {
            name: "s".into(),
            cron: cron.map(str::to_string),
            every_ms,
            task: NewTask { queue: "q".into(), payload: "null".into(), ..NewTask::default() },
            missed,
            ..ScheduleDef::default()
        }
    }

    #[test]
    fn an_interval_fires_on_its_grid_and_catches_up_at_most_n() {
        let s = Schedule::new(def(None, Some(1_000), Missed::CatchUp(3)), 10_500);
        assert_eq!(s.next_ms, Some(11_500));
        let f = s.firing(11_520);
        assert_eq!(f, Firing { run: vec![11_500], skipped: 0, next_ms: Some(12_500) });
        // Down from 11,500 to 16,900: six due times (11,500 to 16,500), the last three fire.
        let f = s.firing(16_900);
        assert_eq!(f, Firing { run: vec![14_500, 15_500, 16_500], skipped: 3, next_ms: Some(17_500) });
    }

    #[test]
    fn skip_fires_the_latest_run_only_within_the_grace() {
        let s = Schedule::new(def(None, Some(10_000), Missed::Skip), 0);
        assert_eq!(s.firing(30_100).run, vec![30_000]);
        assert_eq!(s.firing(30_100).skipped, 2);
        let late = s.firing(30_000 + SKIP_GRACE_MS + 1);
        assert_eq!(late.run, vec![90_000]);
        let s = Schedule::new(def(None, Some(3_600_000), Missed::Skip), 0);
        let f = s.firing(3_600_000 + SKIP_GRACE_MS + 1);
        assert_eq!((f.run.len(), f.skipped, f.next_ms), (0, 1, Some(7_200_000)));
    }

    #[test]
    fn cron_with_seconds_in_a_time_zone() {
        // 09:30:15 every day in Berlin (UTC+1 in January): 08:30:15 UTC.
        let mut d = def(Some("15 30 9 * * *"), None, Missed::Skip);
        d.timezone = Some("Europe/Berlin".into());
        let jan1 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let s = Schedule::new(d, jan1);
        assert_eq!(s.next_ms, Some(jan1 + (8 * 3_600 + 30 * 60 + 15) * 1_000));
        // Every 5 seconds, from a time inside a step.
        let s = Schedule::new(def(Some("*/5 * * * * *"), None, Missed::CatchUp(2)), jan1 + 2_300);
        assert_eq!(s.next_ms, Some(jan1 + 5_000));
        let f = s.firing(jan1 + 21_000);
        assert_eq!(f, Firing { run: vec![jan1 + 15_000, jan1 + 20_000], skipped: 2, next_ms: Some(jan1 + 25_000) });
    }

    #[test]
    fn what_could_never_fire_is_refused() {
        for (d, why) in [
            (def(None, None, Missed::Skip), "exactly one"),
            (def(Some("* * * * *"), Some(1_000), Missed::Skip), "exactly one"),
            (def(Some("61 * * * *"), None, Missed::Skip), "not a cron expression"),
            (def(None, Some(999), Missed::Skip), "every_ms"),
            (def(None, Some(1_000), Missed::CatchUp(0)), "catch_up"),
            (
                ScheduleDef { timezone: Some("Mars/Olympus".into()), ..def(Some("* * * * *"), None, Missed::Skip) },
                "IANA",
            ),
            (ScheduleDef { timezone: Some("UTC".into()), ..def(None, Some(1_000), Missed::Skip) }, "timezone"),
            (ScheduleDef { name: "a b".into(), ..def(None, Some(1_000), Missed::Skip) }, "schedule name"),
        ] {
            let err = d.validate().expect_err(why);
            assert!(err.message.contains(why), "{why}: {}", err.message);
        }
        let mut keyed = def(None, Some(1_000), Missed::Skip);
        keyed.task.idempotency_key = Some("k".into());
        assert!(keyed.validate().is_err());
    }
}

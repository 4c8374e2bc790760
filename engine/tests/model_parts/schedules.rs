//! The schedules of the state-machine model: generated definitions, and a model of each schedule
//! that enumerates its due times one by one (the engine searches backwards from the clock with
//! croner; the model steps forwards with arithmetic on the expressions it knows).

use minion_engine::schedule::{Missed, ScheduleDef};
use minion_engine::NewTask;
use proptest::prelude::*;

pub const NAMES: [&str; 2] = ["sched-a", "sched-b"];
/// Under `skip`, a missed run at most this old still fires (the documented 60 s).
const SKIP_GRACE_MS: u64 = 60_000;
/// Asia/Kolkata has been UTC+05:30 since 1945 (the model's clock is in 1970).
const KOLKATA_MS: u64 = 19_800_000;

/// Cron expressions the model knows: (expression, time zone, zone offset, period, phase); due at
/// every instant t (ms) with (t + offset) % period == phase.
const CRONS: [(&str, Option<&str>, u64, u64, u64); 3] = [
    ("*/2 * * * * *", None, 0, 2_000, 0),
    ("30 * * * * *", Some("Asia/Kolkata"), KOLKATA_MS, 60_000, 30_000),
    ("0 0 * * * *", Some("Asia/Kolkata"), KOLKATA_MS, 3_600_000, 0),
];

#[derive(Debug, Clone, Copy)]
pub enum When {
    Every(u64),
    /// An index into [`CRONS`].
    Cron(usize),
}

#[derive(Debug, Clone)]
pub struct GenSchedule {
    pub name: usize,
    pub when: When,
    pub queue: usize,
    pub priority: i32,
    pub cap: bool,
    pub max_attempts: u32,
    /// `None`: skip missed runs; `Some(n)`: catch up at most n.
    pub catch_up: Option<u32>,
    pub paused: bool,
}

pub fn gen_schedule() -> impl Strategy<Value = GenSchedule> {
    let when = prop_oneof![
        prop::sample::select(vec![1_000u64, 1_700, 2_500]).prop_map(When::Every),
        (0..CRONS.len()).prop_map(When::Cron),
    ];
    (
        0..NAMES.len(),
        when,
        0..2usize,
        -1..2i32,
        any::<bool>(),
        1..3u32,
        prop::option::of(1..4u32),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(name, when, queue, priority, cap, max_attempts, catch_up, paused)| GenSchedule {
            name,
            when,
            queue,
            priority,
            cap,
            max_attempts,
            catch_up,
            paused,
        })
}

impl GenSchedule {
    pub fn def(&self, queue: &str, cap: &str) -> ScheduleDef {
        let (cron, timezone, every_ms) = match self.when {
            When::Every(ms) => (None, None, Some(ms)),
            When::Cron(i) => (Some(CRONS[i].0.to_string()), CRONS[i].1.map(str::to_string), None),
        };
        ScheduleDef {
            name: NAMES[self.name].to_string(),
            cron,
            every_ms,
            timezone,
            task: self.template(queue, cap),
            missed: self.catch_up.map_or(Missed::Skip, Missed::CatchUp),
            paused: self.paused,
        }
    }

    pub fn template(&self, queue: &str, cap: &str) -> NewTask {
        NewTask {
            queue: queue.to_string(),
            kind: "scheduled".into(),
            payload: "null".into(),
            capabilities: if self.cap { vec![cap.to_string()] } else { vec![] },
            priority: self.priority,
            max_attempts: Some(self.max_attempts),
            ..NewTask::default()
        }
    }
}

/// One schedule as the model sees it.
#[derive(Debug, Clone)]
pub struct MSchedule {
    pub gen: GenSchedule,
    set_ms: u64,
    pub next: Option<u64>,
    pub last_run: Option<u64>,
    pub last_task: Option<u64>,
    pub fired: u64,
    pub skipped: u64,
}

impl MSchedule {
    /// Set at `now`; a replaced schedule's counts and last run carry over.
    pub fn new(gen: GenSchedule, now: u64, old: Option<&MSchedule>) -> MSchedule {
        let mut s = MSchedule {
            gen,
            set_ms: now,
            next: None,
            last_run: old.and_then(|o| o.last_run),
            last_task: old.and_then(|o| o.last_task),
            fired: old.map_or(0, |o| o.fired),
            skipped: old.map_or(0, |o| o.skipped),
        };
        s.next = s.after(now);
        s
    }

    /// The first due time after `t`.
    fn after(&self, t: u64) -> Option<u64> {
        if self.gen.paused {
            return None;
        }
        Some(match self.gen.when {
            When::Every(ms) => self.set_ms + ((t - self.set_ms) / ms + 1) * ms,
            When::Cron(i) => {
                let (_, _, offset, period, phase) = CRONS[i];
                let x = t + 1;
                x + (phase + period - (x + offset) % period) % period
            }
        })
    }

    /// The due times to fire at `now` (the next one has come), oldest first; counts the skipped
    /// ones and moves the next due time past `now`.
    pub fn fire(&mut self, now: u64) -> Vec<u64> {
        let mut due = Vec::new();
        let mut t = self.next;
        while let Some(at) = t.filter(|at| *at <= now) {
            due.push(at);
            t = self.after(at);
        }
        let total = due.len();
        let keep = self.gen.catch_up.unwrap_or(1) as usize;
        let mut run = due.split_off(total.saturating_sub(keep));
        if self.gen.catch_up.is_none() {
            run.retain(|at| now - at <= SKIP_GRACE_MS);
        }
        self.skipped += (total - run.len()) as u64;
        self.next = t;
        run
    }
}

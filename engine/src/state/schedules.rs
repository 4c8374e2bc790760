//! Schedules in the state machine: set and delete them, and fire the due ones in housekeeping
//! (see [`crate::schedule`]).

use super::{Fail, State, Step};
use crate::command::{NewTask, Outcome, RejectCode, Rejection};
use crate::record::{Key, Record};
use crate::schedule::{Schedule, ScheduleDef, SCHEDULES_MAX};
use crate::store::Cold;
use crate::task::TimeMs;

/// Runs fired per applied entry at most; the rest fire on the next one.
const FIRES_PER_ENTRY_MAX: usize = 100;

fn no_schedule(name: &str) -> Fail {
    Fail::Reject(Rejection::new(RejectCode::NotFound, format!("no schedule {name}")))
}

impl State {
    /// Create or replace a schedule. A replaced one keeps its counters and last run, and its
    /// times start again from now (an interval is anchored at the time it was set).
    pub(super) fn put_schedule(&mut self, def: &ScheduleDef) -> Step<Outcome> {
        def.validate()?;
        self.validate_new(&def.task).map_err(|r| Rejection::new(r.code, format!("task: {}", r.message)))?;
        if !self.schedules.contains_key(&def.name) && self.schedules.len() >= SCHEDULES_MAX {
            return Err(Fail::Reject(Rejection::invalid(format!("at most {SCHEDULES_MAX} schedules"))));
        }
        let mut s = Schedule::new(def.clone(), self.meta.clock);
        if let Some(old) = self.schedules.get(&def.name) {
            s.last_run_ms = old.last_run_ms;
            s.last_task_id = old.last_task_id;
            s.fired = old.fired;
            s.skipped = old.skipped;
            s.last_error = old.last_error.clone();
        }
        self.store_schedule(s);
        Ok(Outcome::Done)
    }

    pub(super) fn delete_schedule(&mut self, name: &str) -> Step<Outcome> {
        let Some(old) = self.schedules.remove(name) else { return Err(no_schedule(name)) };
        if let Some(at) = old.next_ms {
            self.schedule_due.remove(&(at, name.to_string()));
        }
        self.pending.delete(Key::Schedule(name.to_string()));
        Ok(Outcome::Done)
    }

    /// Put a schedule in RAM, its due-time index and the records.
    fn store_schedule(&mut self, s: Schedule) {
        let name = s.def.name.clone();
        if let Some(at) = self.schedules.get(&name).and_then(|old| old.next_ms) {
            self.schedule_due.remove(&(at, name.clone()));
        }
        if let Some(at) = s.next_ms {
            self.schedule_due.insert((at, name.clone()));
        }
        self.pending.put(Record::Schedule(Box::new(s.clone())));
        self.schedules.insert(name, s);
    }

    /// Load a stored schedule.
    pub(super) fn load_schedule(&mut self, s: Schedule) {
        if let Some(at) = s.next_ms {
            self.schedule_due.insert((at, s.def.name.clone()));
        }
        self.schedules.insert(s.def.name.clone(), s);
    }

    /// The earliest time a schedule is due.
    pub(super) fn next_schedule_due(&self) -> Option<TimeMs> {
        self.schedule_due.first().map(|(at, _)| *at)
    }

    /// Fire the schedules due at the clock: one task per due time the schedule's policy runs.
    pub(super) fn fire_schedules(&mut self, cold: &dyn Cold) -> Step<()> {
        let now = self.meta.clock;
        let mut fired = 0;
        while fired < FIRES_PER_ENTRY_MAX && self.meta.restoring.is_none() {
            let Some((at, name)) = self.schedule_due.first().cloned() else { break };
            if at > now {
                break;
            }
            let mut s = self.schedules[&name].clone();
            let firing = s.firing(now);
            let room = FIRES_PER_ENTRY_MAX - fired;
            let (run, rest) = firing.run.split_at(firing.run.len().min(room));
            for t in run {
                let task = NewTask { idempotency_key: Some(s.run_key(*t)), ..s.def.task.clone() };
                match self.submit(std::slice::from_ref(&task), &[], None, cold) {
                    Ok(Outcome::Submitted(out)) => {
                        s.last_task_id = out.first().map(|o| o.id);
                        s.last_error = None;
                    }
                    Ok(_) => {}
                    Err(Fail::Reject(r)) => s.last_error = Some(r.message),
                    Err(e) => return Err(e),
                }
                s.last_run_ms = Some(*t);
                s.fired += 1;
                fired += 1;
            }
            s.skipped += firing.skipped;
            // A long catch-up is fired in parts: the next part starts at the first time left
            // (the policy then picks exactly those again, nothing older).
            s.next_ms = rest.first().copied().or(firing.next_ms);
            self.store_schedule(s);
        }
        Ok(())
    }
}

//! The state machine: every change to tasks, queues, agents and keys happens in [`State::apply`].
//!
//! Apply is a deterministic function of (state, records, request, log index): time comes from the
//! request, ids and lease tokens from counters in [`Meta`]. RAM holds the live set (unfinished
//! tasks without payloads, with the ready, timer, lease and stall indexes over them), agents,
//! queue settings, tokens, the audit trail and per-queue counts; everything else is records read
//! through [`Cold`]. Each apply's changes come out of [`State::take_effects`] as puts and deletes
//! of typed records, which the caller must make visible to the next apply's `Cold` reads.
//!
//! The parts, one idea each: `tasks` (the task lifecycle), `agents`, `access` (tokens and the
//! audit trail), `housekeeping` (expiry and retention), `queries` (the read side), `restore`
//! (loading a backup through the log), `load` (rebuilding RAM from records), `invariants`, `warm`
//! (naming what an apply will read from disk, so the caller can read it before taking the lock).

mod access;
mod agents;
mod children;
mod fair;
mod flow;
mod housekeeping;
mod indexes;
mod invariants;
mod key_budget;
mod load;
mod queries;
mod ready;
mod restore;
mod schedules;
mod tasks;
mod warm;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::access::{AuditEntry, Token};
use crate::agent::Agent;
use crate::command::{ApplyMeta, Command, NewTask, Outcome, RejectCode, Rejection, Request, Response};
use crate::config::{limits, validate_queue_name, EngineConfig, QueueConfig};
use crate::dedup::Dedup;
use crate::events::TaskEvent;
use crate::key_limits::{KeyLimits, LimitRule};
use crate::record::{Effect, Key, Record, StateCounts, TaskRecord};
use crate::store::{Cold, ColdError, Pending};
use crate::task::{LeaseToken, TaskId, TaskState, TimeMs};

pub use queries::{
    list, task_details, task_record, task_view, LimitsView, QueueStats, TaskFilter, LIST_LIMIT_MAX, LIST_SCAN_MAX,
};
pub use restore::RESTORE_RECORDS_MAX;

use indexes::Indexes;

/// Scalar state persisted as the [`Key::Meta`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub config: EngineConfig,
    pub next_id: TaskId,
    pub next_token: LeaseToken,
    /// The largest `now_ms` applied so far; the engine's clock never runs backwards.
    pub clock: TimeMs,
    pub next_incarnation: u64,
    pub next_audit: u64,
    /// Idempotency keys in the exact store.
    pub dedup_keys: u64,
    /// A backup being loaded through the log (its restore id): other writes wait for its end.
    pub restoring: Option<String>,
    /// Records received by the restore in progress.
    pub restored_records: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            config: EngineConfig::default(),
            next_id: 1,
            next_token: 1,
            clock: 0,
            next_incarnation: 1,
            next_audit: 1,
            dedup_keys: 0,
            restoring: None,
            restored_records: 0,
        }
    }
}

/// Event counters for metrics. Local to a replica and not persisted: they restart from zero.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Transitions into each state, indexed like [`TaskState::ALL`] (submissions count as
    /// transitions into `ready` or `delayed`).
    pub transitions: [u64; TaskState::COUNT],
    pub lease_expiries: u64,
    /// Failed attempts that were scheduled for another attempt.
    pub retries: u64,
    pub retention_removed: u64,
    /// Leases released because the holder reported no progress within the stall timeout.
    pub stalls: u64,
    /// Leases released because their agent died, restarted or was deregistered.
    pub agent_releases: u64,
}

/// Why an internal step stopped: an answer to the caller, or storage failing underneath.
#[derive(Debug)]
pub(crate) enum Fail {
    Reject(Rejection),
    Cold(ColdError),
}

impl From<Rejection> for Fail {
    fn from(r: Rejection) -> Self {
        Fail::Reject(r)
    }
}

impl From<ColdError> for Fail {
    fn from(e: ColdError) -> Self {
        Fail::Cold(e)
    }
}

pub(crate) type Step<T> = Result<T, Fail>;

fn invalid(msg: impl Into<String>) -> Fail {
    Fail::Reject(Rejection::invalid(msg))
}

#[derive(Debug, Default)]
pub struct State {
    meta: Meta,
    /// Unfinished tasks (no payloads): what dispatch and expiry work on.
    live: BTreeMap<TaskId, TaskRecord>,
    idx: Indexes,
    /// Task counts per queue per state, finished ones included.
    counts: BTreeMap<String, StateCounts>,
    queues: BTreeMap<String, QueueConfig>,
    agents: BTreeMap<String, Agent>,
    /// Shared: authentication hands them to requests without copying.
    tokens: BTreeMap<String, Arc<Token>>,
    /// token id → the agent-id patterns it may act as (tokens bound to some agents only).
    token_agents: BTreeMap<String, Arc<Vec<String>>>,
    audit: BTreeMap<u64, AuditEntry>,
    schedules: BTreeMap<String, crate::schedule::Schedule>,
    /// Schedules by their next due time.
    schedule_due: BTreeSet<(TimeMs, String)>,
    dedup: Dedup,
    /// Tasks with waiters that finished in this apply, and how (settled at its end).
    settled: std::collections::VecDeque<(TaskId, TaskState)>,
    /// The earliest retention removal (the first [`Key::Retention`] record).
    retention_head: Option<TimeMs>,
    /// This apply's writes, readable before they reach `Cold`.
    pending: Pending,
    dirty_counts: BTreeSet<String>,
    meta_dirty: bool,
    /// The log index being applied (for audit entries); not part of the state.
    applying: u64,
    counters: Counters,
    /// Record [`TaskEvent`]s (someone watches); not part of the state.
    watching: bool,
    events: Vec<TaskEvent>,
}

impl State {
    /// A new, empty state (nothing on disk yet).
    pub fn new(config: EngineConfig) -> Self {
        State { meta: Meta { config, ..Meta::default() }, meta_dirty: true, ..State::default() }
    }

    /// Apply one command at the log position `meta`. The answer is `Ok` (an outcome or a
    /// rejection that changed nothing); `Err` means the records could not be read, and the
    /// caller must stop.
    pub fn apply(&mut self, req: &Request, meta: ApplyMeta, cold: &dyn Cold) -> Result<Response, ColdError> {
        self.applying = meta.log_index;
        if req.now_ms > self.meta.clock {
            self.meta.clock = req.now_ms;
            self.meta_dirty = true;
        }
        match self.advance(cold) {
            Ok(()) => {}
            Err(Fail::Cold(e)) => return Err(e),
            Err(Fail::Reject(r)) => {
                self.settle_dependents();
                return Ok(Err(r));
            }
        }
        let out = self.exec(&req.cmd, cold);
        // Finishes in this apply (the command's or housekeeping's) release or cancel dependents.
        self.settle_dependents();
        answer(out)
    }

    /// What apply changed since the last call, as puts and deletes of records. The caller writes
    /// them (and must let the next apply read them through its `Cold`).
    pub fn take_effects(&mut self) -> Vec<Effect> {
        for q in std::mem::take(&mut self.dirty_counts) {
            match self.counts.get(&q) {
                Some(c) if c.iter().any(|n| *n > 0) => self.pending.put(Record::Counts(q, *c)),
                _ => {
                    self.counts.remove(&q);
                    self.pending.delete(Key::Counts(q));
                }
            }
        }
        if std::mem::take(&mut self.meta_dirty) {
            self.pending.put(Record::Meta(self.meta.clone()));
        }
        self.pending.take()
    }

    /// Record task events from now on (`true`) or stop (`false`: none are kept).
    pub fn watch_events(&mut self, on: bool) {
        self.watching = on;
        if !on {
            self.events.clear();
        }
    }

    /// The task events of the applies since the last call (none unless watched).
    pub fn take_events(&mut self) -> Vec<TaskEvent> {
        std::mem::take(&mut self.events)
    }

    /// True when apply has written something [`State::take_effects`] has not handed out.
    pub fn has_effects(&self) -> bool {
        !self.pending.is_empty() || !self.dirty_counts.is_empty() || self.meta_dirty
    }

    fn exec(&mut self, cmd: &Command, cold: &dyn Cold) -> Step<Outcome> {
        if let Some(id) = &self.meta.restoring {
            let allowed = matches!(
                cmd,
                Command::RestoreBegin { .. }
                    | Command::RestoreRecords { .. }
                    | Command::RestoreEnd { .. }
                    | Command::Tick
                    | Command::Configure { .. }
                    | Command::Audited { .. }
                    | Command::AuditNote { .. }
                    | Command::Batch { .. }
            );
            if !allowed {
                return Err(Fail::Reject(Rejection::new(
                    RejectCode::WrongState,
                    format!("a backup is being restored (restore {id}); writes wait until it ends"),
                )));
            }
        }
        match cmd {
            Command::Submit { tasks } => self.submit(tasks, &[], None, cold),
            Command::SubmitTraced { tasks, trace_parent } => {
                crate::command::validate_trace_parent(trace_parent).map_err(invalid)?;
                self.submit(tasks, &[], Some(trace_parent), cold)
            }
            Command::SubmitFlow { tasks, flows, trace_parent } => {
                let flows: Vec<_> = flows.iter().map(|f| f.upgrade()).collect();
                self.submit_flow(tasks, &flows, trace_parent.as_ref(), cold)
            }
            Command::SubmitWith { tasks, flows, trace_parent } => {
                self.submit_flow(tasks, flows, trace_parent.as_ref(), cold)
            }
            Command::SetLimits { queue, rules } => self.set_limits(queue, rules),
            Command::PutSchedule { def } => self.put_schedule(def),
            Command::DeleteSchedule { name } => self.delete_schedule(name),
            Command::Reject { records } => self.reject(records, cold),
            Command::Claim { agent_id, queues, capabilities, max } => self.claim(agent_id, queues, capabilities, *max),
            Command::Progress { task_id, lease_token, percent, message } => {
                self.progress(*task_id, *lease_token, *percent, message.as_deref(), cold)
            }
            Command::Complete { task_id, lease_token, result } => {
                self.complete(*task_id, *lease_token, result.as_deref(), cold)
            }
            Command::Acknowledge { acks } => self.acknowledge(acks, cold),
            Command::Fail { task_id, lease_token, error } => self.fail(*task_id, *lease_token, error, cold),
            Command::Extend { task_id, lease_token, lease_ms } => self.extend(*task_id, *lease_token, *lease_ms, cold),
            Command::Release { task_id, lease_token } => self.release(*task_id, *lease_token, cold),
            Command::WaitChildren { task_id, lease_token } => self.wait_children(*task_id, *lease_token, cold),
            Command::Cancel { task_id, reason } => self.cancel(*task_id, reason.as_deref(), cold),
            Command::Retry { task_id } => self.retry(*task_id, cold),
            Command::SetQueue { name, config } => self.set_queue(name, config),
            Command::Configure { config } => {
                config.validate()?;
                self.meta.config = config.clone();
                self.meta_dirty = true;
                Ok(Outcome::Done)
            }
            Command::RegisterAgent { spec } => self.register_agent(spec),
            Command::DrainAgent { id } => self.drain_agent(id),
            Command::DeregisterAgent { id } => self.deregister_agent(id),
            Command::AgentsDead { agents } => self.agents_dead(agents),
            Command::ForgetAgents { agents } => self.forget_agents(agents),
            Command::Tick => Ok(Outcome::Done),
            Command::RestoreBegin { restore_id } => self.restore_begin(restore_id),
            Command::RestoreRecords { restore_id, records } => self.restore_records(restore_id, records),
            Command::RestoreEnd { restore_id, records_total, meta } => {
                self.restore_end(restore_id, *records_total, meta, cold)
            }
            Command::CreateToken { token } => self.create_token(token, &[]),
            Command::CreateBoundToken { token, agents } => self.create_token(token, agents),
            Command::RevokeToken { id } => self.revoke_token(id),
            Command::Audited { actor, cmd } => {
                let (action, target, detail) = access::audit_description(cmd)?;
                let out = self.exec(cmd, cold)?;
                self.audit_append(actor, action, &target, &detail);
                Ok(out)
            }
            Command::AuditNote { actor, action, target, detail } => {
                if action.is_empty() || action.len() > 64 {
                    return Err(invalid("an audit action must be 1 to 64 bytes"));
                }
                self.audit_append(actor, action, target, detail);
                Ok(Outcome::Done)
            }
            Command::Batch { cmds } => {
                if cmds.iter().any(|c| matches!(c, Command::Batch { .. })) {
                    return Err(invalid("batches do not nest"));
                }
                let mut outs = Vec::with_capacity(cmds.len());
                for c in cmds {
                    match self.exec(c, cold) {
                        Ok(o) => outs.push(Ok(o)),
                        Err(Fail::Reject(r)) => outs.push(Err(r)),
                        Err(e @ Fail::Cold(_)) => return Err(e),
                    }
                }
                Ok(Outcome::Batch(outs))
            }
        }
    }

    fn submit_flow(
        &mut self,
        tasks: &[NewTask],
        flows: &[crate::flow::TaskFlow],
        trace_parent: Option<&String>,
        cold: &dyn Cold,
    ) -> Step<Outcome> {
        if let Some(tp) = trace_parent {
            crate::command::validate_trace_parent(tp).map_err(invalid)?;
        }
        self.submit(tasks, flows, trace_parent, cold)
    }

    /// Replace a queue's limits (none: remove them).
    fn set_limits(&mut self, queue: &str, rules: &[LimitRule]) -> Step<Outcome> {
        validate_queue_name(queue)?;
        let limits = KeyLimits::from_rules(rules);
        limits.validate()?;
        if limits.is_empty() {
            self.pending.delete(Key::Limits(queue.to_string()));
        } else {
            self.pending.put(Record::Limits(queue.to_string(), limits.to_rules()));
        }
        if !limits.fair && self.idx.ready.turn(queue).is_some() {
            self.pending.delete(Key::Turn(queue.to_string()));
        }
        let buckets = self.idx.ready.set_limits(queue, limits, self.meta.clock);
        self.store_buckets(buckets);
        Ok(Outcome::Done)
    }

    /// Store rate buckets that changed, forget full ones.
    fn store_buckets(&mut self, changes: Vec<ready::BucketChange>) {
        for ((queue, key), tat) in changes {
            match tat {
                Some(tat) => self.pending.put(Record::Rate(queue, key, tat)),
                None => self.pending.delete(Key::Rate(queue, key)),
            }
        }
    }

    fn set_queue(&mut self, name: &str, config: &QueueConfig) -> Step<Outcome> {
        validate_queue_name(name)?;
        check_queue_config(config, &self.meta.config)?;
        if let Some(v) = config.stall_timeout_ms {
            check_lease_ms("stall_timeout_ms", v)?;
        }
        self.queues.insert(name.to_string(), config.clone());
        self.pending.put(Record::Queue(name.to_string(), config.clone()));
        Ok(Outcome::Done)
    }

    // ---- records -------------------------------------------------------------------------

    /// A record as this apply sees it (its own writes first).
    fn read(&self, cold: &dyn Cold, key: &Key) -> Step<Option<Record>> {
        Ok(self.pending.read(cold, key)?)
    }

    fn count(&mut self, queue: &str, state: TaskState, delta: i64) {
        let c = self.counts.entry(queue.to_string()).or_default();
        let slot = &mut c[state.index()];
        *slot = slot.saturating_add_signed(delta);
        self.dirty_counts.insert(queue.to_string());
    }

    /// Store a task after a change from `before` (`None`: a new task): its record under its key,
    /// the counts, the live set and its indexes, and the finished-task indexes.
    fn save(&mut self, t: TaskRecord, before: Option<&TaskRecord>) {
        if self.watching && before.is_none_or(|b| b.state != t.state) {
            self.events.push(TaskEvent::state_of(&t, before.is_none()));
        }
        self.queue_finish(&t, before);
        if let Some(b) = before {
            if b.state != t.state {
                self.count(&b.queue, b.state, -1);
                self.count(&t.queue, t.state, 1);
                self.counters.transitions[t.state.index()] += 1;
            }
            if !b.is_live() {
                // Leaving the finished set (a manual retry).
                self.pending.delete(Key::Done(b.id));
                self.pending.delete(Key::Finished(b.queue.clone(), b.state, b.id));
                if let Some(at) = b.purge_after_ms {
                    self.pending.delete(Key::Retention(at, b.id));
                }
            }
        } else {
            self.count(&t.queue, t.state, 1);
            self.counters.transitions[t.state.index()] += 1;
        }
        if t.is_live() {
            self.idx.insert(&t);
            self.pending.put(Record::Task(t.clone()));
            self.live.insert(t.id, t);
        } else {
            if before.is_some_and(|b| b.is_live()) {
                self.pending.delete(Key::Live(t.id));
            }
            self.pending.put(Record::Finished(t.queue.clone(), t.state, t.id));
            if let Some(at) = t.purge_after_ms {
                self.pending.put(Record::Retention(at, t.id));
                self.retention_head = Some(self.retention_head.map_or(at, |h| h.min(at)));
            }
            self.pending.put(Record::Task(t));
        }
    }

    /// Change a live task: take it out of its indexes, apply `f`, store it again.
    fn update<R>(&mut self, id: TaskId, f: impl FnOnce(&mut TaskRecord) -> R) -> Option<(R, TaskRecord)> {
        let mut t = self.live.remove(&id)?;
        self.idx.remove(&t);
        let before = t.clone();
        t.updated_ms = self.meta.clock;
        let r = f(&mut t);
        // Only a waiting task waits for anything (whatever took it out of `waiting`).
        if !t.state.is_waiting() {
            if let Some(flow) = t.flow.as_mut() {
                flow.unfinished.clear();
            }
        }
        let after = t.clone();
        self.save(t, Some(&before));
        Some((r, after))
    }

    fn effective_config(&self, queue: &str) -> EngineConfig {
        self.meta.config.resolve(self.queues.get(queue))
    }
}

fn answer(step: Step<Outcome>) -> Result<Response, ColdError> {
    match step {
        Ok(o) => Ok(Ok(o)),
        Err(Fail::Reject(r)) => Ok(Err(r)),
        Err(Fail::Cold(e)) => Err(e),
    }
}

fn check_capabilities(caps: &[String]) -> Result<(), Rejection> {
    if caps.len() > limits::CAPABILITIES_MAX {
        return Err(Rejection::invalid(format!("at most {} capabilities", limits::CAPABILITIES_MAX)));
    }
    for c in caps {
        if c.is_empty() || c.len() > limits::CAPABILITY_BYTES_MAX {
            return Err(Rejection::invalid(format!("capability must be 1 to {} bytes", limits::CAPABILITY_BYTES_MAX)));
        }
    }
    Ok(())
}

fn check_lease_ms(field: &str, v: u64) -> Result<(), Rejection> {
    if !(limits::LEASE_MS_MIN..=limits::LEASE_MS_MAX).contains(&v) {
        return Err(Rejection::invalid(format!(
            "{field} must be between {} and {}, got {v}",
            limits::LEASE_MS_MIN,
            limits::LEASE_MS_MAX
        )));
    }
    Ok(())
}

fn check_queue_config(c: &QueueConfig, defaults: &EngineConfig) -> Result<(), Rejection> {
    // A queue's overrides must make a valid configuration on top of the defaults.
    let mut merged = defaults.resolve(Some(c));
    // retry_max may legitimately be lowered together with retry_base; validate as one unit.
    if c.retry_base_ms.is_some() && c.retry_max_ms.is_none() && merged.retry_max_ms < merged.retry_base_ms {
        merged.retry_max_ms = merged.retry_base_ms;
    }
    merged.validate()
}

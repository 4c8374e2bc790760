//! The state machine: every change to tasks, queues and dedup keys happens in [`State::apply`].
//!
//! Apply is a deterministic function of (state, request, log index): time comes from the request,
//! ids and lease tokens from counters in the state. Indexes (ready queues, timers, lease expiries,
//! retention) are derived data, rebuilt on load and checked by [`State::validate`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::access::{clip, AuditEntry, Token, AUDIT_ENTRIES_MAX, TOKENS_MAX};
use crate::agent::{Agent, AgentStats, AgentStatus, ANY_CAPABILITY};
use crate::backoff::retry_backoff_ms;
use crate::command::{
    AgentSpec, ApplyMeta, Command, NewTask, Outcome, RejectCode, RejectedRecord, Rejection, Request, Response,
    Submitted,
};
use crate::config::{limits, validate_queue_name, EngineConfig, QueueConfig};
use crate::dedup::{Dedup, DedupEntry, DedupKey};
use crate::task::{Attempt, AttemptOutcome, Lease, LeaseToken, ProgressEvent, Task, TaskId, TaskState, TimeMs};

/// Scalar state persisted next to the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub config: EngineConfig,
    pub next_id: TaskId,
    pub next_token: LeaseToken,
    /// The largest `now_ms` applied so far; the engine's clock never runs backwards.
    pub clock: TimeMs,
    pub next_incarnation: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Meta { config: EngineConfig::default(), next_id: 1, next_token: 1, clock: 0, next_incarnation: 1 }
    }
}

/// What apply changed since the last [`State::take_dirty`]; the storage layer persists exactly this.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dirty {
    /// Tasks to write, or to delete when the state no longer has them.
    pub tasks: BTreeSet<TaskId>,
    pub dedup: BTreeSet<DedupKey>,
    pub queues: BTreeSet<String>,
    pub agents: BTreeSet<String>,
    /// Tasks whose trace context was added or removed.
    pub traces: BTreeSet<TaskId>,
    pub tokens: BTreeSet<String>,
    /// Audit entries added or dropped.
    pub audit: BTreeSet<u64>,
}

impl Dirty {
    /// Add what `other` changed to this set.
    pub fn merge(&mut self, other: Dirty) {
        self.tasks.extend(other.tasks);
        self.dedup.extend(other.dedup);
        self.queues.extend(other.queues);
        self.agents.extend(other.agents);
        self.traces.extend(other.traces);
        self.tokens.extend(other.tokens);
        self.audit.extend(other.audit);
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.dedup.is_empty()
            && self.queues.is_empty()
            && self.agents.is_empty()
            && self.traces.is_empty()
            && self.tokens.is_empty()
            && self.audit.is_empty()
    }
}

/// Priority order within a queue: higher priority first, then lower id (earlier submission).
type ReadyKey = (i64, TaskId);

fn ready_key(t: &Task) -> ReadyKey {
    (-(t.priority as i64), t.id)
}

/// Derived indexes over `tasks`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Indexes {
    ready: BTreeMap<String, BTreeSet<ReadyKey>>,
    /// Delayed and failed tasks by the time they become ready.
    timers: BTreeSet<(TimeMs, TaskId)>,
    /// Leased tasks by lease expiry.
    leases: BTreeSet<(TimeMs, TaskId)>,
    /// Leased tasks with a stall timeout, by the time they stall without progress.
    stalls: BTreeSet<(TimeMs, TaskId)>,
    /// Finished tasks by the time retention removes them.
    retention: BTreeSet<(TimeMs, TaskId)>,
    /// Task count per queue per state.
    counts: BTreeMap<String, [u64; TaskState::COUNT]>,
}

impl Indexes {
    fn insert(&mut self, t: &Task) {
        match t.state {
            TaskState::Ready => {
                self.ready.entry(t.queue.clone()).or_default().insert(ready_key(t));
            }
            TaskState::Delayed | TaskState::Failed => {
                self.timers.insert((t.run_at_ms, t.id));
            }
            TaskState::Leased => {
                if let Some(l) = &t.lease {
                    self.leases.insert((l.expires_ms, t.id));
                    if let Some(d) = l.stall_deadline_ms {
                        self.stalls.insert((d, t.id));
                    }
                }
            }
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled | TaskState::Rejected => {
                if let Some(at) = t.purge_after_ms {
                    self.retention.insert((at, t.id));
                }
            }
        }
        self.counts.entry(t.queue.clone()).or_default()[t.state.index()] += 1;
    }

    fn remove(&mut self, t: &Task) {
        match t.state {
            TaskState::Ready => {
                if let Some(set) = self.ready.get_mut(&t.queue) {
                    set.remove(&ready_key(t));
                }
            }
            TaskState::Delayed | TaskState::Failed => {
                self.timers.remove(&(t.run_at_ms, t.id));
            }
            TaskState::Leased => {
                if let Some(l) = &t.lease {
                    self.leases.remove(&(l.expires_ms, t.id));
                    if let Some(d) = l.stall_deadline_ms {
                        self.stalls.remove(&(d, t.id));
                    }
                }
            }
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled | TaskState::Rejected => {
                if let Some(at) = t.purge_after_ms {
                    self.retention.remove(&(at, t.id));
                }
            }
        }
        if let Some(c) = self.counts.get_mut(&t.queue) {
            c[t.state.index()] -= 1;
        }
    }

    /// Compare two index sets, ignoring empty containers.
    fn same_as(&self, other: &Indexes) -> bool {
        let ready = |i: &Indexes| -> BTreeMap<String, BTreeSet<ReadyKey>> {
            i.ready.iter().filter(|(_, s)| !s.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let counts = |i: &Indexes| -> BTreeMap<String, [u64; TaskState::COUNT]> {
            i.counts.iter().filter(|(_, c)| c.iter().any(|n| *n > 0)).map(|(k, v)| (k.clone(), *v)).collect()
        };
        ready(self) == ready(other)
            && counts(self) == counts(other)
            && self.timers == other.timers
            && self.leases == other.leases
            && self.stalls == other.stalls
            && self.retention == other.retention
    }
}

/// Per-queue figures for the stats API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    pub queue: String,
    pub ready: u64,
    pub delayed: u64,
    pub leased: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub dead: u64,
    pub cancelled: u64,
    /// Ingested records refused as tasks (see [`TaskState::Rejected`]).
    pub rejected: u64,
    /// Age of the longest-waiting ready task (0 when none is ready).
    pub oldest_ready_age_ms: u64,
}

/// A ledger query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub queue: Option<String>,
    pub state: Option<TaskState>,
    pub kind: Option<String>,
    /// Tasks any of whose attempts went to this agent.
    pub agent: Option<String>,
    pub created_from_ms: Option<TimeMs>,
    pub created_before_ms: Option<TimeMs>,
    /// Cursor: only tasks with a larger id.
    pub after: Option<TaskId>,
    pub limit: usize,
}

pub const LIST_LIMIT_MAX: usize = 1_000;

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

#[derive(Debug, Default)]
pub struct State {
    /// Shared with snapshots in progress: copying the map for a snapshot copies pointers, and a
    /// task changed while a snapshot holds it is copied on write (`Arc::make_mut`).
    tasks: BTreeMap<TaskId, Arc<Task>>,
    queues: BTreeMap<String, QueueConfig>,
    agents: BTreeMap<String, Agent>,
    /// The W3C trace context each traced task was submitted with.
    traces: BTreeMap<TaskId, String>,
    /// API tokens by id (revoked ones stay, marked). Shared: authentication hands them to
    /// requests without copying.
    tokens: BTreeMap<String, Arc<Token>>,
    /// The audit trail of administrative actions, by sequence number (the latest
    /// [`AUDIT_ENTRIES_MAX`] are kept).
    audit: BTreeMap<u64, AuditEntry>,
    /// The log index being applied (for audit entries); not part of the state.
    applying: u64,
    meta: Meta,
    dedup: Dedup,
    idx: Indexes,
    dirty: Dirty,
    counters: Counters,
}

fn invalid(msg: impl Into<String>) -> Rejection {
    Rejection::invalid(msg)
}

fn check_capabilities(caps: &[String]) -> Result<(), Rejection> {
    if caps.len() > limits::CAPABILITIES_MAX {
        return Err(invalid(format!("at most {} capabilities", limits::CAPABILITIES_MAX)));
    }
    for c in caps {
        if c.is_empty() || c.len() > limits::CAPABILITY_BYTES_MAX {
            return Err(invalid(format!("capability must be 1 to {} bytes", limits::CAPABILITY_BYTES_MAX)));
        }
    }
    Ok(())
}

fn check_lease_ms(field: &str, v: u64) -> Result<(), Rejection> {
    if !(limits::LEASE_MS_MIN..=limits::LEASE_MS_MAX).contains(&v) {
        return Err(invalid(format!(
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

impl State {
    pub fn new(config: EngineConfig) -> Self {
        State { meta: Meta { config, ..Meta::default() }, ..State::default() }
    }

    /// Rebuild a state from persisted parts (storage load or snapshot install).
    pub fn from_parts(
        meta: Meta,
        tasks: impl IntoIterator<Item = Arc<Task>>,
        dedup: impl IntoIterator<Item = (DedupKey, DedupEntry)>,
        queues: impl IntoIterator<Item = (String, QueueConfig)>,
        agents: impl IntoIterator<Item = Agent>,
        extras: impl IntoIterator<Item = Extra>,
    ) -> Self {
        let mut s = State { meta, ..State::default() };
        for e in extras {
            match e {
                Extra::Traces(traces) => s.traces.extend(traces),
                Extra::Tokens(tokens) => s.tokens.extend(tokens.into_iter().map(|t| (t.id.clone(), Arc::new(t)))),
                Extra::Audit(entries) => s.audit.extend(entries.into_iter().map(|e| (e.seq, e))),
            }
        }
        s.agents = agents.into_iter().map(|a| (a.id.clone(), a)).collect();
        for t in tasks {
            s.idx.insert(&t);
            s.tasks.insert(t.id, t);
        }
        for (k, e) in dedup {
            s.dedup.insert(k, e);
        }
        s.queues = queues.into_iter().collect();
        s
    }

    // ---- read side -------------------------------------------------------------------------

    pub fn meta(&self) -> &Meta {
        &self.meta
    }
    pub fn config(&self) -> &EngineConfig {
        &self.meta.config
    }
    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id).map(|t| &**t)
    }
    pub fn token(&self, id: &str) -> Option<&Token> {
        self.tokens.get(id).map(|t| &**t)
    }
    /// The shared record, for a request's identity (no copy).
    pub fn token_arc(&self, id: &str) -> Option<Arc<Token>> {
        self.tokens.get(id).cloned()
    }
    pub fn tokens(&self) -> impl Iterator<Item = &Token> {
        self.tokens.values().map(|t| &**t)
    }
    /// Audit entries with a sequence number above `after`, oldest first.
    pub fn audit_after(&self, after: u64) -> impl Iterator<Item = &AuditEntry> {
        self.audit.range(after.saturating_add(1)..).map(|(_, e)| e)
    }
    pub fn audit_entry(&self, seq: u64) -> Option<&AuditEntry> {
        self.audit.get(&seq)
    }
    /// The W3C `traceparent` the task was submitted with, if any.
    pub fn trace_parent(&self, id: TaskId) -> Option<&str> {
        self.traces.get(&id).map(String::as_str)
    }
    /// The shared record, for snapshots and the change feed (no copy).
    pub fn task_arc(&self, id: TaskId) -> Option<Arc<Task>> {
        self.tasks.get(&id).cloned()
    }
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values().map(|t| &**t)
    }
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn dedup(&self) -> &Dedup {
        &self.dedup
    }
    pub fn dedup_entry(&self, key: &DedupKey) -> Option<&DedupEntry> {
        self.dedup.get(key)
    }
    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents.get(id)
    }
    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values()
    }
    pub fn queue_config(&self, name: &str) -> Option<&QueueConfig> {
        self.queues.get(name)
    }
    pub fn queue_configs(&self) -> impl Iterator<Item = (&String, &QueueConfig)> {
        self.queues.iter()
    }
    /// Effective settings of a queue (its overrides over the engine defaults).
    pub fn effective_config(&self, queue: &str) -> EngineConfig {
        self.meta.config.resolve(self.queues.get(queue))
    }

    /// Every queue that has tasks or a configuration.
    pub fn queue_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.queues.keys().cloned().collect();
        for (q, c) in &self.idx.counts {
            if c.iter().any(|n| *n > 0) {
                names.insert(q.clone());
            }
        }
        names
    }

    pub fn queue_stats(&self, queue: &str) -> QueueStats {
        let c = self.idx.counts.get(queue).copied().unwrap_or_default();
        let now = self.meta.clock;
        let oldest = self
            .idx
            .ready
            .get(queue)
            .into_iter()
            .flatten()
            .filter_map(|(_, id)| self.tasks.get(id))
            .map(|t| t.run_at_ms)
            .min();
        QueueStats {
            queue: queue.to_string(),
            ready: c[TaskState::Ready.index()],
            delayed: c[TaskState::Delayed.index()],
            leased: c[TaskState::Leased.index()],
            succeeded: c[TaskState::Succeeded.index()],
            failed: c[TaskState::Failed.index()],
            dead: c[TaskState::Dead.index()],
            cancelled: c[TaskState::Cancelled.index()],
            rejected: c[TaskState::Rejected.index()],
            oldest_ready_age_ms: oldest.map(|t| now.saturating_sub(t)).unwrap_or(0),
        }
    }

    /// Ledger query with cursor pagination. Returns the page and the cursor for the next one.
    pub fn list(&self, f: &TaskFilter) -> (Vec<&Task>, Option<TaskId>) {
        let limit = f.limit.clamp(1, LIST_LIMIT_MAX);
        let start = f.after.map(|a| a.saturating_add(1)).unwrap_or(0);
        let mut out = Vec::new();
        let mut next = None;
        for t in self.tasks.range(start..).map(|(_, t)| &**t) {
            let keep = f.queue.as_deref().is_none_or(|q| t.queue == q)
                && f.state.is_none_or(|s| t.state == s)
                && f.kind.as_deref().is_none_or(|k| t.kind == k)
                && f.agent.as_deref().is_none_or(|a| t.attempts.iter().any(|at| at.agent_id == a))
                && f.created_from_ms.is_none_or(|from| t.created_ms >= from)
                && f.created_before_ms.is_none_or(|before| t.created_ms < before);
            if !keep {
                continue;
            }
            if out.len() == limit {
                next = out.last().map(|t: &&Task| t.id);
                break;
            }
            out.push(t);
        }
        (out, next)
    }

    /// True when a claim by an agent with `capabilities` on `queues` would lease something at `now`.
    /// Used by long-polling claims to avoid proposing claims that would come back empty.
    pub fn has_claimable(&self, queues: &[String], capabilities: &[String], now: TimeMs) -> bool {
        let due_soon = self.idx.timers.first().is_some_and(|(t, _)| *t <= now)
            || self.idx.leases.first().is_some_and(|(t, _)| *t <= now)
            || self.idx.stalls.first().is_some_and(|(t, _)| *t <= now);
        if due_soon {
            return true;
        }
        queues.iter().any(|q| {
            self.idx.ready.get(q).into_iter().flatten().take(limits::CLAIM_SCAN_MAX).any(|(_, id)| {
                self.tasks.get(id).is_some_and(|t| t.capabilities.iter().all(|c| capabilities.contains(c)))
            })
        })
    }

    /// The earliest time at which housekeeping has work: a timer, a lease expiry, a dedup expiry or
    /// a retention removal.
    pub fn next_due(&self) -> Option<TimeMs> {
        [
            self.idx.timers.first().map(|(t, _)| *t),
            self.idx.leases.first().map(|(t, _)| *t),
            self.idx.stalls.first().map(|(t, _)| *t),
            self.idx.retention.first().map(|(t, _)| *t),
            self.dedup.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- write side ------------------------------------------------------------------------

    /// Changes since the last call, for the storage layer to persist.
    pub fn take_dirty(&mut self) -> Dirty {
        std::mem::take(&mut self.dirty)
    }

    pub fn apply(&mut self, req: &Request, meta: ApplyMeta) -> Response {
        self.applying = meta.log_index;
        self.meta.clock = self.meta.clock.max(req.now_ms);
        self.advance();
        self.exec(&req.cmd)
    }

    fn exec(&mut self, cmd: &Command) -> Response {
        match cmd {
            Command::Submit { tasks } => self.submit(tasks),
            Command::SubmitTraced { tasks, trace_parent } => {
                crate::command::validate_trace_parent(trace_parent).map_err(invalid)?;
                let out = self.submit(tasks)?;
                if let Outcome::Submitted(subs) = &out {
                    for s in subs.iter().filter(|s| !s.duplicate) {
                        self.traces.insert(s.id, trace_parent.clone());
                        self.dirty.traces.insert(s.id);
                    }
                }
                Ok(out)
            }
            Command::Reject { records } => self.reject(records),
            Command::Claim { agent_id, queues, capabilities, max } => self.claim(agent_id, queues, capabilities, *max),
            Command::Progress { task_id, lease_token, percent, message } => {
                self.progress(*task_id, *lease_token, *percent, message.as_deref())
            }
            Command::Complete { task_id, lease_token, result } => {
                self.complete(*task_id, *lease_token, result.as_deref())
            }
            Command::Fail { task_id, lease_token, error } => self.fail(*task_id, *lease_token, error),
            Command::Extend { task_id, lease_token, lease_ms } => self.extend(*task_id, *lease_token, *lease_ms),
            Command::Release { task_id, lease_token } => self.release(*task_id, *lease_token),
            Command::Cancel { task_id, reason } => self.cancel(*task_id, reason.as_deref()),
            Command::Retry { task_id } => self.retry(*task_id),
            Command::SetQueue { name, config } => {
                validate_queue_name(name)?;
                check_queue_config(config, &self.meta.config)?;
                if let Some(v) = config.stall_timeout_ms {
                    check_lease_ms("stall_timeout_ms", v)?;
                }
                self.queues.insert(name.clone(), config.clone());
                self.dirty.queues.insert(name.clone());
                Ok(Outcome::Done)
            }
            Command::Configure { config } => {
                config.validate()?;
                self.meta.config = config.clone();
                Ok(Outcome::Done)
            }
            Command::RegisterAgent { spec } => self.register_agent(spec),
            Command::DrainAgent { id } => self.drain_agent(id),
            Command::DeregisterAgent { id } => self.deregister_agent(id),
            Command::AgentsDead { agents } => {
                for (id, incarnation) in agents {
                    let live = self
                        .agents
                        .get(id)
                        .is_some_and(|a| a.incarnation == *incarnation && a.status != AgentStatus::Dead);
                    if live {
                        self.agent_gone(id, AgentStatus::Dead, AttemptOutcome::AgentDead);
                    }
                }
                Ok(Outcome::Done)
            }
            Command::Tick => Ok(Outcome::Done),
            Command::Restore { image } => self.restore(image),
            Command::CreateToken { token } => {
                token.validate().map_err(invalid)?;
                if self.tokens.contains_key(&token.id) {
                    return Err(invalid(format!("token {} already exists", token.id)));
                }
                if self.tokens.len() >= TOKENS_MAX {
                    return Err(invalid(format!("at most {TOKENS_MAX} tokens; revoke and remove old ones")));
                }
                self.tokens.insert(token.id.clone(), Arc::new(token.clone()));
                self.dirty.tokens.insert(token.id.clone());
                Ok(Outcome::Done)
            }
            Command::RevokeToken { id } => {
                let now = self.meta.clock;
                let t = self
                    .tokens
                    .get_mut(id)
                    .ok_or_else(|| Rejection::new(RejectCode::NotFound, format!("no token {id}")))?;
                if t.revoked_ms.is_none() {
                    Arc::make_mut(t).revoked_ms = Some(now);
                    self.dirty.tokens.insert(id.clone());
                }
                Ok(Outcome::Done)
            }
            Command::Audited { actor, cmd } => {
                let (action, target, detail) = audit_description(cmd)?;
                let out = self.exec(cmd)?;
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
                Ok(Outcome::Batch(cmds.iter().map(|c| self.exec(c)).collect()))
            }
        }
    }

    /// Move a task through a mutation, keeping indexes and dirty set in step.
    fn update<R>(&mut self, id: TaskId, f: impl FnOnce(&mut Task) -> R) -> Option<R> {
        let t = Arc::make_mut(self.tasks.get_mut(&id)?);
        self.idx.remove(t);
        let before = t.state;
        t.updated_ms = self.meta.clock;
        let r = f(t);
        if t.state != before {
            self.counters.transitions[t.state.index()] += 1;
        }
        self.idx.insert(t);
        self.dirty.tasks.insert(id);
        Some(r)
    }

    /// Housekeeping due at the current clock: expire leases, promote due timers, expire dedup keys,
    /// remove finished tasks past retention.
    fn advance(&mut self) {
        let now = self.meta.clock;
        while let Some(&(at, id)) = self.idx.leases.first() {
            if at > now {
                break;
            }
            self.counters.lease_expiries += 1;
            self.end_attempt(id, AttemptOutcome::LeaseExpired, "lease expired".to_string());
        }
        while let Some(&(at, id)) = self.idx.stalls.first() {
            if at > now {
                break;
            }
            self.counters.stalls += 1;
            self.end_attempt(id, AttemptOutcome::Stalled, "no progress within the stall timeout".to_string());
        }
        while let Some(&(at, id)) = self.idx.timers.first() {
            if at > now {
                break;
            }
            self.update(id, |t| t.state = TaskState::Ready);
        }
        for key in self.dedup.expire(now, limits::SWEEP_PER_ENTRY_MAX) {
            self.dirty.dedup.insert(key);
        }
        let mut removed = 0;
        while let Some(&(at, id)) = self.idx.retention.first() {
            if at > now || removed == limits::SWEEP_PER_ENTRY_MAX {
                break;
            }
            if let Some(t) = self.tasks.remove(&id) {
                self.idx.remove(&t);
                self.counters.retention_removed += 1;
            }
            if self.traces.remove(&id).is_some() {
                self.dirty.traces.insert(id);
            }
            self.dirty.tasks.insert(id);
            removed += 1;
        }
    }

    fn submit(&mut self, tasks: &[NewTask]) -> Response {
        if tasks.is_empty() {
            return Err(invalid("a submission needs at least one task"));
        }
        if tasks.len() > limits::SUBMIT_BATCH_MAX {
            return Err(invalid(format!("a batch holds at most {} tasks", limits::SUBMIT_BATCH_MAX)));
        }
        // Validate everything first: the batch is atomic.
        for (i, t) in tasks.iter().enumerate() {
            self.validate_new(t).map_err(|r| {
                let prefix = if tasks.len() > 1 { format!("tasks[{i}]: ") } else { String::new() };
                Rejection::new(r.code, format!("{prefix}{}", r.message))
            })?;
        }
        let now = self.meta.clock;
        let mut out = Vec::with_capacity(tasks.len());
        for nt in tasks {
            let cfg = self.effective_config(&nt.queue);
            let key = nt.idempotency_key.as_ref().map(|k| DedupKey { queue: nt.queue.clone(), key: k.clone() });
            if let Some(key) = &key {
                if let Some(id) = self.dedup.lookup(key, now) {
                    out.push(Submitted { id, duplicate: true });
                    continue;
                }
            }
            let id = self.meta.next_id;
            self.meta.next_id += 1;
            let run_at = nt.run_at_ms.or_else(|| nt.delay_ms.map(|d| now.saturating_add(d))).unwrap_or(now);
            let max_attempts = nt.max_attempts.unwrap_or(cfg.max_attempts);
            let task = Task {
                id,
                queue: nt.queue.clone(),
                kind: nt.kind.clone(),
                payload: nt.payload.clone(),
                capabilities: nt.capabilities.clone(),
                priority: nt.priority,
                idempotency_key: nt.idempotency_key.clone(),
                max_attempts,
                attempt_limit: max_attempts,
                lease_ms: nt.lease_ms.unwrap_or(cfg.lease_ms),
                stall_timeout_ms: nt
                    .stall_timeout_ms
                    .or_else(|| self.queues.get(&nt.queue).and_then(|q| q.stall_timeout_ms)),
                state: if run_at > now { TaskState::Delayed } else { TaskState::Ready },
                created_ms: now,
                updated_ms: now,
                run_at_ms: run_at.max(now),
                lease: None,
                attempts: Vec::new(),
                progress: Vec::new(),
                progress_dropped: 0,
                result: None,
                last_error: None,
                finished_ms: None,
                purge_after_ms: None,
                cancel_reason: None,
            };
            self.insert_new(task, key, now.saturating_add(cfg.dedup_ttl_ms));
            out.push(Submitted { id, duplicate: false });
        }
        Ok(Outcome::Submitted(out))
    }

    fn audit_append(&mut self, actor: &str, action: &str, target: &str, detail: &str) {
        let seq = self.audit.keys().next_back().map_or(1, |s| s + 1);
        let entry = AuditEntry {
            seq,
            at_ms: self.meta.clock,
            actor: clip(actor),
            action: clip(action),
            target: clip(target),
            detail: clip(detail),
            log_index: self.applying,
        };
        self.audit.insert(seq, entry);
        self.dirty.audit.insert(seq);
        while self.audit.len() > AUDIT_ENTRIES_MAX {
            if let Some((old, _)) = self.audit.pop_first() {
                self.dirty.audit.insert(old);
            }
        }
    }

    /// Replace this (empty) state with a backup's. The cluster keeps its own engine defaults and
    /// its clock never runs backwards; everything else comes from the backup.
    fn restore(&mut self, image: &StateImage) -> Response {
        let pristine = self.tasks.is_empty()
            && self.meta.next_id == 1
            && self.agents.is_empty()
            && self.queues.is_empty()
            && self.dedup.is_empty();
        if !pristine {
            return Err(Rejection::new(
                RejectCode::WrongState,
                format!(
                    "a backup restores only into a cluster that has never held a task, agent or queue setting; \
                     this one has {} tasks (next id {}), {} agents and {} queue settings",
                    self.tasks.len(),
                    self.meta.next_id,
                    self.agents.len(),
                    self.queues.len()
                ),
            ));
        }
        let mut restored = State::from_image(image.clone());
        restored.validate().map_err(|v| invalid(format!("the backup is not consistent: {v}")))?;
        restored.meta.config = self.meta.config.clone();
        restored.meta.clock = restored.meta.clock.max(self.meta.clock);
        restored.counters = self.counters.clone();
        // This cluster's tokens stay valid next to the backup's, and its audit trail continues
        // after the backup's.
        for (id, t) in &self.tokens {
            restored.tokens.entry(id.clone()).or_insert_with(|| t.clone());
        }
        restored.applying = self.applying;
        for e in self.audit.values() {
            restored.audit_append(&e.actor, &e.action, &e.target, &e.detail);
        }
        let mut dirty = Dirty::default();
        dirty.tasks.extend(restored.tasks.keys().copied());
        dirty.dedup.extend(restored.dedup.iter().map(|(k, _)| k.clone()));
        dirty.queues.extend(restored.queues.keys().cloned());
        dirty.agents.extend(restored.agents.keys().cloned());
        dirty.traces.extend(restored.traces.keys().copied());
        dirty.tokens.extend(restored.tokens.keys().cloned());
        dirty.audit.extend(restored.audit.keys().copied());
        dirty.audit.extend(self.audit.keys().copied());
        restored.dirty = dirty;
        *self = restored;
        Ok(Outcome::Done)
    }

    /// Add a new task to the state and its indexes, with its idempotency key (if any) until
    /// `key_expires_ms`.
    fn insert_new(&mut self, task: Task, key: Option<DedupKey>, key_expires_ms: TimeMs) {
        let id = task.id;
        self.idx.insert(&task);
        self.counters.transitions[task.state.index()] += 1;
        self.tasks.insert(id, Arc::new(task));
        self.dirty.tasks.insert(id);
        if let Some(key) = key {
            self.dedup.insert(key.clone(), DedupEntry { task_id: id, expires_ms: key_expires_ms });
            self.dirty.dedup.insert(key);
        }
    }

    /// Record refused ingest records as `rejected` tasks, deduplicated by idempotency key like a
    /// submit (a redelivered record is recorded once).
    fn reject(&mut self, records: &[RejectedRecord]) -> Response {
        if records.is_empty() || records.len() > limits::SUBMIT_BATCH_MAX {
            return Err(invalid(format!("a rejection holds 1 to {} records", limits::SUBMIT_BATCH_MAX)));
        }
        for (i, r) in records.iter().enumerate() {
            let as_task = NewTask {
                queue: r.queue.clone(),
                kind: r.kind.clone(),
                payload: r.payload.clone(),
                idempotency_key: r.idempotency_key.clone(),
                ..NewTask::default()
            };
            self.validate_new(&as_task).map_err(|e| Rejection::new(e.code, format!("records[{i}]: {}", e.message)))?;
            if r.reason.is_empty() || r.reason.len() > limits::ERROR_BYTES_MAX {
                return Err(invalid(format!("records[{i}]: reason must be 1 to {} bytes", limits::ERROR_BYTES_MAX)));
            }
        }
        let now = self.meta.clock;
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let cfg = self.effective_config(&r.queue);
            let key = r.idempotency_key.as_ref().map(|k| DedupKey { queue: r.queue.clone(), key: k.clone() });
            if let Some(id) = key.as_ref().and_then(|k| self.dedup.lookup(k, now)) {
                out.push(Submitted { id, duplicate: true });
                continue;
            }
            let id = self.meta.next_id;
            self.meta.next_id += 1;
            let task = Task {
                id,
                queue: r.queue.clone(),
                kind: r.kind.clone(),
                payload: r.payload.clone(),
                capabilities: Vec::new(),
                priority: 0,
                idempotency_key: r.idempotency_key.clone(),
                max_attempts: 0,
                attempt_limit: 0,
                lease_ms: cfg.lease_ms,
                stall_timeout_ms: None,
                state: TaskState::Rejected,
                created_ms: now,
                updated_ms: now,
                run_at_ms: now,
                lease: None,
                attempts: Vec::new(),
                progress: Vec::new(),
                progress_dropped: 0,
                result: None,
                last_error: Some(r.reason.clone()),
                finished_ms: Some(now),
                purge_after_ms: Some(now.saturating_add(cfg.retention_ms)),
                cancel_reason: None,
            };
            self.insert_new(task, key, now.saturating_add(cfg.dedup_ttl_ms));
            out.push(Submitted { id, duplicate: false });
        }
        Ok(Outcome::Submitted(out))
    }

    fn validate_new(&self, t: &NewTask) -> Result<(), Rejection> {
        validate_queue_name(&t.queue)?;
        if t.kind.len() > limits::KIND_BYTES_MAX {
            return Err(invalid(format!("kind is longer than {} bytes", limits::KIND_BYTES_MAX)));
        }
        let cfg = self.effective_config(&t.queue);
        if t.payload.len() as u64 > cfg.payload_bytes_max {
            return Err(invalid(format!(
                "payload is {} bytes, over the limit of {} bytes",
                t.payload.len(),
                cfg.payload_bytes_max
            )));
        }
        check_capabilities(&t.capabilities)?;
        if let Some(k) = &t.idempotency_key {
            if k.is_empty() || k.len() > limits::IDEMPOTENCY_KEY_BYTES_MAX {
                return Err(invalid(format!(
                    "idempotency_key must be 1 to {} bytes",
                    limits::IDEMPOTENCY_KEY_BYTES_MAX
                )));
            }
        }
        if let Some(m) = t.max_attempts {
            if m == 0 || m > limits::ATTEMPTS_MAX {
                return Err(invalid(format!("max_attempts must be between 1 and {}", limits::ATTEMPTS_MAX)));
            }
        }
        if let Some(l) = t.lease_ms {
            check_lease_ms("lease_ms", l)?;
        }
        if let Some(l) = t.stall_timeout_ms {
            check_lease_ms("stall_timeout_ms", l)?;
        }
        if let Some(d) = t.delay_ms {
            if d > limits::TTL_MS_MAX {
                return Err(invalid(format!("delay_ms must be at most {}", limits::TTL_MS_MAX)));
            }
        }
        if let Some(r) = t.run_at_ms {
            if r > self.meta.clock.saturating_add(limits::TTL_MS_MAX) {
                return Err(invalid("run_at is more than a year ahead"));
            }
        }
        Ok(())
    }

    fn claim(&mut self, agent_id: &str, queues: &[String], caps: &[String], max: u32) -> Response {
        if agent_id.is_empty() || agent_id.len() > limits::AGENT_ID_BYTES_MAX {
            return Err(invalid(format!("agent_id must be 1 to {} bytes", limits::AGENT_ID_BYTES_MAX)));
        }
        if queues.is_empty() {
            return Err(invalid("a claim names at least one queue"));
        }
        for q in queues {
            validate_queue_name(q)?;
        }
        check_capabilities(caps)?;
        if max == 0 || max > limits::CLAIM_TASKS_MAX {
            return Err(invalid(format!("max must be between 1 and {}", limits::CLAIM_TASKS_MAX)));
        }
        // A registered agent claims with its registered capabilities, within its free slots.
        let (caps, max, incarnation) = match self.agents.get(agent_id) {
            Some(a) => match a.status {
                AgentStatus::Dead => {
                    return Err(Rejection::new(
                        RejectCode::WrongState,
                        format!("agent {agent_id} is dead; register it again to receive work"),
                    ))
                }
                AgentStatus::Draining => return Ok(Outcome::Claimed(Vec::new())),
                AgentStatus::Active => (a.capabilities.clone(), max.min(a.free_slots()), a.incarnation),
            },
            None => (caps.to_vec(), max, 0),
        };
        if max == 0 {
            return Ok(Outcome::Claimed(Vec::new()));
        }
        let caps = caps.as_slice();
        // Candidates from every named queue, merged in priority order.
        let mut candidates: Vec<ReadyKey> = Vec::new();
        let unique: BTreeSet<&String> = queues.iter().collect();
        for q in unique {
            let Some(ready) = self.idx.ready.get(q) else { continue };
            let mut found = 0;
            for key in ready.iter().take(limits::CLAIM_SCAN_MAX) {
                let ok = self.tasks.get(&key.1).is_some_and(|t| t.capabilities.iter().all(|c| caps.contains(c)));
                if ok {
                    candidates.push(*key);
                    found += 1;
                    if found == max {
                        break;
                    }
                }
            }
        }
        candidates.sort_unstable();
        candidates.truncate(max as usize);
        let now = self.meta.clock;
        let mut leased = Vec::with_capacity(candidates.len());
        for (_, id) in candidates {
            let token = self.meta.next_token;
            self.meta.next_token += 1;
            let task = self.update(id, |t| {
                let number = t.attempts.len() as u32 + 1;
                t.attempts.push(Attempt {
                    number,
                    agent_id: agent_id.to_string(),
                    lease_token: token,
                    started_ms: now,
                    ended_ms: None,
                    outcome: None,
                });
                t.lease = Some(Lease {
                    token,
                    agent_id: agent_id.to_string(),
                    incarnation,
                    expires_ms: now + t.lease_ms,
                    stall_deadline_ms: t.stall_timeout_ms.map(|s| now.saturating_add(s)),
                });
                t.state = TaskState::Leased;
                t.clone()
            });
            leased.extend(task);
        }
        if incarnation != 0 && !leased.is_empty() {
            if let Some(a) = self.agents.get_mut(agent_id) {
                a.stats.in_flight += leased.len() as u32;
                self.dirty.agents.insert(agent_id.to_string());
            }
        }
        Ok(Outcome::Claimed(leased))
    }

    /// The task, if `token` is its current lease.
    fn check_lease(&self, id: TaskId, token: LeaseToken) -> Result<&Task, Rejection> {
        let t = self.tasks.get(&id).ok_or_else(|| Rejection::not_found(id))?;
        match &t.lease {
            Some(l) if t.state == TaskState::Leased && l.token == token => Ok(t),
            _ if t.state.is_terminal() => {
                Err(Rejection::new(RejectCode::WrongState, format!("task {id} is already {}", t.state.as_str())))
            }
            _ => Err(Rejection::new(
                RejectCode::StaleLease,
                format!("lease token {token} is not the current lease of task {id} (task is {})", t.state.as_str()),
            )),
        }
    }

    fn progress(&mut self, id: TaskId, token: LeaseToken, percent: Option<u8>, msg: Option<&str>) -> Response {
        self.check_lease(id, token)?;
        if percent.is_some_and(|p| p > 100) {
            return Err(invalid("percent must be between 0 and 100"));
        }
        if msg.is_some_and(|m| m.len() > limits::PROGRESS_MESSAGE_BYTES_MAX) {
            return Err(invalid(format!("message is longer than {} bytes", limits::PROGRESS_MESSAGE_BYTES_MAX)));
        }
        let now = self.meta.clock;
        let t = self.update(id, |t| {
            if t.progress.len() == limits::PROGRESS_EVENTS_MAX {
                t.progress.remove(0);
                t.progress_dropped += 1;
            }
            t.progress.push(ProgressEvent {
                at_ms: now,
                attempt: t.attempts.len() as u32,
                percent,
                message: msg.map(str::to_string),
            });
            let stall = t.stall_timeout_ms;
            if let (Some(l), Some(stall)) = (t.lease.as_mut(), stall) {
                l.stall_deadline_ms = Some(now.saturating_add(stall));
            }
            t.clone()
        });
        t.map(|t| Outcome::Task(Box::new(t))).ok_or_else(|| Rejection::not_found(id))
    }

    fn complete(&mut self, id: TaskId, token: LeaseToken, result: Option<&str>) -> Response {
        let t = self.check_lease(id, token)?;
        let cfg = self.effective_config(&t.queue);
        if let Some(r) = result {
            if r.len() as u64 > cfg.payload_bytes_max {
                return Err(invalid(format!(
                    "result is {} bytes, over the limit of {} bytes",
                    r.len(),
                    cfg.payload_bytes_max
                )));
            }
        }
        let now = self.meta.clock;
        self.lease_ended(id, Some(true));
        let t = self.update(id, |t| {
            if let Some(a) = t.attempts.last_mut() {
                a.ended_ms = Some(now);
                a.outcome = Some(AttemptOutcome::Succeeded);
            }
            t.lease = None;
            t.result = result.map(str::to_string);
            t.state = TaskState::Succeeded;
            t.finished_ms = Some(now);
            t.purge_after_ms = Some(now.saturating_add(cfg.retention_ms));
            t.clone()
        });
        t.map(|t| Outcome::Task(Box::new(t))).ok_or_else(|| Rejection::not_found(id))
    }

    fn fail(&mut self, id: TaskId, token: LeaseToken, error: &str) -> Response {
        self.check_lease(id, token)?;
        if error.len() > limits::ERROR_BYTES_MAX {
            return Err(invalid(format!("error is longer than {} bytes", limits::ERROR_BYTES_MAX)));
        }
        self.end_attempt(id, AttemptOutcome::Failed { error: error.to_string() }, error.to_string());
        let t = self.task(id).cloned().ok_or_else(|| Rejection::not_found(id))?;
        Ok(Outcome::Task(Box::new(t)))
    }

    /// End the current attempt of a leased task unsuccessfully: retry after backoff, or dead.
    fn end_attempt(&mut self, id: TaskId, outcome: AttemptOutcome, error: String) {
        let now = self.meta.clock;
        let Some(t) = self.tasks.get(&id) else { return };
        let cfg = self.effective_config(&t.queue);
        let mut retried = false;
        self.lease_ended(id, Some(false));
        self.update(id, |t| {
            if let Some(a) = t.attempts.last_mut() {
                a.ended_ms = Some(now);
                a.outcome = Some(outcome);
            }
            t.lease = None;
            t.last_error = Some(error);
            let n = t.attempts.len() as u32;
            if n >= t.attempt_limit {
                t.state = TaskState::Dead;
                t.finished_ms = Some(now);
                t.purge_after_ms = Some(now.saturating_add(cfg.retention_ms));
            } else {
                retried = true;
                t.state = TaskState::Failed;
                t.run_at_ms = now.saturating_add(retry_backoff_ms(id, n, cfg.retry_base_ms, cfg.retry_max_ms));
            }
        });
        if retried {
            self.counters.retries += 1;
        }
        // A zero backoff makes the task ready at once.
        if let Some(t) = self.tasks.get(&id) {
            if t.state == TaskState::Failed && t.run_at_ms <= now {
                self.update(id, |t| t.state = TaskState::Ready);
            }
        }
    }

    fn release(&mut self, id: TaskId, token: LeaseToken) -> Response {
        self.check_lease(id, token)?;
        let now = self.meta.clock;
        self.lease_ended(id, None);
        let t = self.update(id, |t| {
            if let Some(a) = t.attempts.last_mut() {
                a.ended_ms = Some(now);
                a.outcome = Some(AttemptOutcome::Released);
            }
            t.lease = None;
            t.attempt_limit = t.attempt_limit.saturating_add(1);
            t.state = TaskState::Ready;
            t.run_at_ms = now;
            t.clone()
        });
        t.map(|t| Outcome::Task(Box::new(t))).ok_or_else(|| Rejection::not_found(id))
    }

    fn extend(&mut self, id: TaskId, token: LeaseToken, lease_ms: Option<u64>) -> Response {
        let t = self.check_lease(id, token)?;
        let ms = lease_ms.unwrap_or(t.lease_ms);
        check_lease_ms("lease_ms", ms)?;
        let now = self.meta.clock;
        let t = self.update(id, |t| {
            if let Some(l) = t.lease.as_mut() {
                l.expires_ms = now.saturating_add(ms);
            }
            t.clone()
        });
        t.map(|t| Outcome::Task(Box::new(t))).ok_or_else(|| Rejection::not_found(id))
    }

    fn cancel(&mut self, id: TaskId, reason: Option<&str>) -> Response {
        let t = self.tasks.get(&id).ok_or_else(|| Rejection::not_found(id))?;
        if t.state.is_terminal() {
            return Err(Rejection::new(
                RejectCode::WrongState,
                format!("task {id} is already {}; only unfinished tasks can be cancelled", t.state.as_str()),
            ));
        }
        if reason.is_some_and(|r| r.len() > limits::ERROR_BYTES_MAX) {
            return Err(invalid(format!("reason is longer than {} bytes", limits::ERROR_BYTES_MAX)));
        }
        let cfg = self.effective_config(&t.queue);
        let now = self.meta.clock;
        self.lease_ended(id, None);
        let t = self.update(id, |t| {
            if t.state == TaskState::Leased {
                if let Some(a) = t.attempts.last_mut() {
                    a.ended_ms = Some(now);
                    a.outcome = Some(AttemptOutcome::Cancelled);
                }
            }
            t.lease = None;
            t.state = TaskState::Cancelled;
            t.cancel_reason = reason.map(str::to_string);
            t.finished_ms = Some(now);
            t.purge_after_ms = Some(now.saturating_add(cfg.retention_ms));
            t.clone()
        });
        t.map(|t| Outcome::Task(Box::new(t))).ok_or_else(|| Rejection::not_found(id))
    }

    fn retry(&mut self, id: TaskId) -> Response {
        let t = self.tasks.get(&id).ok_or_else(|| Rejection::not_found(id))?;
        if !matches!(t.state, TaskState::Dead | TaskState::Cancelled | TaskState::Failed) {
            return Err(Rejection::new(
                RejectCode::WrongState,
                format!("task {id} is {}; only dead, cancelled or failed tasks can be retried", t.state.as_str()),
            ));
        }
        let now = self.meta.clock;
        let t = self.update(id, |t| {
            if t.state != TaskState::Failed {
                t.attempt_limit = t.attempt_count().saturating_add(t.max_attempts);
            }
            t.state = TaskState::Ready;
            t.run_at_ms = now;
            t.finished_ms = None;
            t.purge_after_ms = None;
            t.cancel_reason = None;
            t.clone()
        });
        t.map(|t| Outcome::Task(Box::new(t))).ok_or_else(|| Rejection::not_found(id))
    }

    /// Bookkeeping when task `id`'s current lease ends: free the agent's slot and, for a success
    /// or failure, record it in the agent's statistics. Call before the lease is cleared.
    fn lease_ended(&mut self, id: TaskId, success: Option<bool>) {
        let now = self.meta.clock;
        let Some(t) = self.tasks.get(&id) else { return };
        let Some(lease) = &t.lease else { return };
        let Some(agent) = self.agents.get_mut(&lease.agent_id) else { return };
        if lease.incarnation == 0 || agent.incarnation != lease.incarnation {
            return;
        }
        agent.stats.in_flight = agent.stats.in_flight.saturating_sub(1);
        if let Some(ok) = success {
            let latency = t.attempts.last().map(|a| now.saturating_sub(a.started_ms)).unwrap_or(0);
            agent.stats.overall.record(ok, latency);
            if t.capabilities.is_empty() {
                agent.stats.by_capability.entry(ANY_CAPABILITY.to_string()).or_default().record(ok, latency);
            }
            for c in &t.capabilities {
                agent.stats.by_capability.entry(c.clone()).or_default().record(ok, latency);
            }
        }
        agent.updated_ms = now;
        self.dirty.agents.insert(lease.agent_id.clone());
    }

    /// Release every lease the agent's current incarnation holds, recording `outcome` as the end of
    /// each attempt, and set its status (or remove it when `status` is `None`).
    fn agent_gone(&mut self, agent_id: &str, status: AgentStatus, outcome: AttemptOutcome) {
        let Some(incarnation) = self.agents.get(agent_id).map(|a| a.incarnation) else { return };
        let held: Vec<TaskId> = self
            .idx
            .leases
            .iter()
            .filter_map(|(_, id)| self.tasks.get(id))
            .filter(|t| t.lease.as_ref().is_some_and(|l| l.agent_id == agent_id && l.incarnation == incarnation))
            .map(|t| t.id)
            .collect();
        let reason = match outcome {
            AttemptOutcome::AgentRestarted => "the agent restarted",
            _ => "the agent is gone",
        };
        for id in held {
            self.counters.agent_releases += 1;
            self.end_attempt(id, outcome.clone(), reason.to_string());
        }
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.status = status;
            a.stats.in_flight = 0;
            a.updated_ms = self.meta.clock;
        }
        self.dirty.agents.insert(agent_id.to_string());
    }

    fn register_agent(&mut self, spec: &AgentSpec) -> Response {
        if spec.id.is_empty() || spec.id.len() > limits::AGENT_ID_BYTES_MAX {
            return Err(invalid(format!("agent id must be 1 to {} bytes", limits::AGENT_ID_BYTES_MAX)));
        }
        if spec.name.len() > limits::AGENT_ID_BYTES_MAX {
            return Err(invalid(format!("agent name must be at most {} bytes", limits::AGENT_ID_BYTES_MAX)));
        }
        check_capabilities(&spec.capabilities)?;
        if spec.max_concurrency == 0 || spec.max_concurrency > limits::AGENT_CONCURRENCY_MAX {
            return Err(invalid(format!("max_concurrency must be between 1 and {}", limits::AGENT_CONCURRENCY_MAX)));
        }
        if spec.labels.len() > limits::AGENT_LABELS_MAX
            || spec
                .labels
                .iter()
                .any(|(k, v)| k.len() > limits::AGENT_LABEL_BYTES_MAX || v.len() > limits::AGENT_LABEL_BYTES_MAX)
        {
            return Err(invalid(format!(
                "at most {} labels of at most {} bytes each",
                limits::AGENT_LABELS_MAX,
                limits::AGENT_LABEL_BYTES_MAX
            )));
        }
        let now = self.meta.clock;
        let previous = self.agents.get(&spec.id).map(|a| (a.status, a.stats.clone(), a.registered_ms));
        if matches!(previous, Some((AgentStatus::Active | AgentStatus::Draining, _, _))) {
            self.agent_gone(&spec.id, AgentStatus::Dead, AttemptOutcome::AgentRestarted);
        }
        let (stats, registered_ms) = match self.agents.get(&spec.id) {
            // History carries over to the new incarnation; in-flight was zeroed above.
            Some(a) => (AgentStats { in_flight: 0, ..a.stats.clone() }, a.registered_ms),
            None => (AgentStats::default(), now),
        };
        let incarnation = self.meta.next_incarnation;
        self.meta.next_incarnation += 1;
        let agent = Agent {
            id: spec.id.clone(),
            name: spec.name.clone(),
            capabilities: spec.capabilities.clone(),
            max_concurrency: spec.max_concurrency,
            labels: spec.labels.clone(),
            status: AgentStatus::Active,
            incarnation,
            registered_ms,
            updated_ms: now,
            stats,
        };
        self.agents.insert(spec.id.clone(), agent.clone());
        self.dirty.agents.insert(spec.id.clone());
        Ok(Outcome::Agent(Box::new(agent)))
    }

    fn agent_not_found(id: &str) -> Rejection {
        Rejection::new(RejectCode::NotFound, format!("agent {id} not found"))
    }

    fn drain_agent(&mut self, id: &str) -> Response {
        let a = self.agents.get_mut(id).ok_or_else(|| Self::agent_not_found(id))?;
        if a.status == AgentStatus::Dead {
            return Err(Rejection::new(RejectCode::WrongState, format!("agent {id} is dead")));
        }
        a.status = AgentStatus::Draining;
        a.updated_ms = self.meta.clock;
        let out = a.clone();
        self.dirty.agents.insert(id.to_string());
        Ok(Outcome::Agent(Box::new(out)))
    }

    fn deregister_agent(&mut self, id: &str) -> Response {
        if !self.agents.contains_key(id) {
            return Err(Self::agent_not_found(id));
        }
        self.agent_gone(id, AgentStatus::Dead, AttemptOutcome::AgentDead);
        self.agents.remove(id);
        self.dirty.agents.insert(id.to_string());
        Ok(Outcome::Done)
    }

    // ---- invariants ------------------------------------------------------------------------

    /// Check every invariant of the state; returns the first violation.
    ///
    /// - indexes equal a rebuild from the records;
    /// - a task is leased iff it has a lease, and that lease is its last attempt's, still open;
    /// - ids and lease tokens are below their counters;
    /// - every live idempotency key maps to an existing task of the same queue and key;
    /// - no task has more attempts than its limit.
    pub fn validate(&self) -> Result<(), String> {
        let mut rebuilt = Indexes::default();
        for t in self.tasks.values() {
            rebuilt.insert(t);
        }
        if !rebuilt.same_as(&self.idx) {
            return Err("indexes differ from a rebuild from the task records".into());
        }
        for (id, t) in &self.tasks {
            if *id != t.id || t.id >= self.meta.next_id {
                return Err(format!("task {id}: id out of range"));
            }
            let open = t.attempts.last().filter(|a| a.outcome.is_none());
            match (t.state, &t.lease, open) {
                (TaskState::Leased, Some(l), Some(a)) => {
                    if l.token != a.lease_token || l.agent_id != a.agent_id || l.token >= self.meta.next_token {
                        return Err(format!("task {id}: lease does not match its open attempt"));
                    }
                }
                (TaskState::Leased, _, _) => return Err(format!("task {id}: leased without lease or open attempt")),
                (_, None, None) => {}
                _ => return Err(format!("task {id}: {} with a lease or an open attempt", t.state.as_str())),
            }
            if t.attempt_count() > t.attempt_limit {
                return Err(format!("task {id}: {} attempts over its limit {}", t.attempt_count(), t.attempt_limit));
            }
            if t.state.is_terminal() != t.finished_ms.is_some() {
                return Err(format!("task {id}: finished_ms does not match state {}", t.state.as_str()));
            }
            let mut tokens = t.attempts.iter().map(|a| a.lease_token);
            if let Some(first) = tokens.next() {
                let mut prev = first;
                for tok in tokens {
                    if tok <= prev {
                        return Err(format!("task {id}: lease tokens not increasing"));
                    }
                    prev = tok;
                }
            }
        }
        let mut held: BTreeMap<&str, u32> = BTreeMap::new();
        for t in self.tasks.values() {
            if let Some(l) = &t.lease {
                if l.incarnation == 0 {
                    continue;
                }
                match self.agents.get(&l.agent_id) {
                    Some(a) if a.incarnation == l.incarnation && a.status != AgentStatus::Dead => {
                        *held.entry(a.id.as_str()).or_default() += 1;
                    }
                    _ => {
                        return Err(format!(
                            "task {}: leased to a dead or replaced incarnation of {}",
                            t.id, l.agent_id
                        ))
                    }
                }
            }
        }
        for a in self.agents.values() {
            let n = held.get(a.id.as_str()).copied().unwrap_or(0);
            if a.stats.in_flight != n {
                return Err(format!("agent {}: in_flight {} but holds {n} leases", a.id, a.stats.in_flight));
            }
            if a.incarnation >= self.meta.next_incarnation {
                return Err(format!("agent {}: incarnation above the counter", a.id));
            }
        }
        for (k, e) in self.dedup.iter() {
            if e.task_id >= self.meta.next_id {
                return Err(format!("dedup key {k:?} names a task id never assigned"));
            }
            if let Some(t) = self.tasks.get(&e.task_id) {
                if t.queue != k.queue || t.idempotency_key.as_deref() != Some(k.key.as_str()) {
                    return Err(format!("dedup key {k:?} maps to task {} with another key", t.id));
                }
            }
        }
        for (id, t) in &self.tokens {
            if id != &t.id {
                return Err(format!("token {} kept under id {id}", t.id));
            }
            t.validate()?;
        }
        if self.audit.len() > AUDIT_ENTRIES_MAX {
            return Err(format!("{} audit entries kept, over {AUDIT_ENTRIES_MAX}", self.audit.len()));
        }
        for (seq, e) in &self.audit {
            if *seq != e.seq {
                return Err(format!("audit entry {} kept under {seq}", e.seq));
            }
        }
        for (id, tp) in &self.traces {
            if !self.tasks.contains_key(id) {
                return Err(format!("trace context kept for task {id}, which is not in the ledger"));
            }
            crate::command::validate_trace_parent(tp)?;
        }
        self.dedup.check_invariants()
    }
}

/// A complete, self-contained copy of the replicated state: the body of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateImage {
    pub meta: Meta,
    pub tasks: Vec<Arc<Task>>,
    pub dedup: Vec<(DedupKey, DedupEntry)>,
    pub queues: Vec<(String, QueueConfig)>,
    pub agents: Vec<Agent>,
    /// Parts of the state added after the first image format, one section each. New kinds are
    /// appended as new variants, so an image stays readable by every later build.
    pub extras: Vec<Extra>,
}

/// A section of the state added after the first image format (see [`StateImage::extras`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Extra {
    /// Trace contexts of traced tasks.
    Traces(Vec<(TaskId, String)>),
    /// API tokens.
    Tokens(Vec<Token>),
    /// The audit trail.
    Audit(Vec<AuditEntry>),
}

/// The image as written before [`StateImage::extras`] existed; read by [`StateImage::from_v1`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateImageV1 {
    pub meta: Meta,
    pub tasks: Vec<Arc<Task>>,
    pub dedup: Vec<(DedupKey, DedupEntry)>,
    pub queues: Vec<(String, QueueConfig)>,
    pub agents: Vec<Agent>,
}

impl StateImage {
    pub fn from_v1(v: StateImageV1) -> Self {
        StateImage {
            meta: v.meta,
            tasks: v.tasks,
            dedup: v.dedup,
            queues: v.queues,
            agents: v.agents,
            extras: Vec::new(),
        }
    }
}

impl State {
    pub fn image(&self) -> StateImage {
        StateImage {
            meta: self.meta.clone(),
            tasks: self.tasks.values().cloned().collect(),
            dedup: self.dedup.iter().map(|(k, e)| (k.clone(), *e)).collect(),
            queues: self.queues.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            agents: self.agents.values().cloned().collect(),
            extras: self.extras(),
        }
    }

    /// The sections of [`StateImage::extras`], the empty ones left out.
    fn extras(&self) -> Vec<Extra> {
        let mut out = Vec::new();
        if !self.traces.is_empty() {
            out.push(Extra::Traces(self.traces.iter().map(|(k, v)| (*k, v.clone())).collect()));
        }
        if !self.tokens.is_empty() {
            out.push(Extra::Tokens(self.tokens.values().map(|t| (**t).clone()).collect()));
        }
        if !self.audit.is_empty() {
            out.push(Extra::Audit(self.audit.values().cloned().collect()));
        }
        out
    }

    pub fn from_image(image: StateImage) -> State {
        State::from_parts(image.meta, image.tasks, image.dedup, image.queues, image.agents, image.extras)
    }
}

/// How the audit trail names an administrative command: action, target, detail. Anything else is
/// refused inside `Audited`.
fn audit_description(cmd: &Command) -> Result<(&'static str, String, String), Rejection> {
    Ok(match cmd {
        Command::SetQueue { name, config } => ("queue.set", name.clone(), format!("{config:?}")),
        Command::Cancel { task_id, reason } => ("task.cancel", task_id.to_string(), reason.clone().unwrap_or_default()),
        Command::Retry { task_id } => ("task.retry", task_id.to_string(), String::new()),
        Command::CreateToken { token } => (
            "token.create",
            token.id.clone(),
            format!(
                "name={} role={} queues={:?} deny={:?} expires_ms={:?} rate_per_sec={:?}",
                token.name,
                token.role.as_str(),
                token.queues,
                token.deny,
                token.expires_ms,
                token.rate_per_sec
            ),
        ),
        Command::RevokeToken { id } => ("token.revoke", id.clone(), String::new()),
        Command::Restore { image } => {
            ("restore", String::new(), format!("{} tasks, {} agents", image.tasks.len(), image.agents.len()))
        }
        Command::DrainAgent { id } => ("agent.drain", id.clone(), String::new()),
        Command::DeregisterAgent { id } => ("agent.deregister", id.clone(), String::new()),
        other => return Err(invalid(format!("{} is not an audited administrative command", other.name()))),
    })
}

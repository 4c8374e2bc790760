//! The read side: accessors over RAM, queue statistics, what is due, and ledger queries over the
//! records (which need no RAM state and no lock: they read through [`Cold`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Counters, Meta, State};
use crate::access::{AuditEntry, Token};
use crate::agent::Agent;
use crate::config::{EngineConfig, QueueConfig};
use crate::dedup::DedupStats;
use crate::record::{Key, Kind, Record, TaskRecord};
use crate::store::{Cold, ColdError};
use crate::task::{ProgressEvent, Task, TaskId, TaskState, TimeMs};

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
    /// Waiting for their dependencies to finish.
    pub waiting: u64,
    /// Parents waiting for their children to finish.
    #[serde(default)]
    pub waiting_children: u64,
    /// Age of the longest-waiting ready task (0 when none is ready).
    pub oldest_ready_age_ms: u64,
}

/// A queue's per-key concurrency limits and where its keys stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsView {
    pub limits: crate::key_limits::KeyLimits,
    /// Leased tasks per concurrency key (keys with none left out).
    pub leased: BTreeMap<String, u32>,
    /// Keys with ready tasks that no claim may take now (at or over their limit, or waiting for
    /// their rate).
    pub keys_at_limit: usize,
    /// Keys that have used up their rate for now.
    pub keys_rate_limited: usize,
    /// When the queue's own rate allows its next start, if it allows none now.
    pub queue_rate_limited_until_ms: Option<TimeMs>,
    /// A fair queue's key served last.
    pub last_served_key: Option<String>,
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

impl TaskFilter {
    fn keeps(&self, t: &TaskRecord) -> bool {
        self.queue.as_deref().is_none_or(|q| t.queue == q)
            && self.state.is_none_or(|s| t.state == s)
            && self.kind.as_deref().is_none_or(|k| t.kind == k)
            && self.agent.as_deref().is_none_or(|a| t.attempts.iter().any(|at| at.agent_id == a))
            && self.created_from_ms.is_none_or(|from| t.created_ms >= from)
            && self.created_before_ms.is_none_or(|before| t.created_ms < before)
    }
}

pub const LIST_LIMIT_MAX: usize = 1_000;
/// Records a query examines at most; a page cut short by it still carries a cursor.
pub const LIST_SCAN_MAX: usize = 20_000;
const PAGE: usize = 256;

/// Task records of one kind (or through the finished-task index) in id order, read in pages.
struct IdStream<'a> {
    cold: &'a dyn Cold,
    kind: Kind,
    after: Option<Key>,
    buf: VecDeque<Record>,
    exhausted: bool,
}

impl<'a> IdStream<'a> {
    fn new(cold: &'a dyn Cold, kind: Kind, after: Option<Key>) -> Self {
        IdStream { cold, kind, after, buf: VecDeque::new(), exhausted: false }
    }

    fn peek_id(&mut self) -> Result<Option<TaskId>, ColdError> {
        if self.buf.is_empty() && !self.exhausted {
            let page = self.cold.scan(self.kind, self.after.as_ref(), PAGE)?;
            self.exhausted = page.len() < PAGE;
            if let Some(last) = page.last() {
                self.after = Some(last.key());
            }
            self.buf.extend(page);
        }
        Ok(self.buf.front().and_then(|r| match r {
            Record::Task(t) => Some(t.id),
            Record::Finished(_, _, id) => Some(*id),
            _ => None,
        }))
    }

    fn next(&mut self) -> Result<Option<TaskRecord>, ColdError> {
        self.peek_id()?;
        match self.buf.pop_front() {
            Some(Record::Task(t)) => Ok(Some(t)),
            Some(Record::Finished(_, _, id)) => match self.cold.get(&Key::Done(id))? {
                Some(Record::Task(t)) => Ok(Some(t)),
                _ => Err(ColdError(format!("the finished-task index names task {id}, which has no record"))),
            },
            Some(other) => Err(ColdError(format!("unexpected record {:?} in a task scan", other.key()))),
            None => Ok(None),
        }
    }
}

/// Ledger query with cursor pagination over the records: the page and the cursor for the next
/// one. Uses the finished-task index for a queue and a finished state, scans live or finished
/// records for a state alone, and merges both otherwise; examines at most [`LIST_SCAN_MAX`].
pub fn list(cold: &dyn Cold, f: &TaskFilter) -> Result<(Vec<TaskRecord>, Option<TaskId>), ColdError> {
    let limit = f.limit.clamp(1, LIST_LIMIT_MAX);
    let after = f.after.unwrap_or(0);
    let first = |k: fn(TaskId) -> Key| if f.after.is_some() { Some(k(after)) } else { None };
    let mut streams: Vec<IdStream<'_>> = match (f.state, &f.queue) {
        (Some(s), Some(q)) if s.is_terminal() => {
            let start = Key::Finished(q.clone(), s, after);
            let start = if f.after.is_some() { Some(start) } else { Some(Key::Finished(q.clone(), s, 0)) };
            // Key::Finished(q, s, 0) is never a real record (ids start at 1), so "after" it is the start.
            vec![IdStream::new(cold, Kind::Finished, start)]
        }
        (Some(s), _) if s.is_terminal() => vec![IdStream::new(cold, Kind::Done, first(Key::Done))],
        (Some(_), _) => vec![IdStream::new(cold, Kind::Live, first(Key::Live))],
        (None, _) => {
            vec![IdStream::new(cold, Kind::Live, first(Key::Live)), IdStream::new(cold, Kind::Done, first(Key::Done))]
        }
    };
    let finished_index = matches!((f.state, &f.queue), (Some(s), Some(_)) if s.is_terminal());
    let mut out = Vec::new();
    let mut examined = 0usize;
    let mut last_seen = None;
    loop {
        // The stream with the smallest next id.
        let mut best: Option<(usize, TaskId)> = None;
        for (i, s) in streams.iter_mut().enumerate() {
            if let Some(id) = s.peek_id()? {
                if best.is_none_or(|(_, b)| id < b) {
                    best = Some((i, id));
                }
            }
        }
        let Some((i, id)) = best else { return Ok((out, None)) };
        if out.len() == limit {
            return Ok((out, last_seen));
        }
        if examined == LIST_SCAN_MAX {
            return Ok((out, last_seen));
        }
        let Some(t) = streams[i].next()? else { return Ok((out, None)) };
        examined += 1;
        last_seen = Some(id);
        // The finished-task index yields only its queue and state; keep checking the rest.
        if finished_index && (Some(&t.queue) != f.queue.as_ref() || Some(t.state) != f.state) {
            return Ok((out, None));
        }
        if f.keeps(&t) {
            out.push(t);
        }
    }
}

/// A task's stored record (live or finished), if any.
pub fn task_record(cold: &dyn Cold, id: TaskId) -> Result<Option<TaskRecord>, ColdError> {
    for key in [Key::Live(id), Key::Done(id)] {
        if let Some(Record::Task(t)) = cold.get(&key)? {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// The payload and kept progress events of a task whose record is `t`.
pub fn task_details(cold: &dyn Cold, t: &TaskRecord) -> Result<(String, Vec<ProgressEvent>), ColdError> {
    let payload = match cold.get(&Key::Payload(t.id))? {
        Some(Record::Payload(_, p)) => p,
        _ => return Err(ColdError(format!("task {} has no payload record", t.id))),
    };
    let mut progress = Vec::with_capacity(t.progress_count as usize);
    if t.progress_count > 0 {
        let after = if t.progress_dropped > 0 {
            Key::Progress(t.id, t.progress_dropped - 1)
        } else {
            Key::Progress(t.id.saturating_sub(1), u64::MAX)
        };
        for r in cold.scan(Kind::Progress, Some(&after), t.progress_count as usize)? {
            if let Record::Progress(id, _, e) = r {
                if id == t.id {
                    progress.push(e);
                }
            }
        }
    }
    Ok((payload, progress))
}

/// The full ledger view of a task: record, payload and progress events.
pub fn task_view(cold: &dyn Cold, id: TaskId) -> Result<Option<Task>, ColdError> {
    let Some(t) = task_record(cold, id)? else { return Ok(None) };
    let (payload, progress) = task_details(cold, &t)?;
    Ok(Some(t.into_task(payload, progress)))
}

impl State {
    pub fn meta(&self) -> &Meta {
        &self.meta
    }
    pub fn config(&self) -> &EngineConfig {
        &self.meta.config
    }
    /// A task that is not finished (finished ones are records: read them through storage).
    pub fn live_task(&self, id: TaskId) -> Option<&TaskRecord> {
        self.live.get(&id)
    }
    pub fn live_tasks(&self) -> impl Iterator<Item = &TaskRecord> {
        self.live.values()
    }
    pub fn live_count(&self) -> usize {
        self.live.len()
    }
    /// Tasks in the ledger, finished ones included.
    pub fn task_count(&self) -> u64 {
        self.counts.values().flat_map(|c| c.iter()).sum()
    }
    /// The agent-id patterns token `id` is bound to (none: any agent).
    pub fn token_agents(&self, id: &str) -> Option<Arc<Vec<String>>> {
        self.token_agents.get(id).cloned()
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
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn dedup_stats(&self) -> DedupStats {
        self.dedup.stats
    }
    /// The dedup bloom filter's (items, capacity).
    pub fn dedup_bloom(&self) -> (u64, u64) {
        self.dedup.bloom_size()
    }
    /// Idempotency keys in the exact store.
    pub fn dedup_keys(&self) -> u64 {
        self.meta.dedup_keys
    }
    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents.get(id)
    }
    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values()
    }
    /// Agents in id order, starting just after `after` (a page's cursor).
    pub fn agents_after(&self, after: Option<&str>) -> impl Iterator<Item = &Agent> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
        self.agents.range::<String, _>((start, Bound::Unbounded)).map(|(_, a)| a)
    }
    /// The engine's clock: the largest time any applied entry carried.
    pub fn clock(&self) -> TimeMs {
        self.meta.clock
    }
    pub fn queue_config(&self, name: &str) -> Option<&QueueConfig> {
        self.queues.get(name)
    }
    pub fn queue_configs(&self) -> impl Iterator<Item = (&String, &QueueConfig)> {
        self.queues.iter()
    }
    /// Effective settings of a queue (its overrides over the engine defaults).
    pub fn queue_settings(&self, queue: &str) -> EngineConfig {
        self.effective_config(queue)
    }

    pub fn queue_limits(&self, queue: &str) -> LimitsView {
        LimitsView {
            limits: self.idx.ready.limits(queue).cloned().unwrap_or_default(),
            leased: self.idx.ready.leased_by_key(queue).cloned().unwrap_or_default(),
            keys_at_limit: self.idx.ready.keys_at_limit(queue),
            keys_rate_limited: self.idx.ready.keys_throttled(queue),
            queue_rate_limited_until_ms: self.idx.ready.queue_throttled_until(queue),
            last_served_key: self.idx.ready.turn(queue).map(str::to_string),
        }
    }

    /// Every schedule, by name.
    pub fn schedules(&self) -> impl Iterator<Item = &crate::schedule::Schedule> {
        self.schedules.values()
    }

    pub fn schedule(&self, name: &str) -> Option<&crate::schedule::Schedule> {
        self.schedules.get(name)
    }

    /// Every queue that has tasks or a configuration.
    pub fn queue_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.queues.keys().cloned().collect();
        for (q, c) in &self.counts {
            if c.iter().any(|n| *n > 0) {
                names.insert(q.clone());
            }
        }
        names
    }

    pub fn queue_stats(&self, queue: &str) -> QueueStats {
        let c = self.counts.get(queue).copied().unwrap_or_default();
        let now = self.meta.clock;
        let oldest = self.idx.oldest_ready(queue);
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
            waiting: c[TaskState::Waiting.index()],
            waiting_children: c[TaskState::WaitingChildren.index()],
            oldest_ready_age_ms: oldest.map(|t| now.saturating_sub(t)).unwrap_or(0),
        }
    }

    /// True when a claim by an agent with `capabilities` on `queues` would lease something at `now`.
    /// Used by long-polling claims to avoid proposing claims that would come back empty.
    pub fn has_claimable(&self, queues: &[String], capabilities: &[String], now: TimeMs) -> bool {
        let due_soon = self.idx.timers.first().is_some_and(|(t, _)| *t <= now)
            || self.idx.leases.first().is_some_and(|(t, _)| *t <= now)
            || self.idx.stalls.first().is_some_and(|(t, _)| *t <= now)
            // A missed deadline may release a dependent that runs anyway.
            || self.idx.deadlines.first().is_some_and(|(t, _)| *t <= now)
            // A rate-limited key may start again.
            || self.idx.ready.next_wake().is_some_and(|t| t <= now);
        due_soon || queues.iter().any(|q| !self.idx.claimable(q, capabilities, 1, now).is_empty())
    }

    /// The earliest time at which housekeeping has work: a timer, a lease expiry, a stall, a
    /// deadline, a rate-limited key or queue that may start again, a dedup expiry or a retention
    /// removal.
    pub fn next_due(&self) -> Option<TimeMs> {
        [
            self.idx.timers.first().map(|(t, _)| *t),
            self.idx.ready.next_wake(),
            self.idx.leases.first().map(|(t, _)| *t),
            self.idx.stalls.first().map(|(t, _)| *t),
            self.idx.deadlines.first().map(|(t, _)| *t),
            self.retention_head,
            self.dedup.head,
            self.next_schedule_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The bloom filter: is a rebuild due (see [`crate::Dedup`])?
    pub fn dedup_rebuild_needed(&self) -> bool {
        self.dedup.needs_rebuild(self.meta.dedup_keys)
    }
    pub fn dedup_rebuild_begin(&mut self) {
        self.dedup.begin_rebuild()
    }
    pub fn dedup_rebuild_finish(&mut self, bloom: growable_bloom_filter::GrowableBloom) {
        self.dedup.finish_rebuild(bloom)
    }
    pub fn dedup_rebuild_abandon(&mut self) {
        self.dedup.abandon_rebuild()
    }
}

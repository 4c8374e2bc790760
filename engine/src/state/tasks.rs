//! The task lifecycle: submit, claim, progress, complete, fail, extend, release, cancel, retry,
//! and recording ingest rejections.

use std::collections::{BTreeMap, BTreeSet};

use super::flow::Start;
use super::indexes::ReadyKey;
use super::{check_capabilities, check_lease_ms, invalid, Fail, State, Step};
use crate::agent::AgentStatus;
use crate::backoff::retry_backoff_ms;
use crate::command::{Ack, NewTask, Outcome, RejectCode, RejectedRecord, Rejection, Submitted};
use crate::config::{limits, validate_queue_name};
use crate::dedup::{DedupEntry, DedupKey};
use crate::events::TaskEvent;
use crate::flow::TaskFlow;
use crate::record::{Key, Record, TaskRecord};
use crate::store::Cold;
use crate::task::{Attempt, AttemptOutcome, Lease, LeaseToken, ProgressEvent, TaskId, TaskState, TimeMs};

fn wrong_state(msg: String) -> Fail {
    Fail::Reject(Rejection::new(RejectCode::WrongState, msg))
}

impl State {
    /// Submit tasks atomically; `flows[i]` (if given) names what `tasks[i]` depends on.
    pub(super) fn submit(
        &mut self,
        tasks: &[NewTask],
        flows: &[TaskFlow],
        trace: Option<&String>,
        cold: &dyn Cold,
    ) -> Step<Outcome> {
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
                Fail::Reject(Rejection::new(r.code, format!("{prefix}{}", r.message)))
            })?;
        }
        let order = super::flow::creation_order(flows, tasks.len())?;
        self.check_flows(flows, cold)?;
        self.check_parents(flows, cold)?;
        let now = self.meta.clock;
        // Ids in batch order: a duplicate names the earlier task, a new task takes the next id.
        let first_new = self.meta.next_id;
        let mut ids = Vec::with_capacity(tasks.len());
        let mut out = Vec::with_capacity(tasks.len());
        for nt in tasks {
            let cfg = self.effective_config(&nt.queue);
            let key = nt.idempotency_key.as_ref().map(|k| DedupKey { queue: nt.queue.clone(), key: k.clone() });
            let mut old_entry = None;
            if let Some(key) = &key {
                match self.dedup_find(key, now, cold)? {
                    Ok(id) => {
                        ids.push(id);
                        out.push(Submitted { id, duplicate: true });
                        continue;
                    }
                    Err(old) => old_entry = old,
                }
            }
            let id = self.next_task_id();
            if let Some(key) = key {
                let entry = DedupEntry { task_id: id, expires_ms: now.saturating_add(cfg.dedup_ttl_ms) };
                self.dedup_insert(key, entry, old_entry);
            }
            ids.push(id);
            out.push(Submitted { id, duplicate: false });
        }
        // Then the new tasks, each after the batch members it depends on.
        let fresh = first_new..self.meta.next_id;
        let mut children: BTreeMap<TaskId, Vec<TaskId>> = BTreeMap::new();
        for i in order {
            if out[i].duplicate {
                continue;
            }
            let (nt, id) = (&tasks[i], ids[i]);
            let start = self.start_of(id, flows.get(i), &ids, &fresh, cold)?;
            self.create(nt, id, start, trace);
            if let Some(parent) = flows.get(i).and_then(TaskFlow::parent) {
                children.entry(parent).or_default().push(id);
            }
        }
        // One change of each parent for the whole batch (its record lists every child).
        for (parent, mut ids) in children {
            ids.sort_unstable();
            self.add_children(parent, ids);
        }
        Ok(Outcome::Submitted(out))
    }

    /// Store a new task, starting as its dependencies say.
    fn create(&mut self, nt: &NewTask, id: TaskId, start: Start, trace: Option<&String>) {
        let now = self.meta.clock;
        let cfg = self.effective_config(&nt.queue);
        let run_at = nt.run_at_ms.or_else(|| nt.delay_ms.map(|d| now.saturating_add(d))).unwrap_or(now);
        let max_attempts = nt.max_attempts.unwrap_or(cfg.max_attempts);
        let mut task = TaskRecord {
            id,
            queue: nt.queue.clone(),
            kind: nt.kind.clone(),
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
            progress_count: 0,
            progress_dropped: 0,
            result: None,
            last_error: None,
            finished_ms: None,
            purge_after_ms: None,
            cancel_reason: None,
            trace_parent: trace.cloned(),
            flow: None,
        };
        task.flow = match start {
            Start::Free(flow) => flow.map(Box::new),
            Start::Waiting(flow) => {
                task.state = TaskState::Waiting;
                Some(Box::new(flow))
            }
            Start::Cancelled(flow, reason) => {
                task.state = TaskState::Cancelled;
                task.cancel_reason = Some(reason);
                task.finished_ms = Some(now);
                task.purge_after_ms = Some(now.saturating_add(cfg.retention_ms));
                Some(Box::new(flow))
            }
        };
        self.pending.put(Record::Payload(id, nt.payload.clone()));
        self.save(task, None);
    }

    fn next_task_id(&mut self) -> TaskId {
        let id = self.meta.next_id;
        self.meta.next_id += 1;
        self.meta_dirty = true;
        id
    }

    /// The live task an idempotency key names at `now` (`Ok`), or the expired entry still stored
    /// under it, if any (`Err`). The bloom filter answers most new keys without a read.
    fn dedup_find(&mut self, key: &DedupKey, now: TimeMs, cold: &dyn Cold) -> Step<Result<TaskId, Option<DedupEntry>>> {
        if !self.dedup.may_contain(key) {
            self.dedup.stats.bloom_negatives += 1;
            self.dedup.stats.misses += 1;
            return Ok(Err(None));
        }
        match self.read(cold, &Key::Dedup(key.clone()))? {
            Some(Record::Dedup(_, e)) if e.expires_ms > now => {
                self.dedup.stats.hits += 1;
                Ok(Ok(e.task_id))
            }
            Some(Record::Dedup(_, e)) => {
                self.dedup.stats.misses += 1;
                Ok(Err(Some(e)))
            }
            _ => {
                self.dedup.stats.bloom_false_positives += 1;
                self.dedup.stats.misses += 1;
                Ok(Err(None))
            }
        }
    }

    fn dedup_insert(&mut self, key: DedupKey, entry: DedupEntry, old: Option<DedupEntry>) {
        match old {
            Some(o) => self.pending.delete(Key::DedupExpiry(o.expires_ms, key.clone())),
            None => {
                self.meta.dedup_keys += 1;
                self.meta_dirty = true;
            }
        }
        self.dedup.insert_key(&key, entry.expires_ms);
        self.pending.put(Record::DedupExpiry(entry.expires_ms, key.clone()));
        self.pending.put(Record::Dedup(key, entry));
    }

    /// Record refused ingest records as `rejected` tasks, deduplicated by idempotency key like a
    /// submit (a redelivered record is recorded once).
    pub(super) fn reject(&mut self, records: &[RejectedRecord], cold: &dyn Cold) -> Step<Outcome> {
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
            self.validate_new(&as_task)
                .map_err(|e| Fail::Reject(Rejection::new(e.code, format!("records[{i}]: {}", e.message))))?;
            if r.reason.is_empty() || r.reason.len() > limits::ERROR_BYTES_MAX {
                return Err(invalid(format!("records[{i}]: reason must be 1 to {} bytes", limits::ERROR_BYTES_MAX)));
            }
        }
        let now = self.meta.clock;
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let cfg = self.effective_config(&r.queue);
            let key = r.idempotency_key.as_ref().map(|k| DedupKey { queue: r.queue.clone(), key: k.clone() });
            let mut old_entry = None;
            if let Some(key) = &key {
                match self.dedup_find(key, now, cold)? {
                    Ok(id) => {
                        out.push(Submitted { id, duplicate: true });
                        continue;
                    }
                    Err(old) => old_entry = old,
                }
            }
            let id = self.next_task_id();
            let task = TaskRecord {
                id,
                queue: r.queue.clone(),
                kind: r.kind.clone(),
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
                progress_count: 0,
                progress_dropped: 0,
                result: None,
                last_error: Some(r.reason.clone()),
                finished_ms: Some(now),
                purge_after_ms: Some(now.saturating_add(cfg.retention_ms)),
                cancel_reason: None,
                trace_parent: None,
                flow: None,
            };
            self.pending.put(Record::Payload(id, r.payload.clone()));
            self.save(task, None);
            if let Some(key) = key {
                self.dedup_insert(
                    key,
                    DedupEntry { task_id: id, expires_ms: now.saturating_add(cfg.dedup_ttl_ms) },
                    old_entry,
                );
            }
            out.push(Submitted { id, duplicate: false });
        }
        Ok(Outcome::Submitted(out))
    }

    pub(super) fn validate_new(&self, t: &NewTask) -> Result<(), Rejection> {
        validate_queue_name(&t.queue)?;
        if t.kind.len() > limits::KIND_BYTES_MAX {
            return Err(Rejection::invalid(format!("kind is longer than {} bytes", limits::KIND_BYTES_MAX)));
        }
        let cfg = self.effective_config(&t.queue);
        if t.payload.len() as u64 > cfg.payload_bytes_max {
            return Err(Rejection::invalid(format!(
                "payload is {} bytes, over the limit of {} bytes",
                t.payload.len(),
                cfg.payload_bytes_max
            )));
        }
        check_capabilities(&t.capabilities)?;
        if let Some(k) = &t.idempotency_key {
            if k.is_empty() || k.len() > limits::IDEMPOTENCY_KEY_BYTES_MAX {
                return Err(Rejection::invalid(format!(
                    "idempotency_key must be 1 to {} bytes",
                    limits::IDEMPOTENCY_KEY_BYTES_MAX
                )));
            }
        }
        if let Some(m) = t.max_attempts {
            if m == 0 || m > limits::ATTEMPTS_MAX {
                return Err(Rejection::invalid(format!("max_attempts must be between 1 and {}", limits::ATTEMPTS_MAX)));
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
                return Err(Rejection::invalid(format!("delay_ms must be at most {}", limits::TTL_MS_MAX)));
            }
        }
        if let Some(r) = t.run_at_ms {
            if r > self.meta.clock.saturating_add(limits::TTL_MS_MAX) {
                return Err(Rejection::invalid("run_at is more than a year ahead"));
            }
        }
        Ok(())
    }

    pub(super) fn claim(&mut self, agent_id: &str, queues: &[String], caps: &[String], max: u32) -> Step<Outcome> {
        crate::config::validate_agent_id(agent_id)?;
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
                    return Err(wrong_state(format!("agent {agent_id} is dead; register it again to receive work")))
                }
                AgentStatus::Draining => return Ok(Outcome::Claimed(Vec::new())),
                AgentStatus::Active => (a.capabilities.clone(), max.min(a.free_slots()), a.incarnation),
            },
            None => (caps.to_vec(), max, 0),
        };
        if max == 0 {
            return Ok(Outcome::Claimed(Vec::new()));
        }
        // Candidates from every named queue, merged in priority order.
        let now = self.meta.clock;
        let unique: BTreeSet<&String> = queues.iter().collect();
        let lists: Vec<Vec<ReadyKey>> =
            unique.into_iter().map(|q| self.idx.claimable(q, &caps, max as usize, now)).collect();
        let candidates = merge_claim_orders(lists, max as usize);
        let mut leased = Vec::with_capacity(candidates.len());
        for (_, id) in candidates {
            let token = self.meta.next_token;
            self.meta.next_token += 1;
            self.meta_dirty = true;
            let done = self.update(id, |t| {
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
            });
            if let Some((_, t)) = &done {
                let buckets = self.idx.ready.started(&t.queue, t.concurrency_key(), now);
                self.store_buckets(buckets);
                if self.idx.ready.served(&t.queue, t.concurrency_key()) {
                    self.pending
                        .put(Record::Turn(t.queue.clone(), t.concurrency_key().unwrap_or_default().to_string()));
                }
            }
            leased.extend(done.map(|(_, t)| t));
        }
        if incarnation != 0 && !leased.is_empty() {
            if let Some(a) = self.agents.get_mut(agent_id) {
                a.stats.in_flight += leased.len() as u32;
                let a = a.clone();
                self.pending.put(Record::Agent(a));
            }
        }
        Ok(Outcome::Claimed(leased))
    }

    /// Why an operation on a task that is not live cannot proceed.
    fn not_live(&self, id: TaskId, cold: &dyn Cold) -> Fail {
        match self.read(cold, &Key::Done(id)) {
            Ok(Some(Record::Task(t))) => wrong_state(format!("task {id} is already {}", t.state.as_str())),
            Ok(_) => Fail::Reject(Rejection::not_found(id)),
            Err(e) => e,
        }
    }

    /// The live task, if `token` is its current lease.
    pub(super) fn check_lease(&self, id: TaskId, token: LeaseToken, cold: &dyn Cold) -> Step<&TaskRecord> {
        let Some(t) = self.live.get(&id) else { return Err(self.not_live(id, cold)) };
        match &t.lease {
            Some(l) if t.state == TaskState::Leased && l.token == token => Ok(t),
            _ => Err(Fail::Reject(Rejection::new(
                RejectCode::StaleLease,
                format!("lease token {token} is not the current lease of task {id} (task is {})", t.state.as_str()),
            ))),
        }
    }

    pub(super) fn progress(
        &mut self,
        id: TaskId,
        token: LeaseToken,
        percent: Option<u8>,
        msg: Option<&str>,
        cold: &dyn Cold,
    ) -> Step<Outcome> {
        self.check_lease(id, token, cold)?;
        if percent.is_some_and(|p| p > 100) {
            return Err(invalid("percent must be between 0 and 100"));
        }
        if msg.is_some_and(|m| m.len() > limits::PROGRESS_MESSAGE_BYTES_MAX) {
            return Err(invalid(format!("message is longer than {} bytes", limits::PROGRESS_MESSAGE_BYTES_MAX)));
        }
        let now = self.meta.clock;
        let mut records = Vec::new();
        let done = self.update(id, |t| {
            if t.progress_count as usize >= limits::PROGRESS_EVENTS_MAX {
                records.push(Err(Key::Progress(id, t.progress_dropped)));
                t.progress_dropped += 1;
                t.progress_count -= 1;
            }
            let event = ProgressEvent {
                at_ms: now,
                attempt: t.attempts.len() as u32,
                percent,
                message: msg.map(str::to_string),
            };
            records.push(Ok(Record::Progress(id, t.progress_dropped + t.progress_count as u64, event)));
            t.progress_count += 1;
            let stall = t.stall_timeout_ms;
            if let (Some(l), Some(stall)) = (t.lease.as_mut(), stall) {
                l.stall_deadline_ms = Some(now.saturating_add(stall));
            }
        });
        for r in records {
            match r {
                Ok(Record::Progress(id, seq, report)) if self.watching => {
                    if let Some((_, t)) = &done {
                        self.events.push(TaskEvent::progress_of(t, seq, report.clone()));
                    }
                    self.pending.put(Record::Progress(id, seq, report));
                }
                Ok(rec) => self.pending.put(rec),
                Err(key) => self.pending.delete(key),
            }
        }
        done.map(|(_, t)| Outcome::Task(Box::new(t))).ok_or_else(|| Fail::Reject(Rejection::not_found(id)))
    }

    pub(super) fn complete(
        &mut self,
        id: TaskId,
        token: LeaseToken,
        result: Option<&str>,
        cold: &dyn Cold,
    ) -> Step<Outcome> {
        let t = self.check_lease(id, token, cold)?;
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
        let done = self.update(id, |t| {
            if let Some(a) = t.attempts.last_mut() {
                a.ended_ms = Some(now);
                a.outcome = Some(AttemptOutcome::Succeeded);
            }
            t.lease = None;
            t.result = result.map(str::to_string);
            t.state = TaskState::Succeeded;
            t.finished_ms = Some(now);
            t.purge_after_ms = Some(now.saturating_add(cfg.retention_ms));
        });
        done.map(|(_, t)| Outcome::Task(Box::new(t))).ok_or_else(|| Fail::Reject(Rejection::not_found(id)))
    }

    /// Complete or fail each leased task named, in order; a refused acknowledgement changes
    /// nothing and does not stop the others.
    pub(super) fn acknowledge(&mut self, acks: &[Ack], cold: &dyn Cold) -> Step<Outcome> {
        if acks.is_empty() || acks.len() > limits::ACK_BATCH_MAX {
            return Err(invalid(format!("an acknowledgement holds 1 to {} tasks", limits::ACK_BATCH_MAX)));
        }
        let mut outs = Vec::with_capacity(acks.len());
        for a in acks {
            let r = match a {
                Ack::Complete { task_id, lease_token, result } => {
                    self.complete(*task_id, *lease_token, result.as_deref(), cold)
                }
                Ack::Fail { task_id, lease_token, error } => self.fail(*task_id, *lease_token, error, cold),
            };
            match r {
                Ok(o) => outs.push(Ok(o)),
                Err(Fail::Reject(r)) => outs.push(Err(r)),
                Err(e @ Fail::Cold(_)) => return Err(e),
            }
        }
        Ok(Outcome::Batch(outs))
    }

    pub(super) fn fail(&mut self, id: TaskId, token: LeaseToken, error: &str, cold: &dyn Cold) -> Step<Outcome> {
        self.check_lease(id, token, cold)?;
        if error.len() > limits::ERROR_BYTES_MAX {
            return Err(invalid(format!("error is longer than {} bytes", limits::ERROR_BYTES_MAX)));
        }
        let t = self.end_attempt(id, AttemptOutcome::Failed { error: error.to_string() }, error.to_string());
        t.map(|t| Outcome::Task(Box::new(t))).ok_or_else(|| Fail::Reject(Rejection::not_found(id)))
    }

    /// End the current attempt of a leased task unsuccessfully: retry after backoff, or dead.
    /// Returns the task after the change.
    pub(super) fn end_attempt(&mut self, id: TaskId, outcome: AttemptOutcome, error: String) -> Option<TaskRecord> {
        let now = self.meta.clock;
        let cfg = self.effective_config(&self.live.get(&id)?.queue);
        let mut retried = false;
        self.lease_ended(id, Some(false));
        let (_, t) = self.update(id, |t| {
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
        })?;
        if retried {
            self.counters.retries += 1;
        }
        // A zero backoff makes the task ready at once.
        if t.state == TaskState::Failed && t.run_at_ms <= now {
            return self.update(id, |t| t.state = TaskState::Ready).map(|(_, t)| t);
        }
        Some(t)
    }

    pub(super) fn release(&mut self, id: TaskId, token: LeaseToken, cold: &dyn Cold) -> Step<Outcome> {
        self.check_lease(id, token, cold)?;
        let now = self.meta.clock;
        self.lease_ended(id, None);
        let done = self.update(id, |t| {
            if let Some(a) = t.attempts.last_mut() {
                a.ended_ms = Some(now);
                a.outcome = Some(AttemptOutcome::Released);
            }
            t.lease = None;
            t.attempt_limit = t.attempt_limit.saturating_add(1);
            t.state = TaskState::Ready;
            t.run_at_ms = now;
        });
        done.map(|(_, t)| Outcome::Task(Box::new(t))).ok_or_else(|| Fail::Reject(Rejection::not_found(id)))
    }

    pub(super) fn extend(
        &mut self,
        id: TaskId,
        token: LeaseToken,
        lease_ms: Option<u64>,
        cold: &dyn Cold,
    ) -> Step<Outcome> {
        let t = self.check_lease(id, token, cold)?;
        let ms = lease_ms.unwrap_or(t.lease_ms);
        check_lease_ms("lease_ms", ms)?;
        let now = self.meta.clock;
        let done = self.update(id, |t| {
            if let Some(l) = t.lease.as_mut() {
                l.expires_ms = now.saturating_add(ms);
            }
        });
        done.map(|(_, t)| Outcome::Task(Box::new(t))).ok_or_else(|| Fail::Reject(Rejection::not_found(id)))
    }

    pub(super) fn cancel(&mut self, id: TaskId, reason: Option<&str>, cold: &dyn Cold) -> Step<Outcome> {
        let Some(t) = self.live.get(&id) else {
            return Err(match self.not_live(id, cold) {
                Fail::Reject(r) if r.code == RejectCode::WrongState => {
                    wrong_state(format!("{}; only unfinished tasks can be cancelled", r.message))
                }
                other => other,
            });
        };
        if reason.is_some_and(|r| r.len() > limits::ERROR_BYTES_MAX) {
            return Err(invalid(format!("reason is longer than {} bytes", limits::ERROR_BYTES_MAX)));
        }
        let children = t.flow.as_ref().map(|f| f.children().to_vec()).unwrap_or_default();
        let done = self.cancel_live(id, reason.map(str::to_string));
        let t = done.ok_or_else(|| Fail::Reject(Rejection::not_found(id)))?;
        self.cancel_descendants(id, children, cold)?;
        Ok(Outcome::Task(Box::new(t)))
    }

    /// Cancel a live task (ending its lease, if it has one); the task after the change.
    pub(super) fn cancel_live(&mut self, id: TaskId, reason: Option<String>) -> Option<TaskRecord> {
        let cfg = self.effective_config(&self.live.get(&id)?.queue);
        let now = self.meta.clock;
        self.lease_ended(id, None);
        let done = self.update(id, |t| {
            if t.state == TaskState::Leased {
                if let Some(a) = t.attempts.last_mut() {
                    a.ended_ms = Some(now);
                    a.outcome = Some(AttemptOutcome::Cancelled);
                }
            }
            t.lease = None;
            t.state = TaskState::Cancelled;
            t.cancel_reason = reason;
            t.finished_ms = Some(now);
            t.purge_after_ms = Some(now.saturating_add(cfg.retention_ms));
        });
        done.map(|(_, t)| t)
    }

    /// Manual retry of a failed (waiting for its backoff), dead or cancelled task.
    pub(super) fn retry(&mut self, id: TaskId, cold: &dyn Cold) -> Step<Outcome> {
        let now = self.meta.clock;
        let refuse = |state: TaskState| {
            wrong_state(format!("task {id} is {}; only dead, cancelled or failed tasks can be retried", state.as_str()))
        };
        if let Some(t) = self.live.get(&id) {
            if t.state != TaskState::Failed {
                return Err(refuse(t.state));
            }
            let done = self.update(id, |t| {
                t.state = TaskState::Ready;
                t.run_at_ms = now;
            });
            return done.map(|(_, t)| Outcome::Task(Box::new(t))).ok_or_else(|| Fail::Reject(Rejection::not_found(id)));
        }
        let old = match self.read(cold, &Key::Done(id))? {
            Some(Record::Task(t)) => t,
            _ => return Err(Fail::Reject(Rejection::not_found(id))),
        };
        if !matches!(old.state, TaskState::Dead | TaskState::Cancelled) {
            return Err(refuse(old.state));
        }
        let mut t = old.clone();
        t.attempt_limit = t.attempts.len() as u32 + t.max_attempts;
        t.state = TaskState::Ready;
        t.run_at_ms = now;
        t.updated_ms = now;
        t.finished_ms = None;
        t.purge_after_ms = None;
        t.cancel_reason = None;
        // A deadline that has passed would end the task again at once: the retry lifts it.
        if let Some(f) = t.flow.as_mut().filter(|f| f.deadline_ms.is_some_and(|d| d <= now)) {
            f.deadline_ms = None;
        }
        self.save(t.clone(), Some(&old));
        Ok(Outcome::Task(Box::new(t)))
    }
}

/// The queues' claim orders merged into one of at most `max` tasks: each queue's in its own order
/// (a fair queue's is not by id), between queues the higher priority first, then the older task.
fn merge_claim_orders(lists: Vec<Vec<ReadyKey>>, max: usize) -> Vec<ReadyKey> {
    let mut at = vec![0; lists.len()];
    let mut out = Vec::new();
    while out.len() < max {
        let Some(best) = (0..lists.len()).filter_map(|i| Some((*lists[i].get(at[i])?, i))).min() else { break };
        out.push(best.0);
        at[best.1] += 1;
    }
    out
}

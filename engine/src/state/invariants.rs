//! Invariants as code. [`State::validate_ram`] checks what RAM holds; [`State::validate`] also
//! checks RAM against the records, and with `full` every record (linear in the ledger: tests,
//! and the model). Called after every load and snapshot install, and in debug builds after
//! applies.

use std::collections::{BTreeMap, BTreeSet};

use super::indexes::Indexes;
use super::load::scan_all;
use super::State;
use crate::access::AUDIT_ENTRIES_MAX;
use crate::agent::AgentStatus;
use crate::dedup::DedupKey;
use crate::record::{Key, Kind, Record, StateCounts};
use crate::store::Cold;
use crate::task::{TaskId, TaskState, TimeMs};

impl State {
    /// Check every invariant of RAM; returns the first violation.
    ///
    /// - indexes equal a rebuild from the live tasks;
    /// - a task is leased iff it has a lease, and that lease is its last attempt's, still open;
    /// - ids, lease tokens, incarnations and audit numbers are below their counters;
    /// - counts of live states equal the live tasks;
    /// - every agent's in-flight count equals the leases its incarnation holds;
    /// - a task is waiting iff it has unfinished dependencies (or, waiting for its children,
    ///   unfinished children), each of them an unfinished task (the reverse edges and the
    ///   deadlines are indexes, checked with the others).
    pub fn validate_ram(&self) -> Result<(), String> {
        self.validate_deps()?;
        let mut rebuilt = Indexes::default();
        rebuilt.ready.copy_limits(&self.idx.ready);
        let mut live_counts: BTreeMap<&str, StateCounts> = BTreeMap::new();
        for t in self.live.values() {
            rebuilt.insert(t);
            live_counts.entry(t.queue.as_str()).or_default()[t.state.index()] += 1;
        }
        rebuilt.ready.rethrottle_all(self.meta.clock);
        if rebuilt != self.idx {
            return Err("indexes differ from a rebuild from the live tasks".into());
        }
        for (q, c) in &self.counts {
            for s in TaskState::ALL.iter().filter(|s| !s.is_terminal()) {
                let have = live_counts.get(q.as_str()).map(|l| l[s.index()]).unwrap_or(0);
                if c[s.index()] != have {
                    return Err(format!("queue {q}: count of {} is {} but {have} tasks are", s.as_str(), c[s.index()]));
                }
            }
        }
        for (q, l) in &live_counts {
            if !self.counts.contains_key(*q) && l.iter().any(|n| *n > 0) {
                return Err(format!("queue {q} has live tasks but no counts"));
            }
        }
        for (id, t) in &self.live {
            if *id != t.id || t.id >= self.meta.next_id {
                return Err(format!("task {id}: id out of range"));
            }
            if !t.is_live() || t.finished_ms.is_some() {
                return Err(format!("task {id}: {} in the live set", t.state.as_str()));
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
            check_task_history(t)?;
        }
        let mut held: BTreeMap<&str, u32> = BTreeMap::new();
        for t in self.live.values() {
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
        for (id, t) in &self.tokens {
            if id != &t.id {
                return Err(format!("token {} kept under id {id}", t.id));
            }
            t.validate()?;
        }
        for (id, patterns) in &self.token_agents {
            if !self.tokens.contains_key(id) || patterns.is_empty() {
                return Err(format!("agent patterns kept for token {id}, which is unknown or bound to none"));
            }
            crate::access::validate_agent_patterns(patterns)?;
        }
        if self.audit.len() > AUDIT_ENTRIES_MAX {
            return Err(format!("{} audit entries kept, over {AUDIT_ENTRIES_MAX}", self.audit.len()));
        }
        for (seq, e) in &self.audit {
            if *seq != e.seq || *seq >= self.meta.next_audit {
                return Err(format!("audit entry {} kept under {seq} (next {})", e.seq, self.meta.next_audit));
            }
        }
        Ok(())
    }

    fn validate_deps(&self) -> Result<(), String> {
        for t in self.live.values() {
            let unfinished = t.flow.as_ref().map(|f| f.unfinished.as_slice()).unwrap_or_default();
            check_flow(t)?;
            if let Some(u) = unfinished.iter().find(|u| !self.live.contains_key(u)) {
                return Err(format!("task {}: waiting on task {u}, which is not unfinished", t.id));
            }
        }
        if !self.settled.is_empty() {
            return Err("finished dependencies left unsettled after an apply".into());
        }
        Ok(())
    }

    /// [`State::validate_ram`], then RAM against the records (which must hold every effect
    /// taken so far); with `full`, every record of the ledger too.
    pub fn validate(&self, cold: &dyn Cold, full: bool) -> Result<(), String> {
        self.validate_ram()?;
        let err = |e: crate::store::ColdError| e.to_string();
        if !self.meta_dirty {
            match cold.get(&Key::Meta).map_err(err)? {
                Some(Record::Meta(m)) if m == self.meta => {}
                other => return Err(format!("the meta record {other:?} differs from RAM")),
            }
        }
        let mut live = BTreeMap::new();
        scan_all(cold, Kind::Live, |r| {
            if let Record::Task(t) = r {
                live.insert(t.id, t);
            }
        })
        .map_err(err)?;
        if live != self.live {
            return Err(format!(
                "{} live-task records, {} live tasks in RAM, or their contents differ",
                live.len(),
                self.live.len()
            ));
        }
        let mut agents = BTreeMap::new();
        scan_all(cold, Kind::Agent, |r| {
            if let Record::Agent(a) = r {
                agents.insert(a.id.clone(), a);
            }
        })
        .map_err(err)?;
        if agents != self.agents {
            return Err("agent records differ from RAM".into());
        }
        let mut queues = BTreeMap::new();
        scan_all(cold, Kind::Queue, |r| {
            if let Record::Queue(q, c) = r {
                queues.insert(q, c);
            }
        })
        .map_err(err)?;
        if queues != self.queues {
            return Err("queue records differ from RAM".into());
        }
        let mut limits = BTreeMap::new();
        scan_all(cold, Kind::Limits, |r| {
            if let Record::Limits(q, rules) = r {
                limits.insert(q, crate::key_limits::KeyLimits::from_rules(&rules));
            }
        })
        .map_err(err)?;
        if &limits != self.idx.ready.all_limits() {
            return Err("limit records differ from RAM".into());
        }
        let mut buckets = BTreeMap::new();
        scan_all(cold, Kind::Rate, |r| {
            if let Record::Rate(q, k, tat) = r {
                buckets.insert((q, k), tat);
            }
        })
        .map_err(err)?;
        if &buckets != self.idx.ready.all_buckets() {
            return Err("rate bucket records differ from RAM".into());
        }
        let mut schedules = BTreeMap::new();
        scan_all(cold, Kind::Schedule, |r| {
            if let Record::Schedule(sc) = r {
                schedules.insert(sc.def.name.clone(), *sc);
            }
        })
        .map_err(err)?;
        if schedules != self.schedules {
            return Err("schedule records differ from RAM".into());
        }
        let due: BTreeSet<(TimeMs, String)> =
            self.schedules.values().filter_map(|sc| Some((sc.next_ms?, sc.def.name.clone()))).collect();
        if due != self.schedule_due {
            return Err("the schedules' due-time index differs from the schedules".into());
        }
        let mut turns = BTreeMap::new();
        scan_all(cold, Kind::Turn, |r| {
            if let Record::Turn(q, k) = r {
                turns.insert(q, k);
            }
        })
        .map_err(err)?;
        if &turns != self.idx.ready.all_turns() {
            return Err("fair-queue turn records differ from RAM".into());
        }
        if self.dirty_counts.is_empty() {
            let mut counts = BTreeMap::new();
            scan_all(cold, Kind::Counts, |r| {
                if let Record::Counts(q, c) = r {
                    counts.insert(q, c);
                }
            })
            .map_err(err)?;
            let ram: BTreeMap<String, StateCounts> =
                self.counts.iter().filter(|(_, c)| c.iter().any(|n| *n > 0)).map(|(q, c)| (q.clone(), *c)).collect();
            if counts != ram {
                return Err(format!("count records {counts:?} differ from RAM {ram:?}"));
            }
        }
        let first_at = |kind| -> Result<Option<u64>, String> {
            Ok(cold.scan(kind, None, 1).map_err(err)?.into_iter().next().and_then(|r| match r {
                Record::Retention(at, _) | Record::DedupExpiry(at, _) => Some(at),
                _ => None,
            }))
        };
        for (name, head, first) in [
            ("retention", self.retention_head, first_at(Kind::Retention)?),
            ("dedup expiry", self.dedup.head, first_at(Kind::DedupExpiry)?),
        ] {
            match (head, first) {
                (_, None) => {}
                (Some(h), Some(f)) if h <= f => {}
                _ => return Err(format!("{name} head {head:?} is after the first index record {first:?}")),
            }
        }
        if full {
            self.validate_records(cold)?;
        }
        Ok(())
    }

    /// Every record: finished tasks and their indexes, payloads, progress, keys.
    fn validate_records(&self, cold: &dyn Cold) -> Result<(), String> {
        let err = |e: crate::store::ColdError| e.to_string();
        let mut kinds: BTreeMap<Kind, Vec<Record>> = BTreeMap::new();
        for kind in Kind::ALL {
            let mut v = Vec::new();
            scan_all(cold, kind, |r| v.push(r)).map_err(err)?;
            kinds.insert(kind, v);
        }
        let get = |k: Kind| kinds.get(&k).map(Vec::as_slice).unwrap_or_default();
        let mut counts: BTreeMap<String, StateCounts> = BTreeMap::new();
        let mut tasks: BTreeMap<TaskId, (&String, TaskState, Option<u64>, u64, u32, Option<&String>)> = BTreeMap::new();
        for r in get(Kind::Live).iter().chain(get(Kind::Done)) {
            let Record::Task(t) = r else { return Err(format!("{:?} under a task key", r.key())) };
            counts.entry(t.queue.clone()).or_default()[t.state.index()] += 1;
            check_flow(t)?;
            if !t.is_live() {
                check_task_history(t)?;
                if t.finished_ms.is_none() || t.lease.is_some() {
                    return Err(format!("task {}: {} without finish time or with a lease", t.id, t.state.as_str()));
                }
            }
            tasks.insert(
                t.id,
                (&t.queue, t.state, t.purge_after_ms, t.progress_dropped, t.progress_count, t.idempotency_key.as_ref()),
            );
        }
        let ram: BTreeMap<String, StateCounts> =
            self.counts.iter().filter(|(_, c)| c.iter().any(|n| *n > 0)).map(|(q, c)| (q.clone(), *c)).collect();
        if counts != ram {
            return Err(format!("counts {ram:?} differ from the task records {counts:?}"));
        }
        let finished: BTreeSet<(String, TaskState, TaskId)> = get(Kind::Finished)
            .iter()
            .filter_map(|r| match r {
                Record::Finished(q, s, id) => Some((q.clone(), *s, *id)),
                _ => None,
            })
            .collect();
        let retention: BTreeSet<(u64, TaskId)> = get(Kind::Retention)
            .iter()
            .filter_map(|r| match r {
                Record::Retention(at, id) => Some((*at, *id)),
                _ => None,
            })
            .collect();
        let mut want_finished = BTreeSet::new();
        let mut want_retention = BTreeSet::new();
        for (id, (q, s, purge, _, _, _)) in &tasks {
            if s.is_terminal() {
                want_finished.insert(((*q).clone(), *s, *id));
                if let Some(at) = purge {
                    want_retention.insert((*at, *id));
                }
            }
        }
        if finished != want_finished {
            return Err("the finished-task index differs from the finished tasks".into());
        }
        if retention != want_retention {
            return Err("the retention index differs from the finished tasks".into());
        }
        let payloads: BTreeSet<TaskId> = get(Kind::Payload)
            .iter()
            .filter_map(|r| match r {
                Record::Payload(id, _) => Some(*id),
                _ => None,
            })
            .collect();
        if payloads != tasks.keys().copied().collect::<BTreeSet<_>>() {
            return Err("payload records and task records name different tasks".into());
        }
        let mut progress: BTreeMap<TaskId, Vec<u64>> = BTreeMap::new();
        for r in get(Kind::Progress) {
            if let Record::Progress(id, seq, _) = r {
                progress.entry(*id).or_default().push(*seq);
            }
        }
        for (id, (_, _, _, dropped, count, _)) in &tasks {
            let want: Vec<u64> = (*dropped..*dropped + *count as u64).collect();
            if progress.remove(id).unwrap_or_default() != want {
                return Err(format!("task {id}: progress events differ from {want:?}"));
            }
        }
        if let Some(id) = progress.keys().next() {
            return Err(format!("progress events of task {id}, which has no record"));
        }
        let mut dedup: BTreeMap<&DedupKey, u64> = BTreeMap::new();
        for r in get(Kind::Dedup) {
            if let Record::Dedup(k, e) = r {
                if e.task_id >= self.meta.next_id {
                    return Err(format!("dedup key {k:?} names a task id never assigned"));
                }
                if let Some((q, _, _, _, _, key)) = tasks.get(&e.task_id) {
                    if *q != &k.queue || key.map(String::as_str) != Some(k.key.as_str()) {
                        return Err(format!("dedup key {k:?} maps to task {} with another key", e.task_id));
                    }
                }
                dedup.insert(k, e.expires_ms);
            }
        }
        if dedup.len() as u64 != self.meta.dedup_keys {
            return Err(format!("{} dedup records, the counter says {}", dedup.len(), self.meta.dedup_keys));
        }
        let mut expiry: BTreeSet<(u64, &DedupKey)> = BTreeSet::new();
        for r in get(Kind::DedupExpiry) {
            if let Record::DedupExpiry(at, k) = r {
                expiry.insert((*at, k));
            }
        }
        let want: BTreeSet<(u64, &DedupKey)> = dedup.iter().map(|(k, at)| (*at, *k)).collect();
        if expiry != want {
            return Err("the dedup expiry index differs from the dedup records".into());
        }
        Ok(())
    }
}

/// Attempts within their limit, lease tokens increasing.
fn check_task_history(t: &crate::record::TaskRecord) -> Result<(), String> {
    if t.attempts.len() as u32 > t.attempt_limit {
        return Err(format!("task {}: {} attempts over its limit {}", t.id, t.attempts.len(), t.attempt_limit));
    }
    if t.state.is_terminal() != t.finished_ms.is_some() {
        return Err(format!("task {}: finished_ms does not match state {}", t.id, t.state.as_str()));
    }
    if t.attempts.windows(2).any(|w| w[1].lease_token <= w[0].lease_token) {
        return Err(format!("task {}: lease tokens not increasing", t.id));
    }
    Ok(())
}

/// A task waits iff it has unfinished tasks to wait for, and those are among its dependencies
/// (`waiting`) or its children (`waiting_children`); no task has more children than allowed.
fn check_flow(t: &crate::record::TaskRecord) -> Result<(), String> {
    let (unfinished, all) = match &t.flow {
        Some(f) if t.state == TaskState::WaitingChildren => (f.unfinished.as_slice(), f.children()),
        Some(f) => (f.unfinished.as_slice(), f.depends_on.as_slice()),
        None => (&[][..], &[][..]),
    };
    if t.state.is_waiting() == unfinished.is_empty() {
        return Err(format!("task {}: {} while waiting on {unfinished:?}", t.id, t.state.as_str()));
    }
    if unfinished.iter().any(|u| !all.contains(u)) {
        return Err(format!("task {}: waiting on {unfinished:?}, not all among {all:?}", t.id));
    }
    if t.flow.as_ref().is_some_and(|f| f.children().len() > crate::flow::CHILDREN_MAX) {
        return Err(format!("task {}: more than {} children", t.id, crate::flow::CHILDREN_MAX));
    }
    if t.flow.as_ref().is_some_and(|f| f.ext.iter().any(|e| matches!(e, crate::flow::FlowExt::ParentLease(_)))) {
        return Err(format!("task {}: a parent's lease token is stored", t.id));
    }
    Ok(())
}

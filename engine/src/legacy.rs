//! The state image of releases before the record store (backup files of format 1), frozen, and
//! its conversion to records, so that an old backup restores into this release.
//!
//! These types must never change: postcard is not self-describing, and the bytes of an old backup
//! decode only into exactly the shapes that wrote them. Where a current type has kept its shape
//! (tasks, tokens, audit entries, idempotency keys) it is reused; `tests/upgrade.rs` decodes a
//! backup written by the old release and fails if that stops being true.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::access::{AuditEntry, Token};
use crate::agent::{AgentStatus, OutcomeStats};
use crate::config::{EngineConfig, QueueConfig};
use crate::dedup::{DedupEntry, DedupKey};
use crate::dispatch::Strategy;
use crate::record::{Record, StateCounts, TaskRecord};
use crate::state::Meta;
use crate::task::{Task, TaskId, TimeMs};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyEngineConfig {
    pub max_attempts: u32,
    pub lease_ms: u64,
    pub dedup_ttl_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub retention_ms: u64,
    pub payload_bytes_max: u64,
    pub strategy: Strategy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyQueueConfig {
    pub max_attempts: Option<u32>,
    pub lease_ms: Option<u64>,
    pub dedup_ttl_ms: Option<u64>,
    pub retry_base_ms: Option<u64>,
    pub retry_max_ms: Option<u64>,
    pub retention_ms: Option<u64>,
    pub payload_bytes_max: Option<u64>,
    pub stall_timeout_ms: Option<u64>,
    pub strategy: Option<Strategy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyAgentStats {
    pub in_flight: u32,
    pub overall: OutcomeStats,
    pub by_capability: BTreeMap<String, OutcomeStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyAgent {
    pub id: String,
    pub name: String,
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub labels: BTreeMap<String, String>,
    pub status: AgentStatus,
    pub incarnation: u64,
    pub registered_ms: TimeMs,
    pub updated_ms: TimeMs,
    pub stats: LegacyAgentStats,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyMeta {
    pub config: LegacyEngineConfig,
    pub next_id: TaskId,
    pub next_token: u64,
    pub clock: TimeMs,
    pub next_incarnation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LegacyExtra {
    Traces(Vec<(TaskId, String)>),
    Tokens(Vec<Token>),
    Audit(Vec<AuditEntry>),
}

/// The image with extras (the last format before records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyImage {
    pub meta: LegacyMeta,
    pub tasks: Vec<Arc<Task>>,
    pub dedup: Vec<(DedupKey, DedupEntry)>,
    pub queues: Vec<(String, LegacyQueueConfig)>,
    pub agents: Vec<LegacyAgent>,
    pub extras: Vec<LegacyExtra>,
}

/// The first image format (no extras).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyImageV1 {
    pub meta: LegacyMeta,
    pub tasks: Vec<Arc<Task>>,
    pub dedup: Vec<(DedupKey, DedupEntry)>,
    pub queues: Vec<(String, LegacyQueueConfig)>,
    pub agents: Vec<LegacyAgent>,
}

impl From<LegacyImageV1> for LegacyImage {
    fn from(v: LegacyImageV1) -> Self {
        LegacyImage { meta: v.meta, tasks: v.tasks, dedup: v.dedup, queues: v.queues, agents: v.agents, extras: vec![] }
    }
}

fn engine_config(c: LegacyEngineConfig) -> EngineConfig {
    EngineConfig {
        max_attempts: c.max_attempts,
        lease_ms: c.lease_ms,
        dedup_ttl_ms: c.dedup_ttl_ms,
        retry_base_ms: c.retry_base_ms,
        retry_max_ms: c.retry_max_ms,
        retention_ms: c.retention_ms,
        payload_bytes_max: c.payload_bytes_max,
        strategy: c.strategy,
    }
}

fn queue_config(c: LegacyQueueConfig) -> QueueConfig {
    QueueConfig {
        max_attempts: c.max_attempts,
        lease_ms: c.lease_ms,
        dedup_ttl_ms: c.dedup_ttl_ms,
        retry_base_ms: c.retry_base_ms,
        retry_max_ms: c.retry_max_ms,
        retention_ms: c.retention_ms,
        payload_bytes_max: c.payload_bytes_max,
        stall_timeout_ms: c.stall_timeout_ms,
        strategy: c.strategy,
    }
}

fn agent(a: LegacyAgent) -> crate::agent::Agent {
    crate::agent::Agent {
        id: a.id,
        name: a.name,
        capabilities: a.capabilities,
        max_concurrency: a.max_concurrency,
        labels: a.labels,
        status: a.status,
        incarnation: a.incarnation,
        registered_ms: a.registered_ms,
        updated_ms: a.updated_ms,
        stats: crate::agent::AgentStats {
            in_flight: a.stats.in_flight,
            overall: a.stats.overall,
            by_capability: a.stats.by_capability,
        },
    }
}

impl LegacyImage {
    /// The records this image describes, and the counters that go with them.
    pub fn into_records(self) -> (Vec<Record>, Meta) {
        let mut traces: BTreeMap<TaskId, String> = BTreeMap::new();
        let mut out = Vec::new();
        let mut next_audit = 1;
        for e in self.extras {
            match e {
                LegacyExtra::Traces(t) => traces.extend(t),
                LegacyExtra::Tokens(t) => out.extend(t.into_iter().map(Record::Token)),
                LegacyExtra::Audit(a) => {
                    next_audit = a.iter().map(|e| e.seq + 1).max().unwrap_or(1).max(next_audit);
                    out.extend(a.into_iter().map(Record::Audit));
                }
            }
        }
        let mut counts: BTreeMap<String, StateCounts> = BTreeMap::new();
        for t in self.tasks {
            let t = Arc::unwrap_or_clone(t);
            let trace = traces.remove(&t.id);
            let (rec, payload, progress): (TaskRecord, _, _) = TaskRecord::from_task(t, trace);
            counts.entry(rec.queue.clone()).or_default()[rec.state.index()] += 1;
            out.push(Record::Payload(rec.id, payload));
            for (i, e) in progress.into_iter().enumerate() {
                out.push(Record::Progress(rec.id, rec.progress_dropped + i as u64, e));
            }
            if !rec.is_live() {
                out.push(Record::Finished(rec.queue.clone(), rec.state, rec.id));
                if let Some(at) = rec.purge_after_ms {
                    out.push(Record::Retention(at, rec.id));
                }
            }
            out.push(Record::Task(rec));
        }
        let dedup_keys = self.dedup.len() as u64;
        for (k, e) in self.dedup {
            out.push(Record::DedupExpiry(e.expires_ms, k.clone()));
            out.push(Record::Dedup(k, e));
        }
        out.extend(counts.into_iter().map(|(q, c)| Record::Counts(q, c)));
        out.extend(self.queues.into_iter().map(|(q, c)| Record::Queue(q, queue_config(c))));
        out.extend(self.agents.into_iter().map(|a| Record::Agent(agent(a))));
        let m = self.meta;
        let meta = Meta {
            config: engine_config(m.config),
            next_id: m.next_id,
            next_token: m.next_token,
            clock: m.clock,
            next_incarnation: m.next_incarnation,
            next_audit,
            dedup_keys,
            restoring: None,
            restored_records: 0,
        };
        (out, meta)
    }
}

/// A task record as releases before record version 2 stored it (no [`crate::flow::Flow`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecordV1 {
    pub id: TaskId,
    pub queue: String,
    pub kind: String,
    pub capabilities: Vec<String>,
    pub priority: i32,
    pub idempotency_key: Option<String>,
    pub max_attempts: u32,
    pub attempt_limit: u32,
    pub lease_ms: u64,
    pub stall_timeout_ms: Option<u64>,
    pub state: crate::task::TaskState,
    pub created_ms: TimeMs,
    pub updated_ms: TimeMs,
    pub run_at_ms: TimeMs,
    pub lease: Option<crate::task::Lease>,
    pub attempts: Vec<crate::task::Attempt>,
    pub progress_count: u32,
    pub progress_dropped: u64,
    pub result: Option<String>,
    pub last_error: Option<String>,
    pub finished_ms: Option<TimeMs>,
    pub purge_after_ms: Option<TimeMs>,
    pub cancel_reason: Option<String>,
    pub trace_parent: Option<String>,
}

impl TaskRecordV1 {
    pub fn key(&self) -> crate::record::Key {
        if self.state.is_terminal() {
            crate::record::Key::Done(self.id)
        } else {
            crate::record::Key::Live(self.id)
        }
    }

    /// The same task in the current shape.
    pub fn upgrade(self) -> TaskRecord {
        TaskRecord {
            id: self.id,
            queue: self.queue,
            kind: self.kind,
            capabilities: self.capabilities,
            priority: self.priority,
            idempotency_key: self.idempotency_key,
            max_attempts: self.max_attempts,
            attempt_limit: self.attempt_limit,
            lease_ms: self.lease_ms,
            stall_timeout_ms: self.stall_timeout_ms,
            state: self.state,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            run_at_ms: self.run_at_ms,
            lease: self.lease,
            attempts: self.attempts,
            progress_count: self.progress_count,
            progress_dropped: self.progress_dropped,
            result: self.result,
            last_error: self.last_error,
            finished_ms: self.finished_ms,
            purge_after_ms: self.purge_after_ms,
            cancel_reason: self.cancel_reason,
            trace_parent: self.trace_parent,
            flow: None,
        }
    }
}

/// A submitted task's flow before [`crate::flow::TaskFlow::ext`] (in [`crate::Command::SubmitFlow`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFlowV1 {
    pub depends_on: Vec<crate::flow::DepRef>,
    pub on_dependency_failure: crate::flow::DepPolicy,
    pub deadline_ms: Option<TimeMs>,
    pub deadline_in_ms: Option<u64>,
}

impl TaskFlowV1 {
    /// The flow without `ext` (the caller checks it is empty).
    pub fn from_current(f: &crate::flow::TaskFlow) -> TaskFlowV1 {
        TaskFlowV1 {
            depends_on: f.depends_on.clone(),
            on_dependency_failure: f.on_dependency_failure,
            deadline_ms: f.deadline_ms,
            deadline_in_ms: f.deadline_in_ms,
        }
    }

    pub fn upgrade(&self) -> crate::flow::TaskFlow {
        crate::flow::TaskFlow {
            depends_on: self.depends_on.clone(),
            on_dependency_failure: self.on_dependency_failure,
            deadline_ms: self.deadline_ms,
            deadline_in_ms: self.deadline_in_ms,
            ext: Vec::new(),
        }
    }
}

/// A task's flow as record version 2 stored it (before [`crate::flow::Flow::ext`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowV2 {
    pub depends_on: Vec<TaskId>,
    pub on_dependency_failure: crate::flow::DepPolicy,
    pub unfinished: Vec<TaskId>,
    pub deadline_ms: Option<TimeMs>,
}

/// A task record of record version 2.
pub type TaskRecordV2 = TaskRecord<FlowV2>;

/// The same task in the current shape.
pub fn upgrade_v2(t: TaskRecordV2) -> TaskRecord {
    t.map_flow(|f| crate::flow::Flow {
        depends_on: f.depends_on,
        on_dependency_failure: f.on_dependency_failure,
        unfinished: f.unfinished,
        deadline_ms: f.deadline_ms,
        ext: Vec::new(),
    })
}

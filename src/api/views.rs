//! The v1 wire types ([`minion_client::wire`], shared with every client) and their conversions
//! from and to the engine's types.

pub use minion_client::wire::*;
use minion_engine::{
    Attempt, AttemptOutcome, Cold, ColdError, DepPolicy, DepRef, EventBody, Flow, FlowExt, Lease, NewTask,
    ProgressEvent, Task, TaskEvent, TaskFlow,
};
use serde_json::value::RawValue;

/// A submitted task as the engine takes it.
pub fn new_task(t: TaskIn) -> NewTask {
    NewTask {
        queue: t.queue,
        kind: t.kind,
        payload: t.payload.map(|p| p.get().to_string()).unwrap_or_else(|| "null".into()),
        capabilities: t.capabilities,
        priority: t.priority,
        idempotency_key: t.idempotency_key,
        run_at_ms: t.run_at_ms,
        delay_ms: t.delay_ms,
        max_attempts: t.max_attempts,
        lease_ms: t.lease_ms,
        stall_timeout_ms: t.stall_timeout_ms,
    }
}

/// What each task of a submit depends on, in the engine's terms: ids stay ids, an idempotency
/// key names the task of the batch that has it. Empty when no task names a dependency.
pub fn task_flows(tasks: &[TaskIn]) -> Result<Vec<TaskFlow>, String> {
    let plain = |t: &TaskIn| {
        t.depends_on.is_empty()
            && t.on_dependency_failure.is_none()
            && t.deadline_ms.is_none()
            && t.deadline_in_ms.is_none()
            && t.concurrency_key.is_none()
    };
    if tasks.iter().all(plain) {
        return Ok(Vec::new());
    }
    let by_key = |i: usize, key: &str| -> Result<DepRef, String> {
        let mut found = tasks.iter().enumerate().filter(|(_, t)| t.idempotency_key.as_deref() == Some(key));
        match (found.next(), found.next()) {
            (Some((j, _)), None) => Ok(DepRef::Batch(j as u32)),
            (None, _) => {
                Err(format!("tasks[{i}]: depends on {key:?}, but no task of this batch has that idempotency key"))
            }
            (Some(_), Some(_)) => Err(format!(
                "tasks[{i}]: depends on {key:?}, which is the idempotency key of several tasks of this batch"
            )),
        }
    };
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let depends_on = t
                .depends_on
                .iter()
                .map(|d| match d {
                    DependencyRef::Id(id) => Ok(DepRef::Task(*id)),
                    DependencyRef::Key(k) => by_key(i, k),
                })
                .collect::<Result<_, _>>()?;
            Ok(TaskFlow {
                depends_on,
                on_dependency_failure: policy_in(t.on_dependency_failure.unwrap_or_default()),
                deadline_ms: t.deadline_ms,
                deadline_in_ms: t.deadline_in_ms,
                ext: t.concurrency_key.iter().map(|k| FlowExt::ConcurrencyKey(k.clone())).collect(),
            })
        })
        .collect()
}

/// Tasks a task's view lists (its dependencies, its children): each as it is now, read from the
/// records.
pub fn related_out(cold: &dyn Cold, ids: &[u64]) -> Result<Vec<DependencyOut>, ColdError> {
    let mut out = Vec::with_capacity(ids.len());
    for &dep in ids {
        let rec = minion_engine::task_record(cold, dep)?;
        out.push(DependencyOut {
            id: dep,
            state: rec.as_ref().map(|r| state_out(r.state)),
            result: rec.as_ref().and_then(|r| r.result.as_deref()).map(raw),
            last_error: rec.and_then(|r| r.last_error),
        });
    }
    Ok(out)
}

/// The parts of a task's view its flow decides (dependencies read back from the records).
pub fn flow_out(out: &mut TaskOut, cold: &dyn Cold, flow: Option<&Flow>) -> Result<(), ColdError> {
    let Some(f) = flow else { return Ok(()) };
    out.deadline_ms = f.deadline_ms;
    out.concurrency_key = f.concurrency_key().map(str::to_string);
    if !f.depends_on.is_empty() {
        out.depends_on = related_out(cold, &f.depends_on)?;
        out.on_dependency_failure = Some(policy_out(f.on_dependency_failure));
    }
    out.parent_id = f.parent();
    out.children = related_out(cold, f.children())?;
    Ok(())
}

fn policy_in(p: DependencyPolicy) -> DepPolicy {
    match p {
        DependencyPolicy::Cancel => DepPolicy::Cancel,
        DependencyPolicy::RunAnyway => DepPolicy::RunAnyway,
    }
}

fn policy_out(p: DepPolicy) -> DependencyPolicy {
    match p {
        DepPolicy::Cancel => DependencyPolicy::Cancel,
        DepPolicy::RunAnyway => DependencyPolicy::RunAnyway,
    }
}

/// An ingest record refused as a task, as the engine records it.
pub fn rejected_record(r: RejectedIn) -> minion_engine::RejectedRecord {
    let payload = serde_json::json!({ "source": r.source, "record": r.record }).to_string();
    minion_engine::RejectedRecord {
        queue: r.queue,
        kind: r.kind,
        reason: r.reason,
        payload,
        idempotency_key: r.idempotency_key,
    }
}

/// JSON text stored by the engine, emitted verbatim.
fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string())
        .unwrap_or_else(|_| serde_json::value::to_raw_value(text).unwrap_or_else(|_| RawValue::NULL.to_owned()))
}

pub fn state_out(s: minion_engine::TaskState) -> TaskState {
    use minion_engine::TaskState as S;
    match s {
        S::Ready => TaskState::Ready,
        S::Delayed => TaskState::Delayed,
        S::Leased => TaskState::Leased,
        S::Succeeded => TaskState::Succeeded,
        S::Failed => TaskState::Failed,
        S::Dead => TaskState::Dead,
        S::Cancelled => TaskState::Cancelled,
        S::Rejected => TaskState::Rejected,
        S::Waiting => TaskState::Waiting,
        S::WaitingChildren => TaskState::WaitingChildren,
    }
}

fn lease_out(l: &Lease) -> LeaseOut {
    LeaseOut {
        token: l.token,
        agent_id: l.agent_id.clone(),
        incarnation: l.incarnation,
        expires_ms: l.expires_ms,
        stall_deadline_ms: l.stall_deadline_ms,
    }
}

fn progress_out(p: &ProgressEvent) -> ProgressOut {
    ProgressOut { at_ms: p.at_ms, attempt: p.attempt, percent: p.percent, message: p.message.clone() }
}

fn attempt_out(a: &Attempt) -> AttemptOut {
    AttemptOut {
        number: a.number,
        agent_id: a.agent_id.clone(),
        lease_token: a.lease_token,
        started_ms: a.started_ms,
        ended_ms: a.ended_ms,
        outcome: a.outcome.as_ref().map(|o| OutcomeOut {
            outcome: o.as_str().to_string(),
            error: match o {
                AttemptOutcome::Failed { error } => Some(error.clone()),
                _ => None,
            },
        }),
    }
}

/// A task as the API shows it, with the trace context it was submitted with.
pub fn task_out(t: &Task, trace_parent: Option<String>) -> TaskOut {
    TaskOut {
        id: t.id,
        queue: t.queue.clone(),
        kind: t.kind.clone(),
        state: state_out(t.state),
        payload: raw(&t.payload),
        result: t.result.as_deref().map(raw),
        capabilities: t.capabilities.clone(),
        priority: t.priority,
        idempotency_key: t.idempotency_key.clone(),
        max_attempts: t.max_attempts,
        attempt_limit: t.attempt_limit,
        lease_ms: t.lease_ms,
        stall_timeout_ms: t.stall_timeout_ms,
        lease: t.lease.as_ref().map(lease_out),
        created_ms: t.created_ms,
        updated_ms: t.updated_ms,
        run_at_ms: t.run_at_ms,
        finished_ms: t.finished_ms,
        last_error: t.last_error.clone(),
        cancel_reason: t.cancel_reason.clone(),
        attempts: t.attempts.iter().map(attempt_out).collect(),
        progress: t.progress.iter().map(progress_out).collect(),
        progress_dropped: t.progress_dropped,
        trace_parent,
        depends_on: Vec::new(),
        on_dependency_failure: None,
        deadline_ms: None,
        concurrency_key: None,
        parent_id: None,
        children: Vec::new(),
    }
}

fn outcome_stats(o: &minion_engine::OutcomeStats) -> OutcomeStatsOut {
    OutcomeStatsOut { completed: o.completed, failed: o.failed, latency_ewma_ms: o.latency_ewma_ms }
}

/// An agent as the API shows it, with the leader's view of when it was last heard from.
pub fn agent_out(a: &minion_engine::Agent, last_seen_ms_ago: Option<u64>) -> AgentOut {
    AgentOut {
        id: a.id.clone(),
        name: a.name.clone(),
        capabilities: a.capabilities.clone(),
        max_concurrency: a.max_concurrency,
        labels: a.labels.clone(),
        status: a.status.as_str().to_string(),
        incarnation: a.incarnation,
        registered_ms: a.registered_ms,
        updated_ms: a.updated_ms,
        stats: AgentStatsOut {
            in_flight: a.stats.in_flight,
            overall: outcome_stats(&a.stats.overall),
            by_capability: a.stats.by_capability.iter().map(|(k, v)| (k.clone(), outcome_stats(v))).collect(),
        },
        last_seen_ms_ago,
    }
}

/// A task event as an event stream's data.
pub fn event_out(e: &TaskEvent) -> EventOut {
    let mut out = EventOut {
        task_id: e.task_id,
        queue: e.queue.clone(),
        kind: e.task_kind.clone(),
        at_ms: e.at_ms,
        state: None,
        attempt: 0,
        agent_id: None,
        result: None,
        error: None,
        seq: None,
        percent: None,
        message: None,
    };
    match &e.body {
        EventBody::State { state, attempt, agent_id, result, error, .. } => {
            out.state = Some(state_out(*state));
            out.attempt = *attempt;
            out.agent_id = agent_id.clone();
            out.result = result.as_deref().map(raw);
            out.error = error.clone();
        }
        EventBody::Progress { seq, report } => {
            out.seq = Some(*seq);
            out.attempt = report.attempt;
            out.percent = report.percent;
            out.message = report.message.clone();
        }
    }
    out
}

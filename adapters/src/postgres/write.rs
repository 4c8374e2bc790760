//! Writing ledger records into PostgreSQL: multi-row upserts from one JSON array per statement.

use serde_json::{json, Value};
use tokio_postgres::Transaction;

use super::ExportError;

/// The last state of each record a batch touched, in the order they apply.
#[derive(Default)]
pub struct Batch {
    /// Task id → the task as the API renders it, or `None` for a removal.
    pub tasks: std::collections::BTreeMap<u64, Option<Value>>,
    pub agents: std::collections::BTreeMap<String, Option<Value>>,
    pub dedup: std::collections::BTreeMap<(String, String), Option<(u64, u64)>>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.agents.is_empty() && self.dedup.is_empty()
    }

    pub fn records(&self) -> usize {
        self.tasks.len() + self.agents.len() + self.dedup.len()
    }

    /// Fold one change-feed record in (later records supersede earlier ones).
    pub fn add_change(&mut self, c: &Value) {
        match c["type"].as_str() {
            Some("task") => {
                if let Some(id) = c["task"]["id"].as_u64() {
                    self.tasks.insert(id, Some(c["task"].clone()));
                }
            }
            Some("task_removed") => {
                if let Some(id) = c["id"].as_u64() {
                    self.tasks.insert(id, None);
                }
            }
            Some("agent") => {
                if let Some(id) = c["agent"]["id"].as_str() {
                    self.agents.insert(id.to_string(), Some(c["agent"].clone()));
                }
            }
            Some("agent_removed") => {
                if let Some(id) = c["id"].as_str() {
                    self.agents.insert(id.to_string(), None);
                }
            }
            Some("dedup") => {
                let key = (c["queue"].as_str().unwrap_or("").to_string(), c["key"].as_str().unwrap_or("").to_string());
                self.dedup
                    .insert(key, Some((c["task_id"].as_u64().unwrap_or(0), c["expires_ms"].as_u64().unwrap_or(0))));
            }
            Some("dedup_removed") => {
                let key = (c["queue"].as_str().unwrap_or("").to_string(), c["key"].as_str().unwrap_or("").to_string());
                self.dedup.insert(key, None);
            }
            _ => {}
        }
    }
}

fn task_row(t: &Value) -> Value {
    let attempts = t["attempts"].as_array().cloned().unwrap_or_default();
    json!({
        "id": t["id"], "queue": t["queue"], "kind": t["kind"], "state": t["state"],
        "payload": t["payload"], "result": t["result"], "capabilities": t["capabilities"],
        "priority": t["priority"], "idempotency_key": t["idempotency_key"],
        "max_attempts": t["max_attempts"], "attempt_limit": t["attempt_limit"], "attempt_count": attempts.len(),
        "lease_ms": t["lease_ms"], "lease_token": t["lease"]["token"], "lease_agent": t["lease"]["agent_id"],
        "lease_expires_ms": t["lease"]["expires_ms"],
        "last_agent": attempts.last().map(|a| a["agent_id"].clone()).unwrap_or(Value::Null),
        "last_error": t["last_error"], "cancel_reason": t["cancel_reason"], "attempts": attempts,
        "created_ms": t["created_ms"], "updated_ms": t["updated_ms"], "run_at_ms": t["run_at_ms"], "finished_ms": t["finished_ms"],
    })
}

fn progress_rows(t: &Value, out: &mut Vec<Value>) {
    let dropped = t["progress_dropped"].as_u64().unwrap_or(0);
    for (i, p) in t["progress"].as_array().into_iter().flatten().enumerate() {
        out.push(json!({
            "task_id": t["id"], "seq": dropped + i as u64, "at_ms": p["at_ms"], "attempt": p["attempt"],
            "percent": p["percent"], "message": p["message"],
        }));
    }
}

fn agent_row(a: &Value) -> Value {
    json!({
        "id": a["id"], "name": a["name"], "status": a["status"], "incarnation": a["incarnation"],
        "capabilities": a["capabilities"], "max_concurrency": a["max_concurrency"], "labels": a["labels"],
        "in_flight": a["stats"]["in_flight"], "completed": a["stats"]["overall"]["completed"],
        "failed": a["stats"]["overall"]["failed"], "latency_ewma_ms": a["stats"]["overall"]["latency_ewma_ms"],
        "stats": a["stats"], "registered_ms": a["registered_ms"], "updated_ms": a["updated_ms"],
    })
}

const UPSERT_TASKS: &str = "
INSERT INTO tasks (id, queue, kind, state, payload, result, capabilities, priority, idempotency_key,
    max_attempts, attempt_limit, attempt_count, lease_ms, lease_token, lease_agent, lease_expires_at,
    last_agent, last_error, cancel_reason, attempts, created_at, engine_updated_at, run_at, finished_at)
SELECT x.id, x.queue, x.kind, x.state, x.payload, x.result,
    ARRAY(SELECT jsonb_array_elements_text(x.capabilities)), x.priority, x.idempotency_key,
    x.max_attempts, x.attempt_limit, x.attempt_count, x.lease_ms, x.lease_token, x.lease_agent,
    to_timestamp(x.lease_expires_ms / 1000.0), x.last_agent, x.last_error, x.cancel_reason, x.attempts,
    to_timestamp(x.created_ms / 1000.0), to_timestamp(x.updated_ms / 1000.0), to_timestamp(x.run_at_ms / 1000.0),
    to_timestamp(x.finished_ms / 1000.0)
FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, queue text, kind text, state text, payload jsonb,
    result jsonb, capabilities jsonb, priority integer, idempotency_key text, max_attempts integer,
    attempt_limit integer, attempt_count integer, lease_ms bigint, lease_token bigint, lease_agent text,
    lease_expires_ms bigint, last_agent text, last_error text, cancel_reason text, attempts jsonb,
    created_ms bigint, updated_ms bigint, run_at_ms bigint, finished_ms bigint)
ON CONFLICT (id) DO UPDATE SET queue = EXCLUDED.queue, kind = EXCLUDED.kind, state = EXCLUDED.state,
    payload = EXCLUDED.payload, result = EXCLUDED.result, capabilities = EXCLUDED.capabilities,
    priority = EXCLUDED.priority, idempotency_key = EXCLUDED.idempotency_key,
    max_attempts = EXCLUDED.max_attempts, attempt_limit = EXCLUDED.attempt_limit,
    attempt_count = EXCLUDED.attempt_count, lease_ms = EXCLUDED.lease_ms, lease_token = EXCLUDED.lease_token,
    lease_agent = EXCLUDED.lease_agent, lease_expires_at = EXCLUDED.lease_expires_at,
    last_agent = EXCLUDED.last_agent, last_error = EXCLUDED.last_error, cancel_reason = EXCLUDED.cancel_reason,
    attempts = EXCLUDED.attempts, created_at = EXCLUDED.created_at, engine_updated_at = EXCLUDED.engine_updated_at,
    run_at = EXCLUDED.run_at, finished_at = EXCLUDED.finished_at";

const INSERT_PROGRESS: &str = "
INSERT INTO task_progress (task_id, seq, at, attempt, percent, message)
SELECT x.task_id, x.seq, to_timestamp(x.at_ms / 1000.0), x.attempt, x.percent, x.message
FROM jsonb_to_recordset($1::jsonb) AS x(task_id bigint, seq bigint, at_ms bigint, attempt integer, percent smallint, message text)";

const UPSERT_AGENTS: &str = "
INSERT INTO agent_state (id, name, status, incarnation, capabilities, max_concurrency, labels, in_flight,
    completed, failed, latency_ewma_ms, stats, registered_at, engine_updated_at)
SELECT x.id, x.name, x.status, x.incarnation, ARRAY(SELECT jsonb_array_elements_text(x.capabilities)),
    x.max_concurrency, x.labels, x.in_flight, x.completed, x.failed, x.latency_ewma_ms, x.stats,
    to_timestamp(x.registered_ms / 1000.0), to_timestamp(x.updated_ms / 1000.0)
FROM jsonb_to_recordset($1::jsonb) AS x(id text, name text, status text, incarnation bigint, capabilities jsonb,
    max_concurrency integer, labels jsonb, in_flight integer, completed bigint, failed bigint,
    latency_ewma_ms bigint, stats jsonb, registered_ms bigint, updated_ms bigint)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, status = EXCLUDED.status, incarnation = EXCLUDED.incarnation,
    capabilities = EXCLUDED.capabilities, max_concurrency = EXCLUDED.max_concurrency, labels = EXCLUDED.labels,
    in_flight = EXCLUDED.in_flight, completed = EXCLUDED.completed, failed = EXCLUDED.failed,
    latency_ewma_ms = EXCLUDED.latency_ewma_ms, stats = EXCLUDED.stats, registered_at = EXCLUDED.registered_at,
    engine_updated_at = EXCLUDED.engine_updated_at";

const UPSERT_DEDUP: &str = "
INSERT INTO message_dedup (queue, key, task_id, expires_at)
SELECT x.queue, x.key, x.task_id, to_timestamp(x.expires_ms / 1000.0)
FROM jsonb_to_recordset($1::jsonb) AS x(queue text, key text, task_id bigint, expires_ms bigint)
ON CONFLICT (queue, key) DO UPDATE SET task_id = EXCLUDED.task_id, expires_at = EXCLUDED.expires_at";

/// Write a batch inside `tx` (the caller commits, together with the export position).
pub async fn write(tx: &Transaction<'_>, batch: &Batch) -> Result<(), ExportError> {
    let pg = |context: &'static str| move |e| ExportError::Postgres { context, source: e };
    let (mut upserts, mut progress, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for (id, t) in &batch.tasks {
        match t {
            Some(t) => {
                upserts.push(task_row(t));
                progress_rows(t, &mut progress);
            }
            None => removed.push(*id as i64),
        }
    }
    let touched: Vec<i64> = batch.tasks.keys().map(|id| *id as i64).collect();
    if !removed.is_empty() {
        tx.execute("DELETE FROM tasks WHERE id = ANY($1)", &[&removed]).await.map_err(pg("deleting tasks"))?;
    }
    if !upserts.is_empty() {
        tx.execute(UPSERT_TASKS, &[&Value::Array(upserts)]).await.map_err(pg("upserting tasks"))?;
        tx.execute("DELETE FROM task_progress WHERE task_id = ANY($1)", &[&touched])
            .await
            .map_err(pg("replacing task progress"))?;
    }
    if !progress.is_empty() {
        tx.execute(INSERT_PROGRESS, &[&Value::Array(progress)]).await.map_err(pg("inserting task progress"))?;
    }
    let (mut agents, mut agents_removed) = (Vec::new(), Vec::new());
    for (id, a) in &batch.agents {
        match a {
            Some(a) => agents.push(agent_row(a)),
            None => agents_removed.push(id.clone()),
        }
    }
    if !agents_removed.is_empty() {
        tx.execute("DELETE FROM agent_state WHERE id = ANY($1)", &[&agents_removed])
            .await
            .map_err(pg("deleting agents"))?;
    }
    if !agents.is_empty() {
        tx.execute(UPSERT_AGENTS, &[&Value::Array(agents)]).await.map_err(pg("upserting agents"))?;
    }
    let mut keys = Vec::new();
    for ((queue, key), e) in &batch.dedup {
        match e {
            Some((task_id, expires_ms)) => {
                keys.push(json!({"queue": queue, "key": key, "task_id": task_id, "expires_ms": expires_ms}))
            }
            None => {
                tx.execute("DELETE FROM message_dedup WHERE queue = $1 AND key = $2", &[queue, key])
                    .await
                    .map_err(pg("deleting a dedup key"))?;
            }
        }
    }
    if !keys.is_empty() {
        tx.execute(UPSERT_DEDUP, &[&Value::Array(keys)]).await.map_err(pg("upserting dedup keys"))?;
    }
    Ok(())
}

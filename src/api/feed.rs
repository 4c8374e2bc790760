//! The change feed and live idempotency keys, for exporters.

use super::error::ApiError;
use super::views::*;
use super::{ApiResult, AppState};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangesQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

pub(super) fn change_json(c: &minion_engine::Change) -> serde_json::Value {
    use minion_engine::Change;
    match c {
        Change::Task(t, trace) => json!({"type": "task", "task": task_out(t, trace.clone())}),
        Change::TaskRemoved(id) => json!({"type": "task_removed", "id": id}),
        Change::Agent(a) => json!({"type": "agent", "agent": a}),
        Change::AgentRemoved(id) => json!({"type": "agent_removed", "id": id}),
        Change::Dedup(k, e) => {
            json!({"type": "dedup", "queue": k.queue, "key": k.key, "task_id": e.task_id, "expires_ms": e.expires_ms})
        }
        Change::DedupRemoved(k) => json!({"type": "dedup_removed", "queue": k.queue, "key": k.key}),
        Change::Queue(name, config) => json!({"type": "queue", "name": name, "config": config}),
        Change::QueueRemoved(name) => json!({"type": "queue_removed", "name": name}),
    }
}

/// A page of the change feed that holds every entry applied before the call. Feed entries reach
/// the store with the state writer, behind apply; this waits for what is queued first, so a
/// change acknowledged before a read (or before an event stream's catch-up target) is in the
/// page rather than silently after its end. Blocking.
pub(super) fn feed_page_through_applied(
    storage: &minion_raft::StorageHandle,
    records: &minion_storage::records::Records,
    after: u64,
    limit: usize,
) -> Result<minion_storage::records::FeedPage, minion_engine::ColdError> {
    storage.writer.flush().map_err(|e| minion_engine::ColdError(format!("state writer: {e}")))?;
    records.feed_page(after, limit)
}

/// The change feed: whole log entries with index > `after`. 410 `compacted` when entries after
/// `after` were already purged from the feed; the reader then backfills from the ledger.
#[utoipa::path(
    get,
    path = "/v1/changes",
    tag = "feed",
    summary = "The change feed: whole log entries after a position, each with the full new records it changed",
    params(
        ("after" = Option<u64>, Query, description = "last log index already processed (default 0)"),
        ("limit" = Option<usize>, Query, description = "records per page, 1..10000 (whole entries)")
    ),
    responses(
        (status = 200, description = "entries, next and applied_index", body = Object),
        (status = 410, description = "entries after `after` were purged: backfill from /v1/tasks", body = minion_client::wire::ErrorOut),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn changes(
    State(s): State<AppState>,
    q: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(1_000).clamp(1, 10_000);
    let applied = s.state.read().applied.last_applied.map(|l| l.index).unwrap_or(0);
    let records = s.state.records().clone();
    let storage = s.node.storage.clone();
    let after = q.after;
    // The entries are read before the watermark (`feed_page`): a purge in between shows as a gap
    // (410), never as entries silently missing.
    let (entries, gap) = tokio::task::spawn_blocking(move || -> Result<_, minion_engine::ColdError> {
        let page = feed_page_through_applied(&storage, &records, after, limit)?;
        let gap = page.gap_after(after);
        let mut out = Vec::with_capacity(page.entries.len());
        for (index, touched) in page.entries {
            out.push((index, minion_engine::changes::materialize(&records, &touched)?));
        }
        Ok((out, gap))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    // Entries that changed nothing are never stored, so a gap in indexes proves nothing; what was
    // purged is recorded as a watermark.
    if let Some(purged_before) = gap {
        return Err(ApiError::new(
            StatusCode::GONE,
            "compacted",
            format!("the change feed no longer holds entries {}..{purged_before}; backfill from /v1/tasks", after + 1),
        ));
    }
    let next = entries.last().map(|(i, _)| *i).unwrap_or(after);
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|(index, cs)| json!({"index": index, "changes": cs.iter().map(change_json).collect::<Vec<_>>()}))
        .collect();
    Ok(Json(json!({ "entries": list, "next": next, "applied_index": applied })))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DedupQuery {
    after_queue: Option<String>,
    after_key: Option<String>,
    limit: Option<usize>,
}

/// Live idempotency keys in (queue, key) order, paged: for exporters' backfill.
#[utoipa::path(
    get,
    path = "/v1/dedup",
    tag = "feed",
    summary = "Live idempotency keys in (queue, key) order, paged (for exporters' backfill)",
    params(
        ("after_queue" = Option<String>, Query, description = "with after_key: the position"),
        ("after_key" = Option<String>, Query, description = "with after_queue"),
        ("limit" = Option<usize>, Query, description = "1..10000, default 1000")
    ),
    responses(
        (status = 200, description = "keys and more", body = Object),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut)
    )
)]
pub(super) async fn list_dedup(
    State(s): State<AppState>,
    q: Result<Query<DedupQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(1_000).clamp(1, 10_000);
    let after = match (q.after_queue, q.after_key) {
        (Some(queue), Some(key)) => Some(minion_engine::DedupKey { queue, key }),
        (None, None) => None,
        _ => return Err(ApiError::bad_request("after_queue and after_key go together")),
    };
    let records = s.state.records().clone();
    let page = tokio::task::spawn_blocking(move || {
        use minion_engine::{Cold, Key, Kind};
        records.scan(Kind::Dedup, after.map(Key::Dedup).as_ref(), limit)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    let keys: Vec<serde_json::Value> = page
        .into_iter()
        .filter_map(|r| match r {
            minion_engine::Record::Dedup(k, e) => {
                Some(json!({"queue": k.queue, "key": k.key, "task_id": e.task_id, "expires_ms": e.expires_ms}))
            }
            _ => None,
        })
        .collect();
    let done = keys.len() < limit;
    Ok(Json(json!({ "keys": keys, "more": !done })))
}

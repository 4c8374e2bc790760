//! Server-Sent Events: one task's events, a queue's, or the whole node's — live as entries apply,
//! and resumable with `Last-Event-ID` from the change feed.
//!
//! An event's id is the log index of the entry that caused it, set on the last event a stream
//! sends for that entry; resuming from an id therefore misses nothing after it. Live events carry
//! each transition; a stream that resumes (or falls behind the live channel) catches up from the
//! change feed, which keeps what each entry touched but not how: it sends each touched task's
//! state as it is now, once per page of entries. A task's own stream catches up with the task's
//! progress history (retained reports, numbered) and its state.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Extension;
use minion_engine::{TaskEvent, TaskId, TaskRecord, Touched};
use minion_raft::AppliedEvents;
use tokio::sync::{broadcast, mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use super::{ApiError, ApiResult, AppState};
use crate::api::auth::Caller;

/// Every event name a stream may send for a task.
const NAMES: [&str; 12] = [
    "submitted",
    "waiting",
    "waiting_children",
    "ready",
    "delayed",
    "leased",
    "succeeded",
    "failed",
    "dead",
    "cancelled",
    "rejected",
    "progress",
];
/// With no event to send for this long, a stream sends `heartbeat` (with the id it has reached).
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Events a stream holds for a slow client; beyond them the stream waits, and falls back to the
/// change feed when the live channel moved on.
const STREAM_BUFFER: usize = 256;
/// Feed entries read per catch-up page.
const PAGE_ENTRIES: usize = 1_000;

/// The open event streams: a bound on their number, and a switch that ends them all.
pub struct Streams {
    permits: Arc<Semaphore>,
    max: usize,
    closing: watch::Sender<bool>,
}

impl Streams {
    pub fn new(max: usize) -> Streams {
        Streams { permits: Arc::new(Semaphore::new(max)), max, closing: watch::Sender::new(false) }
    }

    /// End every stream, and refuse new ones (shutdown waits for open responses to end).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn admit(&self) -> ApiResult<OwnedSemaphorePermit> {
        if *self.closing.borrow() {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the node is shutting down"));
        }
        self.permits.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("minion_event_streams_refused_total").increment(1);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!("the node has event_streams_max ({}) event streams open; retry later", self.max),
            )
        })
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this queue's tasks.
    queue: Option<String>,
    /// Only these events (comma-separated names).
    types: Option<String>,
    /// Resume after this event id (as the `Last-Event-ID` header does; the header wins).
    after: Option<u64>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskEventsQuery {
    types: Option<String>,
    after: Option<u64>,
}

/// `GET /v1/events`: the events of every task on this node, or of one queue.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    summary = "Server-Sent Events of every task on this node or of one queue; resuming sends each task changed since as it is now",
    params(
        ("queue" = Option<String>, Query, description = "only this queue"),
        ("types" = Option<String>, Query, description = "only these event names, comma-separated"),
        ("after" = Option<u64>, Query, description = "resume after this event id (Last-Event-ID wins)"),
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id")
    ),
    responses(
        (status = 200, description = "text/event-stream: events named submitted, waiting, ready, delayed, leased, succeeded, failed, dead, cancelled, rejected, progress (data: EventOut), heartbeat and compacted; id: the log index reached", body = minion_client::wire::EventOut, content_type = "text/event-stream"),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 403, description = "the token may not do this", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn node_events(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let Query(q) = q?;
    if let Some(queue) = &q.queue {
        caller.check_queue(queue)?;
    }
    let filter = Filter { task: None, queue: q.queue, names: names(q.types.as_deref())?, caller };
    open(s, filter, resume_from(&headers, q.after)?)
}

/// `GET /v1/tasks/{id}/events`: one task's events. Without a position to resume from it starts
/// with the task as it is (its progress history, then its state); it ends after a final state.
#[utoipa::path(
    get,
    path = "/v1/tasks/{id}/events",
    tag = "events",
    summary = "Server-Sent Events of one task: its progress history and state first (unless resuming), then each change; ends after a final state",
    params(
        ("id" = u64, Path, description = "task id"),
        ("types" = Option<String>, Query, description = "only these event names, comma-separated"),
        ("after" = Option<u64>, Query, description = "resume after this event id (Last-Event-ID wins)"),
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id")
    ),
    responses(
        (status = 200, description = "text/event-stream: events named submitted, waiting, ready, delayed, leased, succeeded, failed, dead, cancelled, rejected, progress (data: EventOut), heartbeat and compacted; id: the log index reached", body = minion_client::wire::EventOut, content_type = "text/event-stream"),
        (status = 400, description = "invalid request or malformed JSON", body = minion_client::wire::ErrorOut),
        (status = 404, description = "unknown task (or one outside the token's queues)", body = minion_client::wire::ErrorOut),
        (status = 503, description = "no leader, commit timeout or shutting down (Retry-After)", body = minion_client::wire::ErrorOut)
    )
)]
pub async fn task_events(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    path: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    q: Result<Query<TaskEventsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let Path(id) = path?;
    let Query(q) = q?;
    if record(&s, id).await?.is_none() {
        return Err(super::answer::task_not_found(id));
    }
    let filter = Filter { task: Some(id), queue: None, names: names(q.types.as_deref())?, caller };
    open(s, filter, resume_from(&headers, q.after)?)
}

fn names(types: Option<&str>) -> ApiResult<Option<BTreeSet<&'static str>>> {
    let Some(types) = types else { return Ok(None) };
    let mut out = BTreeSet::new();
    for t in types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let name = NAMES
            .iter()
            .find(|n| **n == t)
            .ok_or_else(|| ApiError::bad_request(format!("unknown event type {t:?}; one of {}", NAMES.join(", "))))?;
        out.insert(*name);
    }
    Ok(Some(out))
}

fn resume_from(headers: &HeaderMap, after: Option<u64>) -> ApiResult<Option<u64>> {
    match headers.get("last-event-id") {
        Some(v) => {
            let text = v.to_str().unwrap_or_default().trim();
            text.parse::<u64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("Last-Event-ID {text:?} is not an event id of this API")))
        }
        None => Ok(after),
    }
}

fn open(
    s: AppState,
    filter: Filter,
    resume: Option<u64>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let permit = s.events.admit()?;
    // Subscribed before anything is read, so that no entry falls between the read and the channel.
    let live = s.state.subscribe_events();
    let closing = s.events.closing.subscribe();
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let pump = Pump { s, filter, tx, cursor: 0, sent_id: 0 };
    tokio::spawn(async move {
        let _permit = permit;
        metrics::gauge!("minion_event_streams_open").increment(1.0);
        if let Err(Stop::Failed(e)) = pump.run(resume, live, closing).await {
            tracing::warn!(error = %e, "an event stream stopped on a read error");
        }
        metrics::gauge!("minion_event_streams_open").decrement(1.0);
    });
    let stream = ReceiverStream::new(rx).map(Ok::<Event, Infallible>);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT)))
}

/// Which events a stream sends.
struct Filter {
    task: Option<TaskId>,
    queue: Option<String>,
    names: Option<BTreeSet<&'static str>>,
    caller: Caller,
}

impl Filter {
    fn wants(&self, e: &TaskEvent) -> bool {
        self.task.is_none_or(|t| t == e.task_id)
            && self.queue.as_ref().is_none_or(|q| *q == e.queue)
            && self.names.as_ref().is_none_or(|n| n.contains(e.name()))
            && self.caller.allows_queue(&e.queue)
    }
}

enum Stop {
    /// The client left, the task finished, or the node is shutting down.
    Done,
    Failed(String),
}

impl From<minion_engine::ColdError> for Stop {
    fn from(e: minion_engine::ColdError) -> Self {
        Stop::Failed(e.to_string())
    }
}

type Flow = Result<(), Stop>;

struct Pump {
    s: AppState,
    filter: Filter,
    tx: mpsc::Sender<Event>,
    /// Every entry up to this index has been handled.
    cursor: u64,
    /// The last id sent.
    sent_id: u64,
}

impl Pump {
    async fn run(
        mut self,
        resume: Option<u64>,
        mut live: broadcast::Receiver<Arc<AppliedEvents>>,
        mut closing: watch::Receiver<bool>,
    ) -> Flow {
        match (resume, self.filter.task) {
            (Some(after), _) => {
                self.cursor = after;
                self.sent_id = after;
                self.catch_up().await?;
            }
            (None, Some(id)) => {
                self.cursor = self.applied();
                self.task_as_it_is(id).await?;
            }
            (None, None) => self.cursor = self.applied(),
        }
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            tokio::select! {
                r = live.recv() => match r {
                    Ok(entry) => self.entry(&entry).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await?,
                    Err(broadcast::error::RecvError::Closed) => return Err(Stop::Done),
                },
                _ = heartbeat.tick() => {
                    // Entries without events for this stream still move its position: everything
                    // applied before the channel was found empty has been handled.
                    let applied = self.applied();
                    match live.try_recv() {
                        Ok(entry) => self.entry(&entry).await?,
                        Err(broadcast::error::TryRecvError::Lagged(_)) => self.catch_up().await?,
                        Err(broadcast::error::TryRecvError::Empty) => self.cursor = self.cursor.max(applied),
                        Err(broadcast::error::TryRecvError::Closed) => return Err(Stop::Done),
                    }
                    if self.cursor > self.sent_id {
                        self.sent_id = self.cursor;
                        self.send(Event::default().event("heartbeat").id(self.cursor.to_string()).data("{}")).await?;
                    }
                }
                _ = closing.changed() => return Err(Stop::Done),
                _ = self.tx.closed() => return Err(Stop::Done),
            }
        }
    }

    fn applied(&self) -> u64 {
        *self.s.state.applied_index().borrow()
    }

    async fn send(&self, e: Event) -> Flow {
        self.tx.send(e).await.map_err(|_| Stop::Done)
    }

    /// Send `events` of the entry at `index`; the last one carries the id.
    async fn send_all(&mut self, events: &[&TaskEvent], index: u64) -> Flow {
        for (i, e) in events.iter().enumerate() {
            let data = serde_json::to_string(&super::views::event_out(e)).map_err(|e| Stop::Failed(e.to_string()))?;
            let mut ev = Event::default().event(e.name()).data(data);
            if i + 1 == events.len() {
                ev = ev.id(index.to_string());
                self.sent_id = index;
            }
            self.send(ev).await?;
        }
        Ok(())
    }

    /// One live entry.
    async fn entry(&mut self, entry: &AppliedEvents) -> Flow {
        if entry.reset {
            // A snapshot replaced the state: what happened in between is only in the feed (if at all).
            return self.catch_up().await;
        }
        if entry.index <= self.cursor {
            return Ok(());
        }
        let wanted: Vec<&TaskEvent> = entry.events.iter().filter(|e| self.filter.wants(e)).collect();
        self.cursor = entry.index;
        self.send_all(&wanted, entry.index).await?;
        if self.filter.task.is_some() && wanted.iter().any(|e| e.is_terminal()) {
            return Err(Stop::Done);
        }
        Ok(())
    }

    /// Catch up from the change feed to the applied index (as it was when this began).
    async fn catch_up(&mut self) -> Flow {
        let target = self.applied();
        while self.cursor < target {
            let records = self.s.state.records().clone();
            let storage = self.s.node.storage.clone();
            let after = self.cursor;
            let page = tokio::task::spawn_blocking(move || {
                super::feed::feed_page_through_applied(&storage, &records, after, PAGE_ENTRIES)
            })
            .await
            .map_err(|e| Stop::Failed(e.to_string()))??;
            if let Some(purged_before) = page.gap_after(after) {
                let data = serde_json::json!({
                    "missed_from": after + 1,
                    "missed_to": purged_before - 1,
                    "message": "the change feed no longer holds these entries; what they changed is sent as it is now where the stream can tell (a task's own stream), else read it from /v1/tasks",
                });
                self.send(Event::default().event("compacted").data(data.to_string())).await?;
                self.cursor = purged_before - 1;
                if let Some(id) = self.filter.task {
                    self.task_as_it_is(id).await?;
                }
                continue;
            }
            let Some(last) = page.entries.last().map(|(i, _)| *i) else { break };
            // Each touched task once per page, at the last entry that touched it.
            let mut touched: BTreeMap<TaskId, u64> = BTreeMap::new();
            for (index, things) in &page.entries {
                for t in things {
                    if let Touched::Task(id) = t {
                        if self.filter.task.is_none_or(|want| want == *id) {
                            touched.insert(*id, *index);
                        }
                    }
                }
            }
            self.cursor = last;
            if let Some(id) = self.filter.task {
                if touched.contains_key(&id) {
                    self.task_as_it_is(id).await?;
                }
                continue;
            }
            let records = self.s.state.records().clone();
            let ids: Vec<(TaskId, u64)> = touched.into_iter().collect();
            let found =
                tokio::task::spawn_blocking(move || -> Result<Vec<(u64, TaskRecord)>, minion_engine::ColdError> {
                    let mut out = Vec::with_capacity(ids.len());
                    for (id, index) in ids {
                        if let Some(rec) = minion_engine::task_record(&records, id)? {
                            out.push((index, rec));
                        }
                    }
                    Ok(out)
                })
                .await
                .map_err(|e| Stop::Failed(e.to_string()))??;
            let mut by_index: BTreeMap<u64, Vec<TaskEvent>> = BTreeMap::new();
            for (index, rec) in found {
                let e = TaskEvent::state_of(&rec, false);
                if self.filter.wants(&e) {
                    by_index.entry(index).or_default().push(e);
                }
            }
            for (index, events) in by_index {
                let refs: Vec<&TaskEvent> = events.iter().collect();
                self.send_all(&refs, index).await?;
            }
        }
        Ok(())
    }

    /// A task as it is: its retained progress reports, then its state, the last with the id the
    /// stream has reached. A finished task ends the stream.
    async fn task_as_it_is(&mut self, id: TaskId) -> Flow {
        let Some(rec) = record(&self.s, id).await.map_err(|e| Stop::Failed(format!("{e:?}")))? else {
            return Err(Stop::Done);
        };
        let records = self.s.state.records().clone();
        let r = rec.clone();
        let (_, progress) = tokio::task::spawn_blocking(move || minion_engine::task_details(&records, &r))
            .await
            .map_err(|e| Stop::Failed(e.to_string()))??;
        let mut events: Vec<TaskEvent> = progress
            .into_iter()
            .enumerate()
            .map(|(i, p)| TaskEvent::progress_of(&rec, rec.progress_dropped + i as u64, p))
            .collect();
        events.push(TaskEvent::state_of(&rec, false));
        let wanted: Vec<&TaskEvent> = events.iter().filter(|e| self.filter.wants(e)).collect();
        let index = self.cursor;
        self.send_all(&wanted, index).await?;
        if rec.state.is_terminal() {
            return Err(Stop::Done);
        }
        Ok(())
    }
}

/// A task's record, live or finished.
async fn record(s: &AppState, id: TaskId) -> ApiResult<Option<TaskRecord>> {
    let live = s.state.read().engine.live_task(id).cloned();
    if live.is_some() {
        return Ok(live);
    }
    let records = s.state.records().clone();
    let found = tokio::task::spawn_blocking(move || minion_engine::task_record(&records, id))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(found)
}

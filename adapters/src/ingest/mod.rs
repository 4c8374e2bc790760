//! Ingest: turn records from a stream (Kafka topics, Redis Streams) into tasks, exactly once in
//! effect.
//!
//! The pipeline shared by both sources:
//!
//! 1. **Batch**: up to `batch_records` records or `batch_ms` (whichever first) become one request.
//! 2. **Map** each record ([`map_record`]): from a JSON envelope, from record attributes (Kafka
//!    headers, Redis fields), or from configured defaults; non-JSON records pass through as a string
//!    (or base64 when not UTF-8). The idempotency key is the record's own (envelope, header or
//!    field) or else its source position, so a redelivered record is deduplicated by the engine.
//! 3. **Commit** the batch to Minion ([`Sink`]): one atomic submit of the tasks and one request
//!    recording the poison records as `rejected` tasks with the reason and source position. A
//!    batch the server refuses as invalid is retried record by record, and a record refused on its
//!    own becomes a rejection. Transient failures (a restarting server, no leader) are retried
//!    with backoff, rotating over the given servers, without reading anything new (backpressure).
//! 4. **Acknowledge upstream** (Kafka offset commit, Redis XACK) only after step 3 succeeded.
//!
//! A crash anywhere means the unacknowledged records are delivered again, and their idempotency
//! keys make the second submit a duplicate: one task per record as long as the redelivery comes
//! within the queue's dedup TTL.

pub mod bench;
pub mod kafka;
mod mapping;
pub mod redis;
mod sink;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

pub use mapping::{map_record, Format, Mapped, Mapping, Record};
pub use sink::{Sink, SinkError};

/// Counters and state an adapter reports (`PUT /v1/adapters/{name}`).
#[derive(Debug, Default, Clone)]
pub struct Status {
    pub kind: &'static str,
    pub source: String,
    pub running: bool,
    pub ingested: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub batches: u64,
    /// Records in the source not yet consumed (Kafka: consumer lag; Redis: the group's lag).
    pub lag: Option<u64>,
    pub last_error: Option<String>,
}

pub type SharedStatus = Arc<Mutex<Status>>;

impl Status {
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind,
            "source": self.source,
            "running": self.running,
            "ingested": self.ingested,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "batches": self.batches,
            "lag": self.lag,
            "last_error": self.last_error,
        })
    }
}

pub fn lock(s: &SharedStatus) -> std::sync::MutexGuard<'_, Status> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every second, report the status to the cluster (best effort: a missed report only ages it).
pub async fn report_status(sink: Sink, name: String, status: SharedStatus) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let body = lock(&status).to_json();
        sink.report(&name, &body).await;
    }
}

/// Options shared by both sources.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Reported under this name (`GET /v1/adapters`).
    pub name: String,
    /// Comma-separated node URLs.
    pub server: String,
    pub mapping: Mapping,
    pub batch_records: usize,
    pub batch_ms: u64,
    /// Token and CA for the API.
    pub auth: minion_client::ClientAuth,
}

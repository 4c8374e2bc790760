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
pub mod redis;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// How record values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// An envelope if the value is a JSON object with `payload` and only envelope fields; else
    /// any JSON value is the payload; else the raw value.
    #[default]
    Auto,
    /// Every record must be an envelope.
    Envelope,
    /// Every record must be JSON; the whole value is the payload.
    Json,
    /// The value is the payload, as a string (or `{"base64": ...}` when not UTF-8).
    Raw,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Format::Auto),
            "envelope" => Ok(Format::Envelope),
            "json" => Ok(Format::Json),
            "raw" => Ok(Format::Raw),
            other => Err(format!("unknown format {other:?}: one of auto, envelope, json, raw")),
        }
    }
}

/// Where records go and what they become when they do not say.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub queue: String,
    pub kind: String,
    pub priority: i32,
    pub capabilities: Vec<String>,
    pub format: Format,
    /// Records larger than this are rejected.
    pub max_record_bytes: usize,
}

impl Mapping {
    pub fn new(queue: &str) -> Mapping {
        Mapping {
            queue: queue.to_string(),
            kind: String::new(),
            priority: 0,
            capabilities: Vec::new(),
            format: Format::Auto,
            max_record_bytes: 1 << 20,
        }
    }
}

/// One record from a source.
#[derive(Debug, Clone)]
pub struct Record {
    /// Source position, unique per record: `kafka:<topic>/<partition>@<offset>`,
    /// `redis:<stream>@<id>`.
    pub position: String,
    /// The value (`None`: the record has none, e.g. a Redis entry without the payload field).
    pub value: Option<Vec<u8>>,
    /// Attributes: Kafka headers, the other fields of a Redis entry.
    pub attrs: Vec<(String, Vec<u8>)>,
}

/// What a record becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// A task as `POST /v1/tasks` takes it, and the record's position.
    Task(Value, String),
    /// A record for `POST /v1/rejections`.
    Rejected(Value),
}

const ENVELOPE_FIELDS: [&str; 9] =
    ["payload", "queue", "kind", "priority", "capabilities", "idempotency_key", "delay_ms", "max_attempts", "lease_ms"];

/// Bytes of a rejected record's value kept in the ledger.
const REJECTED_PREFIX_BYTES: usize = 1_024;

fn describe(value: Option<&[u8]>) -> Value {
    let Some(v) = value else { return json!({ "bytes": null }) };
    let prefix = &v[..v.len().min(REJECTED_PREFIX_BYTES)];
    match std::str::from_utf8(prefix) {
        Ok(text) => json!({ "bytes": v.len(), "utf8_prefix": text }),
        Err(_) => {
            json!({ "bytes": v.len(), "base64_prefix": base64::engine::general_purpose::STANDARD.encode(prefix) })
        }
    }
}

fn reject(rec: &Record, m: &Mapping, reason: String) -> Mapped {
    Mapped::Rejected(json!({
        "queue": m.queue,
        "reason": reason,
        "source": rec.position,
        "record": describe(rec.value.as_deref()),
        "idempotency_key": rec.position,
    }))
}

fn raw_payload(v: &[u8]) -> Value {
    match std::str::from_utf8(v) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(v) }),
    }
}

fn attr<'a>(rec: &'a Record, names: &[&str]) -> Option<&'a [u8]> {
    rec.attrs.iter().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.as_slice())
}

fn attr_str(rec: &Record, names: &[&str]) -> Result<Option<String>, String> {
    match attr(rec, names) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .map(|s| Some(s.to_string()))
            .map_err(|_| format!("attribute {} is not UTF-8", names[0])),
    }
}

/// Map one record to a task or a rejection. Never fails: bad data becomes a rejection with the
/// reason.
pub fn map_record(rec: &Record, m: &Mapping) -> Mapped {
    match try_map(rec, m) {
        Ok(task) => Mapped::Task(task, rec.position.clone()),
        Err(reason) => reject(rec, m, reason),
    }
}

fn try_map(rec: &Record, m: &Mapping) -> Result<Value, String> {
    let Some(value) = rec.value.as_deref() else {
        return Err("the record has no value".into());
    };
    if value.len() > m.max_record_bytes {
        return Err(format!("the record is {} bytes, over the limit of {} bytes", value.len(), m.max_record_bytes));
    }
    let parsed = match m.format {
        Format::Raw => None,
        _ => match serde_json::from_slice::<Value>(value) {
            Ok(v) => Some(v),
            Err(_) if m.format == Format::Auto => None,
            Err(e) => return Err(format!("the record is not JSON: {e}")),
        },
    };
    let is_envelope =
        |o: &Map<String, Value>| o.contains_key("payload") && o.keys().all(|k| ENVELOPE_FIELDS.contains(&k.as_str()));
    let envelope = match &parsed {
        Some(Value::Object(o)) if is_envelope(o) => Some(o.clone()),
        _ if m.format == Format::Envelope => {
            return Err("the record is not an envelope (a JSON object with `payload` and only envelope fields)".into())
        }
        _ => None,
    };
    // Attributes override defaults; envelope fields override both.
    let mut task = Map::new();
    let queue = attr_str(rec, &["queue"])?.unwrap_or_else(|| m.queue.clone());
    task.insert("queue".into(), json!(queue));
    task.insert("kind".into(), json!(attr_str(rec, &["kind"])?.unwrap_or_else(|| m.kind.clone())));
    let priority = match attr_str(rec, &["priority"])? {
        Some(p) => p.trim().parse::<i32>().map_err(|_| format!("attribute priority {p:?} is not an integer"))?,
        None => m.priority,
    };
    task.insert("priority".into(), json!(priority));
    let caps: Vec<String> = match attr_str(rec, &["capabilities"])? {
        Some(c) => c.split(',').map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect(),
        None => m.capabilities.clone(),
    };
    task.insert("capabilities".into(), json!(caps));
    let mut key = attr_str(rec, &["idempotency_key", "idempotency-key"])?;
    match envelope {
        Some(env) => {
            for (k, v) in env {
                let ok = match k.as_str() {
                    "payload" => true,
                    "queue" | "kind" | "idempotency_key" => v.is_string(),
                    "priority" => v.as_i64().is_some_and(|p| i32::try_from(p).is_ok()),
                    "capabilities" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                    "delay_ms" | "lease_ms" => v.is_u64(),
                    "max_attempts" => v.as_u64().is_some_and(|n| u32::try_from(n).is_ok()),
                    _ => false,
                };
                if !ok {
                    return Err(format!("envelope field {k} has the wrong type: {v}"));
                }
                if k == "idempotency_key" {
                    key = v.as_str().map(String::from);
                } else {
                    task.insert(k, v);
                }
            }
        }
        None => {
            let payload = parsed.unwrap_or_else(|| raw_payload(value));
            task.insert("payload".into(), payload);
        }
    }
    task.insert("idempotency_key".into(), json!(key.unwrap_or_else(|| rec.position.clone())));
    Ok(Value::Object(task))
}

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
        let _ = sink.put(&format!("/v1/adapters/{name}"), &body).await;
    }
}

/// Tasks created, duplicates found, and records the server refused (as rejections).
type Submitted = (u64, u64, Vec<Value>);
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Why a commit did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("stopping")]
    Stopped,
}

/// The cluster, reached over HTTP at any of its nodes.
#[derive(Clone)]
pub struct Sink {
    http: reqwest::Client,
    servers: minion_client::Servers,
    status: SharedStatus,
    stop: tokio::sync::watch::Receiver<bool>,
    /// Where records the server refuses are recorded (the adapter's default queue).
    rejected_queue: String,
}

/// What the server said to one request.
enum Answer {
    Ok(Value),
    /// 4xx other than 413: this request can never succeed as it is.
    Invalid(String),
    /// 413: too large as a whole.
    TooLarge,
}

impl Sink {
    /// `servers`: comma-separated node URLs; requests move to the next one after a failure.
    pub fn new(
        servers: &str,
        auth: &minion_client::ClientAuth,
        rejected_queue: &str,
        status: SharedStatus,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Sink, String> {
        let servers = minion_client::Servers::parse(servers)?;
        let http = auth.build(
            reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(30)),
        )?;
        Ok(Sink { http, servers, status, stop, rejected_queue: rejected_queue.to_string() })
    }

    fn base(&self) -> &str {
        self.servers.base()
    }

    async fn put(&self, path: &str, body: &Value) -> Result<(), reqwest::Error> {
        self.http.put(format!("{}{path}", self.base())).json(body).send().await.map(|_| ())
    }

    /// POST until the server gives a definite answer, backing off and rotating servers on
    /// transient failures (connection errors, 5xx). Returns `Stopped` if asked to stop meanwhile.
    async fn post(&self, path: &str, body: &Value) -> Result<Answer, SinkError> {
        let mut delay = Duration::from_millis(100);
        loop {
            if *self.stop.borrow() {
                return Err(SinkError::Stopped);
            }
            let res = self.http.post(format!("{}{path}", self.base())).json(body).send().await;
            let problem = match res {
                Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                    Ok(v) => return Ok(Answer::Ok(v)),
                    Err(e) => format!("reading the answer: {e}"),
                },
                Ok(r) if r.status() == reqwest::StatusCode::PAYLOAD_TOO_LARGE => return Ok(Answer::TooLarge),
                Ok(r) if r.status().is_client_error() => {
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    let msg = v["error"]["message"].as_str().unwrap_or("refused").to_string();
                    return Ok(Answer::Invalid(msg));
                }
                Ok(r) => {
                    let status = r.status();
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    format!("{status}: {}", v["error"]["message"].as_str().unwrap_or(""))
                }
                Err(e) => e.to_string(),
            };
            tracing::warn!(server = self.base(), error = %problem, retry_in_ms = delay.as_millis() as u64, "commit to Minion failed; retrying");
            lock(&self.status).last_error = Some(problem);
            let failed = self.base().to_string();
            self.servers.failed(&failed);
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Commit one batch: every task and every rejection is recorded (or found to be a duplicate)
    /// when this returns `Ok`.
    pub async fn commit(&self, mapped: Vec<Mapped>) -> Result<(), SinkError> {
        let started = Instant::now();
        let mut tasks = Vec::new();
        let mut rejected = Vec::new();
        for m in mapped {
            match m {
                Mapped::Task(t, pos) => tasks.push((t, pos)),
                Mapped::Rejected(r) => rejected.push(r),
            }
        }
        let (created, dup, mut more_rejected) = self.submit_tasks(tasks).await?;
        rejected.append(&mut more_rejected);
        let n_rejected = rejected.len() as u64;
        if !rejected.is_empty() {
            self.submit_rejections(rejected).await?;
        }
        let mut s = lock(&self.status);
        s.ingested += created;
        s.duplicates += dup;
        s.rejected += n_rejected;
        s.batches += 1;
        s.last_error = None;
        metrics::histogram!("minion_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Submit tasks as one atomic batch. If the server refuses the batch as invalid, find the
    /// records it refuses on their own and return them as rejections.
    fn submit_tasks(&self, tasks: Vec<(Value, String)>) -> BoxFuture<'_, Result<Submitted, SinkError>> {
        Box::pin(async move {
            if tasks.is_empty() {
                return Ok((0, 0, Vec::new()));
            }
            let refused = |(t, pos): &(Value, String), reason: String| {
                json!({
                    "queue": self.rejected_queue,
                    "reason": reason,
                    "source": pos,
                    "record": {"task": truncate_json(t)},
                    "idempotency_key": pos,
                })
            };
            let body = json!({ "tasks": tasks.iter().map(|(t, _)| t).collect::<Vec<_>>() });
            match self.post("/v1/tasks", &body).await? {
                Answer::Ok(v) => {
                    let list = v["tasks"].as_array().cloned().unwrap_or_default();
                    let dup = list.iter().filter(|t| t["duplicate"].as_bool() == Some(true)).count() as u64;
                    Ok((list.len() as u64 - dup, dup, Vec::new()))
                }
                Answer::Invalid(msg) if tasks.len() == 1 => {
                    Ok((0, 0, vec![refused(&tasks[0], format!("refused by the server: {msg}"))]))
                }
                Answer::Invalid(_) | Answer::TooLarge if tasks.len() > 1 => {
                    let mut left = tasks;
                    let right = left.split_off(left.len() / 2);
                    let (a, b, mut r) = self.submit_tasks(left).await?;
                    let (c, d, mut r2) = self.submit_tasks(right).await?;
                    r.append(&mut r2);
                    Ok((a + c, b + d, r))
                }
                Answer::TooLarge | Answer::Invalid(_) => {
                    Ok((0, 0, vec![refused(&tasks[0], "the record is larger than the server accepts".into())]))
                }
            }
        })
    }

    async fn submit_rejections(&self, records: Vec<Value>) -> Result<(), SinkError> {
        let body = json!({ "records": records });
        match self.post("/v1/rejections", &body).await? {
            Answer::Ok(_) => Ok(()),
            Answer::Invalid(_) | Answer::TooLarge if records.len() > 1 => {
                tracing::warn!("rejections refused as a batch; recording them one by one");
                for r in records {
                    Box::pin(self.submit_rejections(vec![r])).await?;
                }
                Ok(())
            }
            Answer::Invalid(msg) => {
                // A rejection the server cannot record (its queue is invalid, say): log it, and
                // acknowledge the record: the adapter never stops on data.
                tracing::error!(error = %msg, record = %truncate_json(&records[0]), "could not record a rejected record");
                lock(&self.status).last_error = Some(format!("could not record a rejected record: {msg}"));
                Ok(())
            }
            Answer::TooLarge => {
                tracing::error!(record = %truncate_json(&records[0]), "a rejected record is too large to record");
                Ok(())
            }
        }
    }
}

fn truncate_json(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= REJECTED_PREFIX_BYTES {
        return s;
    }
    let mut end = REJECTED_PREFIX_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(value: &[u8]) -> Record {
        Record { position: "kafka:t/0@7".into(), value: Some(value.to_vec()), attrs: Vec::new() }
    }

    #[test]
    fn envelopes_json_and_raw_records_map_to_tasks() {
        let m = Mapping::new("inbox");
        let env = br#"{"payload": {"a": 1}, "queue": "q2", "priority": 5, "idempotency_key": "k1"}"#;
        let Mapped::Task(t, _) = map_record(&rec(env), &m) else { panic!("envelope") };
        assert_eq!((t["queue"].as_str(), t["priority"].as_i64()), (Some("q2"), Some(5)));
        assert_eq!((t["payload"].clone(), t["idempotency_key"].as_str()), (json!({"a": 1}), Some("k1")));

        // An object with other keys is a payload, not an envelope.
        let Mapped::Task(t, _) = map_record(&rec(br#"{"payload": 1, "other": 2}"#), &m) else { panic!("json") };
        assert_eq!(t["payload"], json!({"payload": 1, "other": 2}));
        assert_eq!(t["queue"], "inbox");
        assert_eq!(t["idempotency_key"], "kafka:t/0@7", "the position is the key");

        let Mapped::Task(t, _) = map_record(&rec(b"plain text"), &m) else { panic!("raw") };
        assert_eq!(t["payload"], "plain text");
        let Mapped::Task(t, _) = map_record(&rec(&[0xff, 0x00]), &m) else { panic!("binary") };
        assert_eq!(t["payload"], json!({"base64": "/wA="}));

        let mut r = rec(b"1");
        r.attrs = vec![("queue".into(), b"from-header".to_vec()), ("idempotency-key".into(), b"h1".to_vec())];
        let Mapped::Task(t, _) = map_record(&r, &m) else { panic!("attrs") };
        assert_eq!((t["queue"].as_str(), t["idempotency_key"].as_str()), (Some("from-header"), Some("h1")));
    }

    #[test]
    fn poison_records_become_rejections_with_reason_and_position() {
        let mut m = Mapping::new("inbox");
        m.max_record_bytes = 30;
        let cases: Vec<(Record, &str)> = vec![
            (rec(br#"{"payload": 1, "priority": "high"}"#), "over the limit"),
            (rec(br#"{"payload":1,"priority":"x"}"#), "wrong type"),
            (Record { position: "redis:s@1-0".into(), value: None, attrs: Vec::new() }, "no value"),
        ];
        for (r, why) in cases {
            let Mapped::Rejected(v) = map_record(&r, &m) else { panic!("{why}: should be rejected") };
            assert!(v["reason"].as_str().expect("reason").contains(why), "{v}");
            assert_eq!(v["source"], r.position.as_str());
            assert_eq!(v["idempotency_key"], r.position.as_str());
        }
        m.format = Format::Json;
        m.max_record_bytes = 1 << 20;
        assert!(matches!(map_record(&rec(b"not json"), &m), Mapped::Rejected(_)));
        m.format = Format::Envelope;
        assert!(matches!(map_record(&rec(b"[1]"), &m), Mapped::Rejected(_)));
    }
}

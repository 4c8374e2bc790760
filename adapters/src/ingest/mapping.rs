//! Step 2 of ingest: a record becomes a task (a [`TaskIn`], as `POST /v1/tasks` takes it) or,
//! when its data cannot be a task, a rejection with the reason (a [`RejectedIn`]).

use base64::Engine as _;
use minion_client::wire::{RejectedIn, TaskIn};
use serde::de::DeserializeOwned;
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
#[derive(Debug, Clone)]
pub enum Mapped {
    /// A task, and the record's position.
    Task(TaskIn, String),
    /// A record for `POST /v1/rejections`.
    Rejected(RejectedIn),
}

const ENVELOPE_FIELDS: [&str; 9] =
    ["payload", "queue", "kind", "priority", "capabilities", "idempotency_key", "delay_ms", "max_attempts", "lease_ms"];

/// Bytes of a rejected record's value kept in the ledger.
pub(super) const REJECTED_PREFIX_BYTES: usize = 1_024;

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
    Mapped::Rejected(RejectedIn {
        queue: m.queue.clone(),
        kind: "rejected".into(),
        reason,
        source: rec.position.clone(),
        record: describe(rec.value.as_deref()),
        idempotency_key: Some(rec.position.clone()),
    })
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

/// An envelope field as the type the task has for it.
fn field<T: DeserializeOwned>(name: &str, v: Value) -> Result<T, String> {
    let shown = v.to_string();
    serde_json::from_value(v).map_err(|_| format!("envelope field {name} has the wrong type: {shown}"))
}

fn raw_json(v: &Value) -> Result<Box<serde_json::value::RawValue>, String> {
    serde_json::value::to_raw_value(v).map_err(|e| format!("the payload cannot be written as JSON: {e}"))
}

/// Map one record to a task or a rejection. Never fails: bad data becomes a rejection with the
/// reason.
pub fn map_record(rec: &Record, m: &Mapping) -> Mapped {
    match try_map(rec, m) {
        Ok(task) => Mapped::Task(task, rec.position.clone()),
        Err(reason) => reject(rec, m, reason),
    }
}

fn try_map(rec: &Record, m: &Mapping) -> Result<TaskIn, String> {
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
    let envelope = match parsed {
        Some(Value::Object(o)) if is_envelope(&o) => Ok(o),
        _ if m.format == Format::Envelope => {
            return Err("the record is not an envelope (a JSON object with `payload` and only envelope fields)".into())
        }
        other => Err(other),
    };
    // Attributes override defaults; envelope fields override both.
    let priority = match attr_str(rec, &["priority"])? {
        Some(p) => p.trim().parse::<i32>().map_err(|_| format!("attribute priority {p:?} is not an integer"))?,
        None => m.priority,
    };
    let capabilities = match attr_str(rec, &["capabilities"])? {
        Some(c) => c.split(',').map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect(),
        None => m.capabilities.clone(),
    };
    let mut task = TaskIn {
        queue: attr_str(rec, &["queue"])?.unwrap_or_else(|| m.queue.clone()),
        kind: attr_str(rec, &["kind"])?.unwrap_or_else(|| m.kind.clone()),
        priority,
        capabilities,
        idempotency_key: attr_str(rec, &["idempotency_key", "idempotency-key"])?,
        ..TaskIn::default()
    };
    match envelope {
        Ok(env) => {
            for (k, v) in env {
                match k.as_str() {
                    "payload" => task.payload = Some(raw_json(&v)?),
                    "queue" => task.queue = field(&k, v)?,
                    "kind" => task.kind = field(&k, v)?,
                    "priority" => task.priority = field(&k, v)?,
                    "capabilities" => task.capabilities = field(&k, v)?,
                    "idempotency_key" => task.idempotency_key = Some(field(&k, v)?),
                    "delay_ms" => task.delay_ms = Some(field(&k, v)?),
                    "max_attempts" => task.max_attempts = Some(field(&k, v)?),
                    "lease_ms" => task.lease_ms = Some(field(&k, v)?),
                    _ => return Err(format!("envelope field {k} is not known")),
                }
            }
        }
        Err(parsed) => task.payload = Some(raw_json(&parsed.unwrap_or_else(|| raw_payload(value)))?),
    }
    if task.idempotency_key.is_none() {
        task.idempotency_key = Some(rec.position.clone());
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(value: &[u8]) -> Record {
        Record { position: "kafka:t/0@7".into(), value: Some(value.to_vec()), attrs: Vec::new() }
    }

    fn payload(t: &TaskIn) -> Value {
        serde_json::from_str(t.payload.as_ref().expect("payload").get()).expect("json")
    }

    #[test]
    fn envelopes_json_and_raw_records_map_to_tasks() {
        let m = Mapping::new("inbox");
        let env = br#"{"payload": {"a": 1}, "queue": "q2", "priority": 5, "idempotency_key": "k1", "delay_ms": 9}"#;
        let Mapped::Task(t, _) = map_record(&rec(env), &m) else { panic!("envelope") };
        assert_eq!((t.queue.as_str(), t.priority, t.delay_ms), ("q2", 5, Some(9)));
        assert_eq!((payload(&t), t.idempotency_key.as_deref()), (json!({"a": 1}), Some("k1")));

        // An object with other keys is a payload, not an envelope.
        let Mapped::Task(t, _) = map_record(&rec(br#"{"payload": 1, "other": 2}"#), &m) else { panic!("json") };
        assert_eq!(payload(&t), json!({"payload": 1, "other": 2}));
        assert_eq!(t.queue, "inbox");
        assert_eq!(t.idempotency_key.as_deref(), Some("kafka:t/0@7"), "the position is the key");

        let Mapped::Task(t, _) = map_record(&rec(b"plain text"), &m) else { panic!("raw") };
        assert_eq!(payload(&t), "plain text");
        let Mapped::Task(t, _) = map_record(&rec(&[0xff, 0x00]), &m) else { panic!("binary") };
        assert_eq!(payload(&t), json!({"base64": "/wA="}));

        let mut r = rec(b"1");
        r.attrs = vec![("queue".into(), b"from-header".to_vec()), ("idempotency-key".into(), b"h1".to_vec())];
        let Mapped::Task(t, _) = map_record(&r, &m) else { panic!("attrs") };
        assert_eq!((t.queue.as_str(), t.idempotency_key.as_deref()), ("from-header", Some("h1")));
    }

    #[test]
    fn poison_records_become_rejections_with_reason_and_position() {
        let mut m = Mapping::new("inbox");
        m.max_record_bytes = 30;
        let cases: Vec<(Record, &str)> = vec![
            (rec(br#"{"payload": 1, "priority": "high"}"#), "over the limit"),
            (rec(br#"{"payload":1,"priority":"x"}"#), "wrong type"),
            (rec(br#"{"payload":1,"lease_ms":-1}"#), "wrong type"),
            (Record { position: "redis:s@1-0".into(), value: None, attrs: Vec::new() }, "no value"),
        ];
        for (r, why) in cases {
            let Mapped::Rejected(v) = map_record(&r, &m) else { panic!("{why}: should be rejected") };
            assert!(v.reason.contains(why), "{v:?}");
            assert_eq!(v.source, r.position);
            assert_eq!(v.idempotency_key.as_deref(), Some(r.position.as_str()));
            assert_eq!((v.queue.as_str(), v.kind.as_str()), ("inbox", "rejected"));
        }
        m.format = Format::Json;
        m.max_record_bytes = 1 << 20;
        assert!(matches!(map_record(&rec(b"not json"), &m), Mapped::Rejected(_)));
        m.format = Format::Envelope;
        assert!(matches!(map_record(&rec(b"[1]"), &m), Mapped::Rejected(_)));
    }
}

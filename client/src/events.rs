//! Event streams (`GET /v1/tasks/{id}/events`, `GET /v1/events`): Server-Sent Events read as
//! [`Event`]s, each with the id to resume after.

use crate::error::{Error, Result};
use crate::wire::EventOut;

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The log index it was recorded at (`Last-Event-ID` / `after=` resumes after it); `None`
    /// for events without one (`compacted`).
    pub id: Option<u64>,
    /// `submitted`, a state's name, `progress`, `heartbeat` or `compacted`.
    pub name: String,
    /// The data, JSON.
    pub data: String,
}

impl Event {
    /// The task event it carries; `None` for `heartbeat` and `compacted`.
    pub fn task_event(&self) -> Option<Result<EventOut>> {
        if matches!(self.name.as_str(), "heartbeat" | "compacted") {
            return None;
        }
        Some(
            serde_json::from_str(&self.data).map_err(|e| Error::Decode {
                what: format!("the data of a {} event", self.name),
                message: e.to_string(),
            }),
        )
    }
}

/// The SSE wire format, fed bytes as they come: blocks of `field: value` lines ended by a blank
/// line; `data` lines join with `\n`; lines starting with `:` are comments.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the bytes so far hold one. Blocks without data (comments
    /// only) are skipped.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            let end = block_end(&self.buf)?;
            let block: Vec<u8> = self.buf.drain(..end.1).collect();
            let text = String::from_utf8_lossy(&block[..end.0]);
            let (mut id, mut name, mut data): (Option<u64>, Option<String>, Option<String>) = (None, None, None);
            for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
                if line.is_empty() || line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => name = Some(value.to_string()),
                    "id" => id = value.parse().ok(),
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_string()),
                    },
                    _ => {}
                }
            }
            if let Some(data) = data {
                return Some(Event { id, name: name.unwrap_or_else(|| "message".into()), data });
            }
        }
    }
}

/// (end of the block's text, end of its terminating blank line) of the first complete block.
fn block_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some((i, i + 2));
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// An open event stream.
pub struct EventStream {
    resp: reqwest::Response,
    parser: SseParser,
    server: String,
    last_id: Option<u64>,
}

impl EventStream {
    pub(crate) fn new(resp: reqwest::Response, server: String) -> EventStream {
        EventStream { resp, parser: SseParser::default(), server, last_id: None }
    }

    /// The next event; `None` when the server ended the stream (a task stream ends after the
    /// task's final event; every stream ends when the node shuts down).
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(ev) = self.parser.next_event() {
                if ev.id.is_some() {
                    self.last_id = ev.id;
                }
                return Ok(Some(ev));
            }
            let chunk = self
                .resp
                .chunk()
                .await
                .map_err(|e| Error::Transport { server: self.server.clone(), message: e.to_string() })?;
            match chunk {
                Some(bytes) => self.parser.push(&bytes),
                None => return Ok(None),
            }
        }
    }

    /// The id of the last event with one: open the stream again with `after` set to it to resume.
    pub fn last_event_id(&self) -> Option<u64> {
        self.last_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_with_comments_and_multiline_data() {
        let mut p = SseParser::default();
        let wire = ": keep-alive\n\nevent: progress\nid: 7\ndata: {\"a\":\ndata: 1}\n\nevent: compacted\r\ndata: {}\r\n\r\ndata: x\n\n";
        let mut out = Vec::new();
        for b in wire.as_bytes().chunks(3) {
            p.push(b);
            while let Some(e) = p.next_event() {
                out.push(e);
            }
        }
        assert_eq!(
            out,
            [
                Event { id: Some(7), name: "progress".into(), data: "{\"a\":\n1}".into() },
                Event { id: None, name: "compacted".into(), data: "{}".into() },
                Event { id: None, name: "message".into(), data: "x".into() },
            ]
        );
        assert!(p.next_event().is_none());
        p.push(b"event: succeeded\ndata: {}\n");
        assert!(p.next_event().is_none(), "an unfinished block waits for its blank line");
    }

    #[test]
    fn heartbeats_and_compaction_carry_no_task_event() {
        let hb = Event { id: Some(3), name: "heartbeat".into(), data: "{}".into() };
        assert!(hb.task_event().is_none());
        let bad = Event { id: Some(4), name: "progress".into(), data: "{}".into() };
        assert!(matches!(bad.task_event(), Some(Err(Error::Decode { .. }))));
    }
}

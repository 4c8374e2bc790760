//! A Server-Sent Events reader over a real HTTP response (the test side of `/v1/events`).

use std::time::Duration;

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub name: String,
    pub id: Option<String>,
    pub data: Value,
}

pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
    ended: bool,
}

impl SseReader {
    /// Open `path` on `base` as an event stream (`last_id` as `Last-Event-ID`); panics unless
    /// the answer is 200 with `text/event-stream`.
    pub async fn open(http: &reqwest::Client, url: &str, last_id: Option<&str>) -> SseReader {
        match SseReader::try_open(http, url, last_id).await {
            Ok(r) => r,
            Err((status, body)) => panic!("GET {url}: {status} {body}"),
        }
    }

    /// As [`SseReader::open`], or the status and body of a refusal.
    pub async fn try_open(http: &reqwest::Client, url: &str, last_id: Option<&str>) -> Result<SseReader, (u16, Value)> {
        let mut r = http.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_id {
            r = r.header("last-event-id", id);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        if status != 200 {
            let text = resp.text().await.unwrap_or_default();
            return Err((status, serde_json::from_str(&text).unwrap_or(Value::String(text))));
        }
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert!(ct.starts_with("text/event-stream"), "content type {ct}");
        Ok(SseReader { resp, buf: String::new(), ended: false })
    }

    /// The next event (comments skipped) within `secs`; `None` when the stream ended.
    pub async fn next_within(&mut self, secs: u64) -> Option<SseEvent> {
        tokio::time::timeout(Duration::from_secs(secs), self.next())
            .await
            .unwrap_or_else(|_| panic!("no event within {secs} s (buffered: {:?})", self.buf))
    }

    /// The next event, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(e) = parse(&block) {
                    return Some(e);
                }
                continue;
            }
            if self.ended {
                return None;
            }
            match self.resp.chunk().await.expect("stream chunk") {
                Some(bytes) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                None => self.ended = true,
            }
        }
    }

    /// Events until one named `name` (inclusive), within `secs` each.
    pub async fn until(&mut self, name: &str, secs: u64) -> Vec<SseEvent> {
        let mut out = Vec::new();
        loop {
            let e = self.next_within(secs).await.unwrap_or_else(|| panic!("ended before {name}: {out:?}"));
            let done = e.name == name;
            out.push(e);
            if done {
                return out;
            }
        }
    }

    /// True when nothing but heartbeats arrives for `ms` (and the stream is still open).
    pub async fn quiet_for(&mut self, ms: u64) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Err(_) => return true,
                Ok(Some(e)) if e.name == "heartbeat" => continue,
                Ok(_) => return false,
            }
        }
    }
}

fn parse(block: &str) -> Option<SseEvent> {
    let mut name = "message".to_string();
    let mut id = None;
    let mut data = Vec::new();
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = value.to_string(),
            "id" => id = Some(value.to_string()),
            "data" => data.push(value.to_string()),
            _ => {}
        }
    }
    if data.is_empty() && id.is_none() {
        return None;
    }
    let text = data.join("\n");
    Some(SseEvent { name, id, data: serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

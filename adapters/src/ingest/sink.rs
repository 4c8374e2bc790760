//! Step 3 of ingest: commit a batch of mapped records to the cluster through the typed client,
//! retrying what may succeed later and splitting what the server refuses.

use std::future::Future;
use std::time::{Duration, Instant};

use minion_client::wire::{RejectedIn, TaskIn};
use minion_client::{Client, Code, Error};
use serde_json::json;

use super::mapping::{Mapped, REJECTED_PREFIX_BYTES};
use super::{lock, SharedStatus};

/// Why a commit did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("stopping")]
    Stopped,
}

/// The cluster, reached over HTTP at any of its nodes.
#[derive(Clone)]
pub struct Sink {
    client: Client,
    status: SharedStatus,
    stop: tokio::sync::watch::Receiver<bool>,
    /// Where records the server refuses are recorded (the adapter's default queue).
    rejected_queue: String,
}

/// What the server said to one request.
enum Answer<T> {
    Ok(T),
    /// Refused for what it is (a 4xx other than 413 and 429): it can never succeed as it is.
    Invalid(String),
    /// 413: too large as a whole.
    TooLarge,
}

/// Tasks created, duplicates found, and records the server refused (as rejections).
type Submitted = (u64, u64, Vec<RejectedIn>);
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Sink {
    /// `servers`: comma-separated node URLs; the client moves to the next one after a failure.
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
        Ok(Sink { client: Client::with_http(servers, http), status, stop, rejected_queue: rejected_queue.to_string() })
    }

    /// Report the adapter's status (best effort: a missed report only ages it).
    pub(super) async fn report(&self, name: &str, status: &serde_json::Value) {
        if let Err(e) = self.client.report_adapter(name, status).await {
            tracing::debug!(error = %e, "could not report the adapter's status");
        }
    }

    /// Call until the server gives a definite answer, backing off on transient failures (no node
    /// reachable, 5xx, rate limited; the client has already tried the other nodes where that is
    /// safe). Returns `Stopped` if asked to stop meanwhile.
    async fn definite<T, F, Fut>(&self, call: F) -> Result<Answer<T>, SinkError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = minion_client::Result<T>>,
    {
        let mut delay = Duration::from_millis(100);
        loop {
            if *self.stop.borrow() {
                return Err(SinkError::Stopped);
            }
            let problem = match call().await {
                Ok(v) => return Ok(Answer::Ok(v)),
                Err(Error::Api { status: 413, .. }) => return Ok(Answer::TooLarge),
                Err(Error::Api { status, code, message })
                    if (400..500).contains(&status) && code != Code::RateLimited =>
                {
                    return Ok(Answer::Invalid(message))
                }
                Err(e) => e.to_string(),
            };
            tracing::warn!(error = %problem, retry_in_ms = delay.as_millis() as u64, "commit to Minion failed; retrying");
            lock(&self.status).last_error = Some(problem);
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

    /// A task the server refused on its own, as a rejection of its record.
    fn refused(&self, (task, pos): &(TaskIn, String), reason: String) -> RejectedIn {
        let text = serde_json::to_string(task).unwrap_or_default();
        RejectedIn {
            queue: self.rejected_queue.clone(),
            kind: "rejected".into(),
            reason,
            source: pos.clone(),
            record: json!({ "task": truncate(&text) }),
            idempotency_key: Some(pos.clone()),
        }
    }

    /// Submit tasks as one atomic batch. If the server refuses the batch as invalid, find the
    /// records it refuses on their own and return them as rejections.
    fn submit_tasks(&self, tasks: Vec<(TaskIn, String)>) -> BoxFuture<'_, Result<Submitted, SinkError>> {
        Box::pin(async move {
            if tasks.is_empty() {
                return Ok((0, 0, Vec::new()));
            }
            let answer =
                self.definite(|| self.client.submit_batch(tasks.iter().map(|(t, _)| t.clone()).collect())).await?;
            match answer {
                Answer::Ok(list) => {
                    let dup = list.iter().filter(|t| t.duplicate).count() as u64;
                    Ok((list.len() as u64 - dup, dup, Vec::new()))
                }
                Answer::Invalid(msg) if tasks.len() == 1 => {
                    Ok((0, 0, vec![self.refused(&tasks[0], format!("refused by the server: {msg}"))]))
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
                    Ok((0, 0, vec![self.refused(&tasks[0], "the record is larger than the server accepts".into())]))
                }
            }
        })
    }

    async fn submit_rejections(&self, records: Vec<RejectedIn>) -> Result<(), SinkError> {
        match self.definite(|| self.client.record_rejections(records.clone())).await? {
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
                let record = truncate(&serde_json::to_string(&records[0]).unwrap_or_default());
                tracing::error!(error = %msg, %record, "could not record a rejected record");
                lock(&self.status).last_error = Some(format!("could not record a rejected record: {msg}"));
                Ok(())
            }
            Answer::TooLarge => {
                let record = truncate(&serde_json::to_string(&records[0]).unwrap_or_default());
                tracing::error!(%record, "a rejected record is too large to record");
                Ok(())
            }
        }
    }
}

/// At most [`REJECTED_PREFIX_BYTES`] of `s`, cut at a character boundary.
fn truncate(s: &str) -> String {
    if s.len() <= REJECTED_PREFIX_BYTES {
        return s.to_string();
    }
    let mut end = REJECTED_PREFIX_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

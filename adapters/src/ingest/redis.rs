//! Redis Streams source: a consumer group over one or more streams.
//!
//! Each entry's `field` (default `payload`) is the record value; its other fields are attributes
//! (`queue`, `kind`, `priority`, `capabilities`, `idempotency_key`). Entries are acknowledged
//! (XACK) only after their batch is committed to Minion. At start the consumer first re-reads its
//! own pending entries (delivered before a crash, never acknowledged); and periodically it takes
//! over (XAUTOCLAIM) entries left pending longer than `claim_idle_ms` by consumers that died.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Value as RValue};

use super::{lock, map_record, IngestOptions, Record, SharedStatus, Sink, Status};

#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub url: String,
    pub streams: Vec<String>,
    pub group: String,
    /// This consumer's name in the group; reuse it across restarts to resume its pending entries.
    pub consumer: String,
    /// The entry field holding the record value.
    pub field: String,
    /// Entries pending this long on another consumer are taken over.
    pub claim_idle_ms: u64,
    pub common: IngestOptions,
}

fn to_record(stream: &str, e: &StreamId, field: &str) -> Record {
    let mut value = None;
    let mut attrs = Vec::new();
    for (k, v) in &e.map {
        let bytes = match v {
            RValue::BulkString(b) => b.clone(),
            RValue::SimpleString(s) => s.clone().into_bytes(),
            RValue::Int(i) => i.to_string().into_bytes(),
            _ => continue,
        };
        if k == field {
            value = Some(bytes);
        } else {
            attrs.push((k.clone(), bytes));
        }
    }
    Record { position: format!("redis:{stream}@{}", e.id), value, attrs }
}

async fn connect(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    // Blocking reads wait up to the batch window: allow well beyond it.
    let cfg = AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(30)))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    client.get_multiplexed_async_connection_with_config(&cfg).await
}

async fn ensure_groups(con: &mut MultiplexedConnection, opts: &RedisOptions) -> redis::RedisResult<()> {
    for s in &opts.streams {
        let r: redis::RedisResult<()> = con.xgroup_create_mkstream(s, &opts.group, "0").await;
        if let Err(e) = r {
            if e.code() != Some("BUSYGROUP") {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Entries to process next, as (stream, entry). Own pending entries first, then entries idle on
/// dead consumers, then new ones.
struct Reader {
    con: MultiplexedConnection,
    pending_done: bool,
    last_claim: std::time::Instant,
    claim_cursor: BTreeMap<String, String>,
}

impl Reader {
    async fn next_batch(&mut self, opts: &RedisOptions, max: usize) -> redis::RedisResult<Vec<(String, StreamId)>> {
        let mut out = Vec::new();
        if !self.pending_done {
            let ids: Vec<&str> = opts.streams.iter().map(|_| "0").collect();
            let o = StreamReadOptions::default().group(&opts.group, &opts.consumer).count(max);
            let r: StreamReadReply = self.con.xread_options(&opts.streams, &ids, &o).await?;
            for k in r.keys {
                out.extend(k.ids.into_iter().map(|e| (k.key.clone(), e)));
            }
            if out.is_empty() {
                self.pending_done = true;
            } else {
                return Ok(out);
            }
        }
        let every = Duration::from_millis((opts.claim_idle_ms / 2).clamp(200, 10_000));
        if self.last_claim.elapsed() >= every {
            for s in &opts.streams {
                let cursor = self.claim_cursor.get(s).cloned().unwrap_or_else(|| "0-0".into());
                let o = StreamAutoClaimOptions::default().count(max);
                let r: StreamAutoClaimReply =
                    self.con.xautoclaim_options(s, &opts.group, &opts.consumer, opts.claim_idle_ms, cursor, o).await?;
                if !r.claimed.is_empty() {
                    tracing::info!(stream = %s, entries = r.claimed.len(), "took over entries left pending by another consumer");
                }
                out.extend(r.claimed.into_iter().map(|e| (s.clone(), e)));
                if r.next_stream_id == "0-0" {
                    self.claim_cursor.remove(s);
                } else {
                    self.claim_cursor.insert(s.clone(), r.next_stream_id);
                }
            }
            if self.claim_cursor.is_empty() {
                self.last_claim = std::time::Instant::now();
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
        let ids: Vec<&str> = opts.streams.iter().map(|_| ">").collect();
        let o = StreamReadOptions::default()
            .group(&opts.group, &opts.consumer)
            .count(max)
            .block(opts.common.batch_ms.clamp(1, 5_000) as usize);
        let r: Option<StreamReadReply> = self.con.xread_options(&opts.streams, &ids, &o).await?;
        for k in r.map(|r| r.keys).unwrap_or_default() {
            out.extend(k.ids.into_iter().map(|e| (k.key.clone(), e)));
        }
        Ok(out)
    }
}

/// Every second: the group's lag summed over the streams (Redis 7: entries not yet delivered to
/// the group; older servers: pending entries).
async fn watch_lag(opts: RedisOptions, status: SharedStatus) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut con = None;
    loop {
        tick.tick().await;
        if con.is_none() {
            con = connect(&opts.url).await.ok();
        }
        let Some(c) = con.as_mut() else { continue };
        let mut lag = 0u64;
        for s in &opts.streams {
            match c.xinfo_groups::<_, redis::streams::StreamInfoGroupsReply>(s).await {
                Ok(r) => {
                    if let Some(g) = r.groups.iter().find(|g| g.name == opts.group) {
                        lag += g.lag.unwrap_or(g.pending) as u64;
                    }
                }
                Err(_) => {
                    con = None;
                    break;
                }
            }
        }
        lock(&status).lag = Some(lag);
    }
}

/// Consume until `stop` turns true.
pub async fn run(
    opts: RedisOptions,
    status: SharedStatus,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    {
        let mut s = lock(&status);
        *s = Status { kind: "redis", source: format!("{} {}", opts.url, opts.streams.join(",")), ..Status::default() };
    }
    let sink =
        Sink::new(&opts.common.server, &opts.common.auth, &opts.common.mapping.queue, status.clone(), stop.clone())
            .map_err(anyhow::Error::msg)?;
    tokio::spawn(super::report_status(sink.clone(), opts.common.name.clone(), status.clone()));
    let lag = tokio::spawn(watch_lag(opts.clone(), status.clone()));
    let max = opts.common.batch_records.clamp(1, 10_000);
    let mut reader: Option<Reader> = None;
    let mut delay = Duration::from_millis(100);
    while !*stop.borrow() {
        if reader.is_none() {
            match connect(&opts.url).await {
                Ok(mut con) => match ensure_groups(&mut con, &opts).await {
                    Ok(()) => {
                        reader = Some(Reader {
                            con,
                            pending_done: false,
                            last_claim: std::time::Instant::now() - Duration::from_secs(3_600),
                            claim_cursor: BTreeMap::new(),
                        });
                        lock(&status).running = true;
                        tracing::info!(url = %opts.url, streams = ?opts.streams, group = %opts.group, consumer = %opts.consumer, "redis ingest started");
                        delay = Duration::from_millis(100);
                    }
                    Err(e) => lock(&status).last_error = Some(format!("redis: creating the group: {e}")),
                },
                Err(e) => lock(&status).last_error = Some(format!("redis: {e}")),
            }
            if reader.is_none() {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        let Some(r) = reader.as_mut() else { continue };
        let entries = match r.next_batch(&opts, max).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "redis read failed; reconnecting");
                lock(&status).last_error = Some(format!("redis: {e}"));
                reader = None;
                continue;
            }
        };
        if entries.is_empty() {
            continue;
        }
        let records: Vec<Record> = entries.iter().map(|(s, e)| to_record(s, e, &opts.field)).collect();
        let mapped = records.iter().map(|rec| map_record(rec, &opts.common.mapping)).collect();
        if sink.commit(mapped).await.is_err() {
            break; // stopping: nothing acknowledged, the entries stay pending for us
        }
        let mut by_stream: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (s, e) in &entries {
            by_stream.entry(s.as_str()).or_default().push(e.id.as_str());
        }
        for (s, ids) in by_stream {
            let acked: redis::RedisResult<u64> = r.con.xack(s, &opts.group, &ids).await;
            if let Err(e) = acked {
                // The entries stay pending and are re-read (and deduplicated) after reconnecting.
                tracing::warn!(error = %e, stream = s, "XACK failed");
                lock(&status).last_error = Some(format!("redis XACK: {e}"));
                reader = None;
                break;
            }
        }
    }
    lag.abort();
    lock(&status).running = false;
    tracing::info!("redis ingest stopped");
    Ok(())
}

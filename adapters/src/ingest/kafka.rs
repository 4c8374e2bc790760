//! Kafka source: a consumer group (rdkafka) over one or more topics.
//!
//! Offsets are committed by hand right after the batch that holds them is committed to Minion and
//! before anything else is read (the commit request is asynchronous: a commit lost to a crash or
//! a rebalance only means those records are delivered again and deduplicated by their keys). Records of a
//! revoked partition still waiting in the current batch are dropped: the partition's new owner
//! reads them again, and their idempotency keys make that safe either way.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};

use super::{lock, map_record, IngestOptions, Record, SharedStatus, Sink, Status};

#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: String,
    /// Extra librdkafka settings (`key=value`), e.g. `auto.offset.reset=latest`.
    pub settings: Vec<(String, String)>,
    pub common: IngestOptions,
}

struct Ctx {
    status: SharedStatus,
    /// Partitions revoked since the loop last looked.
    revoked: Arc<Mutex<HashSet<(String, i32)>>>,
}

impl ClientContext for Ctx {
    /// librdkafka's statistics (every second): the consumer lag summed over assigned partitions.
    fn stats(&self, stats: Statistics) {
        let lag: i64 = stats
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        lock(&self.status).lag = Some(lag.max(0) as u64);
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _c: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let mut r = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
                for e in tpl.elements() {
                    r.insert((e.topic().to_string(), e.partition()));
                }
                tracing::info!(partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Assign(tpl) => tracing::info!(partitions = tpl.count(), "partitions assigned"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

fn to_record(msg: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    let mut attrs = Vec::new();
    if let Some(h) = msg.headers() {
        for header in h.iter() {
            if let Some(v) = header.value {
                attrs.push((header.key.to_string(), v.to_vec()));
            }
        }
    }
    Record {
        position: format!("kafka:{}/{}@{}", msg.topic(), msg.partition(), msg.offset()),
        value: msg.payload().map(<[u8]>::to_vec),
        attrs,
    }
}

/// Consume until `stop` turns true. Data never stops the loop; broker and server failures are
/// retried.
pub async fn run(
    opts: KafkaOptions,
    status: SharedStatus,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    {
        let mut s = lock(&status);
        *s = Status {
            kind: "kafka",
            source: format!("{} {}", opts.brokers, opts.topics.join(",")),
            ..Status::default()
        };
    }
    let revoked: Arc<Mutex<HashSet<(String, i32)>>> = Arc::default();
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &opts.brokers)
        .set("group.id", &opts.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "1000")
        // A crashed consumer's partitions move to the others after this long (librdkafka's
        // default is 45 s).
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // Backpressure: librdkafka prefetches at most this much while the loop is busy.
        .set("queued.max.messages.kbytes", "16384");
    for (k, v) in &opts.settings {
        cfg.set(k, v);
    }
    let consumer: StreamConsumer<Ctx> =
        cfg.create_with_context(Ctx { status: status.clone(), revoked: revoked.clone() })?;
    let topics: Vec<&str> = opts.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let sink =
        Sink::new(&opts.common.server, &opts.common.auth, &opts.common.mapping.queue, status.clone(), stop.clone())
            .map_err(anyhow::Error::msg)?;
    tokio::spawn(super::report_status(sink.clone(), opts.common.name.clone(), status.clone()));
    lock(&status).running = true;
    tracing::info!(brokers = %opts.brokers, topics = ?opts.topics, group = %opts.group, "kafka ingest started");

    let max = opts.common.batch_records.clamp(1, 10_000);
    let window = Duration::from_millis(opts.common.batch_ms);
    while !*stop.borrow() {
        // Fill a batch: up to `max` records, or `window` after the first one.
        let mut batch: Vec<Record> = Vec::new();
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut first: Option<Instant> = None;
        while batch.len() < max && !*stop.borrow() {
            let wait = match first {
                None => Duration::from_millis(500),
                Some(t) => match window.checked_sub(t.elapsed()) {
                    Some(w) if !w.is_zero() => w,
                    _ => break,
                },
            };
            match tokio::time::timeout(wait, consumer.recv()).await {
                Ok(Ok(msg)) => {
                    first.get_or_insert_with(Instant::now);
                    next.insert((msg.topic().to_string(), msg.partition()), msg.offset() + 1);
                    batch.push(to_record(&msg));
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                    lock(&status).last_error = Some(format!("kafka: {e}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) if first.is_some() => break,
                Err(_) => {}
            }
        }
        // Drop what belongs to partitions revoked meanwhile: their new owner reads them again.
        let gone: HashSet<(String, i32)> = std::mem::take(&mut *revoked.lock().unwrap_or_else(|p| p.into_inner()));
        if !gone.is_empty() {
            batch.retain(|r| !gone.iter().any(|(t, p)| r.position.starts_with(&format!("kafka:{t}/{p}@"))));
            next.retain(|k, _| !gone.contains(k));
        }
        if batch.is_empty() {
            continue;
        }
        let mapped = batch.iter().map(|r| map_record(r, &opts.common.mapping)).collect();
        if sink.commit(mapped).await.is_err() {
            break; // stopping: nothing acknowledged, so everything in this batch comes again
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        // Asynchronous: the records are already committed to Minion; if this commit is lost (a
        // crash, a rebalance) they are delivered again and deduplicated by their keys.
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            // Usually a rebalance took the partition: its new owner re-reads, and dedups.
            tracing::warn!(error = %e, "committing offsets failed; the records will be delivered again");
            lock(&status).last_error = Some(format!("offset commit: {e}"));
        }
    }
    lock(&status).running = false;
    tracing::info!("kafka ingest stopped");
    Ok(())
}

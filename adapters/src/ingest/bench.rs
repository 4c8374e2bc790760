//! End-to-end ingest benchmarks: records are produced into a source while an adapter (in this
//! process) ingests them into a running Minion; the clock runs from the first record produced to
//! the last task committed. Kafka is librdkafka's mock cluster (in this process, the real Kafka
//! protocol over loopback); Redis is a real server.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use redis::AsyncCommands;
use serde_json::json;

use super::{kafka, lock, redis as redis_src, IngestOptions, Mapping, SharedStatus};

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Report {
    pub records: u64,
    /// First record produced → last task committed.
    pub elapsed: Duration,
    /// How long producing alone took (the producer runs concurrently with ingest).
    pub produce_elapsed: Duration,
    /// Commit-to-Minion batches.
    pub batches: u64,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn options(server: &str, name: &str, queue: &str, batch_records: usize) -> IngestOptions {
    IngestOptions {
        name: name.into(),
        server: server.into(),
        mapping: Mapping::new(queue),
        batch_records,
        batch_ms: 20,
        auth: minion_client::ClientAuth::default(),
    }
}

async fn wait_done(status: &SharedStatus, records: u64, limit: Duration) -> anyhow::Result<(Instant, u64)> {
    let started = Instant::now();
    loop {
        {
            let s = lock(status);
            if s.ingested + s.duplicates + s.rejected >= records {
                return Ok((Instant::now(), s.batches));
            }
        }
        if started.elapsed() > limit {
            let s = lock(status);
            anyhow::bail!("only {} of {records} records ingested after {limit:?}", s.ingested + s.duplicates);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn payload(i: u64, bytes: usize) -> String {
    let base = json!({ "n": i, "pad": "" }).to_string();
    json!({ "n": i, "pad": "x".repeat(bytes.saturating_sub(base.len())) }).to_string()
}

/// Kafka: `records` records of about `payload_bytes` into a fresh topic of `partitions`
/// partitions on a mock cluster.
pub async fn kafka(
    server: &str,
    records: u64,
    payload_bytes: usize,
    partitions: i32,
    batch_records: usize,
) -> anyhow::Result<Report> {
    let mock = rdkafka::mocking::MockCluster::new(1)?;
    let topic = format!("bench-{:x}", rand_id());
    mock.create_topic(&topic, partitions, 1)?;
    let brokers = mock.bootstrap_servers();
    let queue = format!("ingest-bench-kafka-{:x}", rand_id());
    let status = SharedStatus::default();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let opts = kafka::KafkaOptions {
        brokers: brokers.clone(),
        topics: vec![topic.clone()],
        group: format!("bench-{topic}"),
        settings: vec![("fetch.wait.max.ms".into(), "10".into())],
        common: options(server, "bench-kafka", &queue, batch_records),
    };
    let adapter = tokio::spawn(kafka::run(opts, status.clone(), stop));
    let started = Instant::now();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let produce = tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
        let t = Instant::now();
        for i in 0..records {
            let value = payload(i, payload_bytes);
            let key = i.to_string();
            let mut rec = BaseRecord::to(&topic).key(&key).payload(&value);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        if !matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)) {
                            anyhow::bail!("producing: {e}");
                        }
                        rec = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(60))?;
        Ok(t.elapsed())
    });
    let (done, batches) = wait_done(&status, records, Duration::from_secs(600)).await?;
    let produce_elapsed = produce.await??;
    let _ = stop_tx.send(true);
    let _ = adapter.await;
    drop(mock);
    Ok(Report { records, elapsed: done - started, produce_elapsed, batches })
}

/// Redis Streams: `records` entries into a fresh stream (pipelined XADDs of 1,000).
pub async fn redis(
    server: &str,
    url: &str,
    records: u64,
    payload_bytes: usize,
    batch_records: usize,
) -> anyhow::Result<Report> {
    let stream = format!("minion-bench-{:x}", rand_id());
    let queue = format!("ingest-bench-redis-{:x}", rand_id());
    let status = SharedStatus::default();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let opts = redis_src::RedisOptions {
        url: url.into(),
        streams: vec![stream.clone()],
        group: "bench".into(),
        consumer: "bench-1".into(),
        field: "payload".into(),
        claim_idle_ms: 60_000,
        common: options(server, "bench-redis", &queue, batch_records),
    };
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("bench")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut con)
        .await?;
    let adapter = tokio::spawn(redis_src::run(opts, status.clone(), stop));
    let started = Instant::now();
    let s2 = stream.clone();
    let produce = tokio::spawn(async move {
        let t = Instant::now();
        let mut i = 0u64;
        while i < records {
            let mut pipe = redis::pipe();
            let end = (i + 1_000).min(records);
            for n in i..end {
                pipe.cmd("XADD").arg(&s2).arg("*").arg("payload").arg(payload(n, payload_bytes)).ignore();
            }
            let _: () = pipe.query_async(&mut con).await?;
            i = end;
        }
        Ok::<_, redis::RedisError>((t.elapsed(), con))
    });
    let (done, batches) = wait_done(&status, records, Duration::from_secs(600)).await?;
    let (produce_elapsed, mut con) = produce.await??;
    let _ = stop_tx.send(true);
    let _ = adapter.await;
    let _: () = con.del(&stream).await?;
    Ok(Report { records, elapsed: done - started, produce_elapsed, batches })
}

fn rand_id() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (nanos as u64) ^ (std::process::id() as u64) << 48
}

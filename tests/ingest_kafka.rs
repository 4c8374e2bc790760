//! Kafka ingest through librdkafka's mock cluster (the real Kafka protocol, in this process):
//! every record becomes exactly one task, or one `rejected` entry, across a `kill -9` of the
//! adapter and a `kill -9` of the server mid-stream.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, Api, Server};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};

const TOPIC: &str = "orders";

/// What a produced record must become.
#[derive(Debug, Clone)]
struct Expect {
    key: String,
    position: String,
    rejected: bool,
}

/// A record's value, headers, whether it must be rejected, and its own idempotency key.
type Made = (Vec<u8>, Vec<(&'static str, String)>, bool, Option<String>);

async fn produce(p: &FutureProducer, i: usize) -> Expect {
    let (value, headers, rejected, custom_key): Made = match i % 8 {
        0 => (json!({"payload": {"n": i}, "kind": "env"}).to_string().into_bytes(), vec![], false, None),
        1 => (json!({"n": i}).to_string().into_bytes(), vec![], false, None),
        2 => (format!("text-{i}").into_bytes(), vec![], false, None),
        3 => (
            json!({"n": i}).to_string().into_bytes(),
            vec![("idempotency-key", format!("hdr-{i}"))],
            false,
            Some(format!("hdr-{i}")),
        ),
        4 => (br#"{"payload": 1, "priority": "high"}"#.to_vec(), vec![], true, None),
        5 => (vec![b'x'; 3_000], vec![], true, None),
        6 => (json!({"n": i}).to_string().into_bytes(), vec![("queue", "bad queue!".to_string())], true, None),
        _ => (json!({"payload": {"n": i}, "priority": 3}).to_string().into_bytes(), vec![], false, None),
    };
    let mut h = OwnedHeaders::new();
    for (k, v) in &headers {
        h = h.insert(Header { key: k, value: Some(v.as_str()) });
    }
    let key = format!("k{i}");
    let rec = FutureRecord::to(TOPIC).key(&key).payload(&value).headers(h);
    let d = p.send(rec, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("delivered");
    let position = format!("kafka:{TOPIC}/{}@{}", d.partition, d.offset);
    Expect { key: custom_key.unwrap_or_else(|| position.clone()), position, rejected }
}

fn adapter(brokers: &str, server: &str, log: &std::path::Path) -> common::Background {
    let args = ["ingest", "kafka", "--brokers", brokers, "--topic", TOPIC, "--group", "minion-test"];
    let more = ["--queue", "inbox", "--server", server, "--name", "orders-in", "--batch-records", "20"];
    // The mock broker's minimum session timeout: a killed consumer's partitions move after 6 s.
    let rest = ["--batch-ms", "10", "--max-record-bytes", "2048", "--kafka-setting", "session.timeout.ms=6000"];
    common::spawn_minion(&[&args[..], &more[..], &rest[..]].concat(), log)
}

async fn stored(api: &Api) -> usize {
    api.in_states("inbox", &["ready", "rejected", "leased", "succeeded"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_becomes_one_task_across_adapter_and_server_crashes() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(TOPIC, 3, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("producer");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let log = dir.path().join("ingest.log");
    let mut expected = Vec::new();

    // Burst A; the adapter is killed (-9) while working through it.
    for i in 0..600 {
        expected.push(produce(&producer, i).await);
    }
    let mut child = adapter(&brokers, &srv.base, &log);
    eventually(30, "some records ingested", || async { (stored(&api).await >= 60).then_some(()) }).await;
    child.kill9();
    let at_kill = stored(&api).await;
    eprintln!("adapter killed with {at_kill} of 600 records stored");

    // Burst B; a new adapter process resumes from the committed offsets.
    for i in 600..1200 {
        expected.push(produce(&producer, i).await);
    }
    let mut child = adapter(&brokers, &srv.base, &log);
    eventually(30, "ingest resumed", || async { (stored(&api).await >= 700).then_some(()) }).await;
    // The server dies (-9) mid-stream; the adapter retries until it is back.
    srv.kill9();
    for i in 1200..1600 {
        expected.push(produce(&producer, i).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    srv.spawn().await;

    let total = expected.len();
    eventually(60, "every record stored", || async { (stored(&api).await >= total).then_some(()) }).await;
    // Give a redelivery that would duplicate a moment to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let tasks = api.tasks("queue=inbox").await;
    let mut by_key: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for t in &tasks {
        by_key.entry(t["idempotency_key"].as_str().expect("key").to_string()).or_default().push(t);
    }
    assert_eq!(tasks.len(), total, "one task per record, no more");
    for e in &expected {
        let found = by_key.get(&e.key).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(found.len(), 1, "record {} ({}) became {} tasks", e.position, e.key, found.len());
        let t = found[0];
        assert_eq!(t["state"] == "rejected", e.rejected, "record {}: {t}", e.position);
        if e.rejected {
            assert_eq!(t["payload"]["source"], e.position.as_str(), "{t}");
            assert!(!t["last_error"].as_str().unwrap_or_default().is_empty(), "{t}");
        }
    }
    let rejected = expected.iter().filter(|e| e.rejected).count();
    assert_eq!(tasks.iter().filter(|t| t["state"] == "rejected").count(), rejected);

    // The adapter reports itself: running, counters, lag.
    let report = eventually(10, "the adapter's report", || async {
        let (_, v) = api.get("/v1/adapters").await;
        let a = v["adapters"].as_array()?.iter().find(|a| a["name"] == "orders-in")?.clone();
        (a["running"] == true && a["lag"].as_u64() == Some(0)).then_some(a)
    })
    .await;
    assert_eq!(report["kind"], "kafka");
    let (_, metrics) = api.get("/metrics").await;
    assert!(metrics.as_str().unwrap_or_default().contains("minion_ingest_records_total{adapter=\"orders-in\""));
    child.kill9();
}

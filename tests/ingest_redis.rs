//! Redis Streams ingest against the real server on 127.0.0.1:6379: every entry becomes exactly
//! one task (or one `rejected` entry) across a `kill -9` of the adapter and of the server, and
//! entries left pending by a consumer that died are taken over.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{eventually, Api, Server};
use redis::AsyncCommands;
use serde_json::{json, Value};

const URL: &str = "redis://127.0.0.1:6379";

#[derive(Debug, Clone)]
struct Expect {
    key: String,
    position: String,
    rejected: bool,
}

async fn add(con: &mut redis::aio::MultiplexedConnection, stream: &str, i: usize) -> Expect {
    let payload = json!({"n": i}).to_string();
    let big = "x".repeat(3_000);
    let (fields, rejected, custom): (Vec<(&str, String)>, bool, Option<String>) = match i % 7 {
        0 => (vec![("payload", json!({"payload": {"n": i}, "kind": "env"}).to_string())], false, None),
        1 => (vec![("payload", payload)], false, None),
        2 => (vec![("payload", format!("text-{i}")), ("priority", "4".into())], false, None),
        3 => (vec![("payload", payload), ("idempotency_key", format!("fld-{i}"))], false, Some(format!("fld-{i}"))),
        4 => (vec![("other", "no payload field".into())], true, None),
        5 => (vec![("payload", big)], true, None),
        _ => (vec![("payload", payload), ("priority", "high".into())], true, None),
    };
    let id: String = con.xadd(stream, "*", &fields).await.expect("xadd");
    let position = format!("redis:{stream}@{id}");
    Expect { key: custom.unwrap_or_else(|| position.clone()), position, rejected }
}

fn adapter(stream: &str, server: &str, consumer: &str, log: &std::path::Path) -> common::Background {
    let args = ["ingest", "redis", "--url", URL, "--stream", stream, "--group", "minion-test", "--consumer", consumer];
    let more = ["--queue", "inbox", "--server", server, "--name", "stream-in", "--batch-records", "20"];
    let rest = ["--batch-ms", "10", "--max-record-bytes", "2048", "--claim-idle-ms", "500"];
    common::spawn_minion(&[&args[..], &more[..], &rest[..]].concat(), log)
}

async fn stored(api: &Api) -> usize {
    api.in_states("inbox", &["ready", "rejected"]).await
}

fn check(tasks: &[Value], expected: &[Expect]) {
    let mut by_key: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for t in tasks {
        by_key.entry(t["idempotency_key"].as_str().expect("key")).or_default().push(t);
    }
    assert_eq!(tasks.len(), expected.len(), "one task per entry, no more");
    for e in expected {
        let found = by_key.get(e.key.as_str()).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(found.len(), 1, "entry {} ({}) became {} tasks", e.position, e.key, found.len());
        assert_eq!(found[0]["state"] == "rejected", e.rejected, "entry {}: {}", e.position, found[0]);
        if e.rejected {
            assert_eq!(found[0]["payload"]["source"], e.position.as_str());
        }
    }
}

fn stream_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    format!("minion-test-{tag}-{}-{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_entry_becomes_one_task_across_adapter_and_server_crashes() {
    let client = redis::Client::open(URL).expect("redis url");
    let mut con = client.get_multiplexed_async_connection().await.expect("redis on 127.0.0.1:6379");
    let stream = stream_name("crash");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let log = dir.path().join("ingest.log");
    let mut expected = Vec::new();

    for i in 0..700 {
        expected.push(add(&mut con, &stream, i).await);
    }
    let mut child = adapter(&stream, &srv.base, "c1", &log);
    eventually(30, "some entries ingested", || async { (stored(&api).await >= 60).then_some(()) }).await;
    child.kill9();
    eprintln!("adapter killed with {} of 700 entries stored", stored(&api).await);

    for i in 700..1400 {
        expected.push(add(&mut con, &stream, i).await);
    }
    // Same consumer name: it first re-reads what it was delivered and never acknowledged.
    let mut child = adapter(&stream, &srv.base, "c1", &log);
    eventually(30, "ingest resumed", || async { (stored(&api).await >= 800).then_some(()) }).await;
    srv.kill9();
    for i in 1400..1800 {
        expected.push(add(&mut con, &stream, i).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    srv.spawn().await;
    let total = expected.len();
    eventually(60, "every entry stored", || async { (stored(&api).await >= total).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    check(&api.tasks("queue=inbox").await, &expected);

    // Everything acknowledged: nothing pending in the group, nothing left to read.
    let report = eventually(10, "the adapter's report", || async {
        let (_, v) = api.get("/v1/adapters").await;
        let a = v["adapters"].as_array()?.iter().find(|a| a["name"] == "stream-in")?.clone();
        (a["running"] == true && a["lag"].as_u64() == Some(0)).then_some(a)
    })
    .await;
    assert_eq!(report["kind"], "redis");
    let pending: redis::streams::StreamPendingReply = con.xpending(&stream, "minion-test").await.expect("xpending");
    assert_eq!(pending.count(), 0, "every entry acknowledged");
    child.kill9();
    let _: () = con.del(&stream).await.expect("del");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_left_pending_by_a_dead_consumer_are_taken_over() {
    let client = redis::Client::open(URL).expect("redis url");
    let mut con = client.get_multiplexed_async_connection().await.expect("redis on 127.0.0.1:6379");
    let stream = stream_name("claim");
    let _: () = con.xgroup_create_mkstream(&stream, "minion-test", "0").await.expect("group");
    let mut expected = Vec::new();
    for i in 0..50 {
        expected.push(add(&mut con, &stream, i).await);
    }
    // A consumer reads them all and dies without acknowledging anything.
    let o = redis::streams::StreamReadOptions::default().group("minion-test", "ghost").count(1_000);
    let r: redis::streams::StreamReadReply = con.xread_options(&[&stream], &[">"], &o).await.expect("read");
    assert_eq!(r.keys[0].ids.len(), 50);

    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let mut child = adapter(&stream, &srv.base, "c2", &dir.path().join("ingest.log"));
    for i in 50..80 {
        expected.push(add(&mut con, &stream, i).await);
    }
    let total = expected.len();
    eventually(30, "the ghost's entries taken over", || async { (stored(&api).await >= total).then_some(()) }).await;
    check(&api.tasks("queue=inbox").await, &expected);
    let pending: redis::streams::StreamPendingReply = con.xpending(&stream, "minion-test").await.expect("xpending");
    assert_eq!(pending.count(), 0);
    child.kill9();
    let _: () = con.del(&stream).await.expect("del");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_adapter_embedded_in_the_server_from_its_config() {
    let client = redis::Client::open(URL).expect("redis url");
    let mut con = client.get_multiplexed_async_connection().await.expect("redis on 127.0.0.1:6379");
    let stream = stream_name("embedded");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("minion.toml");
    let text = format!(
        "[[ingest]]\nname = \"embedded-in\"\nsource = \"redis\"\nurl = \"{URL}\"\nstreams = [\"{stream}\"]\ngroup = \"g\"\nqueue = \"inbox\"\nmax_record_bytes = 2048\n"
    );
    std::fs::write(&cfg, text).expect("config");
    let srv = Server::start(dir.path(), &["--config", cfg.to_str().expect("path")]).await;
    let api = srv.client();
    let mut expected = Vec::new();
    for i in 0..40 {
        expected.push(add(&mut con, &stream, i).await);
    }
    let total = expected.len();
    eventually(30, "entries ingested by the embedded adapter", || async {
        (stored(&api).await >= total).then_some(())
    })
    .await;
    check(&api.tasks("queue=inbox").await, &expected);
    let out = Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(["ingest", "status", "--server", &srv.base])
        .output()
        .expect("minion ingest status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("embedded-in") && text.contains("redis"), "{text}");
    let _: () = con.del(&stream).await.expect("del");

    // A broken [[ingest]] entry is refused at start, naming it.
    std::fs::write(&cfg, "[[ingest]]\nname = \"x\"\nsource = \"nats\"\ngroup = \"g\"\nqueue = \"q\"\n")
        .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(["serve", "--config", cfg.to_str().expect("path"), "--raft-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .output()
        .expect("serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("ingest.x") && err.contains("kafka or redis"), "{err}");
}

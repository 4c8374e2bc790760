//! Bad input gets a clear 4xx with the JSON error body, and changes nothing.

mod common;

use common::{eventually, Server};
use serde_json::{json, Value};

/// The ledger as a comparable value: every task, in id order.
async fn ledger(api: &common::Api) -> Value {
    let (_, v) = api.get("/v1/tasks?limit=1000").await;
    v["tasks"].clone()
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "error needs a message: {body}");
}

#[tokio::test]
async fn malformed_unknown_missing_and_oversize_inputs_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let id = api.submit(json!({"queue": "q", "payload": {"keep": true}})).await;
    let before = ledger(&api).await;

    let (s, v) = api.post_raw("/v1/tasks", "{\"queue\": \"q\",").await;
    assert_error(s, &v, 400, "invalid_json");
    let (s, v) = api.post_raw("/v1/tasks", "\u{0}\u{1}garbage").await;
    assert_error(s, &v, 400, "invalid_json");
    let (s, v) = api.post("/v1/tasks", json!({"queue": "q", "colour": "red"})).await;
    assert_error(s, &v, 400, "invalid_request");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("colour"), "{v}");
    let (s, v) = api.post("/v1/tasks", json!({"kind": "no queue"})).await;
    assert_error(s, &v, 400, "invalid_request");
    let (s, v) = api.post("/v1/tasks", json!({"queue": "bad queue name!"})).await;
    assert_error(s, &v, 400, "invalid_request");
    let (s, v) = api.post("/v1/tasks", json!({"queue": "q", "priority": "high"})).await;
    assert_error(s, &v, 400, "invalid_request");
    let (s, v) = api.post("/v1/tasks", json!({"queue": "q", "max_attempts": 0})).await;
    assert_error(s, &v, 400, "invalid_request");
    let (s, v) = api.post("/v1/tasks", json!({"queue": "q", "lease_ms": 1})).await;
    assert_error(s, &v, 400, "invalid_request");

    // A payload one byte over the 1 MiB default: refused by the engine's per-task limit.
    let big = "x".repeat((1 << 20) - 1);
    let (s, v) = api.post("/v1/tasks", json!({"queue": "q", "payload": big})).await;
    assert_error(s, &v, 400, "invalid_request");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("over the limit"), "{v}");

    // An atomic batch with one bad task creates none of them.
    let (s, v) = api.post("/v1/tasks", json!({"tasks": [{"queue": "q"}, {"queue": "q", "max_attempts": 5000}]})).await;
    assert_error(s, &v, 400, "invalid_request");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("tasks[1]"), "{v}");
    let (s, v) = api.post("/v1/tasks", json!({"tasks": []})).await;
    assert_error(s, &v, 400, "invalid_request");

    // Claims.
    let (s, v) = api.post("/v1/claims", json!({"agent_id": "", "queues": ["q"]})).await;
    assert_error(s, &v, 400, "invalid_request");
    let (s, v) = api.post("/v1/claims", json!({"agent_id": "a", "queues": []})).await;
    assert_error(s, &v, 400, "invalid_request");
    let (s, v) = api.post("/v1/claims", json!({"agent_id": "a", "queues": ["q"], "max": 0})).await;
    assert_error(s, &v, 400, "invalid_request");

    // Unknown ids, bad paths and queries.
    let (s, v) = api.get("/v1/tasks/424242").await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = api.get("/v1/tasks/not-a-number").await;
    assert_error(s, &v, 400, "invalid_request");
    let (s, v) = api.post("/v1/tasks/424242/cancel", json!({})).await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = api.post("/v1/tasks/424242/complete", json!({"lease_token": 1})).await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = api.get("/v1/tasks?state=sleeping").await;
    assert_error(s, &v, 400, "invalid_request");
    let (s, v) = api.get("/v1/tasks?colour=red").await;
    assert_error(s, &v, 400, "invalid_request");
    let (s, v) = api.get("/v1/nothing-here").await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = api.req(reqwest::Method::DELETE, &format!("/v1/tasks/{id}"), None).await;
    assert_error(s, &v, 405, "method_not_allowed");
    let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q", Some(json!({"lease_ms": 5}))).await;
    assert_error(s, &v, 400, "invalid_request");
    let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q", Some(json!({"speed": 5}))).await;
    assert_error(s, &v, 400, "invalid_request");

    assert_eq!(ledger(&api).await, before, "rejected requests must not change the ledger");
    let (_, q) = api.get("/v1/queues/q").await;
    assert_eq!(
        q["overrides"],
        json!({"max_attempts": null, "lease_ms": null, "dedup_ttl_ms": null, "retry_base_ms": null, "retry_max_ms": null, "retention_ms": null, "payload_bytes_max": null, "stall_timeout_ms": null, "strategy": null})
    );
}

#[tokio::test]
async fn bodies_over_the_request_limit_get_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &["--body-bytes-max", "65536", "--payload-bytes-max", "1024"]).await;
    let api = srv.client();
    let body = format!("{{\"queue\":\"q\",\"payload\":\"{}\"}}", "y".repeat(70_000));
    let (s, v) = api.post_raw("/v1/tasks", body.clone()).await;
    assert_error(s, &v, 413, "payload_too_large");
    // Without a declared length (a streamed body), the limit still holds.
    let (s, v) = api.post_raw("/v1/tasks", reqwest::Body::wrap_stream(chunked(body.into_bytes()))).await;
    assert_error(s, &v, 413, "payload_too_large");
    let (s, v) = api.post("/v1/tasks", json!({"queue": "q", "payload": "z".repeat(2000)})).await;
    assert_error(s, &v, 400, "invalid_request");
    assert_eq!(api.count("").await, 0);
}

/// The body in 8 KiB chunks, so the request carries no Content-Length.
fn chunked(bytes: Vec<u8>) -> impl tokio_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    tokio_stream::iter(parts)
}

#[tokio::test]
async fn stale_forged_and_repeated_lease_operations_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let id = api.submit(json!({"queue": "q"})).await;
    let (s, v) = api.post(&format!("/v1/tasks/{id}/complete"), json!({"lease_token": 1})).await;
    assert_error(s, &v, 409, "stale_lease");
    let t = api.claim("a", &["q"], 1, 0).await.remove(0);
    let token = t["lease"]["token"].as_u64().expect("token");
    let forged = token + 1000;
    for op in ["complete", "progress", "extend"] {
        let (s, v) = api.post(&format!("/v1/tasks/{id}/{op}"), json!({"lease_token": forged})).await;
        assert_error(s, &v, 409, "stale_lease");
    }
    let (s, v) = api.post(&format!("/v1/tasks/{id}/fail"), json!({"lease_token": forged, "error": "x"})).await;
    assert_error(s, &v, 409, "stale_lease");
    let (s, v) = api.post(&format!("/v1/tasks/{id}/progress"), json!({"lease_token": token, "percent": 101})).await;
    assert_error(s, &v, 400, "invalid_request");
    let (s, v) = api.post(&format!("/v1/tasks/{id}/complete"), json!({"lease_token": "abc"})).await;
    assert_error(s, &v, 400, "invalid_request");
    let unchanged = api.task(id).await;
    assert_eq!(unchanged["state"], "leased");
    assert!(unchanged["progress"].as_array().is_some_and(|p| p.is_empty()));

    let (s, _) = api.complete(&t, json!("first")).await;
    assert_eq!(s, 200);
    let (s, v) = api.complete(&t, json!("second")).await;
    assert_error(s, &v, 409, "wrong_state");
    assert_eq!(api.task(id).await["result"], "first", "completing twice keeps the first result");
}

#[tokio::test]
async fn a_corrupt_log_is_refused_with_the_file_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &["--durability", "fsync"]).await;
    let api = srv.client();
    for i in 0..50 {
        api.submit(json!({"queue": "q", "payload": {"i": i, "pad": "p".repeat(200)}})).await;
    }
    srv.stop();

    // Flip bytes in the middle of the write-ahead log: entries the checkpoint records as durable.
    let wal = common::only_file(&srv.data_dir.join("wal"));
    common::flip_bytes(&wal);
    let stderr = srv.start_must_fail().await;
    assert!(stderr.contains(&wal.display().to_string()), "the error must name the log file: {stderr}");
    assert!(stderr.to_lowercase().contains("corrupt"), "the error must say corruption: {stderr}");
}

#[tokio::test]
async fn a_damaged_state_store_is_rebuilt_from_the_snapshot_and_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &["--snapshot-logs", "100"]).await;
    let api = srv.client();
    for i in 0..300 {
        api.submit(json!({"queue": "q", "payload": {"i": i, "pad": "p".repeat(100)}})).await;
    }
    let before = api.tasks("").await;
    srv.stop();
    // sled's data file damaged, or gone entirely: the state is the snapshot plus the log.
    common::flip_bytes(&srv.data_dir.join("state").join("db"));
    srv.spawn().await;
    assert_eq!(srv.client().tasks("").await, before, "every task is back after a damaged state store");
    srv.stop();
    std::fs::remove_dir_all(srv.data_dir.join("state")).expect("remove the state store");
    srv.spawn().await;
    assert_eq!(srv.client().tasks("").await, before, "every task is back after a lost state store");
    // Killed, not stopped: sled may come back behind the snapshot (raft then replays the log up to
    // it) or, damaged, behind what was recorded durable (rebuilt). Either way nothing is lost.
    srv.kill9();
    common::flip_bytes(&srv.data_dir.join("state").join("db"));
    srv.spawn().await;
    assert_eq!(srv.client().tasks("").await, before, "every task is back after a crash and a damaged store");
}

#[tokio::test]
async fn a_corrupt_snapshot_file_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &["--snapshot-logs", "100"]).await;
    let api = srv.client();
    // One entry per submit: several snapshots.
    for i in 0..300 {
        api.submit(json!({"queue": "q", "payload": {"i": i, "pad": "p".repeat(100)}})).await;
    }
    let snapshots = srv.data_dir.join("snapshots");
    eventually(10, "a snapshot file", || async {
        std::fs::read_dir(&snapshots)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".snap"))
            .then_some(())
    })
    .await;
    srv.stop();
    let snapshot = common::only_file(&snapshots);
    common::flip_bytes(&snapshot);
    let stderr = srv.start_must_fail().await;
    assert!(stderr.contains(&snapshot.display().to_string()), "the error names the snapshot file: {stderr}");
    assert!(stderr.to_lowercase().contains("corrupt"), "{stderr}");
}

/// Run `minion serve` with `args` and `env`; it must exit non-zero. Returns its stderr.
fn serve_refuses(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minion"))
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run minion serve");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "minion serve must refuse: {err}");
    err
}

#[tokio::test]
async fn invalid_configuration_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("minion.toml");
    let with_file = [std::ffi::OsStr::new("--config"), cfg.as_os_str()];
    std::fs::write(&cfg, "data_dir = \"x\"\nlisen = \"127.0.0.1:1\"\n").expect("write");
    let err = serve_refuses(&with_file, &[]);
    assert!(err.contains("lisen"), "{err}");

    std::fs::write(&cfg, "[engine]\nlease_ms = 5\n").expect("write");
    let err = serve_refuses(&with_file, &[]);
    assert!(err.contains("lease_ms"), "{err}");

    let err = serve_refuses(&[], &[("MINION_LISTEN", "not-an-address")]);
    assert!(err.contains("listen"), "{err}");
}

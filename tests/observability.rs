//! Tracing and backups against a real server: a W3C `traceparent` travels with its task to the
//! agent; spans reach an OTLP/HTTP collector; a backup restores into a new cluster.

mod common;

use std::sync::{Arc, Mutex};

use common::{eventually, Server};
use serde_json::json;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
}

async fn submit_traced(api: &common::Api, tp: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let resp = api
        .http
        .post(format!("{}/v1/tasks", api.base))
        .header("traceparent", tp)
        .json(&body)
        .send()
        .await
        .expect("submit");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn a_traceparent_given_at_submit_reaches_the_agent_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let tp = traceparent();

    let (s, v) = submit_traced(&api, &tp, json!({"queue": "t", "payload": 1, "idempotency_key": "k1"})).await;
    assert_eq!(s, 201, "{v}");
    let traced = v["id"].as_u64().expect("id");
    // A batch: every task of it carries the context.
    let (s, v) =
        submit_traced(&api, &tp, json!({"tasks": [{"queue": "t", "payload": 2}, {"queue": "t", "payload": 3}]})).await;
    assert_eq!(s, 201, "{v}");
    let batch: Vec<u64> = v["tasks"].as_array().expect("tasks").iter().map(|t| t["id"].as_u64().expect("id")).collect();
    // Malformed contexts are ignored (the W3C rule), not refused: the task is created untraced.
    for bad in ["garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "01-abc"] {
        let (s, v) = submit_traced(&api, bad, json!({"queue": "t", "payload": 4})).await;
        assert_eq!(s, 201, "{bad}: {v}");
        let t = api.task(v["id"].as_u64().expect("id")).await;
        assert!(t.get("trace_parent").is_none(), "{bad} was kept: {t}");
    }
    let plain = api.submit(json!({"queue": "t", "payload": 5})).await;
    // A duplicate submit with another context does not replace the first one's.
    let other = "00-11111111111111111111111111111111-2222222222222222-00";
    let (s, v) = submit_traced(&api, other, json!({"queue": "t", "payload": 1, "idempotency_key": "k1"})).await;
    assert_eq!((s, v["id"].as_u64()), (200, Some(traced)), "{v}");

    for id in [traced, batch[0], batch[1]] {
        assert_eq!(api.task(id).await["trace_parent"], tp.as_str(), "task {id}");
    }
    assert!(api.task(plain).await.get("trace_parent").is_none());

    srv.restart().await;
    let api = srv.client();
    assert_eq!(api.task(traced).await["trace_parent"], tp.as_str(), "after a restart");

    // The claim hands it to the agent.
    let claimed = api.claim("a1", &["t"], 10, 0).await;
    let with: Vec<&serde_json::Value> = claimed.iter().filter(|t| t["trace_parent"] == tp.as_str()).collect();
    assert_eq!(with.len(), 3, "claimed: {claimed:?}");

    // The reference worker exports it to its command as TRACEPARENT.
    let id = submit_traced(&api, &tp, json!({"queue": "w", "payload": null})).await.1["id"].as_u64().expect("id");
    let log = std::fs::File::create(dir.path().join("worker.log")).expect("log");
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(["worker", "--server", &srv.base, "--id", "w1", "--queue", "w"])
        .args(["--exec", r#"printf '{"tp":"%s"}' "$TRACEPARENT""#, "--wait-ms", "500"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("worker");
    let t = eventually(20, "the worker to finish the traced task", || {
        let api = api.clone();
        async move {
            let t = api.task(id).await;
            (t["state"] == "succeeded").then_some(t)
        }
    })
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(t["result"]["tp"], tp.as_str(), "{t}");
}

/// A minimal OTLP/HTTP collector: keeps every body posted to /v1/traces.
async fn collector() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let kept = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().expect("lock").push(body.to_vec());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1/traces"), bodies)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn spans_from_the_api_through_raft_apply_are_exported_over_otlp_in_the_callers_trace() {
    let (endpoint, bodies) = collector().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &["--otlp-endpoint", &endpoint]).await;
    let api = srv.client();
    let (s, v) = submit_traced(&api, &traceparent(), json!({"queue": "o", "payload": 1})).await;
    assert_eq!(s, 201, "{v}");
    // OTLP carries the trace id as 16 raw bytes and span names as strings.
    let trace_id: Vec<u8> =
        (0..16).map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).expect("hex")).collect();
    eventually(30, "the submit's spans to reach the collector", || {
        let bodies = bodies.clone();
        let trace_id = trace_id.clone();
        async move {
            let all: Vec<u8> = bodies.lock().expect("lock").concat();
            let ok = contains(&all, &trace_id)
                && [&b"http.request"[..], b"raft.propose", b"raft.commit", b"raft.apply", b"minion"]
                    .iter()
                    .all(|n| contains(&all, n));
            ok.then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_backup_restores_into_a_new_cluster_and_only_into_an_empty_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    let a = Server::start(&dir.path().join("a"), &[]).await;
    let api = a.client();
    let (s, _) = api.req(reqwest::Method::PUT, "/v1/queues/b", Some(json!({"max_attempts": 7}))).await;
    assert_eq!(s, 200);
    for i in 0..50 {
        api.submit(json!({"queue": "b", "payload": {"n": i}, "idempotency_key": format!("key-{i}")})).await;
    }
    submit_traced(&api, &traceparent(), json!({"queue": "b", "payload": "traced"})).await;
    let leased = api.claim("agent-1", &["b"], 5, 0).await;
    assert_eq!(api.complete(&leased[0], json!("done")).await.0, 200);
    let before = api.tasks("").await;

    let file = dir.path().join("minion.backup");
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_minion")).args(args).output().expect("run minion")
    };
    let out = cli(&["snapshot", "export", "--server", &a.base, "--out", file.to_str().expect("path")]);
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("51 tasks"), "{}", String::from_utf8_lossy(&out.stdout));

    // A damaged file is refused before anything is sent.
    let b = Server::start(&dir.path().join("b"), &[]).await;
    let bapi = b.client();
    let damaged = dir.path().join("damaged.backup");
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&damaged, &bytes).expect("write");
    let out = cli(&["snapshot", "import", "--server", &b.base, damaged.to_str().expect("path")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Minion backup file"), "{out:?}");
    // So is one sent straight to the API.
    let (s, v) = bapi.post_raw("/v1/admin/restore", std::fs::read(&damaged).expect("read")).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(bapi.count("").await, 0);

    let out = cli(&["snapshot", "import", "--server", &b.base, file.to_str().expect("path")]);
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let after = bapi.tasks("").await;
    assert_eq!(after, before, "the restored ledger equals the backed-up one");
    // Idempotency keys, queue settings and leases came along.
    let (s, v) = bapi.post("/v1/tasks", json!({"queue": "b", "payload": 0, "idempotency_key": "key-3"})).await;
    assert_eq!(
        (s, v["id"].as_u64()),
        (200, before.iter().find(|t| t["payload"]["n"] == 3).and_then(|t| t["id"].as_u64()))
    );
    assert_eq!(bapi.get("/v1/queues/b").await.1["config"]["max_attempts"], 7);
    let (s, v) = bapi
        .post(&format!("/v1/tasks/{}/complete", leased[1]["id"]), json!({"lease_token": leased[1]["lease"]["token"]}))
        .await;
    assert_eq!(s, 200, "a lease from before the backup completes on the restored cluster: {v}");
    // New ids continue after the restored ones.
    let next = bapi.submit(json!({"queue": "b", "payload": "new"})).await;
    assert!(before.iter().all(|t| t["id"].as_u64().expect("id") < next));

    // A cluster that holds state refuses a restore and keeps its state.
    let ledger = bapi.tasks("").await;
    let out = cli(&["snapshot", "import", "--server", &b.base, file.to_str().expect("path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("409") && err.contains("never held a task"), "{err}");
    assert_eq!(bapi.tasks("").await, ledger);
}

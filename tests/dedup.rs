//! Idempotency keys through the real API: one task per key within its TTL.

mod common;

use common::{eventually, Server};
use serde_json::json;

#[tokio::test]
async fn concurrent_duplicates_create_exactly_one_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.post("/v1/tasks", json!({"queue": "d", "idempotency_key": "same"})).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for c in calls {
        let (s, v) = c.await.expect("join");
        assert!(s == 201 || s == 200, "{v}");
        ids.insert(v["id"].as_u64().expect("id"));
        if v["duplicate"] == false {
            created += 1;
        }
    }
    assert_eq!(ids.len(), 1, "every caller gets the same id");
    assert_eq!(created, 1, "exactly one submission created the task");
    assert_eq!(api.count("queue=d").await, 1);

    // The same key in another queue is another task.
    let (s, v) = api.post("/v1/tasks", json!({"queue": "other", "idempotency_key": "same"})).await;
    assert_eq!((s, v["duplicate"].as_bool()), (201, Some(false)));
}

#[tokio::test]
async fn duplicate_keys_inside_one_batch_map_to_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let (s, v) = api
        .post(
            "/v1/tasks",
            json!({"tasks": [
                {"queue": "b", "idempotency_key": "k1"},
                {"queue": "b", "idempotency_key": "k2"},
                {"queue": "b", "idempotency_key": "k1"}
            ]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let t = v["tasks"].as_array().expect("tasks");
    assert_eq!(t[2]["id"], t[0]["id"]);
    assert_eq!(t[2]["duplicate"], true);
    assert_ne!(t[1]["id"], t[0]["id"]);
    assert_eq!(api.count("queue=b").await, 2);
}

#[tokio::test]
async fn keys_expire_after_the_queue_ttl_by_the_log_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let (s, _) = api.req(reqwest::Method::PUT, "/v1/queues/ttl", Some(json!({"dedup_ttl_ms": 400}))).await;
    assert_eq!(s, 200);
    let first = api.submit(json!({"queue": "ttl", "idempotency_key": "k"})).await;
    let (_, v) = api.post("/v1/tasks", json!({"queue": "ttl", "idempotency_key": "k"})).await;
    assert_eq!(v["id"].as_u64(), Some(first));
    // Housekeeping removes the key once it expires; then the key names a new task.
    eventually(10, "the dedup key to expire", || {
        let api = api.clone();
        async move {
            let (_, v) = api.get("/v1/stats").await;
            (v["dedup"]["keys"].as_u64() == Some(0)).then_some(())
        }
    })
    .await;
    let (s, v) = api.post("/v1/tasks", json!({"queue": "ttl", "idempotency_key": "k"})).await;
    assert_eq!((s, v["duplicate"].as_bool()), (201, Some(false)));
    assert_ne!(v["id"].as_u64(), Some(first));
}

/// A queue whose retention is shorter than its keys' TTL: once retention removes the task, its key
/// goes too, so a resubmission creates a new task instead of naming one that no longer exists.
#[tokio::test]
async fn a_key_never_names_a_task_retention_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/short", Some(json!({"retention_ms": 300}))).await;
    assert_eq!(s, 200, "{v}");
    let first = api.submit(json!({"queue": "short", "idempotency_key": "k1"})).await;
    let t = api.claim("a", &["short"], 1, 0).await;
    let (s, v) = api.complete(&t[0], json!(1)).await;
    assert_eq!(s, 200, "{v}");
    eventually(10, "retention removes the finished task", || async {
        (api.get(&format!("/v1/tasks/{first}")).await.0 == 404).then_some(())
    })
    .await;
    let (s, v) = api.post("/v1/tasks", json!({"queue": "short", "idempotency_key": "k1"})).await;
    assert_eq!((s, v["duplicate"].as_bool()), (201, Some(false)), "the key went with the task: {v}");
    let second = v["id"].as_u64().expect("id");
    assert_ne!(second, first);
    assert_eq!(api.task(second).await["state"], "ready");
    // And the new task's key holds as usual.
    let (s, v) = api.post("/v1/tasks", json!({"queue": "short", "idempotency_key": "k1"})).await;
    assert_eq!((s, v["id"].as_u64(), v["duplicate"].as_bool()), (200, Some(second), Some(true)), "{v}");
}

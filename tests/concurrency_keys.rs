//! Concurrency keys through the API: a queue limits how many tasks with one key are leased at
//! once (a limit for every key, overrides for single keys); claims skip keys at their limit and
//! take the next key's tasks instead; a claim waiting on a key at its limit is served when a lease
//! of that key ends; limits and keys survive a restart; bad limits and keys are refused.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;

fn ids(tasks: &[serde_json::Value]) -> Vec<u64> {
    tasks.iter().map(|t| t["id"].as_u64().expect("id")).collect()
}

#[tokio::test]
async fn claims_skip_keys_at_their_limit_and_limits_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let (s, v) = api
        .req(
            reqwest::Method::PUT,
            "/v1/queues/q/limits",
            Some(json!({"concurrency_per_key": 1, "key_concurrency": {"big": 2}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["concurrency_per_key"].as_u64(), v["key_concurrency"]["big"].as_u64()), (Some(1), Some(2)), "{v}");
    let mut a = Vec::new();
    let mut big = Vec::new();
    for _ in 0..3 {
        a.push(api.submit(json!({"queue": "q", "concurrency_key": "a"})).await);
        big.push(api.submit(json!({"queue": "q", "concurrency_key": "big"})).await);
    }
    let free = api.submit(json!({"queue": "q"})).await;
    let t = api.task(a[0]).await;
    assert_eq!(t["concurrency_key"], "a", "{t}");

    // One of `a`, two of `big`, and the task without a key, in submission order.
    let got = api.claim("w1", &["q"], 10, 0).await;
    assert_eq!(ids(&got), vec![a[0], big[0], big[1], free]);
    assert!(api.claim("w2", &["q"], 10, 0).await.is_empty(), "every key is at its limit");
    let (_, v) = api.get("/v1/queues/q/limits").await;
    assert_eq!((v["keys_at_limit"].as_u64(), v["leased_by_key"]["big"].as_u64()), (Some(2), Some(2)), "{v}");

    // The limits and the leases per key are rebuilt after a restart.
    srv.restart().await;
    let api = srv.client();
    assert!(api.claim("w2", &["q"], 10, 0).await.is_empty(), "still at the limit after a restart");
    let (s, v) = api.complete(&got[0], json!(1)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ids(&api.claim("w2", &["q"], 10, 0).await), vec![a[1]], "a's lease ended: its next task");

    // A claim that waits on a key at its limit is served when a lease of the key ends.
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (api.claim("w3", &["q"], 1, 10_000).await, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, v) = api.complete(&got[1], json!(1)).await;
    assert_eq!(s, 200, "{v}");
    let (served, waited) = waiter.await.expect("waiter");
    assert_eq!(ids(&served), vec![big[2]], "the waiting claim gets big's next task");
    assert!(waited < Duration::from_secs(5), "served when the lease ended, not at the poll's end: {waited:?}");

    // Removing the limits frees every key.
    let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(json!({}))).await;
    assert_eq!((s, v["concurrency_per_key"].is_null()), (200, true), "{v}");
    assert_eq!(ids(&api.claim("w4", &["q"], 10, 0).await), vec![a[2]]);
}

#[tokio::test]
async fn a_key_with_limit_zero_is_held_back_and_other_queues_are_not_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let (s, v) =
        api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(json!({"key_concurrency": {"paused": 0}}))).await;
    assert_eq!(s, 200, "{v}");
    let paused = api.submit(json!({"queue": "q", "concurrency_key": "paused", "priority": 9})).await;
    let other = api.submit(json!({"queue": "q", "concurrency_key": "other"})).await;
    let elsewhere = api.submit(json!({"queue": "r", "concurrency_key": "paused"})).await;
    assert_eq!(ids(&api.claim("w", &["q", "r"], 10, 0).await), vec![other, elsewhere]);
    assert_eq!(api.task(paused).await["state"], "ready", "held back, not failed");
    let (_, v) = api.get("/v1/queues/q/limits").await;
    assert_eq!(v["keys_at_limit"], 1, "{v}");
}

#[tokio::test]
async fn bad_keys_and_limits_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    for body in
        [json!({"queue": "q", "concurrency_key": ""}), json!({"queue": "q", "concurrency_key": "k".repeat(257)})]
    {
        let (s, v) = api.post("/v1/tasks", body).await;
        assert_eq!(s, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap_or_default().contains("concurrency_key"), "{v}");
    }
    assert_eq!(api.count("").await, 0, "nothing was created");
    for body in [
        json!({"concurrency_per_key": 2_000_000}),
        json!({"key_concurrency": {"": 1}}),
        json!({"concurrency_per_key": -1}),
        json!({"per_key": 1}),
        json!({"key_concurrency": {"k": "one"}}),
    ] {
        let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(body.clone())).await;
        assert_eq!(s, 400, "{body} → {v}");
    }
    let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/bad%20name/limits", Some(json!({}))).await;
    assert_eq!(s, 400, "{v}");
    let (_, v) = api.get("/v1/queues/q/limits").await;
    assert_eq!(
        (v["concurrency_per_key"].is_null(), v["key_concurrency"].as_object().map(|m| m.len())),
        (true, Some(0))
    );
}

#[tokio::test]
async fn the_cli_sets_and_shows_limits_and_submits_with_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let cli = |args: &[&str]| srv.cli_ok(args);
    let set = cli(&["queue", "limits", "q", "--per-key", "1", "--key", "openai=3"]);
    assert!(set.contains("concurrency per key      1") && set.contains("key openai"), "{set}");
    let out = cli(&["task", "submit", "--queue", "q", "--concurrency-key", "openai"]);
    let id: u64 = out.split_whitespace().nth(1).and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(api.task(id).await["concurrency_key"], "openai");
    api.claim("w", &["q"], 1, 0).await;
    let shown = cli(&["queue", "limits", "q"]);
    assert!(shown.contains("leased with openai") && shown.contains("key openai               3"), "{shown}");
    let cleared = cli(&["queue", "limits", "q", "--clear"]);
    assert!(cleared.contains("concurrency per key      -"), "{cleared}");
}

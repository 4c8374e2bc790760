//! Rate limits through the API: a queue limits task starts per period for the whole queue and
//! per concurrency key (for every key, and single keys' own rates); claims beyond a rate get
//! nothing, a claim waiting on a rate-limited key is served when the key's next start is allowed
//! (housekeeping, not polling), bucket state survives a restart, and bad rates are refused.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;

fn ids(tasks: &[serde_json::Value]) -> Vec<u64> {
    tasks.iter().map(|t| t["id"].as_u64().expect("id")).collect()
}

#[tokio::test]
async fn keys_out_of_starts_wait_for_their_rate_and_a_waiting_claim_is_served_when_it_allows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let body = json!({
        "rate_per_key": {"starts": 2, "period_ms": 2_000},
        "key_rate": {"slow": {"starts": 1, "period_ms": 3_600_000}},
    });
    let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rate_per_key"], json!({"starts": 2, "period_ms": 2_000}), "{v}");
    assert_eq!(v["key_rate"]["slow"]["starts"], 1, "{v}");
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(api.submit(json!({"queue": "q", "concurrency_key": "a"})).await);
    }
    let slow: Vec<u64> = vec![
        api.submit(json!({"queue": "q", "concurrency_key": "slow"})).await,
        api.submit(json!({"queue": "q", "concurrency_key": "slow"})).await,
    ];
    let free = api.submit(json!({"queue": "q"})).await;

    // Two starts of `a` (its rate), one of `slow` (its own), and the task without a key.
    let got = api.claim("w1", &["q"], 10, 0).await;
    assert_eq!(ids(&got), vec![a[0], a[1], slow[0], free]);
    assert!(api.claim("w2", &["q"], 10, 0).await.is_empty(), "both keys are out of starts");
    let (_, v) = api.get("/v1/queues/q/limits").await;
    assert_eq!((v["keys_rate_limited"].as_u64(), v["keys_at_limit"].as_u64()), (Some(2), Some(2)), "{v}");
    // Finishing leases does not give starts back: a rate counts starts, not tasks in flight.
    for t in &got {
        assert_eq!(api.complete(t, json!(1)).await.0, 200);
    }
    assert!(api.claim("w2", &["q"], 10, 0).await.is_empty(), "completions do not refill a rate");

    // A waiting claim is served when `a` may start again (one start per 1,000 ms), not before
    // and not at the end of its poll.
    let started = Instant::now();
    let served = api.claim("w3", &["q"], 5, 20_000).await;
    let waited = started.elapsed();
    assert_eq!(ids(&served), vec![a[2]], "a's next start; slow's rate allows none for an hour");
    assert!(waited >= Duration::from_millis(300), "served before the rate allowed it: {waited:?}");
    assert!(waited < Duration::from_secs(15), "served when the rate allowed it, not at the poll's end: {waited:?}");
    assert!(api.claim("w2", &["q"], 10, 0).await.is_empty(), "slow is still out of starts");
}

#[tokio::test]
async fn a_queue_rate_caps_every_claim_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let body = json!({"rate": {"starts": 2, "period_ms": 3_600_000}, "concurrency_per_key": 5});
    let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    let mut tasks = Vec::new();
    for i in 0..4 {
        tasks.push(api.submit(json!({"queue": "q", "priority": 10 - i})).await);
    }
    assert_eq!(ids(&api.claim("w1", &["q"], 10, 0).await), tasks[..2].to_vec(), "two starts an hour");
    assert!(api.claim("w1", &["q"], 10, 0).await.is_empty());
    let (_, v) = api.get("/v1/queues/q/limits").await;
    let until = v["rate_limited_until_ms"].as_u64().expect("the queue is rate limited");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    assert!(until > now + 1_700_000 && until < now + 1_900_000, "next start in ~30 min: {until} vs {now}");
    // Other queues are not limited.
    let other = api.submit(json!({"queue": "other"})).await;
    assert_eq!(ids(&api.claim("w1", &["q", "other"], 10, 0).await), vec![other]);

    // The bucket is stored: a restart does not hand out a fresh burst.
    srv.restart().await;
    let api = srv.client();
    assert!(api.claim("w1", &["q"], 10, 0).await.is_empty(), "still out of starts after a restart");
    let (_, v) = api.get("/v1/queues/q/limits").await;
    assert_eq!(v["rate_limited_until_ms"].as_u64(), Some(until), "{v}");

    // Changing other limits keeps what the bucket owes; removing the rate frees the queue.
    let (s, v) = api
        .req(
            reqwest::Method::PUT,
            "/v1/queues/q/limits",
            Some(json!({"rate": {"starts": 2, "period_ms": 3_600_000}, "concurrency_per_key": 1})),
        )
        .await;
    assert_eq!((s, v["rate_limited_until_ms"].as_u64()), (200, Some(until)), "{v}");
    assert!(api.claim("w1", &["q"], 10, 0).await.is_empty());
    let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(json!({}))).await;
    assert_eq!((s, v["rate"].is_null(), v["rate_limited_until_ms"].is_null()), (200, true, true), "{v}");
    assert_eq!(ids(&api.claim("w1", &["q"], 10, 0).await), tasks[2..].to_vec());
}

#[tokio::test]
async fn bad_rates_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let good = json!({"rate": {"starts": 5, "period_ms": 1_000}});
    assert_eq!(api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(good)).await.0, 200);
    for (body, why) in [
        (json!({"rate": {"starts": 0, "period_ms": 1_000}}), "starts"),
        (json!({"rate": {"starts": 1_000_001, "period_ms": 1_000}}), "starts"),
        (json!({"rate_per_key": {"starts": 1, "period_ms": 0}}), "period_ms"),
        (json!({"rate_per_key": {"starts": 1, "period_ms": 31u64 * 86_400_000 + 1}}), "period_ms"),
        (json!({"key_rate": {"": {"starts": 1, "period_ms": 10}}}), "concurrency_key"),
        (json!({"rate": {"starts": 1, "period_ms": 10, "burst": 3}}), "burst"),
        (json!({"rate": {"starts": 1}}), "period_ms"),
        (json!({"rate": "10/1s"}), "rate"),
    ] {
        let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(why), "{body}: {msg}");
    }
    let (_, v) = api.get("/v1/queues/q/limits").await;
    assert_eq!(v["rate"], json!({"starts": 5, "period_ms": 1_000}), "nothing changed: {v}");
}

#[tokio::test]
async fn the_cli_sets_and_shows_rates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let cli = |args: &[&str]| srv.cli(args);
    let (ok, set, err) =
        cli(&["queue", "limits", "q", "--rate", "100/1m", "--rate-per-key", "5/500ms", "--key-rate", "slow=1/2h"]);
    assert!(ok, "{err}");
    assert!(set.contains("rate                     100 per 60000 ms"), "{set}");
    assert!(set.contains("rate per key             5 per 500 ms") && set.contains("rate of slow"), "{set}");
    let (ok, _, err) = cli(&["queue", "limits", "q", "--rate", "10/fortnight"]);
    assert!(!ok && err.contains("unit"), "{err}");
    let (ok, _, err) = cli(&["queue", "limits", "q", "--rate", "0/1s"]);
    assert!(!ok && err.contains("starts"), "{err}");
    let (ok, shown, _) = cli(&["queue", "limits", "q"]);
    assert!(ok && shown.contains("100 per 60000 ms"), "the refused changes changed nothing: {shown}");
}

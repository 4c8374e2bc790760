//! Fair queues through the API: a queue set `fair` serves its concurrency keys round robin within
//! a priority (tasks without a key as one more key) instead of oldest first; the key served last
//! is shown and survives a restart; turning fairness off restores oldest first; bad values are
//! refused and change nothing; the CLI sets and shows it.

mod common;

use common::Server;
use serde_json::{json, Value};

/// The concurrency keys of claimed tasks (`"-"` for none).
fn keys(tasks: &[Value]) -> Vec<String> {
    tasks.iter().map(|t| t["concurrency_key"].as_str().unwrap_or("-").to_string()).collect()
}

/// Claim one task at a time, `n` times, completing each; their keys.
async fn serve_one_by_one(api: &common::Api, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let got = api.claim("w", &["q"], 1, 0).await;
        assert_eq!(got.len(), 1, "a task is ready");
        assert_eq!(api.complete(&got[0], json!(1)).await.0, 200);
        out.extend(keys(&got));
    }
    out
}

#[tokio::test]
async fn a_fair_queue_serves_keys_in_turn_and_remembers_whose_turn_it_is_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    // A burst from one tenant first, then two others and a task without a key.
    for _ in 0..6 {
        api.submit(json!({"queue": "q", "concurrency_key": "bulk"})).await;
    }
    for key in ["small", "tiny", "small"] {
        api.submit(json!({"queue": "q", "concurrency_key": key})).await;
    }
    api.submit(json!({"queue": "q"})).await;
    let urgent = api.submit(json!({"queue": "q", "concurrency_key": "tiny", "priority": 9})).await;

    let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(json!({"fair": true}))).await;
    assert_eq!((s, v["fair"].as_bool(), v["last_served_key"].is_null()), (200, Some(true), true), "{v}");

    // Priority first; then, within priority 0, keys in turn after "tiny" (served last): none
    // after it, so from the start: no key, bulk, small, tiny, then bulk, small, bulk...
    let first = api.claim("w", &["q"], 1, 0).await;
    assert_eq!(first[0]["id"].as_u64(), Some(urgent));
    assert_eq!(api.complete(&first[0], json!(1)).await.0, 200);
    assert_eq!(serve_one_by_one(&api, 3).await, ["-", "bulk", "small"]);
    let (_, v) = api.get("/v1/queues/q/limits").await;
    assert_eq!(v["last_served_key"], "small", "{v}");

    srv.restart().await;
    let api = srv.client();
    assert_eq!(serve_one_by_one(&api, 4).await, ["tiny", "bulk", "small", "bulk"], "the turn survived the restart");

    // One claim of several spreads them over the keys too.
    for key in ["small", "tiny"] {
        api.submit(json!({"queue": "q", "concurrency_key": key})).await;
    }
    let got = api.claim("w", &["q"], 3, 0).await;
    assert_eq!(keys(&got), ["small", "tiny", "bulk"]);

    // Fairness off: oldest first again, and the turn is forgotten.
    let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(json!({}))).await;
    assert_eq!((s, v["fair"].as_bool(), v["last_served_key"].is_null()), (200, Some(false), true), "{v}");
    api.submit(json!({"queue": "q", "concurrency_key": "late"})).await;
    let got = api.claim("w", &["q"], 3, 0).await;
    assert_eq!(keys(&got), ["bulk", "bulk", "late"]);
}

#[tokio::test]
async fn fairness_and_limits_work_together_and_bad_values_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let body = json!({"fair": true, "concurrency_per_key": 1, "key_concurrency": {"big": 2}});
    let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    for key in ["big", "big", "big", "a", "a", "b"] {
        api.submit(json!({"queue": "q", "concurrency_key": key})).await;
    }
    // Turns go a, b, big, then big again (its limit is 2); a and b are at their limit.
    let got = api.claim("w", &["q"], 10, 0).await;
    assert_eq!(keys(&got), ["a", "b", "big", "big"]);

    for body in [json!({"fair": "yes"}), json!({"fair": 1}), json!({"fair": true, "fairness": "strict"})] {
        let (s, v) = api.req(reqwest::Method::PUT, "/v1/queues/q/limits", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
    }
    let (_, v) = api.get("/v1/queues/q/limits").await;
    assert_eq!((v["fair"].as_bool(), v["concurrency_per_key"].as_u64()), (Some(true), Some(1)), "{v}");
    assert_eq!(v["last_served_key"], "big", "{v}");

    let (ok, shown, err) = srv.cli(&["queue", "limits", "q"]);
    assert!(ok, "{err}");
    assert!(
        shown.contains("fair                     true") && shown.contains("last served key          big"),
        "{shown}"
    );
    let set = srv.cli_ok(&["queue", "limits", "q", "--fair", "--per-key", "3"]);
    assert!(set.contains("fair                     true") && set.contains("concurrency per key      3"), "{set}");
    let set = srv.cli_ok(&["queue", "limits", "q", "--per-key", "3"]);
    assert!(set.contains("fair                     false"), "limits given without --fair turn it off: {set}");
}

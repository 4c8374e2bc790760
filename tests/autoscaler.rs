//! Pool autoscaling decisions through the API.

mod common;

use common::{eventually, Server};
use serde_json::json;

const CONFIG: &str = r#"
autoscale_interval_ms = 100

[[pools]]
name = "render"
queues = ["frames"]

[pools.policy]
min_workers = 1
max_workers = 6
scale_up_utilization = 0.8
scale_up_backlog_per_worker = 5.0
scale_up_oldest_ready_ms = 60000
scale_down_utilization = 0.2
step_up = 2
step_down = 1
cooldown_up_ms = 0
cooldown_down_ms = 0
"#;

#[tokio::test]
async fn a_burst_raises_the_desired_count_within_max_and_idleness_lowers_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("minion.toml");
    std::fs::write(&cfg, CONFIG).expect("config");
    let srv = Server::start(dir.path(), &["--config", cfg.to_str().expect("path")]).await;
    let api = srv.client();
    for i in 0..2 {
        let (s, _) = api.post("/v1/agents", json!({"id": format!("w{i}"), "labels": {"pool": "render"}})).await;
        assert_eq!(s, 201);
    }
    let (s, _) = api.post("/v1/agents", json!({"id": "stranger"})).await;
    assert_eq!(s, 201);

    let tasks: Vec<_> = (0..60).map(|i| json!({"queue": "frames", "payload": i})).collect();
    let (s, _) = api.post("/v1/tasks", json!({ "tasks": tasks })).await;
    assert_eq!(s, 201);
    // Two workers and a backlog of 30 each: one step up from the current count.
    let pool = eventually(10, "the pool to want a step more", || {
        let api = api.clone();
        async move {
            let (_, v) = api.get("/v1/autoscaler").await;
            (v["pools"]["render"]["desired"] == 4).then(|| v["pools"]["render"].clone())
        }
    })
    .await;
    assert_eq!(pool["current"], 2, "only the two agents labelled pool=render count");
    assert_eq!(pool["last_decision"]["rule"], "backlog");
    // The pool grows to five: a step would pass the maximum, so it stops there.
    for i in 2..5 {
        let (s, _) = api.post("/v1/agents", json!({"id": format!("w{i}"), "labels": {"pool": "render"}})).await;
        assert_eq!(s, 201);
    }
    eventually(10, "the pool to want its maximum", || {
        let api = api.clone();
        async move {
            let (_, v) = api.get("/v1/autoscaler").await;
            (v["pools"]["render"]["desired"] == 6 && v["pools"]["render"]["current"] == 5).then_some(())
        }
    })
    .await;
    let (_, d) = api.get("/v1/autoscaler/decisions?pool=render&limit=1000").await;
    let decisions = d["decisions"].as_array().expect("decisions");
    assert!(decisions.iter().all(|d| d["desired"].as_u64().is_some_and(|n| (1..=6).contains(&n))));
    assert!(decisions.iter().any(|d| d["rule"] == "backlog"), "the backlog rule fired");

    // Drain the queue and let the workers go: the desired count falls back to the minimum.
    let (_, v) = api.get("/v1/tasks?queue=frames&limit=1000").await;
    for t in v["tasks"].as_array().expect("tasks") {
        api.post(&format!("/v1/tasks/{}/cancel", t["id"]), json!({})).await;
    }
    for i in 0..5 {
        api.req(reqwest::Method::DELETE, &format!("/v1/agents/w{i}"), None).await;
    }
    eventually(10, "the pool to return to its minimum", || {
        let api = api.clone();
        async move {
            let (_, v) = api.get("/v1/autoscaler").await;
            (v["pools"]["render"]["desired"] == 1).then_some(())
        }
    })
    .await;
    let (s, _) = api.get("/v1/autoscaler/decisions?pool=nope").await;
    assert_eq!(s, 404);
    let text = api.http.get(format!("{}/metrics", api.base)).send().await.expect("metrics").text().await.expect("text");
    assert!(text.contains("minion_autoscaler_desired_workers{pool=\"render\"} 1"), "{text}");
}

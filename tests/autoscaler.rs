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
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(["autoscaler", "decisions", "--pool", "render", "--limit", "1000", "--server", &api.base])
        .output()
        .expect("cli");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("backlog") && text.contains("RULE"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(["autoscaler", "status", "--server", &api.base])
        .output()
        .expect("cli");
    assert!(String::from_utf8_lossy(&out.stdout).contains("render"));
    let text = api.http.get(format!("{}/metrics", api.base)).send().await.expect("metrics").text().await.expect("text");
    assert!(text.contains("minion_autoscaler_desired_workers{pool=\"render\"} 1"), "{text}");
}

#[tokio::test]
async fn every_decision_reaches_the_webhook() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("lock").push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("minion.toml");
    std::fs::write(&cfg, format!("autoscale_webhook_url = \"{hook}\"\n{CONFIG}")).expect("config");
    let _srv = Server::start(dir.path(), &["--config", cfg.to_str().expect("path")]).await;
    eventually(10, "decisions at the webhook", || {
        let received = received.clone();
        async move { (received.lock().expect("lock").len() >= 3).then_some(()) }
    })
    .await;
    let first = received.lock().expect("lock")[0].clone();
    assert_eq!(first["pool"], "render");
    assert_eq!(first["decision"]["desired"], 1, "no workers, min 1: {first}");
    assert_eq!(first["decision"]["rule"], "below_min");
    assert!(first["decision"]["signals"]["ready"].is_u64(), "the inputs travel with the decision");
}

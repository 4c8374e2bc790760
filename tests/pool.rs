//! The process pool grows real worker processes under a burst, they drain the queue, and it
//! shrinks after.

mod common;

use std::process::{Command, Stdio};

use common::{eventually, pool_workers, Server, RENDER_POOL};
use serde_json::json;

#[tokio::test]
async fn a_burst_grows_the_pool_which_drains_the_queue_and_shrinks_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("minion.toml");
    std::fs::write(&cfg, RENDER_POOL).expect("config");
    let srv = Server::start(dir.path(), &["--config", cfg.to_str().expect("path")]).await;
    let api = srv.client();
    let worker = format!(
        "{} worker --queue frames --exec 'sleep 0.2; cat' --heartbeat-ms 200 --wait-ms 1000",
        env!("CARGO_BIN_EXE_minion")
    );
    let log = std::fs::File::create(dir.path().join("pool.log")).expect("log");
    let mut pool = Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(["pool", "--name", "render", "--server", &srv.base, "--command", &worker])
        .args(["--poll-ms", "100", "--grace-ms", "3000"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn pool");

    eventually(20, "the pool to start its minimum of one worker", || {
        let api = api.clone();
        async move { (pool_workers(&api).await == 1).then_some(()) }
    })
    .await;

    let tasks: Vec<_> = (0..40).map(|i| json!({"queue": "frames", "payload": {"frame": i}})).collect();
    let (s, v) = api.post("/v1/tasks", json!({ "tasks": tasks })).await;
    assert_eq!(s, 201);
    let ids: Vec<u64> = v["tasks"].as_array().expect("ids").iter().map(|t| t["id"].as_u64().expect("id")).collect();

    let mut peak = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        peak = peak.max(pool_workers(&api).await);
        let (_, q) = api.get("/v1/queues/frames").await;
        if q["stats"]["succeeded"].as_u64() == Some(ids.len() as u64) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the workers did not finish the tasks: {q}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!((3..=4).contains(&peak), "the pool grew to {peak} workers (max 4)");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(api.task(*id).await["result"], json!({"frame": i}));
    }

    eventually(30, "the pool to shrink back to one worker", || {
        let api = api.clone();
        async move { (pool_workers(&api).await == 1).then_some(()) }
    })
    .await;
    let (_, d) = api.get("/v1/autoscaler/decisions?pool=render&limit=1000").await;
    let rules: Vec<String> =
        d["decisions"].as_array().expect("decisions").iter().map(|d| d["rule"].to_string()).collect();
    assert!(rules.iter().any(|r| r.contains("idle")), "scaled down as idle: {rules:?}");

    Command::new("kill").arg("-TERM").arg(pool.id().to_string()).status().expect("kill");
    assert!(pool.wait().expect("wait").success(), "the pool exits cleanly on SIGTERM");
    eventually(10, "every worker to be gone", || {
        let api = api.clone();
        async move { (pool_workers(&api).await == 0).then_some(()) }
    })
    .await;
    // Not just deregistered: no process the pool started (the shell or the worker under it) is left.
    let marker = format!("MINION_SERVER={}", srv.base);
    eventually(10, "every worker process to exit", || {
        let marker = marker.clone();
        async move { (processes_with_env(&marker) == 0).then_some(()) }
    })
    .await;
}

/// Processes whose environment holds `entry` (`KEY=value`).
fn processes_with_env(entry: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == entry.as_bytes()))
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test]
async fn crashing_workers_are_restarted_with_growing_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("minion.toml");
    std::fs::write(&cfg, RENDER_POOL).expect("config");
    let srv = Server::start(dir.path(), &["--config", cfg.to_str().expect("path")]).await;
    let log_path = dir.path().join("pool.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut pool = Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(["pool", "--name", "render", "--server", &srv.base, "--command", "exit 3", "--poll-ms", "50"])
        .env("MINION_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn pool");
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    Command::new("kill").arg("-TERM").arg(pool.id().to_string()).status().expect("kill");
    pool.wait().expect("wait");
    let text = std::fs::read_to_string(&log_path).expect("read log");
    let delays: Vec<&str> = text.lines().filter(|l| l.contains("worker exited")).collect();
    assert!(delays.len() >= 2, "restarted after each crash:\n{text}");
    assert!(
        delays[0].contains("restart_in_ms=500") && delays[1].contains("restart_in_ms=1000"),
        "backoff doubles:\n{text}"
    );
}

//! The reference worker: `minion worker --exec` runs a command per task against a real server.

mod common;

use std::process::{Child, Command, Stdio};

use common::{eventually, Server};
use serde_json::json;

fn worker(server: &str, id: &str, queue: &str, exec: &str, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).expect("log");
    Command::new(env!("CARGO_BIN_EXE_minion"))
        .args(["worker", "--server", server, "--id", id, "--queue", queue, "--exec", exec, "--concurrency", "2"])
        .args(["--heartbeat-ms", "200", "--wait-ms", "2000"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn worker")
}

#[tokio::test]
async fn the_worker_runs_commands_reports_progress_and_results_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let mut good =
        worker(&srv.base, "echoer", "w", "echo 'progress: 50 halfway' >&2; cat", &dir.path().join("good.log"));
    let mut bad = worker(&srv.base, "failer", "bad", "echo oops >&2; exit 3", &dir.path().join("bad.log"));

    let ids: Vec<u64> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(api.submit(json!({"queue": "w", "payload": {"n": i}})).await);
        }
        v
    };
    let failing = api.submit(json!({"queue": "bad", "payload": null, "max_attempts": 1})).await;
    for (i, id) in ids.iter().enumerate() {
        let t = eventually(20, "the worker to complete the task", || {
            let api = api.clone();
            let id = *id;
            async move {
                let t = api.task(id).await;
                (t["state"] == "succeeded").then_some(t)
            }
        })
        .await;
        assert_eq!(t["result"], json!({"n": i}), "stdout is the result");
        assert_eq!(t["progress"][0]["percent"], 50);
        assert_eq!(t["progress"][0]["message"], "halfway");
        assert_eq!(t["attempts"][0]["agent_id"], "echoer");
    }
    let t = eventually(20, "the failing command to fail the task", || {
        let api = api.clone();
        async move {
            let t = api.task(failing).await;
            (t["state"] == "dead").then_some(t)
        }
    })
    .await;
    let err = t["last_error"].as_str().unwrap_or("");
    assert!(err.contains("exit status: 3") && err.contains("oops"), "{err}");

    // SIGTERM: the worker drains, deregisters and exits cleanly.
    for (child, id) in [(&mut good, "echoer"), (&mut bad, "failer")] {
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
        let status = child.wait().expect("wait");
        assert!(status.success(), "worker {id} exits 0 after SIGTERM");
        let (s, _) = api.get(&format!("/v1/agents/{id}")).await;
        assert_eq!(s, 404, "worker {id} deregistered");
    }
}

/// A command longer than its lease runs once: the worker extends the lease while it runs. A task
/// cancelled meanwhile has its command stopped.
#[tokio::test]
async fn the_worker_keeps_its_lease_and_stops_the_command_when_it_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let marker = dir.path().join("ran-to-the-end");
    let exec = format!("sleep 2; touch {}; cat", marker.display());
    let mut w = worker(&srv.base, "slow", "long", &exec, &dir.path().join("slow.log"));

    // 2 s of work under a 500 ms lease: one attempt, one result.
    let id = api.submit(json!({"queue": "long", "payload": 7, "lease_ms": 500})).await;
    let t = eventually(20, "the long task to succeed", || {
        let api = api.clone();
        async move {
            let t = api.task(id).await;
            (t["state"] == "succeeded").then_some(t)
        }
    })
    .await;
    assert_eq!(t["result"], 7);
    assert_eq!(t["attempts"].as_array().map(Vec::len), Some(1), "ran once: {t}");
    std::fs::remove_file(&marker).expect("the command ran to the end");

    // Cancelled while it runs: the command is killed before it reaches its end.
    let id = api.submit(json!({"queue": "long", "payload": 8, "lease_ms": 500})).await;
    eventually(10, "the worker to lease it", || {
        let api = api.clone();
        async move { (api.task(id).await["state"] == "leased").then_some(()) }
    })
    .await;
    let (s, v) = api.post(&format!("/v1/tasks/{id}/cancel"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(3_000)).await;
    assert!(!marker.exists(), "the command of a cancelled task was stopped");
    assert_eq!(api.task(id).await["state"], "cancelled");
    Command::new("kill").arg("-TERM").arg(w.id().to_string()).status().expect("kill");
    assert!(w.wait().expect("wait").success());
}

//! A task's total deadline, apart from its lease: past it, an unfinished task is dead with the
//! error `deadline`, whether it was ready, waiting or leased (the holder's lease ends, and its
//! token is refused from then on). A deadline already past, or too far ahead, is refused.

mod common;

use std::time::Duration;

use common::Server;
use serde_json::json;

#[tokio::test]
async fn a_task_past_its_deadline_is_dead_whatever_it_was_doing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let leased = api.submit(json!({"queue": "q", "deadline_in_ms": 600, "lease_ms": 60_000})).await;
    let idle = api.submit(json!({"queue": "idle", "deadline_in_ms": 600})).await;
    let blocker = api.submit(json!({"queue": "idle", "delay_ms": 3_600_000})).await;
    let waiting = api.submit(json!({"queue": "q", "depends_on": [blocker], "deadline_in_ms": 600})).await;
    let dependent = api.submit(json!({"queue": "q", "depends_on": [leased]})).await;
    let later = api.submit(json!({"queue": "later", "deadline_in_ms": 3_600_000})).await;
    let got = api.claim("a", &["q"], 1, 0).await;
    assert_eq!(got[0]["id"], leased);
    let deadline = got[0]["deadline_ms"].as_u64().expect("deadline_ms in the view");
    assert!(deadline > got[0]["created_ms"].as_u64().expect("created"), "{}", got[0]);

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for id in [leased, idle, waiting] {
        let t = api.task(id).await;
        assert_eq!((t["state"].as_str(), t["last_error"].as_str()), (Some("dead"), Some("deadline")), "{t}");
    }
    let t = api.task(leased).await;
    assert_eq!(t["attempts"][0]["outcome"]["outcome"], "deadline_exceeded", "{t}");
    assert!(t["lease"].is_null(), "{t}");
    let (s, v) = api.complete(&got[0], json!(1)).await;
    assert_eq!(s, 409, "the holder's token is refused after the deadline: {v}");
    let d = api.task(dependent).await;
    assert_eq!(d["state"], "cancelled", "a deadline miss is a failed dependency: {d}");
    assert_eq!(api.task(later).await["state"], "ready");
    assert_eq!(api.task(blocker).await["state"], "delayed");

    // A manual retry lifts a deadline that has passed: the task runs again.
    let (s, v) = api.post(&format!("/v1/tasks/{idle}/retry"), json!({})).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("ready")), "{v}");
    assert!(v["deadline_ms"].is_null(), "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.task(idle).await["state"], "ready");
}

#[tokio::test]
async fn deadlines_in_the_past_or_too_far_ahead_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    for body in [
        json!({"queue": "q", "deadline_ms": 1_000}),
        json!({"queue": "q", "deadline_in_ms": 0}),
        json!({"queue": "q", "deadline_in_ms": 400 * 86_400_000u64}),
        json!({"tasks": [{"queue": "q"}, {"queue": "q", "deadline_ms": 5}]}),
    ] {
        let (s, v) = api.post("/v1/tasks", body.clone()).await;
        assert_eq!(s, 400, "{body} → {v}");
        assert!(v["error"]["message"].as_str().unwrap_or_default().contains("deadline"), "{body} → {v}");
    }
    assert_eq!(api.count("").await, 0, "nothing was created");
}

//! Black-box tests of one `minion serve` process: the task lifecycle through the HTTP API.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, Server};
use serde_json::json;

#[tokio::test]
async fn lifecycle_with_progress_history_and_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();

    let id = api.submit(json!({"queue": "jobs", "kind": "resize", "payload": {"w": 10}})).await;
    let t = api.task(id).await;
    assert_eq!(t["state"], "ready");
    assert_eq!(t["payload"], json!({"w": 10}));

    let claimed = api.claim("agent-1", &["jobs"], 1, 0).await;
    assert_eq!(claimed.len(), 1);
    let lease = &claimed[0];
    assert_eq!(lease["id"], id);
    assert_eq!(lease["state"], "leased");
    let token = lease["lease"]["token"].as_u64().expect("token");

    for (pct, msg) in [(10, "started"), (60, "halfway")] {
        let (s, v) = api
            .post(&format!("/v1/tasks/{id}/progress"), json!({"lease_token": token, "percent": pct, "message": msg}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = api.post(&format!("/v1/tasks/{id}/extend"), json!({"lease_token": token, "lease_ms": 60000})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api.complete(lease, json!({"out": "done"})).await;
    assert_eq!(s, 200, "{v}");

    let t = api.task(id).await;
    assert_eq!(t["state"], "succeeded");
    assert_eq!(t["result"], json!({"out": "done"}));
    assert_eq!(t["progress"].as_array().expect("progress").len(), 2);
    assert_eq!(t["progress"][1]["message"], "halfway");
    assert_eq!(t["attempts"][0]["agent_id"], "agent-1");
    assert_eq!(t["attempts"][0]["outcome"]["outcome"], "succeeded");
    assert!(t["finished_ms"].as_u64().is_some());
    assert!(t["lease"].is_null());
}

#[tokio::test]
async fn priority_then_submission_order_and_delayed_tasks_stay_invisible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();

    let delayed = api.submit(json!({"queue": "q", "priority": 100, "delay_ms": 1500})).await;
    let low1 = api.submit(json!({"queue": "q", "priority": 1})).await;
    let high = api.submit(json!({"queue": "q", "priority": 9})).await;
    let low2 = api.submit(json!({"queue": "q", "priority": 1})).await;
    assert_eq!(api.task(delayed).await["state"], "delayed");

    let got: Vec<u64> = api.claim("a", &["q"], 10, 0).await.iter().map(|t| t["id"].as_u64().expect("id")).collect();
    assert_eq!(got, vec![high, low1, low2], "priority first, then first submitted; delayed invisible");
    assert!(api.claim("a", &["q"], 10, 0).await.is_empty());

    // A long-poll is answered when the delayed task comes due.
    let t0 = Instant::now();
    let got = api.claim("a", &["q"], 1, 5_000).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], delayed);
    assert!(t0.elapsed() < Duration::from_millis(4_000), "long-poll woke late: {:?}", t0.elapsed());
}

#[tokio::test]
async fn long_poll_claim_wakes_on_submit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let got = api.claim("w", &["lp"], 1, 10_000).await;
            (got, t0.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = api.submit(json!({"queue": "lp"})).await;
    let (got, waited) = waiter.await.expect("join");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], id);
    assert!(waited < Duration::from_secs(5), "claim should return soon after the submit, took {waited:?}");

    // With nothing to claim, the long-poll returns empty at its deadline.
    let t0 = Instant::now();
    assert!(api.claim("w", &["lp"], 1, 400).await.is_empty());
    assert!(t0.elapsed() >= Duration::from_millis(390));
}

#[tokio::test]
async fn capabilities_route_tasks_to_capable_agents_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let gpu = api.submit(json!({"queue": "ml", "capabilities": ["gpu", "cuda12"]})).await;
    let plain = api.submit(json!({"queue": "ml"})).await;
    let (s, v) =
        api.post("/v1/claims", json!({"agent_id": "cpu", "queues": ["ml"], "capabilities": ["gpu"], "max": 5})).await;
    assert_eq!(s, 200);
    let ids: Vec<u64> = v["tasks"].as_array().expect("tasks").iter().map(|t| t["id"].as_u64().expect("id")).collect();
    assert_eq!(ids, vec![plain], "an agent lacking cuda12 must not get the gpu task");
    let (_, v) = api
        .post(
            "/v1/claims",
            json!({"agent_id": "big", "queues": ["ml"], "capabilities": ["cuda12", "gpu", "x"], "max": 5}),
        )
        .await;
    assert_eq!(v["tasks"][0]["id"], gpu);
}

#[tokio::test]
async fn failures_retry_with_backoff_then_die_and_manual_retry_revives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let (s, _) = api
        .req(
            reqwest::Method::PUT,
            "/v1/queues/flaky",
            Some(json!({"retry_base_ms": 200, "retry_max_ms": 400, "max_attempts": 2})),
        )
        .await;
    assert_eq!(s, 200);
    let id = api.submit(json!({"queue": "flaky"})).await;

    let t = api.claim("a", &["flaky"], 1, 0).await.remove(0);
    let (s, v) =
        api.post(&format!("/v1/tasks/{id}/fail"), json!({"lease_token": t["lease"]["token"], "error": "boom 1"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "failed");
    let backoff = v["run_at_ms"].as_u64().expect("run_at") - v["updated_ms"].as_u64().expect("updated");
    assert!((100..=200).contains(&backoff), "first backoff {backoff} ms should be in [base/2, base]");
    assert!(api.claim("a", &["flaky"], 1, 0).await.is_empty(), "invisible during backoff");

    let t = api.claim("a", &["flaky"], 1, 3_000).await.remove(0);
    assert_eq!(t["attempts"].as_array().expect("attempts").len(), 2);
    let (_, v) =
        api.post(&format!("/v1/tasks/{id}/fail"), json!({"lease_token": t["lease"]["token"], "error": "boom 2"})).await;
    assert_eq!(v["state"], "dead", "dead after max_attempts");
    assert_eq!(v["last_error"], "boom 2");

    let (s, v) = api.post(&format!("/v1/tasks/{id}/retry"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "ready");
    assert_eq!(v["attempt_limit"], 4);
    let t = api.claim("a", &["flaky"], 1, 0).await.remove(0);
    let (s, _) = api.complete(&t, json!(1)).await;
    assert_eq!(s, 200);
    let (s, v) = api.post(&format!("/v1/tasks/{id}/retry"), json!({})).await;
    assert_eq!(s, 409, "a succeeded task cannot be retried: {v}");
}

#[tokio::test]
async fn expired_leases_return_tasks_and_fence_the_old_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let (s, _) = api.req(reqwest::Method::PUT, "/v1/queues/short", Some(json!({"retry_base_ms": 0}))).await;
    assert_eq!(s, 200);
    let id = api.submit(json!({"queue": "short", "lease_ms": 300})).await;
    let first = api.claim("slow", &["short"], 1, 0).await.remove(0);

    let second = eventually(10, "the task to be claimable again after lease expiry", || {
        let api = api.clone();
        async move { api.claim("fast", &["short"], 1, 200).await.pop() }
    })
    .await;
    assert_eq!(second["id"], id);
    assert_ne!(second["lease"]["token"], first["lease"]["token"]);
    assert_eq!(second["attempts"][0]["outcome"]["outcome"], "lease_expired");

    let (s, v) = api.complete(&first, json!("late")).await;
    assert_eq!(s, 409, "the expired holder is fenced off: {v}");
    assert_eq!(v["error"]["code"], "stale_lease");
    let (s, _) = api.complete(&second, json!("ok")).await;
    assert_eq!(s, 200);
    assert_eq!(api.task(id).await["result"], "ok");
}

#[tokio::test]
async fn cancel_revokes_a_lease_and_is_refused_for_finished_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let id = api.submit(json!({"queue": "c"})).await;
    let t = api.claim("a", &["c"], 1, 0).await.remove(0);
    let (s, v) = api.post(&format!("/v1/tasks/{id}/cancel"), json!({"reason": "user changed mind"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "cancelled");
    assert_eq!(v["attempts"][0]["outcome"]["outcome"], "cancelled");
    let (s, v) = api.complete(&t, json!(null)).await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = api.post(&format!("/v1/tasks/{id}/cancel"), json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("wrong_state")));
    // An empty body is accepted for cancel.
    let id2 = api.submit(json!({"queue": "c"})).await;
    let (s, _) = api.post_raw(&format!("/v1/tasks/{id2}/cancel"), "").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn ledger_filters_and_cursor_pagination() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let mut tasks = Vec::new();
    for i in 0..25 {
        tasks.push(json!({"queue": if i % 2 == 0 { "even" } else { "odd" }, "kind": if i % 5 == 0 { "five" } else { "other" }}));
    }
    let (s, _) = api.post("/v1/tasks", json!({ "tasks": tasks })).await;
    assert_eq!(s, 201);
    let t = api.claim("agent-x", &["even"], 3, 0).await;
    assert_eq!(t.len(), 3);

    assert_eq!(api.count("queue=even").await, 13);
    assert_eq!(api.count("queue=odd&kind=five").await, 2);
    assert_eq!(api.count("state=leased").await, 3);
    assert_eq!(api.count("agent=agent-x").await, 3);

    // Pages of 4 over 25 tasks: 7 pages, every id once, ascending.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let path = match after {
            Some(a) => format!("/v1/tasks?limit=4&after={a}"),
            None => "/v1/tasks?limit=4".to_string(),
        };
        let (_, v) = api.get(&path).await;
        seen.extend(v["tasks"].as_array().expect("tasks").iter().map(|t| t["id"].as_u64().expect("id")));
        match v["next"].as_u64() {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).collect::<Vec<u64>>());

    let now = api.task(1).await["created_ms"].as_u64().expect("created");
    assert_eq!(api.count(&format!("created_from_ms={now}")).await, 25);
    assert_eq!(api.count(&format!("created_before_ms={now}")).await, 0);

    let (s, v) = api.get("/v1/queues").await;
    assert_eq!(s, 200);
    let even = v["queues"].as_array().expect("queues").iter().find(|q| q["queue"] == "even").expect("even").clone();
    assert_eq!((even["ready"].as_u64(), even["leased"].as_u64()), (Some(10), Some(3)));
}

#[tokio::test]
async fn retention_removes_finished_tasks_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &["--retention-ms", "300"]).await;
    let api = srv.client();
    let done = api.submit(json!({"queue": "r"})).await;
    let keep = api.submit(json!({"queue": "r"})).await;
    let t = api.claim("a", &["r"], 1, 0).await.remove(0);
    assert_eq!(t["id"], done);
    api.complete(&t, json!(1)).await;
    eventually(10, "the finished task to be removed by retention", || {
        let api = api.clone();
        async move { (api.get(&format!("/v1/tasks/{done}")).await.0 == 404).then_some(()) }
    })
    .await;
    assert_eq!(api.task(keep).await["state"], "ready", "unfinished tasks are kept");
}

#[tokio::test]
async fn state_survives_a_clean_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let a = api.submit(json!({"queue": "p", "idempotency_key": "once"})).await;
    let b = api.submit(json!({"queue": "p", "delay_ms": 600_000})).await;
    let t = api.claim("a", &["p"], 1, 0).await.remove(0);
    let (_, v) =
        api.post(&format!("/v1/tasks/{a}/progress"), json!({"lease_token": t["lease"]["token"], "percent": 5})).await;
    assert_eq!(v["progress"].as_array().map(|p| p.len()), Some(1));

    srv.restart().await;
    let api = srv.client();
    let ta = api.task(a).await;
    assert_eq!(ta["state"], "leased");
    assert_eq!(ta["lease"]["token"], t["lease"]["token"]);
    assert_eq!(ta["progress"][0]["percent"], 5);
    assert_eq!(api.task(b).await["state"], "delayed");
    let (s, v) = api.post("/v1/tasks", json!({"queue": "p", "idempotency_key": "once"})).await;
    assert_eq!((s, v["id"].as_u64(), v["duplicate"].as_bool()), (200, Some(a), Some(true)));
    // The lease held before the restart still completes the task.
    let (s, _) = api.complete(&t, json!("after restart")).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    api.submit(json!({"queue": "m"})).await;
    assert_eq!(api.get("/healthz").await.0, 200);
    let (s, v) = api.get("/readyz").await;
    assert_eq!((s, v["leader"].as_u64()), (200, Some(1)));
    let text = api.http.get(format!("{}/metrics", api.base)).send().await.expect("metrics").text().await.expect("text");
    for name in [
        "minion_queue_tasks{queue=\"m\",state=\"ready\"} 1",
        "minion_task_transitions_total",
        "minion_http_request_duration_seconds_bucket",
        "minion_raft_applied_index",
        "minion_raft_committed_index",
        "minion_raft_last_log_index",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    let (s, v) = api.get("/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(v["openapi"], "3.1.0");
}

#[tokio::test]
async fn queue_depth_for_keda_is_a_flat_number_and_zero_for_an_empty_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let (s, v) = api.get("/v1/metrics/queues/nothing-here").await;
    assert_eq!((s, v["ready"].as_u64(), v["backlog"].as_u64()), (200, Some(0), Some(0)));
    for _ in 0..3 {
        api.submit(json!({"queue": "keda"})).await;
    }
    api.submit(json!({"queue": "keda", "delay_ms": 600_000})).await;
    api.claim("a", &["keda"], 1, 0).await;
    let (_, v) = api.get("/v1/metrics/queues/keda").await;
    assert_eq!(
        (v["ready"].as_u64(), v["delayed"].as_u64(), v["in_flight"].as_u64(), v["backlog"].as_u64()),
        (Some(2), Some(1), Some(1), Some(4))
    );
    let (s, _) = api.get("/v1/metrics/queues/bad%20name").await;
    assert_eq!(s, 400);
}

/// Defect: a node that became leader proposed its own file's engine settings, undoing what the
/// cluster had been told. The file applies to a new cluster only; then `PUT /v1/config` decides.
#[tokio::test]
async fn engine_settings_come_from_the_file_once_then_only_from_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &["--default-strategy", "least_loaded"]).await;
    let api = srv.client();
    let (s, v) = api.get("/v1/config").await;
    assert_eq!((s, v["engine"]["strategy"].as_str()), (200, Some("least_loaded")), "first bootstrap: {v}");
    assert_eq!(v["this_node_file_differs"], false);

    let (s, v) =
        api.req(reqwest::Method::PUT, "/v1/config", Some(json!({"strategy": "random", "lease_ms": 45_000}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["engine"]["strategy"].as_str(), v["engine"]["lease_ms"].as_u64()), (Some("random"), Some(45_000)));
    assert_eq!(v["engine"]["max_attempts"], 3, "fields not given keep their value: {v}");
    let (_, q) = api.get("/v1/queues/fresh").await;
    assert_eq!(q["config"]["lease_ms"], 45_000, "queues inherit the new default: {q}");

    // Refused settings change nothing.
    for bad in [json!({"lease_ms": 0}), json!({"no_such_field": 1}), json!({"strategy": "fastest"}), json!([1])] {
        let (s, v) = api.req(reqwest::Method::PUT, "/v1/config", Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let (_, v) = api.get("/v1/config").await;
    assert_eq!((v["engine"]["strategy"].as_str(), v["engine"]["lease_ms"].as_u64()), (Some("random"), Some(45_000)));
    let (_, audit) = api.get("/v1/audit").await;
    assert!(audit.to_string().contains("config.set"), "audited: {audit}");

    // Restarted (an election) with the same file, then with another: the API's settings stay.
    srv.restart().await;
    let (_, v) = api.get("/v1/config").await;
    assert_eq!(v["engine"]["strategy"], "random", "a new leader kept the cluster's settings: {v}");
    assert_eq!(v["this_node_file_differs"], true);
    srv.extra = vec!["--default-strategy".into(), "latency_based".into()];
    srv.restart().await;
    let (_, v) = api.get("/v1/config").await;
    assert_eq!((v["engine"]["strategy"].as_str(), v["engine"]["lease_ms"].as_u64()), (Some("random"), Some(45_000)));
    let log = std::fs::read_to_string(&srv.log).expect("log");
    assert!(log.contains("engine settings differ from the cluster's"), "the node says its file differs");
}

/// Defect: the engine's clock took the largest time any leader proposed. A wall clock stepped a
/// day ahead expired every lease at once; run ahead and then corrected, the engine sat ahead with
/// nothing expiring until real time caught up. Now a proposal's time stays within
/// `clock_step_max_ms` of real time as the monotonic clock measures it, and after a restart
/// behind the engine, engine time goes on at the rate of real time.
#[tokio::test]
async fn a_stepped_wall_clock_moves_engine_time_by_at_most_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let offset = dir.path().join("clock-offset");
    std::fs::write(&offset, "+0").expect("offset");
    let mut srv = Server::new(dir.path(), &["--clock-step-max-ms", "1000"]);
    srv.under_faketime(&offset);
    srv.spawn().await;
    let api = srv.client();
    let (s, _) =
        api.req(reqwest::Method::PUT, "/v1/queues/q", Some(json!({"lease_ms": 4_000, "retry_base_ms": 0}))).await;
    assert_eq!(s, 200);
    let held = api.submit(json!({"queue": "q", "payload": "held"})).await;
    let later = api.submit(json!({"queue": "q", "payload": "later", "delay_ms": 600_000})).await;
    let leased = api.claim("a1", &["q"], 1, 0).await;
    assert_eq!(leased[0]["id"].as_u64(), Some(held));
    let leased_at = std::time::Instant::now();

    // The wall clock jumps a day ahead; the next proposal carries at most a second more.
    std::fs::write(&offset, "+1d").expect("offset");
    let after = api.submit(json!({"queue": "q", "payload": "after"})).await;
    let step = api.task(after).await["created_ms"].as_u64().expect("created")
        - api.task(held).await["created_ms"].as_u64().expect("created");
    assert!(step < 60_000, "engine time stepped {step} ms");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(api.task(held).await["state"], "leased", "the lease did not expire a day early");
    assert_eq!(api.task(later).await["state"], "delayed", "the timer did not fire a day early");
    let (_, m) = api.get("/metrics").await;
    let text = m.as_str().map(str::to_string).unwrap_or_else(|| m.to_string());
    assert!(text.contains("minion_clock_clamped_total"), "counted");
    // Engine time still runs at real speed: the lease ends about when it should.
    eventually(15, "the lease to expire after its 4 s", || async {
        (api.task(held).await["state"] == "ready").then_some(())
    })
    .await;
    // (At most the bound early: 4 s less 1 s, with some slack for the test's own timing.)
    assert!(leased_at.elapsed() >= Duration::from_millis(2_800), "expired after {:?}", leased_at.elapsed());

    // Run a day ahead from the start (believed: it cannot be told from a restart after downtime),
    // then restarted with the correct clock: the engine is a day ahead of the wall clock, and its
    // leases and timers must still come due in real time, not in a day.
    srv.stop();
    std::fs::write(&offset, "+1d").expect("offset");
    srv.spawn().await;
    api.submit(json!({"queue": "q", "payload": "ahead"})).await;
    srv.stop();
    srv.env.clear();
    srv.spawn().await;
    let got = api.claim("a2", &["q"], 1, 0).await;
    assert_eq!(got.len(), 1, "a ready task to lease");
    let id = got[0]["id"].as_u64().expect("id");
    let soon = api.submit(json!({"queue": "q", "payload": "soon", "delay_ms": 2_000})).await;
    let started = std::time::Instant::now();
    eventually(15, "the lease and the timer to come due in real time", || async {
        let (t, d) = (api.task(id).await, api.task(soon).await);
        (t["state"] == "ready" && d["state"] == "ready").then_some(())
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(1_500), "due after {:?}", started.elapsed());
    let log = std::fs::read_to_string(&srv.log).expect("log");
    assert!(log.contains("the engine's clock is ahead of this node's wall clock"), "said so at start");
}

/// A producer waits for a task's outcome in one request (`GET /v1/tasks/{id}?wait_ms=`).
#[tokio::test]
async fn a_producer_waits_for_the_outcome_in_one_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let id = api.submit(json!({"queue": "w", "payload": {"n": 1}})).await;
    let waiting = {
        let api = api.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (s, v) = api.get(&format!("/v1/tasks/{id}?wait_ms=20000")).await;
            (s, v, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = api.claim("a", &["w"], 1, 0).await.remove(0);
    let (s, _) =
        api.post(&format!("/v1/tasks/{id}/progress"), json!({"lease_token": t["lease"]["token"], "percent": 50})).await;
    assert_eq!(s, 200);
    let (s, _) = api.complete(&t, json!({"answer": 42})).await;
    assert_eq!(s, 200);
    let (s, v, took) = waiting.await.expect("waiter");
    assert_eq!((s, v["state"].as_str()), (200, Some("succeeded")), "answered with the outcome, not the progress: {v}");
    assert_eq!(v["result"], json!({"answer": 42}));
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(10), "{took:?}");

    // A task that does not finish: its current state once the wait is over.
    let other = api.submit(json!({"queue": "w", "payload": 2})).await;
    let started = Instant::now();
    let (s, v) = api.get(&format!("/v1/tasks/{other}?wait_ms=500")).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("ready")), "{v}");
    assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
    // Already finished: at once. Unknown or malformed: refused at once.
    let started = Instant::now();
    let (s, _) = api.get(&format!("/v1/tasks/{id}?wait_ms=20000")).await;
    assert!(s == 200 && started.elapsed() < Duration::from_secs(2));
    let (s, _) = api.get("/v1/tasks/999999?wait_ms=20000").await;
    assert_eq!(s, 404);
    let (s, v) = api.get(&format!("/v1/tasks/{id}?wait_ms=soon")).await;
    assert_eq!(s, 400, "{v}");

    // Waiters on different tasks: each is answered when its own task finishes, not before.
    let (a, b) = (api.submit(json!({"queue": "w2"})).await, api.submit(json!({"queue": "w2"})).await);
    let wait_for = |id: u64| {
        let api = api.clone();
        tokio::spawn(async move { api.get(&format!("/v1/tasks/{id}?wait_ms=20000")).await })
    };
    let (wa, mut wb) = (wait_for(a), wait_for(b));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _) = api.post(&format!("/v1/tasks/{a}/cancel"), json!({"reason": "not needed"})).await;
    assert_eq!(s, 200);
    let (s, v) = tokio::time::timeout(Duration::from_secs(5), wa).await.expect("a answered").expect("join");
    assert_eq!((s, v["state"].as_str()), (200, Some("cancelled")), "{v}");
    // Unrelated entries (a submit, a claim of another queue) do not answer b's waiter.
    api.submit(json!({"queue": "w3"})).await;
    api.claim("a", &["w3"], 1, 0).await;
    assert!(tokio::time::timeout(Duration::from_millis(500), &mut wb).await.is_err(), "b's waiter is still waiting");
    let (s, _) = api.post(&format!("/v1/tasks/{b}/cancel"), json!({})).await;
    assert_eq!(s, 200);
    let (s, v) = tokio::time::timeout(Duration::from_secs(5), wb).await.expect("b answered").expect("join");
    assert_eq!((s, v["state"].as_str()), (200, Some("cancelled")), "{v}");
}

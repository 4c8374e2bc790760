//! The typed Rust client (`minion-client`) against a real server: every typed call, errors as
//! codes, and failover past a node that cannot be reached.

mod common;

use std::time::Duration;

use common::Server;
use minion_client::wire::{AckIn, AckOutcome, AgentIn, ClaimIn, ListQuery, TaskIn, TaskState};
use minion_client::{Client, ClientAuth, Code, Error};
use serde_json::json;

fn raw(v: serde_json::Value) -> Option<Box<serde_json::value::RawValue>> {
    Some(serde_json::value::to_raw_value(&v).expect("raw"))
}

fn claim(agent: &str, queue: &str, max: u32) -> ClaimIn {
    ClaimIn { agent_id: agent.into(), queues: vec![queue.into()], capabilities: vec![], max, wait_ms: 0 }
}

#[tokio::test]
async fn every_typed_call_works_against_a_real_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    // The first node cannot be reached: calls move on to the second.
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let c = Client::new(&format!("{dead},{}", srv.base), &ClientAuth::default()).expect("client");

    let agent = c
        .register_agent(&AgentIn {
            id: "a1".into(),
            capabilities: vec!["web".into()],
            max_concurrency: 4,
            ..AgentIn::default()
        })
        .await
        .expect("register");
    assert_eq!((agent.id.as_str(), agent.status.as_str(), agent.max_concurrency), ("a1", "active", 4));
    assert_eq!(c.servers().base(), srv.base, "moved past the dead node");
    c.heartbeat("a1", Some(agent.incarnation)).await.expect("heartbeat");

    let mut t = TaskIn::new("research", &json!({"url": "https://example.com"})).expect("task");
    t.kind = "summarize".into();
    t.idempotency_key = Some("k-1".into());
    let first = c.submit(&t).await.expect("submit");
    let again = c.submit(&t).await.expect("submit again");
    assert_eq!((again.id, again.duplicate), (first.id, true), "the key returns the first task");
    let batch = c
        .submit_batch(vec![TaskIn::new("research", &1).expect("t"), TaskIn::new("research", &2).expect("t")])
        .await
        .expect("batch");
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().all(|s| !s.duplicate));

    let got = c.task(first.id).await.expect("get");
    assert_eq!((got.state, got.kind.as_str()), (TaskState::Ready, "summarize"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(got.payload.get()).expect("json"),
        json!({"url": "https://example.com"})
    );

    let leased = c.claim(&claim("a1", "research", 3)).await.expect("claim");
    assert_eq!(leased.len(), 3);
    assert!(leased.iter().all(|t| t.state == TaskState::Leased && t.lease_token().is_some()));
    let (one, two, three) = (&leased[0], &leased[1], &leased[2]);
    c.progress(one.id, one.lease_token().expect("token"), Some(50), Some("half".into())).await.expect("progress");
    let extended = c.extend(one.id, one.lease_token().expect("token"), Some(120_000)).await.expect("extend");
    assert!(extended.lease.expect("lease").expires_ms > one.lease.as_ref().expect("lease").expires_ms);

    // Waiting: answered when the task finishes, not when the wait is over.
    let waiter = {
        let c = c.clone();
        let id = one.id;
        tokio::spawn(async move { c.wait(id, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let done =
        c.complete(one.id, one.lease_token().expect("token"), raw(json!({"summary": "ok"}))).await.expect("complete");
    assert_eq!(done.state, TaskState::Succeeded);
    let waited = waiter.await.expect("join").expect("wait");
    assert_eq!(waited.state, TaskState::Succeeded);
    assert_eq!(waited.progress.len(), 1);
    assert_eq!(waited.result.as_ref().map(|r| r.get()), Some(r#"{"summary":"ok"}"#));

    let failed = c.fail(two.id, two.lease_token().expect("token"), "flaky").await.expect("fail");
    assert_eq!((failed.state, failed.last_error.as_deref()), (TaskState::Failed, Some("flaky")));
    let acks = c
        .acks(vec![
            AckIn {
                id: three.id,
                lease_token: three.lease_token().expect("t"),
                outcome: AckOutcome::Complete,
                result: raw(json!(3)),
                error: None,
            },
            AckIn { id: three.id, lease_token: 999_999, outcome: AckOutcome::Complete, result: None, error: None },
        ])
        .await
        .expect("acks");
    assert_eq!((acks[0].ok, acks[0].state), (true, Some(TaskState::Succeeded)));
    assert_eq!(
        (acks[1].ok, acks[1].error.as_ref().map(|e| e.code.as_str())),
        (false, Some("wrong_state")),
        "finished by the first"
    );

    let page = c
        .list_tasks(&ListQuery {
            queue: Some("research".into()),
            state: Some("succeeded".into()),
            ..ListQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(page.tasks.len(), 2);
    let cancelled = c.cancel(two.id, Some("not needed")).await.expect("cancel");
    assert_eq!((cancelled.state, cancelled.cancel_reason.as_deref()), (TaskState::Cancelled, Some("not needed")));
    let retried = c.retry(two.id).await.expect("retry");
    assert_eq!(retried.state, TaskState::Ready);

    let drained = c.drain_agent("a1").await.expect("drain");
    assert_eq!(drained.status, "draining");
    let list = c.agents(10, None).await.expect("agents");
    assert_eq!(list.agents.len(), 1);
    c.deregister_agent("a1").await.expect("deregister");
    let err = c.agent("a1").await.expect_err("deregistered: forgotten");
    assert_eq!(err.code(), Some(&Code::NotFound), "{err:?}");

    // Errors carry the API's code.
    let err = c.task(987_654).await.expect_err("unknown task");
    assert!(matches!(&err, Error::Api { status: 404, code: Code::NotFound, .. }), "{err:?}");
    let err = c.complete(one.id, 1, None).await.expect_err("finished task");
    assert!(err.lease_lost(), "{err:?}");
    let err = c.submit(&TaskIn::new("bad queue name!", &1).expect("t")).await.expect_err("bad queue");
    assert_eq!(err.code(), Some(&Code::InvalidRequest), "{err:?}");
    let v = c.json(reqwest::Method::GET, "/v1/stats", None, minion_client::client::Retry::Safe).await.expect("stats");
    assert!(v["raft"]["applied_index"].as_u64().is_some_and(|i| i > 0), "{v}");
}

#[tokio::test]
async fn tokens_and_unreachable_nodes_give_typed_errors() {
    const ADMIN: &str = "admin-secret-for-the-client-test";
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &["--auth", "on", "--admin-token", ADMIN]).await;
    let anonymous = Client::new(&srv.base, &ClientAuth::default()).expect("client");
    let err = anonymous.task(1).await.expect_err("no token");
    assert!(matches!(err, Error::Api { status: 401, code: Code::Unauthorized, .. }), "{err:?}");
    let admin = Client::new(&srv.base, &ClientAuth { token: Some(ADMIN.into()), ca_cert: None }).expect("client");
    let id = admin.submit(&TaskIn::new("q", &1).expect("t")).await.expect("submit").id;
    assert_eq!(admin.task(id).await.expect("get").state, TaskState::Ready);
    let me = admin.whoami().await.expect("whoami");
    assert_eq!((me.auth, me.role.as_str(), me.name.as_str()), (true, "admin", "admin"));
    let err = anonymous.whoami().await.expect_err("no token");
    assert!(matches!(err, Error::Api { status: 401, .. }), "{err:?}");

    let nowhere = Client::new(&format!("http://127.0.0.1:{}", common::free_port()), &ClientAuth::default()).expect("c");
    let err = nowhere.task(1).await.expect_err("nobody there");
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(Client::new("not-a-url", &ClientAuth::default()).is_err());
}

#[tokio::test]
async fn event_streams_are_typed_and_resume_after_the_last_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let c = Client::new(&srv.base, &ClientAuth::default()).expect("client");
    let mut queue_stream = c.events(Some("ev"), &[], None).await.expect("queue stream");
    let id = c.submit(&TaskIn::new("ev", &json!({"n": 1})).expect("task")).await.expect("submit").id;
    let leased = c.claim(&claim("a1", "ev", 1)).await.expect("claim");
    let token = leased[0].lease.as_ref().expect("lease").token;
    c.progress(id, token, Some(50), Some("half".into())).await.expect("progress");
    c.complete(id, token, raw(json!({"ok": true}))).await.expect("complete");

    // One task's stream: its state and history, then the end after the final event.
    let mut task_stream = c.task_events(id, &[], None).await.expect("task stream");
    let mut names = Vec::new();
    while let Some(ev) = task_stream.next().await.expect("event") {
        if let Some(data) = ev.task_event() {
            assert_eq!(data.expect("data").task_id, id);
        }
        names.push(ev.name);
    }
    assert_eq!(names.last().map(String::as_str), Some("succeeded"), "{names:?}");
    assert!(names.iter().any(|n| n == "progress"), "{names:?}");

    // The queue's live stream: every transition, in order.
    let mut seen = Vec::new();
    while seen.last().map(|(n, _): &(String, _)| n.as_str()) != Some("succeeded") {
        let ev = tokio::time::timeout(Duration::from_secs(10), queue_stream.next())
            .await
            .expect("in time")
            .expect("event")
            .expect("open");
        if ev.name != "heartbeat" {
            seen.push((ev.name.clone(), ev.id));
        }
    }
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["submitted", "leased", "progress", "succeeded"]);
    // Resuming after the progress event catches up from the change feed with what changed after
    // it (the task as it is now), and nothing before.
    let progress_id = seen[2].1.expect("id");
    assert!(queue_stream.last_event_id() >= seen[3].1);
    let mut resumed = c.events(Some("ev"), &[], Some(progress_id)).await.expect("resume");
    let ev = loop {
        let ev = resumed.next().await.expect("event").expect("open");
        if ev.name != "heartbeat" {
            break ev;
        }
    };
    assert_eq!(ev.name, "succeeded");
    assert!(ev.id > Some(progress_id), "{ev:?} after {progress_id}");

    let err = c.task_events(999_999, &[], None).await.err().expect("unknown task");
    assert!(matches!(err, Error::Api { status: 404, code: Code::NotFound, .. }), "{err:?}");
}

//! Parent and child tasks through the API: a leased task submits children under its lease, gives
//! its lease back to wait for them (`waiting_children`) and is claimed again with their outcomes,
//! however they ended; waiting survives a restart. Cancelling a task cancels its unfinished
//! descendants, also below a child that finished first, and their agents learn it on their next
//! call. A stale lease, a parent that is not leased and too many children are refused whole.

mod common;

use common::{Api, Server};
use serde_json::{json, Value};

fn ids(v: &Value) -> Vec<u64> {
    v["tasks"].as_array().expect("tasks").iter().map(|t| t["id"].as_u64().expect("id")).collect()
}

fn id(t: &Value) -> u64 {
    t["id"].as_u64().expect("id")
}

fn token(t: &Value) -> u64 {
    t["lease"]["token"].as_u64().expect("lease token")
}

async fn spawn(api: &Api, parent: &Value, tasks: Value) -> (u16, Value) {
    api.post(&format!("/v1/tasks/{}/children", id(parent)), json!({"lease_token": token(parent), "tasks": tasks})).await
}

async fn state(api: &Api, id: u64) -> String {
    api.task(id).await["state"].as_str().expect("state").to_string()
}

#[tokio::test]
async fn a_parent_waits_for_its_children_and_resumes_with_their_outcomes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let p = api.submit(json!({"queue": "plans", "kind": "plan", "max_attempts": 1})).await;
    let parent = api.claim("planner", &["plans"], 1, 0).await.remove(0);
    assert_eq!(id(&parent), p);

    // Three children in one batch; the summary depends on the other two by idempotency key.
    let (s, v) = spawn(
        &api,
        &parent,
        json!([
            {"queue": "work", "kind": "search", "payload": {"q": "a"}, "idempotency_key": "search", "max_attempts": 1},
            {"queue": "work", "kind": "fetch", "payload": {"q": "b"}, "idempotency_key": "fetch"},
            {"queue": "work", "kind": "sum", "depends_on": ["search", "fetch"], "on_dependency_failure": "run_anyway"},
        ]),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let [search, fetch, sum] = ids(&v)[..] else { panic!("{v}") };
    let child = api.task(search).await;
    assert_eq!(child["parent_id"].as_u64(), Some(p), "{child}");
    let view = api.task(p).await;
    let listed: Vec<u64> = view["children"].as_array().expect("children").iter().map(id).collect();
    assert_eq!(listed, vec![search, fetch, sum], "{view}");
    assert_eq!(state(&api, sum).await, "waiting");

    // The parent gives its lease back: waiting_children, the attempt not counted.
    let (s, w) = api.post(&format!("/v1/tasks/{p}/wait-children"), json!({"lease_token": token(&parent)})).await;
    assert_eq!(s, 200, "{w}");
    assert_eq!((w["state"].as_str(), w["lease"].is_null()), (Some("waiting_children"), true), "{w}");
    assert_eq!(w["attempts"][0]["outcome"]["outcome"], "waiting_children", "{w}");
    assert_eq!(w["attempt_limit"].as_u64(), Some(2), "{w}");
    let (s, v) = api.get("/v1/queues/plans").await;
    assert_eq!((s, v["stats"]["waiting_children"].as_u64()), (200, Some(1)), "{v}");
    // Its old token is stale now.
    let (s, v) = api.complete(&parent, json!(1)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("stale_lease")), "{v}");

    // Waiting survives a restart; the children run: one fails for good, one succeeds, then the sum.
    srv.restart().await;
    let api = srv.client();
    assert_eq!(state(&api, p).await, "waiting_children");
    let got = api.claim("worker", &["work"], 2, 0).await;
    for t in &got {
        if id(t) == search {
            let (s, v) = api
                .post(&format!("/v1/tasks/{search}/fail"), json!({"lease_token": token(t), "error": "no hits"}))
                .await;
            assert_eq!(s, 200, "{v}");
        } else {
            assert_eq!(api.complete(t, json!({"page": 2})).await.0, 200);
        }
    }
    assert_eq!(state(&api, p).await, "waiting_children", "the sum is still unfinished");
    assert!(api.claim("planner", &["plans"], 1, 0).await.is_empty(), "not claimable while waiting");
    let last = api.claim("worker", &["work"], 1, 2_000).await.remove(0);
    assert_eq!(id(&last), sum);
    assert_eq!(api.complete(&last, json!("both")).await.0, 200);

    // Ready again, claimed with every child's outcome.
    let again = api.claim("planner", &["plans"], 1, 2_000).await.remove(0);
    assert_eq!(id(&again), p);
    let outcomes: Vec<(u64, &str, Value)> = again["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| (id(c), c["state"].as_str().expect("state"), c["result"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (search, "dead", Value::Null),
            (fetch, "succeeded", json!({"page": 2})),
            (sum, "succeeded", json!("both"))
        ]
    );
    assert_eq!(again["children"][0]["last_error"], "no hits");
    // Nothing unfinished: waiting keeps the lease.
    let (s, w) = api.post(&format!("/v1/tasks/{p}/wait-children"), json!({"lease_token": token(&again)})).await;
    assert_eq!((s, w["state"].as_str()), (200, Some("leased")), "{w}");
    assert_eq!(api.complete(&again, json!("done")).await.0, 200);
    assert_eq!(state(&api, p).await, "succeeded");
}

#[tokio::test]
async fn cancelling_a_task_cancels_its_unfinished_descendants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let root_id = api.submit(json!({"queue": "root"})).await;
    let root = api.claim("r", &["root"], 1, 0).await.remove(0);
    let (s, v) = spawn(&api, &root, json!([{"queue": "mid"}, {"queue": "mid"}, {"queue": "other"}])).await;
    assert_eq!(s, 201, "{v}");
    let [a, b, c] = ids(&v)[..] else { panic!("{v}") };
    // `a` spawns a grandchild and finishes first; `b` is leased when the root is cancelled.
    let mids = api.claim("m", &["mid"], 2, 0).await;
    let ta = mids.iter().find(|t| id(t) == a).expect("a").clone();
    let tb = mids.iter().find(|t| id(t) == b).expect("b").clone();
    let (s, v) = spawn(&api, &ta, json!([{"queue": "leaf"}])).await;
    assert_eq!(s, 201, "{v}");
    let grandchild = ids(&v)[0];
    assert_eq!(api.complete(&ta, json!("a done")).await.0, 200);
    let leaf = api.claim("l", &["leaf"], 1, 0).await.remove(0);
    // The leaf's agent follows its task's events.
    let url = format!("{}/v1/tasks/{grandchild}/events", api.base);
    let mut events = common::sse::SseReader::open(&api.http, &url, None).await;

    let (s, v) = api.post(&format!("/v1/tasks/{root_id}/cancel"), json!({"reason": "user stopped it"})).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("cancelled")), "{v}");
    assert_eq!(state(&api, a).await, "succeeded", "a finished child stays as it ended");
    for t in [b, c, grandchild] {
        let got = api.task(t).await;
        assert_eq!(got["state"], "cancelled", "{got}");
        assert_eq!(got["cancel_reason"], format!("task {root_id}, which it descends from, was cancelled"), "{got}");
    }
    let seen = events.until("cancelled", 10).await;
    assert_eq!(seen.last().map(|e| e.name.as_str()), Some("cancelled"), "{seen:?}");
    // The agents holding leases learn it on their next call.
    let (s, v) = api.complete(&tb, json!(1)).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().expect("message").contains("cancelled"), "{v}");
    let (s, v) = api.post(&format!("/v1/tasks/{}/extend", id(&leaf)), json!({"lease_token": token(&leaf)})).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().expect("message").contains("cancelled"), "{v}");
}

#[tokio::test]
async fn children_under_a_stale_lease_or_a_task_not_leased_or_too_many_are_refused_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let p = api.submit(json!({"queue": "p"})).await;
    let parent = api.claim("a", &["p"], 1, 0).await.remove(0);
    let before = api.count("").await;

    let stale = json!({"lease_token": token(&parent) + 1, "tasks": [{"queue": "c"}]});
    let (s, v) = api.post(&format!("/v1/tasks/{p}/children"), stale).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("stale_lease")), "{v}");
    let other = api.submit(json!({"queue": "p2"})).await;
    let (s, v) =
        api.post(&format!("/v1/tasks/{other}/children"), json!({"lease_token": 1, "tasks": [{"queue": "c"}]})).await;
    assert_eq!(s, 409, "a ready task has no lease to submit under: {v}");
    let (s, v) = api.post("/v1/tasks/999999/children", json!({"lease_token": 1, "tasks": [{"queue": "c"}]})).await;
    assert_eq!(s, 404, "{v}");
    let many: Vec<Value> = (0..1_001).map(|_| json!({"queue": "c"})).collect();
    let (s, v) = spawn(&api, &parent, json!(many)).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().expect("message").contains("at most 1000 children"), "{v}");
    for bad in [json!({"lease_token": 1}), json!({"lease_token": 1, "tasks": []}), json!({"tasks": [{"queue": "c"}]})] {
        let (s, v) = api.post(&format!("/v1/tasks/{p}/children"), bad).await;
        assert_eq!(s, 400, "{v}");
    }
    let (s, v) = api.post(&format!("/v1/tasks/{p}/wait-children"), json!({"lease_token": 0})).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(api.count("").await, before + 1, "nothing was created but the other task");
    assert!(api.task(p).await["children"].is_null(), "no children listed");

    // A thousand is the limit.
    let many: Vec<Value> = (0..1_000).map(|_| json!({"queue": "c"})).collect();
    let (s, v) = spawn(&api, &parent, json!(many)).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = spawn(&api, &parent, json!([{"queue": "c"}])).await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test]
async fn the_cli_submits_a_child_under_a_lease_and_shows_parent_and_children() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let p = api.submit(json!({"queue": "p"})).await;
    let parent = api.claim("a", &["p"], 1, 0).await.remove(0);
    let (p_s, t_s) = (p.to_string(), token(&parent).to_string());
    let out = srv.cli_ok(&["task", "submit", "--queue", "c", "--parent", &p_s, "--lease-token", &t_s, "--json"]);
    let child: Value = serde_json::from_str(&out).expect("json");
    let child = child["id"].as_u64().expect("id");
    assert_eq!(api.task(child).await["parent_id"].as_u64(), Some(p));
    let shown = srv.cli_ok(&["task", "get", &p_s]);
    assert!(shown.contains(&format!("children: {child} (ready)")), "{shown}");
    assert!(srv.cli_ok(&["task", "get", &child.to_string()]).contains(&format!("parent: {p}")));
    let wrong = (token(&parent) + 5).to_string();
    let (ok, _, err) = srv.cli(&["task", "submit", "--queue", "c", "--parent", &p_s, "--lease-token", &wrong]);
    assert!(!ok && err.contains("stale_lease"), "{err}");
    let (ok, _, err) = srv.cli(&["task", "submit", "--queue", "c", "--parent", &p_s]);
    assert!(!ok && err.contains("--lease-token"), "{err}");
}

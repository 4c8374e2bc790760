//! Dependencies between tasks through the API: a task named in `depends_on` holds its dependents
//! in `waiting` until it finishes; the dependents then see its result in their claim. A failed
//! dependency cancels its dependents down the graph (or lets them run with `run_anyway`);
//! cycles, unknown ids and unknown batch keys are refused whole. Waiting survives a restart.

mod common;

use common::{Api, Server};
use serde_json::{json, Value};

fn ids(v: &Value) -> Vec<u64> {
    v["tasks"].as_array().expect("tasks").iter().map(|t| t["id"].as_u64().expect("id")).collect()
}

async fn state(api: &Api, id: u64) -> String {
    api.task(id).await["state"].as_str().expect("state").to_string()
}

#[tokio::test]
async fn fan_out_and_fan_in_within_one_batch_release_in_order_with_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    // plan → (research, draft) → review: the batch names its members by idempotency key.
    let (s, v) = api
        .post(
            "/v1/tasks",
            json!({"tasks": [
                {"queue": "q", "kind": "review", "idempotency_key": "review", "depends_on": ["research", "draft"]},
                {"queue": "q", "kind": "research", "idempotency_key": "research", "depends_on": ["plan"]},
                {"queue": "q", "kind": "draft", "idempotency_key": "draft", "depends_on": ["plan"]},
                {"queue": "q", "kind": "plan", "idempotency_key": "plan", "payload": {"topic": "x"}},
            ]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let [review, research, draft, plan] = ids(&v)[..] else { panic!("{v}") };
    assert_eq!(state(&api, review).await, "waiting");
    assert_eq!(state(&api, research).await, "waiting");
    let r = api.task(review).await;
    assert_eq!(r["on_dependency_failure"], "cancel", "{r}");
    let deps: Vec<u64> =
        r["depends_on"].as_array().expect("depends_on").iter().map(|d| d["id"].as_u64().expect("id")).collect();
    assert_eq!(deps, vec![research, draft], "{r}");
    assert_eq!(api.count("state=waiting").await, 3);

    // Only the plan can be claimed; a restart keeps the others waiting.
    srv.restart().await;
    let api = srv.client();
    assert_eq!(state(&api, review).await, "waiting", "waiting survives a restart");
    let got = api.claim("a", &["q"], 10, 0).await;
    assert_eq!(got.iter().map(|t| t["id"].as_u64().expect("id")).collect::<Vec<_>>(), vec![plan]);
    let (s, v) = api.complete(&got[0], json!({"outline": [1, 2]})).await;
    assert_eq!(s, 200, "{v}");

    // Both branches are released together and see the plan's result.
    let got = api.claim("a", &["q"], 10, 2_000).await;
    let mut branch: Vec<u64> = got.iter().map(|t| t["id"].as_u64().expect("id")).collect();
    branch.sort_unstable();
    assert_eq!(branch, vec![research, draft], "{got:?}");
    for t in &got {
        assert_eq!(t["depends_on"][0]["id"], plan, "{t}");
        assert_eq!(t["depends_on"][0]["state"], "succeeded", "{t}");
        assert_eq!(
            t["depends_on"][0]["result"],
            json!({"outline": [1, 2]}),
            "the dependency's result in the claim: {t}"
        );
    }
    api.complete(&got[0], json!("one")).await;
    assert_eq!(state(&api, review).await, "waiting", "the fan-in waits for both");
    api.complete(&got[1], json!("two")).await;
    let got = api.claim("a", &["q"], 10, 2_000).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], review);
    let results: Vec<&Value> = got[0]["depends_on"].as_array().expect("deps").iter().map(|d| &d["result"]).collect();
    assert_eq!(results.len(), 2);
    assert!(results.contains(&&json!("one")) && results.contains(&&json!("two")), "{}", got[0]);
}

#[tokio::test]
async fn a_failed_dependency_cancels_down_the_graph_unless_run_anyway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let root = api.submit(json!({"queue": "q", "max_attempts": 1})).await;
    let (s, v) = api
        .post(
            "/v1/tasks",
            json!({"tasks": [
                {"queue": "q", "idempotency_key": "child", "depends_on": [root]},
                {"queue": "q", "idempotency_key": "grandchild", "depends_on": ["child"]},
                {"queue": "q", "idempotency_key": "cleanup", "depends_on": [root], "on_dependency_failure": "run_anyway"},
            ]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let [child, grandchild, cleanup] = ids(&v)[..] else { panic!("{v}") };
    let got = api.claim("a", &["q"], 1, 0).await;
    assert_eq!(got[0]["id"], root);
    let (s, v) = api
        .post(
            &format!("/v1/tasks/{root}/fail"),
            json!({"lease_token": got[0]["lease"]["token"], "error": "model refused"}),
        )
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("dead")), "{v}");

    let c = api.task(child).await;
    assert_eq!(
        (c["state"].as_str(), c["cancel_reason"].as_str()),
        (Some("cancelled"), Some(&*format!("dependency {root} is dead")))
    );
    let g = api.task(grandchild).await;
    assert_eq!(g["state"], "cancelled", "cancellation cascades: {g}");
    assert_eq!(g["cancel_reason"], format!("dependency {child} is cancelled"));
    let got = api.claim("a", &["q"], 5, 0).await;
    assert_eq!(got.len(), 1, "only the run_anyway task runs: {got:?}");
    assert_eq!(got[0]["id"], cleanup);
    assert_eq!(got[0]["depends_on"][0]["state"], "dead");
    assert_eq!(got[0]["depends_on"][0]["last_error"], "model refused");

    // A dependency that is already dead when the task arrives: cancelled at once.
    let late = api.submit(json!({"queue": "q", "depends_on": [root]})).await;
    assert_eq!(state(&api, late).await, "cancelled");
    // Cancelling a waiting task cancels its dependents too.
    let a = api.submit(json!({"queue": "blocked", "delay_ms": 3_600_000})).await;
    let b = api.submit(json!({"queue": "q", "depends_on": [a]})).await;
    let c = api.submit(json!({"queue": "q", "depends_on": [b]})).await;
    let (s, v) = api.post(&format!("/v1/tasks/{b}/cancel"), json!({"reason": "not needed"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(state(&api, c).await, "cancelled");
    assert_eq!(state(&api, a).await, "delayed", "a dependency is not touched by its dependent's cancel");
}

#[tokio::test]
async fn cycles_unknown_tasks_and_bad_references_are_refused_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"tasks": [
                {"queue": "q", "idempotency_key": "a", "depends_on": ["b"]},
                {"queue": "q", "idempotency_key": "b", "depends_on": ["a"]},
            ]}),
            400,
            "cycle",
        ),
        (json!({"tasks": [{"queue": "q", "idempotency_key": "a", "depends_on": ["a"]}]}), 400, "itself"),
        (json!({"tasks": [{"queue": "q"}, {"queue": "q", "depends_on": ["nope"]}]}), 400, "no task of this batch"),
        (json!({"tasks": [{"queue": "q"}, {"queue": "q", "depends_on": [987654]}]}), 404, "does not exist"),
        (json!({"queue": "q", "depends_on": [{"id": 1}]}), 400, ""),
        (json!({"queue": "q", "depends_on": [1], "on_dependency_failure": "maybe"}), 400, ""),
        (
            json!({"tasks": [
                {"queue": "q", "idempotency_key": "k"},
                {"queue": "r", "idempotency_key": "k"},
                {"queue": "q", "depends_on": ["k"]},
            ]}),
            400,
            "several tasks",
        ),
    ];
    for (body, status, words) in cases {
        let (s, v) = api.post("/v1/tasks", body.clone()).await;
        assert_eq!(s, status, "{body} → {v}");
        assert!(v["error"]["message"].as_str().unwrap_or_default().contains(words), "{body} → {v}");
    }
    assert_eq!(api.count("").await, 0, "nothing was created");
}

#[tokio::test]
async fn the_cli_submits_with_dependencies_and_shows_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let a = api.submit(json!({"queue": "q"})).await;
    let cli = |args: &[&str]| srv.cli_ok(args);
    let a_id = a.to_string();
    let out = cli(&[
        "task",
        "submit",
        "--queue",
        "q",
        "--depends-on",
        &a_id,
        "--on-dependency-failure",
        "run_anyway",
        "--deadline-in-ms",
        "60000",
    ]);
    let id: u64 = out.split_whitespace().nth(1).and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{out}"));
    let t = api.task(id).await;
    assert_eq!(
        (t["state"].as_str(), t["on_dependency_failure"].as_str()),
        (Some("waiting"), Some("run_anyway")),
        "{t}"
    );
    assert!(t["deadline_ms"].as_u64().is_some(), "{t}");
    let shown = cli(&["task", "get", &id.to_string()]);
    assert!(shown.contains(&format!("depends on: {a_id} (ready)")), "{shown}");
}

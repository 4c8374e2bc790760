//! Event streams (Server-Sent Events): a task's events live and in order, a queue's stream resumed
//! from `Last-Event-ID`, filters, queue patterns, the bound on open streams, and shutdown with
//! streams open.

mod common;

use common::sse::{SseEvent, SseReader};
use common::{Api, Server};
use serde_json::{json, Value};

fn names(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

fn token(t: &Value) -> u64 {
    t["lease"]["token"].as_u64().expect("token")
}

async fn progress(api: &Api, t: &Value, percent: Option<u8>, message: &str) {
    let id = t["id"].as_u64().expect("id");
    let (s, v) = api
        .post(
            &format!("/v1/tasks/{id}/progress"),
            json!({"lease_token": token(t), "percent": percent, "message": message}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

async fn open(api: &Api, path: &str, last_id: Option<&str>) -> SseReader {
    SseReader::open(&api.http, &format!("{}{path}", api.base), last_id).await
}

#[tokio::test]
async fn a_tasks_stream_starts_with_its_state_follows_every_change_and_ends_when_it_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let id = api.submit(json!({"queue": "research", "kind": "summarize", "payload": {"url": "u"}})).await;
    let mut watch = open(&api, &format!("/v1/tasks/{id}/events"), None).await;
    let first = watch.next_within(10).await.expect("the task as it is");
    assert_eq!(
        (first.name.as_str(), &first.data["state"], &first.data["kind"]),
        ("ready", &json!("ready"), &json!("summarize"))
    );
    assert!(first.id.is_some(), "a position to resume from");

    let t = api.claim("agent-1", &["research"], 1, 0).await.remove(0);
    progress(&api, &t, Some(40), "fetched").await;
    progress(&api, &t, None, "partial output: The quick brown").await;
    let (s, v) = api.complete(&t, json!({"summary": "short"})).await;
    assert_eq!(s, 200, "{v}");

    let events = watch.until("succeeded", 10).await;
    assert_eq!(names(&events), ["leased", "progress", "progress", "succeeded"]);
    assert_eq!(events[0].data["agent_id"], "agent-1");
    assert_eq!(events[0].data["attempt"], 1);
    assert_eq!(
        (&events[1].data["seq"], &events[1].data["percent"], &events[1].data["message"]),
        (&json!(0), &json!(40), &json!("fetched"))
    );
    assert_eq!(events[2].data["seq"], 1);
    assert_eq!(events[2].data["message"], "partial output: The quick brown");
    assert_eq!(events[3].data["result"], json!({"summary": "short"}));
    let ids: Vec<u64> = events.iter().map(|e| e.id.as_deref().expect("one entry each").parse().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids are log positions, increasing: {ids:?}");
    assert!(watch.next_within(10).await.is_none(), "the stream ends after a final state");

    // A watcher arriving late gets the progress history, the final state, and the end.
    let mut late = open(&api, &format!("/v1/tasks/{id}/events"), None).await;
    let mut got = Vec::new();
    while let Some(e) = late.next_within(10).await {
        got.push(e);
    }
    assert_eq!(names(&got), ["progress", "progress", "succeeded"]);
    assert_eq!(got[2].data["result"], json!({"summary": "short"}));

    // Filters: only what was asked for.
    let id2 = api.submit(json!({"queue": "research", "payload": 2})).await;
    let mut only_end = open(&api, &format!("/v1/tasks/{id2}/events?types=succeeded,dead,cancelled"), None).await;
    let t2 = api.claim("agent-1", &["research"], 1, 0).await.remove(0);
    progress(&api, &t2, Some(10), "x").await;
    let (s, v) = api.post(&format!("/v1/tasks/{id2}/cancel"), json!({"reason": "not needed"})).await;
    assert_eq!(s, 200, "{v}");
    let e = only_end.next_within(10).await.expect("cancelled");
    assert_eq!((e.name.as_str(), &e.data["error"]), ("cancelled", &json!("not needed")));
}

#[tokio::test]
async fn a_queue_stream_resumes_after_the_last_event_id_with_what_changed_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let mut watch = open(&api, "/v1/events?queue=q", None).await;
    let (s, v) = api.post("/v1/tasks", json!({"tasks": [{"queue": "q", "payload": 1}, {"queue": "q", "payload": 2}, {"queue": "q", "payload": 3}]})).await;
    assert_eq!(s, 201, "{v}");
    let ids: Vec<u64> = v["tasks"].as_array().expect("tasks").iter().map(|t| t["id"].as_u64().expect("id")).collect();
    api.submit(json!({"queue": "other", "payload": 0})).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(watch.next_within(10).await.expect("submitted"));
    }
    assert_eq!(names(&got), ["submitted"; 3]);
    assert_eq!(got.iter().map(|e| e.data["task_id"].as_u64().expect("id")).collect::<Vec<_>>(), ids);
    assert!(got[0].id.is_none() && got[1].id.is_none(), "one entry: only its last event carries the id");
    let last = got[2].id.clone().expect("id");
    assert!(watch.quiet_for(300).await, "nothing from queue other");
    drop(watch);

    // While nobody watches: a claim, a cancellation, a task elsewhere.
    let leased = api.claim("agent-1", &["q"], 1, 0).await.remove(0);
    let a = leased["id"].as_u64().expect("id");
    let b = ids.iter().copied().find(|i| *i != a).expect("another");
    let (s, v) = api.post(&format!("/v1/tasks/{b}/cancel"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    api.submit(json!({"queue": "other", "payload": 0})).await;

    let mut resumed = open(&api, "/v1/events?queue=q", Some(&last)).await;
    let caught = vec![resumed.next_within(10).await.expect("a"), resumed.next_within(10).await.expect("b")];
    assert_eq!(names(&caught), ["leased", "cancelled"]);
    assert_eq!((caught[0].data["task_id"].as_u64(), caught[1].data["task_id"].as_u64()), (Some(a), Some(b)));
    assert!(caught.iter().all(|e| e.id.is_some()));
    assert!(resumed.quiet_for(300).await, "the third task did not change: {ids:?}");
    // And live again after catching up.
    let (s, v) = api.complete(&leased, json!(null)).await;
    assert_eq!(s, 200, "{v}");
    let e = resumed.next_within(10).await.expect("live");
    assert_eq!((e.name.as_str(), e.data["task_id"].as_u64()), ("succeeded", Some(a)));

    // The same position as a query parameter (for clients that cannot set the header).
    // Catching up sends each changed task once, as it is now, in the order of its last change.
    let mut again = open(&api, &format!("/v1/events?queue=q&after={last}"), None).await;
    let caught = vec![again.next_within(10).await.expect("b"), again.next_within(10).await.expect("a")];
    assert_eq!(names(&caught), ["cancelled", "succeeded"]);
    assert_eq!((caught[0].data["task_id"].as_u64(), caught[1].data["task_id"].as_u64()), (Some(b), Some(a)));
}

#[tokio::test]
async fn bad_requests_for_streams_are_refused_and_their_number_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &["--event-streams-max", "2"]).await;
    let api = srv.client();
    let url = |p: &str| format!("{}{p}", api.base);
    for (path, last, status, code) in [
        ("/v1/events?types=bogus", None, 400, "invalid_request"),
        ("/v1/events?color=red", None, 400, "invalid_request"),
        ("/v1/events", Some("not-a-number"), 400, "invalid_request"),
        ("/v1/tasks/424242/events", None, 404, "not_found"),
        ("/v1/tasks/abc/events", None, 400, "invalid_request"),
    ] {
        let Err((s, v)) = SseReader::try_open(&api.http, &url(path), last).await else { panic!("{path} opened") };
        assert_eq!((s, v["error"]["code"].as_str()), (status, Some(code)), "{path}: {v}");
    }
    let mut one = open(&api, "/v1/events", None).await;
    let _two = open(&api, "/v1/events", None).await;
    let Err((s, v)) = SseReader::try_open(&api.http, &url("/v1/events"), None).await else { panic!("a third opened") };
    assert_eq!((s, v["error"]["code"].as_str()), (503, Some("too_many_streams")), "{v}");

    // Shutdown ends open streams instead of waiting for them forever.
    let started = std::time::Instant::now();
    srv.signal("TERM");
    assert!(one.next_within(20).await.is_none(), "the stream ends at shutdown");
    let status = tokio::task::spawn_blocking(move || {
        let mut child = srv.child.take().expect("child");
        child.wait().expect("wait")
    })
    .await
    .expect("join");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(started.elapsed().as_secs() < 20, "shutdown took {:?}", started.elapsed());
}

#[tokio::test]
async fn streams_follow_the_tokens_role_and_queue_patterns() {
    const ADMIN: &str = "admin-secret-for-events-test";
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &["--auth", "on", "--admin-token", ADMIN]).await;
    let with = |t: &str| {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("authorization", format!("Bearer {t}").parse().expect("header"));
        Api { http: reqwest::Client::builder().default_headers(h).build().expect("client"), base: srv.base.clone() }
    };
    let admin = with(ADMIN);
    let (s, v) = admin.post("/v1/tokens", json!({"name": "r", "role": "reader", "queues": ["eu.*"]})).await;
    assert_eq!(s, 201, "{v}");
    let reader = with(v["token"].as_str().expect("token"));
    let (s, v) = admin.post("/v1/tokens", json!({"name": "m", "role": "metrics"})).await;
    assert_eq!(s, 201, "{v}");
    let metrics = with(v["token"].as_str().expect("token"));

    let anon = Api { http: reqwest::Client::new(), base: srv.base.clone() };
    let Err((s, _)) = SseReader::try_open(&anon.http, &format!("{}/v1/events", srv.base), None).await else { panic!() };
    assert_eq!(s, 401, "no token");
    let Err((s, _)) = SseReader::try_open(&metrics.http, &format!("{}/v1/events", srv.base), None).await else {
        panic!()
    };
    assert_eq!(s, 403, "the metrics role reads no events");
    let Err((s, _)) = SseReader::try_open(&reader.http, &format!("{}/v1/events?queue=us.east", srv.base), None).await
    else {
        panic!()
    };
    assert_eq!(s, 403, "a queue outside its patterns");
    let us = admin.submit(json!({"queue": "us.east", "payload": 1})).await;
    let Err((s, _)) = SseReader::try_open(&reader.http, &format!("{}/v1/tasks/{us}/events", srv.base), None).await
    else {
        panic!()
    };
    assert_eq!(s, 404, "a task outside its patterns does not exist for it");

    let mut all = open(&reader, "/v1/events", None).await;
    admin.submit(json!({"queue": "us.east", "payload": 2})).await;
    let eu = admin.submit(json!({"queue": "eu.west", "payload": 3})).await;
    let e = all.next_within(10).await.expect("event");
    assert_eq!((e.name.as_str(), e.data["task_id"].as_u64()), ("submitted", Some(eu)), "only its queues");
    let mut one = open(&reader, &format!("/v1/tasks/{eu}/events"), None).await;
    assert_eq!(one.next_within(10).await.expect("state").name, "ready");
}

//! `POST /v1/acks`: completing and failing many leased tasks in one request. Each acknowledgement
//! stands alone (a stale token refuses that one only); a malformed request changes nothing.

mod common;

use common::{Api, Server};
use serde_json::{json, Value};

async fn leased(api: &Api, queue: &str, n: usize) -> Vec<Value> {
    let tasks: Vec<Value> = (0..n).map(|i| json!({"queue": queue, "payload": i, "max_attempts": 1})).collect();
    let (s, v) = api.post("/v1/tasks", json!({ "tasks": tasks })).await;
    assert_eq!(s, 201, "{v}");
    let got = api.claim("agent-1", &[queue], n as u32, 0).await;
    assert_eq!(got.len(), n);
    got
}

fn token(t: &Value) -> u64 {
    t["lease"]["token"].as_u64().expect("token")
}

#[tokio::test]
async fn each_acknowledgement_succeeds_or_is_refused_on_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let t = leased(&api, "jobs", 4).await;
    let id = |i: usize| t[i]["id"].as_u64().expect("id");

    let (s, v) = api
        .post(
            "/v1/acks",
            json!({"acks": [
                {"id": id(0), "lease_token": token(&t[0]), "outcome": "complete", "result": {"n": 0}},
                {"id": id(1), "lease_token": token(&t[1]), "outcome": "fail", "error": "model refused"},
                {"id": id(2), "lease_token": token(&t[2]) + 1000, "outcome": "complete"},
                {"id": 999_999, "lease_token": 1, "outcome": "complete"},
                {"id": id(0), "lease_token": token(&t[0]), "outcome": "complete"},
                {"id": id(3), "lease_token": token(&t[3]), "outcome": "complete", "result": [3]},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let r = v["results"].as_array().expect("results");
    assert_eq!(r.len(), 6, "{v}");
    assert_eq!((r[0]["id"].as_u64(), &r[0]["ok"], &r[0]["state"]), (Some(id(0)), &json!(true), &json!("succeeded")));
    assert_eq!((&r[1]["ok"], &r[1]["state"]), (&json!(true), &json!("dead")), "one attempt allowed: {v}");
    assert_eq!((&r[2]["ok"], &r[2]["error"]["code"]), (&json!(false), &json!("stale_lease")), "{v}");
    assert_eq!((&r[3]["ok"], &r[3]["error"]["code"]), (&json!(false), &json!("not_found")), "{v}");
    assert_eq!(r[4]["ok"], false, "a task acknowledged twice in one request: the second is refused: {v}");
    assert!(r[4]["error"]["code"] == "stale_lease" || r[4]["error"]["code"] == "wrong_state", "{v}");
    assert_eq!((&r[5]["ok"], &r[5]["state"]), (&json!(true), &json!("succeeded")), "{v}");

    let t0 = api.task(id(0)).await;
    assert_eq!((&t0["state"], &t0["result"]), (&json!("succeeded"), &json!({"n": 0})));
    assert_eq!(api.task(id(1)).await["last_error"], "model refused");
    assert_eq!(api.task(id(2)).await["state"], "leased", "a refused acknowledgement changes nothing");
    assert_eq!(api.task(id(3)).await["result"], json!([3]));
}

#[tokio::test]
async fn a_malformed_request_is_refused_whole_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let t = leased(&api, "jobs", 2).await;
    let good = json!({"id": t[0]["id"], "lease_token": token(&t[0]), "outcome": "complete"});
    let id1 = t[1]["id"].clone();
    let tok1 = token(&t[1]);
    let bad: Vec<(Value, &str)> = vec![
        (json!({"acks": []}), "empty"),
        (json!({"acks": vec![good.clone(); 1001]}), "over the limit"),
        (json!({"acks": [good.clone(), {"id": id1, "lease_token": tok1, "outcome": "fail"}]}), "fail without error"),
        (
            json!({"acks": [good.clone(), {"id": id1, "lease_token": tok1, "outcome": "complete", "error": "x"}]}),
            "complete with error",
        ),
        (
            json!({"acks": [good.clone(), {"id": id1, "lease_token": tok1, "outcome": "fail", "error": "x", "result": 1}]}),
            "fail with result",
        ),
        (json!({"acks": [good.clone(), {"id": id1, "lease_token": tok1, "outcome": "done"}]}), "unknown outcome"),
        (
            json!({"acks": [good.clone(), {"id": id1, "lease_token": tok1, "outcome": "complete", "extra": 1}]}),
            "unknown field",
        ),
        (json!({"acks": [good.clone(), {"id": "x", "lease_token": tok1, "outcome": "complete"}]}), "id not a number"),
        (json!([good.clone()]), "not an object"),
    ];
    for (body, what) in bad {
        let (s, v) = api.post("/v1/acks", body).await;
        assert_eq!(s, 400, "{what}: {v}");
        assert!(v["error"]["code"].is_string(), "{what}: {v}");
    }
    let (s, v) = api.post_raw("/v1/acks", "{\"acks\": [garbage").await;
    assert_eq!(s, 400, "{v}");
    for x in &t {
        assert_eq!(api.task(x["id"].as_u64().expect("id")).await["state"], "leased", "nothing changed");
    }
}

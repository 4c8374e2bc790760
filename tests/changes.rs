//! The change feed through the API: replaying it reproduces the ledger; purged positions get 410.

mod common;

use std::collections::BTreeMap;

use common::Server;
use serde_json::{json, Value};

/// Replay the whole feed from `after`, page by page, into id → task.
async fn replay(api: &common::Api, mut after: u64, limit: usize, into: &mut BTreeMap<u64, Value>) -> u64 {
    loop {
        let (s, v) = api.get(&format!("/v1/changes?after={after}&limit={limit}")).await;
        assert_eq!(s, 200, "{v}");
        let entries = v["entries"].as_array().expect("entries");
        if entries.is_empty() {
            return after;
        }
        for e in entries {
            let index = e["index"].as_u64().expect("index");
            assert!(index > after, "entries come in log order after the cursor");
            for c in e["changes"].as_array().expect("changes") {
                match c["type"].as_str() {
                    Some("task") => {
                        into.insert(c["task"]["id"].as_u64().expect("id"), c["task"].clone());
                    }
                    Some("task_removed") => {
                        into.remove(&c["id"].as_u64().expect("id"));
                    }
                    _ => {}
                }
            }
        }
        after = v["next"].as_u64().expect("next");
    }
}

#[tokio::test]
async fn replaying_the_feed_reproduces_the_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    for i in 0..20 {
        api.submit(json!({"queue": "f", "payload": {"i": i}, "idempotency_key": format!("k{i}")})).await;
    }
    let claimed = api.claim("a", &["f"], 8, 0).await;
    for (n, t) in claimed.iter().enumerate() {
        let id = t["id"].as_u64().expect("id");
        if n % 2 == 0 {
            api.complete(t, json!({"n": n})).await;
        } else {
            api.post(&format!("/v1/tasks/{id}/progress"), json!({"lease_token": t["lease"]["token"], "percent": 50}))
                .await;
        }
    }
    api.post("/v1/tasks/20/cancel", json!({})).await;

    let mut mirror = BTreeMap::new();
    let pos = replay(&api, 0, 7, &mut mirror).await;
    let (_, ledger) = api.get("/v1/tasks?limit=1000").await;
    let ledger: BTreeMap<u64, Value> =
        ledger["tasks"].as_array().expect("tasks").iter().map(|t| (t["id"].as_u64().expect("id"), t.clone())).collect();
    assert_eq!(mirror, ledger, "the replayed feed equals the ledger, record for record");

    // Following from the position picks up exactly the new changes.
    let id = api.submit(json!({"queue": "f"})).await;
    let mut more = BTreeMap::new();
    let pos2 = replay(&api, pos, 100, &mut more).await;
    assert!(pos2 > pos);
    assert_eq!(more.keys().copied().collect::<Vec<_>>(), vec![id]);
}

#[tokio::test]
async fn a_purged_position_is_refused_with_410() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &["--feed-retained-entries", "10"]).await;
    let api = srv.client();
    // The feed is purged every 1,024 applied batches; sequential submits are one batch each.
    for i in 0..1_100 {
        let (s, _) = api.post("/v1/tasks", json!({"queue": "p", "payload": i})).await;
        assert_eq!(s, 201);
    }
    let (s, v) = api.get("/v1/changes?after=0").await;
    assert_eq!((s, v["error"]["code"].as_str()), (410, Some("compacted")), "{v}");
    let (_, stats) = api.get("/v1/stats").await;
    let applied = stats["raft"]["applied_index"].as_u64().expect("applied");
    let (s, v) = api.get(&format!("/v1/changes?after={}", applied - 5)).await;
    assert_eq!(s, 200, "recent positions are still served: {v}");
}

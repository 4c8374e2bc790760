//! Durability: kill -9 a real server under load, restart it, and find every acknowledged write.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Server;
use serde_json::json;

/// What a client saw acknowledged before the crash.
#[derive(Default, Debug)]
struct Acked {
    /// idempotency key → task id
    submitted: BTreeMap<String, u64>,
    /// task id → lease token of an acknowledged claim
    claimed: BTreeMap<u64, u64>,
    /// task id → result of an acknowledged completion
    completed: BTreeMap<u64, String>,
}

async fn client_loop(api: common::Api, n: usize, stop: Arc<AtomicBool>) -> Acked {
    let mut acked = Acked::default();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let key = format!("client{n}-{i}");
        if i % 4 == 0 {
            // An atomic batch of three.
            let tasks: Vec<_> = (0..3)
                .map(|j| json!({"queue": "crash", "idempotency_key": format!("{key}-{j}"), "lease_ms": 600000}))
                .collect();
            match api.http.post(format!("{}/v1/tasks", api.base)).json(&json!({ "tasks": tasks })).send().await {
                Ok(r) if r.status().is_success() => {
                    let Ok(v) = r.json::<serde_json::Value>().await else { continue };
                    for (j, t) in v["tasks"].as_array().into_iter().flatten().enumerate() {
                        acked.submitted.insert(format!("{key}-{j}"), t["id"].as_u64().unwrap_or(0));
                    }
                }
                _ => continue,
            }
        } else {
            let body =
                json!({"queue": "crash", "idempotency_key": key, "payload": {"n": n, "i": i}, "lease_ms": 600000});
            match api.http.post(format!("{}/v1/tasks", api.base)).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    let Ok(v) = r.json::<serde_json::Value>().await else { continue };
                    acked.submitted.insert(key.clone(), v["id"].as_u64().unwrap_or(0));
                }
                _ => continue,
            }
        }
        // Claim one and, every other time, complete it.
        let claim = json!({"agent_id": format!("agent{n}"), "queues": ["crash"], "max": 1});
        let Ok(r) = api.http.post(format!("{}/v1/claims", api.base)).json(&claim).send().await else { continue };
        let Ok(v) = r.json::<serde_json::Value>().await else { continue };
        let Some(t) = v["tasks"].as_array().and_then(|a| a.first()).cloned() else { continue };
        let (id, token) = (t["id"].as_u64().unwrap_or(0), t["lease"]["token"].as_u64().unwrap_or(0));
        acked.claimed.insert(id, token);
        if i % 2 == 0 {
            let result = format!("done-by-{n}-{i}");
            let body = json!({"lease_token": token, "result": result});
            if let Ok(r) = api.http.post(format!("{}/v1/tasks/{id}/complete", api.base)).json(&body).send().await {
                if r.status().is_success() {
                    acked.completed.insert(id, result);
                }
            }
        }
    }
    acked
}

#[tokio::test]
async fn every_acknowledged_write_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8).map(|n| tokio::spawn(client_loop(api.clone(), n, stop.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    srv.kill9(); // mid-load: requests are in flight
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Acked::default();
    for c in clients {
        let a = c.await.expect("client");
        acked.submitted.extend(a.submitted);
        acked.claimed.extend(a.claimed);
        acked.completed.extend(a.completed);
    }
    assert!(
        acked.submitted.len() > 100,
        "the load should have acknowledged many submits, got {}",
        acked.submitted.len()
    );
    assert!(!acked.completed.is_empty());

    srv.spawn().await;
    let api = srv.client();
    for (key, id) in &acked.submitted {
        let (s, v) = api.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(s, 200, "acknowledged task {id} ({key}) lost: {v}");
        assert_eq!(v["idempotency_key"], key.as_str());
    }
    for (id, token) in &acked.claimed {
        let t = api.task(*id).await;
        let tokens: Vec<u64> =
            t["attempts"].as_array().expect("attempts").iter().filter_map(|a| a["lease_token"].as_u64()).collect();
        assert!(tokens.contains(token), "acknowledged claim of task {id} (token {token}) lost: {t}");
    }
    for (id, result) in &acked.completed {
        let t = api.task(*id).await;
        assert_eq!(t["state"], "succeeded", "acknowledged completion of task {id} lost: {t}");
        assert_eq!(t["result"], result.as_str());
    }
    // Idempotency keys still map to the same tasks after the crash.
    for (key, id) in acked.submitted.iter().take(50) {
        let (s, v) = api.post("/v1/tasks", json!({"queue": "crash", "idempotency_key": key})).await;
        assert_eq!((s, v["id"].as_u64(), v["duplicate"].as_bool()), (200, Some(*id), Some(true)), "{key}");
    }
    // And every task appears once in the ledger.
    let total = api.count("queue=crash").await;
    assert!(
        total >= acked.submitted.len(),
        "ledger has {total} tasks, fewer than {} acknowledged",
        acked.submitted.len()
    );
}

/// sled writes every item over about a quarter of its segment (~128 KiB) to a file of its own
/// under `state/blobs/` and never syncs those files: a power loss can take them. Nothing
/// acknowledged may depend on them. Large payloads (each a blob), acknowledged, the process killed,
/// then every blob file gone: the node comes back with every task and payload (the state store is
/// rebuilt from the snapshot and the log).
#[tokio::test]
async fn acknowledged_large_payloads_survive_the_loss_of_sled_blob_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &["--durability", "fsync"]).await;
    let api = srv.client();
    let big = "b".repeat(300 << 10);
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(api.submit(json!({"queue": "blobs", "payload": {"i": i, "data": big}})).await);
    }
    srv.kill9();
    let blobs = srv.data_dir.join("state").join("blobs");
    let mut removed = 0;
    for e in std::fs::read_dir(&blobs).expect("blob dir").flatten() {
        std::fs::remove_file(e.path()).expect("remove blob");
        removed += 1;
    }
    assert!(removed > 0, "large payloads went to sled blob files");
    srv.spawn().await;
    let api = srv.client();
    for (i, id) in ids.iter().enumerate() {
        let t = api.task(*id).await;
        assert_eq!(t["payload"]["i"], i, "task {id}");
        assert_eq!(t["payload"]["data"].as_str().map(str::len), Some(300 << 10), "the payload of task {id} is whole");
    }
}

//! A full disk, on a real (small tmpfs) file system: below its reserve a node refuses writes with
//! a clear error, changes nothing, serves reads, and takes writes again by itself once space
//! returns; a disk that fills completely (no reserve) stops the node, which then restarts with
//! every acknowledged write. Needs root for the mount (CI runs as root); skips, saying so,
//! otherwise.

mod common;

use std::time::Duration;

use common::disks::{root, Tmpfs};
use common::{eventually, Server};
use serde_json::json;

const MIB: u64 = 1 << 20;

/// A node whose data directory is on a 96 MiB tmpfs of its own (its log outside it), started
/// with `disk_reserve_mb`; `None` without root.
async fn node_on_a_small_disk(reserve_mb: &str) -> Option<(tempfile::TempDir, Tmpfs, Server)> {
    if !root() {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = Tmpfs::mount(&dir.path().join("disk"), 96);
    let mut srv = Server::new(&disk.0, &["--disk-reserve-mb", reserve_mb]);
    srv.log = dir.path().join("server.log");
    srv.spawn().await;
    Some((dir, disk, srv))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_its_disk_reserve_a_node_refuses_new_work_and_takes_it_again_when_space_returns() {
    let Some((_dir, disk, mut srv)) = node_on_a_small_disk("24").await else { return };
    let api = srv.client();
    let mut acked = Vec::new();
    for n in 0..50 {
        let key = format!("before-{n}");
        let (s, v) = api.post("/v1/tasks", json!({"queue": "q", "payload": n, "idempotency_key": key})).await;
        assert_eq!(s, 201, "{v}");
        acked.push((v["id"].as_u64().expect("id"), key));
    }
    let filler = disk.fill("filler", 8 * MIB);
    // The node measures its disk twice a second.
    eventually(10, "the node to see its disk below the reserve", || async {
        let m = reqwest::get(format!("{}/metrics", srv.base)).await.ok()?.text().await.ok()?;
        m.lines().any(|l| l == "minion_disk_low 1").then_some(())
    })
    .await;
    let (s, v) = api.post("/v1/tasks", json!({"queue": "q", "payload": "refused"})).await;
    assert_eq!(s, 507, "{v}");
    assert_eq!(v["error"]["code"], "disk_full", "{v}");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(message.contains("reserve") && message.contains("24 MiB"), "the error says why: {message}");
    let (s, v) = api
        .req(reqwest::Method::PUT, "/v1/schedules/nightly", Some(json!({"every_ms": 60_000, "task": {"queue": "q"}})))
        .await;
    assert_eq!(s, 507, "a schedule is new work: {v}");
    let (_, stats) = api.get("/v1/stats").await;
    assert_eq!(stats["tasks"], 50, "nothing was written: {stats}");
    // Finishing work goes on (refusing it would let leases expire), and so do reads.
    let leased = api.claim("a", &["q"], 1, 0).await;
    let token = leased[0]["lease"]["token"].clone();
    let (s, v) = api.post(&format!("/v1/tasks/{}/complete", leased[0]["id"]), json!({"lease_token": token})).await;
    assert_eq!(s, 200, "{v}");
    let (s, t) = api.get(&format!("/v1/tasks/{}", acked[1].0)).await;
    assert_eq!((s, t["state"].as_str()), (200, Some("ready")), "{t}");
    let (s, _) =
        api.post(&format!("/v1/tasks/{}/children", leased[0]["id"]), json!({"lease_token": token, "tasks": []})).await;
    assert_eq!(s, 507, "spawning children is new work");
    let log = std::fs::read_to_string(&srv.log).expect("log");
    assert!(log.contains("disk space below the reserve"), "the node says why in its log");

    // Space returns: writes are taken again without a restart.
    std::fs::remove_file(&filler).expect("remove filler");
    let id = eventually(10, "writes taken again", || async {
        let (s, v) = api.post("/v1/tasks", json!({"queue": "q", "payload": "after", "idempotency_key": "after"})).await;
        (s == 201).then(|| v["id"].as_u64().expect("id"))
    })
    .await;
    acked.push((id, "after".into()));
    let claimed = api.claim("a", &["q"], 1, 0).await;
    assert_eq!(claimed.len(), 1);
    srv.restart().await;
    let api = srv.client();
    for (id, key) in &acked {
        let (s, t) = api.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!((s, t["idempotency_key"].as_str()), (200, Some(key.as_str())), "task {id} after the restart: {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_up_stops_the_node_and_loses_no_acknowledged_write() {
    // No reserve: the disk fills under the node's writes.
    let Some((_dir, disk, mut srv)) = node_on_a_small_disk("0").await else { return };
    let filler = disk.fill("filler", 6 * MIB);
    let blob = "x".repeat(60_000);
    let mut acked = Vec::new();
    let mut refused = 0;
    for n in 0..400 {
        let key = format!("k{n}");
        let body = json!({"queue": "q", "payload": {"blob": blob, "n": n}, "idempotency_key": key});
        let sent = reqwest::Client::new()
            .post(format!("{}/v1/tasks", srv.base))
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().as_u16() == 201 => {
                let v: serde_json::Value = r.json().await.expect("json");
                acked.push((v["id"].as_u64().expect("id"), key));
            }
            _ => {
                refused += 1;
                if refused >= 3 {
                    break;
                }
            }
        }
    }
    assert!(refused >= 3, "the disk filled: {} acknowledged, none refused", acked.len());
    assert!(!acked.is_empty(), "some writes fitted before the disk filled");
    let log = std::fs::read_to_string(&srv.log).expect("log");
    assert!(log.contains("No space left on device") || log.contains("os error 28"), "the node says why:\n{log}");
    // Space returns; the node (stopped, or still up with its store failed) restarts.
    std::fs::remove_file(&filler).expect("remove filler");
    srv.kill9();
    srv.spawn().await;
    let api = srv.client();
    for (id, key) in &acked {
        let (s, t) = api.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!((s, t["idempotency_key"].as_str()), (200, Some(key.as_str())), "acknowledged task {id}: {t}");
    }
    let (s, v) = api.post("/v1/tasks", json!({"queue": "q", "payload": "after"})).await;
    assert_eq!(s, 201, "writes after the restart: {v}");
    eprintln!("{} writes acknowledged before the disk filled, all present after the restart", acked.len());
}

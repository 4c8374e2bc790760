//! Upgrades from the release before the record store: its backups restore into this one, and its
//! data directories are refused with directions instead of being misread. And from data layout 2
//! (before packed blocks): such a directory is upgraded in place.
//!
//! `tests/fixtures/backup-v1.minion` was written by `minion snapshot export` of release 49b8ea6
//! (format 1: one frame holding the whole state image); `tasks-v1.json` and `queue-v1.json` are
//! what that release's API answered for the same state. `data-layout2.tar.gz` is a data directory
//! written by release a223bf3 (layout 2) and `data-layout2-tasks.json` what it answered for its
//! tasks (`scripts/make-layout2-fixture.sh`).

mod common;

use common::Server;
use serde_json::{json, Value};

/// The last change in the backup (task 6's `created_ms` in `tasks-v1.json`).
const BACKUP_TAKEN_MS: i64 = 1_796_212_569_724;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_minion")).args(args).output().expect("run minion")
}

#[tokio::test]
async fn a_backup_written_by_the_previous_release_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The server's wall clock reads two minutes after the backup was taken, whatever the date:
    // the state's idempotency keys (a day) and finished tasks (a week) expire by the clock, and the
    // test is about what the backup holds, not about how long ago it was written.
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let offset_s = (BACKUP_TAKEN_MS + 120_000 - now_ms) / 1000;
    let mut srv = Server::new(dir.path(), &[]);
    srv.env = vec![
        ("LD_PRELOAD".into(), common::faketime_library()),
        ("FAKETIME".into(), format!("{offset_s:+}")),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ];
    srv.spawn().await;
    let out = cli(&["snapshot", "import", "--server", &srv.base, fixture("backup-v1.minion").to_str().expect("path")]);
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("restored 6 tasks and 1 agents"), "{stdout}");
    let api = srv.client();
    // Task 3 was leased when the backup was taken, and its lease has run out since: housekeeping
    // expires it.
    common::eventually(10, "the old lease to expire", || async {
        (api.task(3).await["state"] != "leased").then_some(())
    })
    .await;
    let want: Value = serde_json::from_slice(&std::fs::read(fixture("tasks-v1.json")).expect("fixture")).expect("json");
    let got = api.get("/v1/tasks?limit=100").await.1;
    let (want, got) = (want["tasks"].as_array().expect("tasks"), got["tasks"].as_array().expect("tasks"));
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        if w["state"] == "leased" {
            // Leased when the backup was taken: the lease has run out since.
            assert_eq!(g["id"], w["id"]);
            assert_eq!(g["payload"], w["payload"]);
            assert_eq!(g["attempts"][0]["lease_token"], w["attempts"][0]["lease_token"]);
            assert_eq!(g["attempts"][0]["outcome"]["outcome"], "lease_expired", "{g}");
        } else {
            assert_eq!(g, w, "task {} is as the previous release showed it", w["id"]);
        }
    }
    // The trace context, the queue settings, the idempotency key and the token came along.
    assert_eq!(got[1]["trace_parent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let queue: Value =
        serde_json::from_slice(&std::fs::read(fixture("queue-v1.json")).expect("fixture")).expect("json");
    assert_eq!(api.get("/v1/queues/images").await.1["overrides"], queue["overrides"]);
    let (s, v) =
        api.post("/v1/tasks", json!({"queue": "images", "payload": 0, "idempotency_key": "resize-cat-512"})).await;
    assert!(s == 200 || s == 201, "{v}");
    let tokens = api.get("/v1/tokens").await.1;
    assert!(tokens["tokens"].as_array().expect("tokens").iter().any(|t| t["name"] == "reader-1"), "{tokens}");
    // New ids continue after the restored ones.
    assert_eq!(api.submit(json!({"queue": "images", "payload": "new"})).await, 7);
}

#[tokio::test]
async fn a_data_directory_of_the_previous_layout_is_refused_with_directions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // The previous layout: sled's database in db/, no LAYOUT file.
    std::fs::create_dir_all(data.join("db")).expect("mkdir");
    std::fs::write(data.join("db").join("conf"), b"segment_size: 524288\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minion"))
        .args([
            "serve",
            "--data-dir",
            data.to_str().expect("path"),
            "--listen",
            "127.0.0.1:0",
            "--raft-listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("snapshot export") && err.contains("snapshot import"), "names the way through: {err}");
    assert!(data.join("db").join("conf").exists(), "nothing was changed");
}

#[tokio::test]
async fn a_data_directory_of_layout_2_is_upgraded_in_place_and_reads_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let untar = std::process::Command::new("tar")
        .arg("xzf")
        .arg(fixture("data-layout2.tar.gz"))
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("tar");
    assert!(untar.success());
    let want: Value =
        serde_json::from_slice(&std::fs::read(fixture("data-layout2-tasks.json")).expect("fixture")).expect("json");
    let want = want["tasks"].as_array().expect("tasks").clone();
    assert_eq!(want.len(), 300);
    // As for the backup: the clock reads two minutes after the directory was written.
    let written_ms = want.iter().map(|t| t["updated_ms"].as_i64().expect("updated_ms")).max().expect("tasks");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let mut srv = Server::new(dir.path(), &[]);
    srv.env = vec![
        ("LD_PRELOAD".into(), common::faketime_library()),
        ("FAKETIME".into(), format!("{:+}", (written_ms + 120_000 - now_ms) / 1000)),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ];
    let layout = srv.data_dir.join("LAYOUT");
    assert_eq!(std::fs::read_to_string(&layout).expect("LAYOUT"), "minion data layout 2\n");
    srv.spawn().await;
    assert_eq!(std::fs::read_to_string(&layout).expect("LAYOUT"), "minion data layout 3\n");
    let api = srv.client();
    let all = |api: common::Api| async move {
        api.get("/v1/tasks?queue=fx&limit=1000").await.1["tasks"].as_array().expect("tasks").clone()
    };
    assert_eq!(all(api.clone()).await, want, "as layout 2 answered, before any write");
    // The first write packs the old records into blocks; everything reads the same through them.
    let (s, v) = api.post("/v1/tasks", json!({"queue": "fx", "payload": 0, "idempotency_key": "fx-5"})).await;
    assert!(s == 200 || s == 201, "{v}");
    assert_eq!(v["duplicate"], true, "the idempotency key came along: {v}");
    assert_eq!(v["id"], want.iter().find(|t| t["idempotency_key"] == "fx-5").expect("fx-5")["id"]);
    let new = api.submit(json!({"queue": "other", "payload": "new"})).await;
    assert_eq!(new, 301, "ids continue after the old ones");
    common::eventually(10, "the old tasks to read the same after packing", || {
        let api = api.clone();
        let want = want.clone();
        async move { (all(api).await == want).then_some(()) }
    })
    .await;
    let dead = want.iter().find(|t| t["state"] == "dead").expect("a dead task");
    assert_eq!(api.task(dead["id"].as_u64().expect("id")).await, *dead);
    srv.restart().await;
    let api = srv.client();
    assert_eq!(all(api.clone()).await, want, "and after a restart");
}

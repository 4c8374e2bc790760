//! Upgrades from the release before the record store: its backups restore into this one, and its
//! data directories are refused with directions instead of being misread.
//!
//! `tests/fixtures/backup-v1.minion` was written by `minion snapshot export` of release 49b8ea6
//! (format 1: one frame holding the whole state image); `tasks-v1.json` and `queue-v1.json` are
//! what that release's API answered for the same state.

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

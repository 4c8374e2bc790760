//! The follower survives a PostgreSQL restart. Its own test binary: restarting the server must not
//! disturb other tests' connections.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{assert_mirror_matches, background_load, spawn_follow, PgDb, Server};

fn pg_ctl(action: &str) {
    let versions = std::fs::read_dir("/etc/postgresql").expect("/etc/postgresql");
    for v in versions.flatten() {
        let status = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &v.file_name().to_string_lossy(), "main", action])
            .status()
            .expect("pg_ctlcluster");
        assert!(status.success(), "pg_ctlcluster {action}");
    }
}

#[tokio::test]
async fn the_follower_resumes_after_postgres_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let db = PgDb::create("restart").await;
    let mut exporter = spawn_follow(&srv.base, &db.url, &dir.path().join("export.log"));
    let (stop, load) = background_load(&api, "r");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    pg_ctl("restart");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");

    let pg = db.client().await;
    // Waits for the mirror to catch up, then compares.
    assert_mirror_matches(&api, &pg).await;
    let _ = exporter.kill();
    let _ = exporter.wait();
    let log = std::fs::read_to_string(dir.path().join("export.log")).unwrap_or_default();
    assert!(log.contains("retrying"), "the exporter saw the restart and retried:\n{log}");
}

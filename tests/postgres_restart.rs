//! The follower survives a PostgreSQL restart. Its own test binary: restarting the server must not
//! disturb other tests' connections.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_mirror_matches, eventually, mixed_workload, PgDb, Server};

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
    let log = std::fs::File::create(dir.path().join("export.log")).expect("log");
    let mut exporter = Command::new(env!("CARGO_BIN_EXE_minion"))
        .args([
            "export",
            "postgres",
            "--url",
            &db.url,
            "--server",
            &srv.base,
            "--follow",
            "--poll-ms",
            "50",
            "--batch-records",
            "50",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn exporter");
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (api, stop) = (api.clone(), stop.clone());
        tokio::spawn(async move {
            let mut r = 0;
            while !stop.load(Ordering::Relaxed) {
                mixed_workload(&api, 1, &format!("r{r}")).await;
                r += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    pg_ctl("restart");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");

    let pg = db.client().await;
    let (_, stats) = api.get("/v1/stats").await;
    let applied = stats["raft"]["applied_index"].as_u64().expect("applied");
    eventually(60, "the mirror to catch up after the restart", || {
        let pg = &pg;
        async move {
            let pos = pg
                .query_opt("SELECT log_index FROM export_position WHERE name = 'default'", &[])
                .await
                .ok()
                .flatten()
                .map(|r| r.get::<_, i64>(0) as u64)
                .unwrap_or(0);
            (pos >= applied).then_some(())
        }
    })
    .await;
    let _ = exporter.kill();
    let _ = exporter.wait();
    let log = std::fs::read_to_string(dir.path().join("export.log")).unwrap_or_default();
    assert!(log.contains("retrying"), "the exporter saw the restart and retried:\n{log}");
    assert_mirror_matches(&api, &pg).await;
}

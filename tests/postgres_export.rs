//! Mirroring the ledger into the real PostgreSQL on 127.0.0.1:5432.

mod common;

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    assert_mirror_matches, background_load, eventually, export_command, mixed_workload, spawn_follow, PgDb, Server,
};
use minion_adapters::postgres::{migrate, MIGRATIONS};

async fn position(pg: &tokio_postgres::Client) -> u64 {
    match pg.query_opt("SELECT log_index FROM export_position WHERE name = 'default'", &[]).await {
        Ok(Some(r)) => r.get::<_, i64>(0) as u64,
        _ => 0,
    }
}

async fn wait_caught_up(api: &common::Api, pg: &tokio_postgres::Client) {
    let (_, stats) = api.get("/v1/stats").await;
    let applied = stats["raft"]["applied_index"].as_u64().expect("applied");
    eventually(
        60,
        "the mirror to reach the applied index",
        || async move { (position(pg).await >= applied).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn migrations_twice_are_a_no_op_and_a_newer_schema_is_refused() {
    let db = PgDb::create("migrate").await;
    let mut pg = db.client().await;
    let first = migrate(&mut pg).await.expect("first run");
    assert_eq!(first.len(), MIGRATIONS.len());
    let second = migrate(&mut pg).await.expect("second run");
    assert!(second.is_empty(), "nothing applied the second time");
    let n: i64 = pg.query_one("SELECT count(*) FROM minion_schema_migrations", &[]).await.expect("count").get(0);
    assert_eq!(n as usize, MIGRATIONS.len());
    pg.execute("INSERT INTO minion_schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')", &[])
        .await
        .expect("insert");
    let err = migrate(&mut pg).await.expect_err("newer schema").to_string();
    assert!(err.contains("newer"), "{err}");
}

#[tokio::test]
async fn a_one_shot_export_matches_the_ledger_row_for_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    mixed_workload(&api, 12, "oneshot").await;
    let db = PgDb::create("oneshot").await;
    let out = export_command(&srv.base, &db.url, false).stderr(Stdio::piped()).output().expect("run export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pg = db.client().await;
    assert_mirror_matches(&api, &pg).await;

    // More work, then an incremental export from the stored position.
    mixed_workload(&api, 3, "second").await;
    let out = export_command(&srv.base, &db.url, false).stderr(Stdio::piped()).output().expect("run export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 tasks backfilled"), "incremental, not a new backfill");
    assert_mirror_matches(&api, &pg).await;

    // A bad URL or an unreachable server is a clear error, not a silent skip.
    let out = export_command(&srv.base, "postgres://postgres@127.0.0.1:1/nope", false)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PostgreSQL"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn killing_the_follower_mid_stream_leaves_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let db = PgDb::create("follow").await;
    let log = dir.path().join("export.log");
    let mut exporter = spawn_follow(&srv.base, &db.url, &log);

    let (stop, load) = background_load(&api, "f");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    exporter.kill().expect("kill -9 the exporter");
    exporter.wait().expect("reap");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut exporter = spawn_follow(&srv.base, &db.url, &log);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");

    let pg = db.client().await;
    wait_caught_up(&api, &pg).await;
    let _ = exporter.kill();
    let _ = exporter.wait();
    assert_mirror_matches(&api, &pg).await;
}

#[tokio::test]
async fn the_server_can_run_the_mirror_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = PgDb::create("embedded").await;
    let srv = Server::start(dir.path(), &["--export-postgres-url", &db.url]).await;
    let api = srv.client();
    mixed_workload(&api, 5, "embedded").await;
    let pg = db.client().await;
    assert_mirror_matches(&api, &pg).await;
}

#[tokio::test]
async fn the_follower_resumes_after_the_server_is_killed_and_restarted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let db = PgDb::create("srvcrash").await;
    let log = dir.path().join("export.log");
    let mut exporter = spawn_follow(&srv.base, &db.url, &log);
    mixed_workload(&api, 6, "before").await;
    srv.kill9();
    tokio::time::sleep(Duration::from_millis(700)).await;
    srv.spawn().await;
    let api = srv.client();
    mixed_workload(&api, 6, "after").await;
    let pg = db.client().await;
    assert_mirror_matches(&api, &pg).await;
    let _ = exporter.kill();
    let _ = exporter.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("retrying"), "the exporter noticed the server was down:\n{text}");
}

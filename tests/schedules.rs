//! Schedules through the API and the CLI: a fixed interval and a cron expression (seconds, in a
//! time zone) create tasks from their template at their due times, each run with the key
//! `schedule:{name}:{time}` and never before its time; pausing and deleting stop them; runs missed
//! while the node was down follow the schedule's policy (catch up at most N, or skip all but the
//! latest recent one) and none fires twice across the restart; bad schedules are refused and
//! change nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Api, Server};
use serde_json::{json, Value};

async fn put(api: &Api, name: &str, body: Value) -> (u16, Value) {
    api.req(reqwest::Method::PUT, &format!("/v1/schedules/{name}"), Some(body)).await
}

/// The due times of the runs in `queue` (from their idempotency keys), with each task's
/// creation time, in due-time order; every key must name `name`.
async fn runs(api: &Api, queue: &str, name: &str) -> Vec<(u64, u64)> {
    try_runs(api, queue, name).await.unwrap_or_else(|(s, v)| panic!("listing runs answered {s}: {v}"))
}

/// [`runs`], or the refusal of a read the node could not yet serve (503 while a new leader
/// confirms its term): polls across a failover retry on that instead of failing.
async fn try_runs(api: &Api, queue: &str, name: &str) -> Result<Vec<(u64, u64)>, (u16, Value)> {
    let mut out: Vec<(u64, u64)> = api
        .try_tasks(&format!("queue={queue}"))
        .await?
        .iter()
        .map(|t| {
            let key = t["idempotency_key"].as_str().unwrap_or_else(|| panic!("a run has a key: {t}"));
            let due = key.strip_prefix(&format!("schedule:{name}:")).unwrap_or_else(|| panic!("{key}"));
            (due.parse().expect("due time"), t["created_ms"].as_u64().expect("created_ms"))
        })
        .collect();
    out.sort();
    Ok(out)
}

#[tokio::test]
async fn an_interval_and_a_cron_expression_fire_on_time_until_paused_or_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let (s, every) =
        put(&api, "tick", json!({"every_ms": 1_000, "task": {"queue": "ticks", "kind": "ping", "payload": {"n": 1}}}))
            .await;
    assert_eq!(s, 200, "{every}");
    let set = every["set_ms"].as_u64().expect("set_ms");
    assert_eq!(every["next_ms"].as_u64(), Some(set + 1_000), "{every}");
    let (s, cron) = put(
        &api,
        "even-seconds",
        json!({"cron": "*/2 * * * * *", "timezone": "Asia/Kolkata", "task": {"queue": "crons", "priority": 3}}),
    )
    .await;
    assert_eq!(s, 200, "{cron}");
    tokio::time::sleep(Duration::from_millis(4_500)).await;

    let ticks = runs(&api, "ticks", "tick").await;
    assert!(ticks.len() >= 3, "{ticks:?}");
    for (i, (due, created)) in ticks.iter().enumerate() {
        assert_eq!(*due, set + 1_000 * (i as u64 + 1), "on the interval's grid, none missing: {ticks:?}");
        assert!(created >= due, "never before its time: {ticks:?}");
    }
    let crons = runs(&api, "crons", "even-seconds").await;
    assert!(crons.len() >= 2, "{crons:?}");
    assert!(crons.iter().all(|(due, created)| due % 2_000 == 0 && created >= due), "{crons:?}");
    let task = &api.tasks("queue=crons").await[0];
    assert_eq!((task["priority"].as_i64(), task["payload"].clone()), (Some(3), Value::Null), "the template: {task}");
    let task = &api.tasks("queue=ticks").await[0];
    assert_eq!((task["kind"].as_str(), task["payload"]["n"].as_u64()), (Some("ping"), Some(1)), "{task}");

    let (_, listed) = api.get("/v1/schedules").await;
    let names: Vec<&str> =
        listed["schedules"].as_array().expect("list").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["even-seconds", "tick"]);
    let (_, got) = api.get("/v1/schedules/tick").await;
    assert_eq!(got["fired"].as_u64(), Some(runs(&api, "ticks", "tick").await.len() as u64), "{got}");

    // Paused: nothing more fires; deleted: gone, and its tasks stay.
    let (s, paused) = put(&api, "tick", json!({"every_ms": 1_000, "task": {"queue": "ticks"}, "paused": true})).await;
    assert_eq!((s, paused["next_ms"].is_null()), (200, true), "{paused}");
    assert_eq!(api.req(reqwest::Method::DELETE, "/v1/schedules/even-seconds", None).await.0, 204);
    let (ticks, crons) = (runs(&api, "ticks", "tick").await.len(), runs(&api, "crons", "even-seconds").await.len());
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(runs(&api, "ticks", "tick").await.len(), ticks, "a paused schedule fires nothing");
    assert_eq!(runs(&api, "crons", "even-seconds").await.len(), crons, "a deleted schedule fires nothing");
    assert_eq!(api.get("/v1/schedules/even-seconds").await.0, 404);
    assert_eq!(api.req(reqwest::Method::DELETE, "/v1/schedules/even-seconds", None).await.0, 404);
}

#[tokio::test]
async fn runs_missed_while_down_follow_the_policy_and_none_fires_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let body = |queue: &str, missed: Value| {
        let mut b = json!({"every_ms": 1_000, "task": {"queue": queue}});
        b.as_object_mut().expect("object").extend(missed.as_object().expect("object").clone());
        b
    };
    assert_eq!(put(&api, "catch", body("c", json!({"missed": "catch_up", "catch_up": 2}))).await.0, 200);
    assert_eq!(put(&api, "skip", body("s", json!({}))).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    srv.stop();
    let down = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    srv.restart().await;
    let api = srv.client();
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    for (queue, name, fired_for_downtime) in [("c", "catch", 2), ("s", "skip", 1)] {
        let got = runs(&api, queue, name).await;
        let unique: BTreeSet<u64> = got.iter().map(|(due, _)| *due).collect();
        assert_eq!(unique.len(), got.len(), "no due time fired twice: {got:?}");
        // The first firing after the restart (one apply: one creation time) fires the runs
        // missed while the node was down: the policy's number of them, the latest ones.
        let (_, sc) = api.get(&format!("/v1/schedules/{name}")).await;
        let first_after = got.iter().map(|(_, created)| *created).filter(|c| *c > down).min().expect("fired after");
        let batch: Vec<u64> = got.iter().filter(|(_, c)| *c == first_after).map(|(due, _)| *due).collect();
        assert_eq!(batch.len(), fired_for_downtime, "{name}: {batch:?} of {got:?}; {sc}");
        assert!(batch.iter().all(|due| *due > down && *due <= first_after), "{name}: {batch:?}");
        assert!(batch.last().is_some_and(|d| first_after - d < 1_000), "{name}: the latest due time: {batch:?}");
        assert!(sc["skipped"].as_u64().unwrap_or(0) >= 2, "{name}: older missed runs are skipped: {sc}");
        assert_eq!(sc["fired"].as_u64(), Some(got.len() as u64), "{sc}");
    }
}

#[tokio::test]
async fn bad_schedules_are_refused_and_change_nothing_and_the_cli_manages_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start(dir.path(), &[]).await;
    let api = srv.client();
    let good = json!({"every_ms": 3_600_000, "task": {"queue": "q"}});
    assert_eq!(put(&api, "hourly", good).await.0, 200);
    let task = json!({"queue": "q"});
    for (body, why) in [
        (json!({"cron": "* * * * *", "every_ms": 1_000, "task": task}), "exactly one"),
        (json!({"task": task}), "exactly one"),
        (json!({"cron": "61 * * * *", "task": task}), "not a cron expression"),
        (json!({"cron": "* * * * *", "timezone": "Mars/Olympus", "task": task}), "IANA"),
        (json!({"every_ms": 10, "task": task}), "every_ms"),
        (json!({"every_ms": 1_000, "task": task, "missed": "catch_up", "catch_up": 0}), "catch_up"),
        (json!({"every_ms": 1_000, "task": task, "catch_up": 3}), "catch_up"),
        (json!({"every_ms": 1_000, "task": {"queue": "q", "idempotency_key": "k"}}), "idempotency_key"),
        (json!({"every_ms": 1_000, "task": {"queue": "bad queue"}}), "queue name"),
        (json!({"every_ms": 1_000, "task": task, "jitter": 5}), "jitter"),
        (json!({"every_ms": "1s", "task": task}), "every_ms"),
    ] {
        let (s, v) = put(&api, "hourly", body.clone()).await;
        assert_eq!(s, 400, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(why), "{body}: {msg}");
    }
    let (s, v) = put(&api, "a b", json!({"every_ms": 1_000, "task": task})).await;
    assert_eq!(s, 400, "{v}");
    let (_, v) = api.get("/v1/schedules").await;
    assert_eq!(v["schedules"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["schedules"][0]["every_ms"].as_u64(), Some(3_600_000), "nothing changed: {v}");

    let set = srv.cli_ok(&[
        "schedule",
        "set",
        "nightly",
        "--cron",
        "0 30 2 * * *",
        "--timezone",
        "Europe/Paris",
        "--queue",
        "reports",
        "--payload",
        "{\"full\":true}",
        "--catch-up",
        "3",
    ]);
    assert!(set.contains("cron 0 30 2 * * * (Europe/Paris)") && set.contains("catch up at most 3"), "{set}");
    let listed = srv.cli_ok(&["schedule", "list"]);
    assert!(listed.contains("nightly") && listed.contains("hourly") && listed.contains("every 3600000 ms"), "{listed}");
    let (ok, _, err) = srv.cli(&["schedule", "set", "x", "--every", "5 parsecs", "--queue", "q"]);
    assert!(!ok && err.contains("unit"), "{err}");
    assert!(srv.cli_ok(&["schedule", "delete", "nightly"]).contains("deleted schedule nightly"));
    let (ok, _, err) = srv.cli(&["schedule", "get", "nightly"]);
    assert!(!ok && err.contains("no schedule nightly"), "{err}");
}

/// Three nodes: the leader is killed while an interval schedule runs; the new leader goes on
/// from the replicated state, so every due time on the grid up to now fires exactly once (the
/// election's gap is caught up), none early, and the old leader rejoins with the same runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_neither_loses_nor_repeats_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = common::cluster::Cluster::start(dir.path(), 3, &[]).await;
    let leader = c.leader(30).await;
    let any = c.api((leader + 1) % 3);
    let (s, set) = put(
        &any,
        "beat",
        json!({"every_ms": 1_000, "task": {"queue": "beats"}, "missed": "catch_up", "catch_up": 100}),
    )
    .await;
    assert_eq!(s, 200, "{set}");
    let set_ms = set["set_ms"].as_u64().expect("set_ms");
    common::eventually(30, "three runs before the failover", || async {
        (runs(&any, "beats", "beat").await.len() >= 3).then_some(())
    })
    .await;

    c.nodes[leader].kill9();
    let new_leader = c.leader(30).await;
    assert_ne!(new_leader, leader);
    let survivor = c.api(new_leader);
    let readable = |r: Result<Vec<(u64, u64)>, (u16, Value)>| match r {
        Ok(runs) => Some(runs.len()),
        Err((503, _)) => None,
        Err((s, v)) => panic!("listing runs answered {s}: {v}"),
    };
    let before = common::eventually(30, "a read on the new leader", || async {
        readable(try_runs(&survivor, "beats", "beat").await)
    })
    .await;
    common::eventually(30, "runs fired by the new leader", || async {
        readable(try_runs(&survivor, "beats", "beat").await).filter(|n| *n >= before + 3).map(|_| ())
    })
    .await;
    // Paused (its counts stay) so that the runs and the counts are read at one point.
    let (s, paused) = put(
        &survivor,
        "beat",
        json!({"every_ms": 1_000, "task": {"queue": "beats"}, "missed": "catch_up", "catch_up": 100, "paused": true}),
    )
    .await;
    assert_eq!(s, 200, "{paused}");
    c.nodes[leader].spawn().await;
    c.wait_converged(60).await;

    let (_, sched) = survivor.get("/v1/schedules/beat").await;
    let fired = runs(&survivor, "beats", "beat").await;
    let last = sched["last_run_ms"].as_u64().expect("last run");
    let want: Vec<u64> = (1..).map(|k| set_ms + 1_000 * k).take_while(|t| *t <= last).collect();
    let got: Vec<u64> = fired.iter().map(|(due, _)| *due).collect();
    assert_eq!(got, want, "every due time exactly once, none missing across the failover");
    assert!(fired.iter().all(|(due, created)| created >= due), "never early: {fired:?}");
    assert_eq!(sched["fired"].as_u64(), Some(got.len() as u64), "{sched}");
    assert_eq!(sched["skipped"].as_u64(), Some(0), "{sched}");
    let (_, on_old) = c.api(leader).stale().get("/v1/schedules/beat").await;
    assert_eq!(on_old["fired"].as_u64(), Some(got.len() as u64), "the old leader has the runs: {on_old}");
    assert_eq!(c.api(leader).stale().count("queue=beats").await, got.len(), "and their tasks");
}

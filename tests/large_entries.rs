//! Large entries in a cluster on a slow link: 50 tasks of 1 MiB submitted while every peer
//! connection is limited to 4 MiB/s each way. openraft gives each append one heartbeat interval;
//! without byte-sized appends and staged uploads (raft/src/staging.rs) these entries could never
//! reach a follower and every later write would wait behind them. Here they all commit, small
//! writes keep completing meanwhile, the leader keeps its term, and the replicas converge.

mod common;

use std::time::{Duration, Instant};

use common::cluster::Cluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_entries_replicate_and_small_writes_keep_flowing_on_a_slow_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path(), 3, &[]).await;
    let term = c.node_info(0, false).await.expect("info")["term"].as_u64();
    for p in &c.proxies {
        p.throttle(4 << 20);
    }
    let big = "x".repeat((1 << 20) - 64);
    let started = Instant::now();
    let mut large = Vec::new();
    for w in 0..10 {
        let api = c.api(0);
        let big = big.clone();
        large.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..5 {
                let (s, v) = api
                    .post(
                        "/v1/tasks",
                        json!({"queue": "big", "payload": big, "idempotency_key": format!("big-{w}-{i}")}),
                    )
                    .await;
                assert!(s == 201 || s == 200, "large submit: {s} {v}");
                ids.push(v["id"].as_u64().expect("id"));
            }
            ids
        }));
    }
    // Small writes alongside: every one completes, none waits for ever behind the large ones.
    let small_api = c.api(0);
    let small = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        for i in 0..40 {
            let t = Instant::now();
            let (s, v) = small_api.post("/v1/tasks", json!({"queue": "small", "payload": i})).await;
            assert!(s == 201, "small submit {i}: {s} {v}");
            worst = worst.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        worst
    });
    let mut ids = Vec::new();
    for h in large {
        ids.extend(h.await.expect("large submitter"));
    }
    let worst_small = small.await.expect("small writer");
    let took = started.elapsed();
    assert_eq!(ids.len(), 50);
    eprintln!("50 x 1 MiB committed on 4 MiB/s links in {took:?}; slowest small write {worst_small:?}");
    assert!(worst_small < Duration::from_secs(45), "a small write waited {worst_small:?}");
    assert_eq!(c.node_info(0, false).await.expect("info")["term"].as_u64(), term, "the leader kept its term");
    for p in &c.proxies {
        p.throttle(0);
    }
    c.wait_converged(60).await;
    assert_eq!(c.api(2).stale().count("queue=big").await, 50);
    assert_eq!(c.api(1).stale().count("queue=small").await, 40);
}

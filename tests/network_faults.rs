//! The fault harness (`fault_harness`) with each node in a network namespace of its own: the
//! nemesis drops, delays and loses real packets (nftables and `tc netem` inside the namespaces),
//! so partitions cut established connections mid-stream and one-way and bridge partitions are
//! possible. Skips, saying why, where namespaces cannot be made (not root, no nftables).

mod common;
mod fault_harness;

use std::time::{Duration, Instant};

use common::cluster::{Cluster, Layout};
use common::netns::Link;
use fault_harness::{assert_clean, rounds, run, seed, Nemesis, Setup};
use minion_checker::Kind;
use serde_json::json;

fn in_namespaces<'a>(name: &'a str, kinds: &'a [Nemesis], seed: u64, rounds: usize) -> Option<Setup<'a>> {
    if let Some(why) = common::netns::unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    Some(Setup { name, nodes: 3, kinds, seed, rounds, namespaces: true, stale_reads: false })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_one_way_bridges_and_flapping_links() {
    let kinds = [Nemesis::Partition, Nemesis::OneWay, Nemesis::Bridge, Nemesis::Flap];
    let Some(s) = in_namespaces("partitions", &kinds, seed(101), rounds(4)) else { return };
    assert_clean(&run(s).await);
}

/// Membership changes while a node is cut off (the old leader, most often, replaced through the
/// new one), and rolling restarts of every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_replaced_during_partitions_and_rolling_restarts() {
    let kinds = [Nemesis::ReplaceInPartition, Nemesis::Rolling];
    let Some(s) = in_namespaces("membership", &kinds, seed(505), rounds(3)) else { return };
    assert_clean(&run(s).await);
}

/// Each node on a file system of its own, frozen for up to four seconds at a time (within the
/// five-second `disk_stall_grace_ms`): writes wait for the disk, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_disks() {
    let kinds = [Nemesis::DiskStall];
    let Some(s) = in_namespaces("disk-stall", &kinds, seed(606), rounds(3)) else { return };
    assert_clean(&run(s).await);
}

/// Delay (where the kernel has netem), loss and a slow link. Without netem the delay is left out,
/// saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_lossy_links() {
    let kinds = link_kinds(vec![Nemesis::Loss, Nemesis::Slow]);
    let Some(s) = in_namespaces("links", &kinds, seed(202), rounds(3)) else { return };
    assert_clean(&run(s).await);
}

fn link_kinds(mut kinds: Vec<Nemesis>) -> Vec<Nemesis> {
    if common::netns::unavailable().is_none() {
        if common::netns::netem() {
            kinds.push(Nemesis::Latency);
        } else {
            eprintln!("this kernel has no tc netem: the 200 ms delay nemesis is left out");
        }
    }
    kinds
}

/// Every nemesis, picked at random each round: what `scripts/reliability.sh` runs for the
/// figures in docs/reliability.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_nemesis_mixed() {
    let kinds = link_kinds(vec![
        Nemesis::Kill,
        Nemesis::Pause,
        Nemesis::Partition,
        Nemesis::OneWay,
        Nemesis::Bridge,
        Nemesis::Flap,
        Nemesis::Loss,
        Nemesis::Slow,
        Nemesis::Clock,
        Nemesis::ReplaceInPartition,
        Nemesis::Rolling,
        Nemesis::DiskStall,
    ]);
    let Some(s) = in_namespaces("mixed", &kinds, seed(303), rounds(3)) else { return };
    assert_clean(&run(s).await);
}

/// The checker is not blind on real histories: the same partitions with the reader asking for
/// stale reads (`Minion-Consistency: stale`, answered from the receiving node's own state) must
/// show non-linearizable reads, while everything that does not read stays clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_reads_from_a_cut_off_node_are_caught() {
    let kinds = [Nemesis::Partition];
    let Some(mut s) = in_namespaces("stale-reads", &kinds, seed(404), 3) else { return };
    s.stale_reads = true;
    let r = run(s).await;
    let stale = r.report.of(Kind::NotLinearizable);
    eprintln!("stale reads caught on {stale} task(s)");
    assert!(stale > 0, "stale reads during partitions went unnoticed");
    let other: Vec<_> = r.report.anomalies.iter().filter(|a| a.kind != Kind::NotLinearizable).collect();
    assert!(other.is_empty(), "only reads are stale: {other:?}");
}

/// The nemesis acts on real packets: a leader cut off by nftables rules loses the cluster to the
/// others and acknowledges no write, and a link capped by `tc tbf` (or delayed by netem, where
/// the kernel has it) slows a request's round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_nemesis_cuts_and_slows_real_traffic() {
    if let Some(why) = common::netns::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout { namespaces: true, ..Layout::default() };
    let c = Cluster::start_with(layout, dir.path(), 3, &["--commit-timeout-ms", "2000"]).await;
    let leader = c.leader(30).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    c.partition(&[&[leader], &others]);
    let (s, v) = c.api(leader).post("/v1/tasks", json!({"queue": "q", "payload": 1})).await;
    assert_ne!(s, 201, "a cut-off leader acknowledged a write: {v}");
    let moved = common::eventually(30, "a leader among the others", || async {
        let (_, v) = c.api(others[0]).stale().get("/v1/cluster").await;
        v["leader"].as_u64().filter(|l| *l != leader as u64 + 1)
    })
    .await;
    let (s, v) = c.api(others[1]).post("/v1/tasks", json!({"queue": "q", "payload": 2})).await;
    assert_eq!(s, 201, "the majority (led by node {moved}) takes writes: {v}");
    c.heal();
    c.wait_converged(60).await;

    let net = c.net.as_ref().expect("namespaces");
    let round_trip = || async {
        let t = Instant::now();
        let r = reqwest::get(format!("{}/metrics", c.nodes[others[0]].base)).await.expect("metrics");
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.expect("body");
        assert!(body.len() > 8_000, "a metrics page of {} bytes", body.len());
        t.elapsed()
    };
    if common::netns::netem() {
        net.shape(others[0], Some(Link::Delay { ms: 200, jitter_ms: 0 }));
        let slow = round_trip().await;
        assert!(slow >= Duration::from_millis(200), "200 ms of netem delay, round trip {slow:?}");
    }
    // 64 kbit/s: a 2 KB burst, then 8 KB/s; the metrics page is larger than 8 KB.
    net.shape(others[0], Some(Link::Slow { kbit: 64 }));
    let mut slowest = Duration::ZERO;
    for _ in 0..4 {
        slowest = slowest.max(round_trip().await);
    }
    assert!(slowest >= Duration::from_millis(200), "a 64 kbit/s link, round trips up to {slowest:?}");
    c.heal();
}

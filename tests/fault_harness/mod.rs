//! A fault run: a cluster of real processes, the recorded workload of [`workload`], a nemesis
//! striking round after round, and at the end the checker over the history and the ledger.
//!
//! Each run is seeded (`MINION_FAULT_SEED` overrides a scenario's seed, `MINION_FAULT_ROUNDS`
//! its rounds): the nemesis, victim, timings and workload mix repeat. A run prints one line
//! `FIGURES {json}` (faults per kind, recovery times, operations, anomalies) that
//! `scripts/reliability.sh` tabulates. A run with anomalies keeps its directory, with the
//! history in `history.json`, and fails.

#![allow(dead_code)] // each test binary uses its own part

pub mod workload;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use minion_checker::Outcome;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::common::cluster::{Cluster, Layout};
use crate::common::netns::Link;
use workload::{Workload, PROBE};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Nemesis {
    /// `kill -9` a node, restart it after the hold.
    Kill,
    /// SIGSTOP, SIGCONT after the hold.
    Pause,
    /// Cut a node from the others, both ways.
    Partition,
    /// A node stops hearing the others (they still hear it).
    OneWay,
    /// Two nodes cut from each other, each still reaching the third.
    Bridge,
    /// A node cut and healed every 200–600 ms for the hold.
    Flap,
    /// 200 ms ± 50 ms on every node's outgoing packets, reordered by the jitter (`tc netem`:
    /// kernels with netem only).
    Latency,
    /// 5% of every node's incoming packets dropped.
    Loss,
    /// Every node's outgoing link capped at 1 Mbit/s with a 500 ms queue.
    Slow,
    /// A node's wall clock stepped 5–120 s ahead or back, put right after the hold.
    Clock,
    /// `kill -9` a follower for good and `replace` it with a new node.
    Replace,
    /// Cut a node (the leader 70% of the time) from the others; while it is cut off, once the
    /// others have a leader, `kill -9` it and `replace` it with a new node; then heal.
    ReplaceInPartition,
    /// Restart every member in turn (SIGTERM, start, wait until it serves), the leader last.
    Rolling,
    /// Freeze a node's file system (`fsfreeze`: every write and sync blocks) for the hold, which
    /// stays within `disk_stall_grace_ms`.
    DiskStall,
}

impl Nemesis {
    pub fn needs_namespaces(self) -> bool {
        matches!(
            self,
            Nemesis::OneWay | Nemesis::Bridge | Nemesis::Flap | Nemesis::Latency | Nemesis::Loss | Nemesis::Slow
        )
    }
}

pub fn seed(default: u64) -> u64 {
    std::env::var("MINION_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

pub fn rounds(default: usize) -> usize {
    std::env::var("MINION_FAULT_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

pub struct Setup<'a> {
    pub name: &'a str,
    pub nodes: usize,
    pub kinds: &'a [Nemesis],
    pub seed: u64,
    pub rounds: usize,
    pub namespaces: bool,
    /// Reads with `Minion-Consistency: stale` (the checker must then find anomalies).
    pub stale_reads: bool,
}

/// What a run's assertions need (the figures go to the `FIGURES` line).
pub struct Run {
    pub report: minion_checker::Report,
    pub isolated_acked: Vec<String>,
}

const ARGS: [&str; 6] =
    ["--commit-timeout-ms", "2000", "--snapshot-logs", "300", "--agent-heartbeat-timeout-ms", "60000"];

/// Submit a probe through each member until every one has answered with an acknowledgement:
/// the time from `from` until the whole cluster serves writes again.
async fn recovery(c: &Cluster, w: &Workload, members: &[usize], round: usize, from: Instant) -> Duration {
    let mut n = 0;
    for m in members {
        loop {
            n += 1;
            let key = format!("probe-{round}-{n}");
            if let Outcome::Ok(_) = w.submit(PROBE, &c.nodes[*m].base, "probe", &key).await {
                break;
            }
            assert!(from.elapsed() < Duration::from_secs(45), "node {} took no write within 45 s of healing", m + 1);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    from.elapsed()
}

/// Start a new node, have `via` replace `victim` by it, and point the workload at it.
async fn replace(c: &mut Cluster, w: &Workload, members: &mut Vec<usize>, victim: usize, via: usize) {
    let new = c.nodes.len();
    c.add_process(new, &ARGS, true).await;
    c.nodes[new].wait_up().await;
    let body = json!({"node_id": new + 1, "raft_addr": c.raft_addr(new)});
    let (st, v) = c.api(via).post(&format!("/v1/cluster/members/{}/replace", victim + 1), body).await;
    assert_eq!(st, 200, "replacing node {} by node {} through node {}: {v}", victim + 1, new + 1, via + 1);
    eprintln!("node {} replaced by node {}", victim + 1, new + 1);
    members.retain(|m| *m != victim);
    members.push(new);
    let mut bases = w.bases.lock().expect("lock");
    bases.retain(|b| *b != c.nodes[victim].base);
    bases.push(c.nodes[new].base.clone());
}

/// The leader among `among`, as one of them reports it once it has a quorum's acknowledgement.
async fn common_leader(c: &Cluster, among: &[usize]) -> usize {
    crate::common::eventually(30, "a leader among the connected nodes", || async {
        for i in among {
            if let Some(v) = c.node_info(*i, false).await {
                let acked = v["millis_since_quorum_ack"].as_u64().is_some_and(|ms| ms < 1_000);
                if v["state"] == "leader" && acked {
                    return Some(*i);
                }
            }
        }
        None
    })
    .await
}

pub async fn run(s: Setup<'_>) -> Run {
    let seed = s.seed;
    eprintln!(
        "{}: {:?} on {} node(s), {} rounds, seed {seed} (MINION_FAULT_SEED={seed} repeats it)",
        s.name, s.kinds, s.nodes, s.rounds
    );
    for k in s.kinds {
        assert!(s.namespaces || !k.needs_namespaces(), "{k:?} needs the nodes in network namespaces");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout {
        namespaces: s.namespaces,
        faketime: s.kinds.contains(&Nemesis::Clock),
        disks: s.kinds.contains(&Nemesis::DiskStall),
    };
    let mut c = Cluster::start_with(layout, dir.path(), s.nodes, &ARGS).await;
    let mut members: Vec<usize> = (0..s.nodes).collect();
    let mut w = Workload::new(c.nodes.iter().map(|n| n.base.clone()).collect());
    w.stale_reads = s.stale_reads;
    let workers = w.start(seed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let mut recovery_ms: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut leader_faults = 0;
    let mut isolated_acked = Vec::new();
    for round in 0..s.rounds {
        let kind = s.kinds[rng.gen_range(0..s.kinds.len())];
        let leader = c.leader(30).await;
        let followers: Vec<usize> = members.iter().copied().filter(|m| *m != leader).collect();
        let victim =
            if followers.is_empty() || (rng.gen_bool(0.7) && kind != Nemesis::Replace && kind != Nemesis::Rolling) {
                leader
            } else {
                followers[rng.gen_range(0..followers.len())]
            };
        leader_faults += usize::from(victim == leader);
        let hold = Duration::from_millis(rng.gen_range(1_500..4_000));
        let others: Vec<usize> = members.iter().copied().filter(|m| *m != victim).collect();
        eprintln!("round {round}: {kind:?} node {} (leader: node {}) for {hold:?}", victim + 1, leader + 1);
        let struck = Instant::now();
        let healed = match kind {
            Nemesis::Kill => {
                c.nodes[victim].kill9();
                tokio::time::sleep(hold).await;
                c.nodes[victim].launch();
                Instant::now()
            }
            Nemesis::Pause => {
                c.nodes[victim].signal("STOP");
                tokio::time::sleep(hold).await;
                c.nodes[victim].signal("CONT");
                Instant::now()
            }
            Nemesis::Partition | Nemesis::OneWay | Nemesis::Bridge => {
                match kind {
                    Nemesis::Partition => c.partition(&[&[victim], &others]),
                    Nemesis::OneWay => c.net.as_ref().expect("namespaces").deafen(victim, &others),
                    _ => {
                        // The victim and one other cannot reach each other; the third reaches both.
                        if let [a, ..] = others[..] {
                            let net = c.net.as_ref().expect("namespaces");
                            net.deafen(victim, &[a]);
                            net.deafen(a, &[victim]);
                        }
                    }
                }
                // A write sent straight to a leader cut off from every peer is never acknowledged.
                if victim == leader && kind == Nemesis::Partition && s.nodes > 1 {
                    let key = format!("isolated-{round}");
                    if let Outcome::Ok(_) = w.submit(PROBE, &c.nodes[victim].base, "w", &key).await {
                        isolated_acked.push(key);
                    }
                }
                tokio::time::sleep(hold.saturating_sub(struck.elapsed())).await;
                c.heal();
                Instant::now()
            }
            Nemesis::Flap => {
                while struck.elapsed() < hold {
                    c.partition(&[&[victim], &others]);
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(200..600))).await;
                    c.heal();
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(200..600))).await;
                }
                Instant::now()
            }
            Nemesis::Latency | Nemesis::Loss | Nemesis::Slow => {
                let link = match kind {
                    Nemesis::Latency => Link::Delay { ms: 200, jitter_ms: 50 },
                    Nemesis::Slow => Link::Slow { kbit: 1_000 },
                    _ => Link::Loss { percent: 5 },
                };
                let net = c.net.as_ref().expect("namespaces");
                for m in &members {
                    net.shape(*m, Some(link));
                }
                tokio::time::sleep(hold).await;
                c.heal();
                Instant::now()
            }
            Nemesis::Clock => {
                let by = rng.gen_range(5..120);
                let offset = if rng.gen_bool(0.5) { format!("+{by}s") } else { format!("-{by}s") };
                eprintln!("round {round}: node {} clock {offset}", victim + 1);
                c.step_clock(victim, &offset);
                tokio::time::sleep(hold).await;
                c.step_clock(victim, "+0");
                Instant::now()
            }
            Nemesis::Replace => {
                c.nodes[victim].kill9();
                replace(&mut c, &w, &mut members, victim, leader).await;
                Instant::now()
            }
            Nemesis::ReplaceInPartition => {
                c.partition(&[&[victim], &others]);
                // The others' leader (a cut-off leader is not counted: no quorum acknowledges it).
                let acting = common_leader(&c, &others).await;
                c.nodes[victim].kill9();
                replace(&mut c, &w, &mut members, victim, acting).await;
                c.heal();
                Instant::now()
            }
            Nemesis::Rolling => {
                let mut order: Vec<usize> = members.iter().copied().filter(|m| *m != leader).collect();
                order.push(leader);
                for m in order {
                    c.nodes[m].restart().await;
                }
                Instant::now()
            }
            Nemesis::DiskStall => {
                let frozen = c.disks[victim].as_ref().expect("the node's own disk").freeze();
                tokio::time::sleep(hold).await;
                drop(frozen);
                Instant::now()
            }
        };
        let took = recovery(&c, &w, &members, round, healed).await;
        eprintln!("round {round}: every member took a write {took:?} after the fault ended");
        let name = format!("{kind:?}").to_lowercase();
        *faults.entry(name.clone()).or_default() += 1;
        recovery_ms.entry(name).or_default().push(took.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..1_500))).await;
    }
    w.stop(workers).await;
    c.heal();
    let leader = c.leader(30).await;
    let (index, _) = c.wait_converged(60).await;
    let tasks = c.api(leader).tasks("").await;
    let history = w.rec.ops();
    let ledger = workload::ledger_of(&tasks);
    let report = minion_checker::check(&history, &ledger);
    let figures = json!({
        "scenario": s.name, "seed": seed, "nodes": s.nodes, "namespaces": s.namespaces,
        "faults": faults, "recovery_ms": recovery_ms, "leader_faults": leader_faults,
        "ops": report.ops, "acknowledged": report.acknowledged, "unknown": report.unknown,
        "tasks": tasks.len(), "anomalies": report.anomalies.len(), "undecided": report.undecided.len(),
    });
    eprintln!("FIGURES {figures}");
    eprintln!("{}: replicas equal at index {index}", s.name);
    if !report.valid() && !s.stale_reads {
        let kept = dir.keep();
        let file = kept.join("history.json");
        let body = json!({"history": history, "ledger": ledger, "report": report});
        std::fs::write(&file, serde_json::to_vec_pretty(&body).expect("json")).expect("history");
        panic!(
            "{} anomalies (seed {seed}), history in {}:\n{}",
            report.anomalies.len(),
            file.display(),
            report.describe()
        );
    }
    Run { report, isolated_acked }
}

/// The assertions every fault run makes.
pub fn assert_clean(r: &Run) {
    assert!(r.report.acknowledged > 100, "the workload made progress through the faults");
    assert!(r.isolated_acked.is_empty(), "a cut-off leader acknowledged writes {:?}", r.isolated_acked);
    assert!(r.report.valid(), "{}", r.report.describe());
}

//! Criterion micro-benchmarks of the engine's apply path (with its records in memory: the effects
//! are applied to an in-memory store, no disk) and the dedup check.
//!
//! Run: `cargo bench --bench engine`. Figures and methodology: docs/benchmarks.md.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use minion_engine::dedup::Dedup;
use minion_engine::{
    ApplyMeta, Candidate, Command, DedupKey, Dispatcher, FlowExt, LimitRule, Memory, NewTask, Outcome, OutcomeStats,
    Request, Strategy, TaskFlow,
};

fn task(i: u64, key: bool) -> NewTask {
    NewTask {
        queue: "bench".into(),
        kind: "k".into(),
        payload: format!("{{\"i\":{i},\"data\":\"{}\"}}", "x".repeat(80)),
        idempotency_key: key.then(|| format!("key-{i}")),
        ..NewTask::default()
    }
}

fn apply(state: &mut Memory, now: u64, cmd: Command) -> Outcome {
    state.apply(&Request { now_ms: now, cmd }, ApplyMeta { log_index: 0 }).expect("apply")
}

/// A state holding `n` ready tasks.
fn seeded(n: u64) -> Memory {
    let mut s = Memory::default();
    let tasks: Vec<NewTask> = (0..n).map(|i| task(i, true)).collect();
    for chunk in tasks.chunks(10_000) {
        apply(&mut s, 1, Command::Submit { tasks: chunk.to_vec() });
    }
    s
}

fn bench_apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(1));
    g.bench_function("submit_one_with_key", |b| {
        let mut s = seeded(10_000);
        let mut i = 1_000_000u64;
        b.iter(|| {
            i += 1;
            black_box(apply(&mut s, 2, Command::Submit { tasks: vec![task(i, true)] }));
        })
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("submit_batch_100", |b| {
        let mut s = seeded(10_000);
        let mut i = 1_000_000u64;
        b.iter_batched(
            || {
                i += 100;
                (i..i + 100).map(|j| task(j, true)).collect::<Vec<_>>()
            },
            |tasks| {
                black_box(apply(&mut s, 2, Command::Submit { tasks }));
            },
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("claim_complete_one", |b| {
        b.iter_custom(|iters| {
            // Untimed: a state with exactly `iters` ready tasks (plus a backlog of 10k).
            let mut s = seeded(iters + 10_000);
            let started = std::time::Instant::now();
            for _ in 0..iters {
                let Outcome::Claimed(ts) = apply(
                    &mut s,
                    3,
                    Command::Claim { agent_id: "a".into(), queues: vec!["bench".into()], capabilities: vec![], max: 1 },
                ) else {
                    panic!("claim")
                };
                let t = &ts[0];
                let token = t.lease.as_ref().map(|l| l.token).unwrap_or(0);
                black_box(apply(&mut s, 3, Command::Complete { task_id: t.id, lease_token: token, result: None }));
            }
            started.elapsed()
        })
    });
    g.finish();
}

/// Submit `n` ready tasks spread round robin over `keys` concurrency keys.
fn submit_keyed(s: &mut Memory, n: u64, keys: u64) {
    let tasks: Vec<NewTask> = (0..n).map(|i| task(i, false)).collect();
    for (c, chunk) in tasks.chunks(10_000).enumerate() {
        let flows = (0..chunk.len())
            .map(|i| TaskFlow {
                ext: vec![FlowExt::ConcurrencyKey(format!("key-{}", (c * 10_000 + i) as u64 % keys))],
                ..TaskFlow::default()
            })
            .collect();
        apply(s, 1, Command::SubmitWith { tasks: chunk.to_vec(), flows, trace_parent: None });
    }
}

/// A state with `keys` concurrency keys at their limit (limit 1: one task of each leased, one
/// ready and held back) and `free` ready tasks without a key.
fn keys_at_limit(keys: u64, free: u64) -> Memory {
    let mut s = Memory::default();
    apply(&mut s, 1, Command::SetLimits { queue: "bench".into(), rules: vec![LimitRule::KeyConcurrency(1)] });
    submit_keyed(&mut s, 2 * keys, keys);
    let claim =
        |max| Command::Claim { agent_id: "held".into(), queues: vec!["bench".into()], capabilities: vec![], max };
    let mut leased = 0;
    while leased < keys {
        let Outcome::Claimed(ts) = apply(&mut s, 1, claim(1_000)) else { panic!("claim") };
        assert!(!ts.is_empty(), "every key gets one lease");
        leased += ts.len() as u64;
    }
    let Outcome::Claimed(ts) = apply(&mut s, 1, claim(1)) else { panic!("claim") };
    assert!(ts.is_empty(), "every key is at its limit");
    let tasks: Vec<NewTask> = (0..free).map(|i| task(i, false)).collect();
    for chunk in tasks.chunks(10_000) {
        apply(&mut s, 2, Command::Submit { tasks: chunk.to_vec() });
    }
    s
}

/// Claim and complete one task without a key, `iters` times, in `s`.
fn claim_complete(s: &mut Memory, iters: u64) -> std::time::Duration {
    let started = std::time::Instant::now();
    for _ in 0..iters {
        let Outcome::Claimed(ts) = apply(
            s,
            3,
            Command::Claim { agent_id: "a".into(), queues: vec!["bench".into()], capabilities: vec![], max: 1 },
        ) else {
            panic!("claim")
        };
        let t = &ts[0];
        let token = t.lease.as_ref().map(|l| l.token).unwrap_or(0);
        black_box(apply(s, 3, Command::Complete { task_id: t.id, lease_token: token, result: None }));
    }
    started.elapsed()
}

fn bench_keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("keys");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    for keys in [0u64, 10_000] {
        g.bench_function(format!("claim_complete_one_with_{keys}_keys_at_limit"), |b| {
            // Untimed: the keys at their limit, and `iters` ready tasks without a key.
            b.iter_custom(|iters| claim_complete(&mut keys_at_limit(keys, iters), iters))
        });
    }
    g.finish();
}

/// A state with `n` ready tasks spread round robin over `keys` concurrency keys (no limits), in
/// a fair queue or not.
fn keyed_ready(keys: u64, n: u64, fair: bool) -> Memory {
    let mut s = Memory::default();
    if fair {
        apply(&mut s, 1, Command::SetLimits { queue: "bench".into(), rules: vec![LimitRule::Fair] });
    }
    submit_keyed(&mut s, n, keys);
    s
}

fn bench_fair(c: &mut Criterion) {
    let mut g = c.benchmark_group("fair");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    for (keys, fair) in [(10_000u64, false), (1, true), (10_000, true)] {
        let name = format!("claim_complete_one_{}_{keys}_keys", if fair { "fair" } else { "oldest_first" });
        g.bench_function(name, |b| {
            // Untimed: `iters` ready tasks (plus 10k) over the keys.
            b.iter_custom(|iters| claim_complete(&mut keyed_ready(keys, iters + 10_000, fair), iters))
        });
    }
    g.finish();
}

fn bench_dedup(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedup");
    // A resubmitted key: the bloom filter says "maybe", the exact record answers.
    let mut s = seeded(100_000);
    g.bench_function("submit_duplicate_key_100k_keys", |b| {
        b.iter(|| black_box(apply(&mut s, 2, Command::Submit { tasks: vec![task(500, true)] })))
    });
    // A fresh key against the bloom filter alone.
    let mut d = minion_engine::dedup::Dedup::default();
    let mut bloom = Dedup::new_bloom(100_000);
    for i in 0..100_000u64 {
        Dedup::bloom_add(&mut bloom, &DedupKey { queue: "bench".into(), key: format!("key-{i}") });
    }
    d.begin_rebuild();
    d.finish_rebuild(bloom);
    let fresh: Vec<DedupKey> =
        (0..10_000u64).map(|i| DedupKey { queue: "bench".into(), key: format!("fresh-{i}") }).collect();
    let mut i = 0usize;
    g.bench_function("bloom_miss_100k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % fresh.len();
            black_box(d.may_contain(&fresh[i]))
        })
    });
    g.finish();
}

fn bench_dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch_select");
    for n in [10usize, 100, 1_000] {
        let ids: Vec<String> = (0..n).map(|i| format!("agent-{i:05}")).collect();
        let stats: Vec<OutcomeStats> = (0..n)
            .map(|i| OutcomeStats {
                completed: 100 + i as u64,
                failed: (i % 7) as u64,
                latency_ewma_ms: 10 + (i % 50) as u64,
            })
            .collect();
        let cands: Vec<Candidate<'_>> = ids
            .iter()
            .zip(&stats)
            .enumerate()
            .map(|(i, (id, s))| Candidate {
                agent_id: id,
                in_flight: (i % 4) as u32,
                capacity: 4,
                overall: s,
                by_capability: None,
            })
            .collect();
        for strategy in Strategy::ALL {
            let mut d = Dispatcher::new(7);
            g.bench_function(format!("{}/{n}", strategy.as_str()), |b| {
                b.iter(|| black_box(d.pick("q", strategy, &[], black_box(&cands))))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_apply, bench_keys, bench_fair, bench_dedup, bench_dispatch);
criterion_main!(benches);

//! Deterministic simulations of the six dispatch strategies with heterogeneous agents, run through
//! the real engine (register, claim, complete, fail) with a virtual clock.

use std::collections::BTreeMap;

use minion_engine::dispatch::wrr_weight;
use minion_engine::{
    AgentSpec, ApplyMeta, Candidate, Command, Dispatcher, EngineConfig, Memory, NewTask, Outcome, OutcomeStats,
    Request, Strategy,
};

struct SimAgent {
    id: String,
    /// How long it takes to finish a task.
    work_ms: u64,
    /// Out of 1000 attempts, how many succeed.
    success_per_mille: u64,
    capacity: u32,
}

struct Running {
    task: u64,
    token: u64,
    agent: usize,
    done_at: u64,
}

fn apply(state: &mut Memory, now: u64, cmd: Command) -> Outcome {
    state.apply(&Request { now_ms: now, cmd }, ApplyMeta { log_index: 0 }).expect("apply")
}

/// Run `tasks` tasks through agents under `strategy`: one task arrives every `every_steps` steps of
/// 5 ms, and every ready task goes to an agent with a free slot chosen by the strategy. Returns
/// tasks completed per agent.
fn simulate(strategy: Strategy, agents: &[SimAgent], tasks: usize, every_steps: u64) -> Vec<u64> {
    simulate_spread(strategy, agents, tasks, every_steps).0
}

/// As [`simulate`], also returning the largest in-flight spread (max − min) seen after a dispatch.
fn simulate_spread(strategy: Strategy, agents: &[SimAgent], tasks: usize, every_steps: u64) -> (Vec<u64>, u32) {
    let mut spread_max = 0u32;
    let config = EngineConfig { retry_base_ms: 10, retry_max_ms: 100, ..EngineConfig::default() };
    let mut state = Memory::new(config);
    let mut step = 0u64;
    let mut now = 1_000_000u64;
    for a in agents {
        apply(
            &mut state,
            now,
            Command::RegisterAgent {
                spec: AgentSpec {
                    id: a.id.clone(),
                    name: a.id.clone(),
                    capabilities: vec![],
                    max_concurrency: a.capacity,
                    ..AgentSpec::default()
                },
            },
        );
    }
    let mut dispatcher = Dispatcher::new(42);
    let mut running: Vec<Running> = Vec::new();
    let mut submitted = 0;
    let mut completed = vec![0u64; agents.len()];
    let mut rng = 7u64;
    while completed.iter().sum::<u64>() < tasks as u64 || !running.is_empty() {
        now += 5;
        step += 1;
        // Finish what is due.
        running.sort_by_key(|r| r.done_at);
        while running.first().is_some_and(|r| r.done_at <= now) {
            let r = running.remove(0);
            rng = minion_engine::backoff::mix64(rng);
            let ok = rng % 1000 < agents[r.agent].success_per_mille;
            let cmd = if ok {
                Command::Complete { task_id: r.task, lease_token: r.token, result: None }
            } else {
                Command::Fail { task_id: r.task, lease_token: r.token, error: "simulated".into() }
            };
            apply(&mut state, now, cmd);
            if ok {
                completed[r.agent] += 1;
            }
        }
        // New arrivals.
        let n = if step % every_steps == 0 { 1.min(tasks.saturating_sub(submitted)) } else { 0 };
        if n > 0 {
            let batch = (0..n)
                .map(|_| NewTask {
                    queue: "q".into(),
                    payload: "null".into(),
                    max_attempts: Some(1_000),
                    ..NewTask::default()
                })
                .collect();
            apply(&mut state, now, Command::Submit { tasks: batch });
            submitted += n;
        }
        // Housekeeping at the new time (retry timers become ready).
        apply(&mut state, now, Command::Tick);
        // Dispatch every ready task to an agent with a free slot, chosen by the strategy.
        loop {
            if state.queue_stats("q").ready == 0 {
                break;
            }
            let eligible: Vec<usize> =
                (0..agents.len()).filter(|&i| state.agent(&agents[i].id).is_some_and(|a| a.free_slots() > 0)).collect();
            if eligible.is_empty() {
                break;
            }
            let candidates: Vec<Candidate<'_>> = eligible
                .iter()
                .map(|&i| {
                    let a = state.agent(&agents[i].id).expect("agent");
                    Candidate {
                        agent_id: &a.id,
                        in_flight: a.stats.in_flight,
                        capacity: a.max_concurrency,
                        overall: &a.stats.overall,
                        by_capability: Some(&a.stats.by_capability),
                    }
                })
                .collect();
            let pick = dispatcher.pick("q", strategy, &[], &candidates).expect("a pick");
            let i = eligible[pick];
            let Outcome::Claimed(got) = apply(
                &mut state,
                now,
                Command::Claim {
                    agent_id: agents[i].id.clone(),
                    queues: vec!["q".into()],
                    capabilities: vec![],
                    max: 1,
                },
            ) else {
                panic!("claim")
            };
            for t in got {
                let token = t.lease.as_ref().map(|l| l.token).expect("lease");
                running.push(Running { task: t.id, token, agent: i, done_at: now + agents[i].work_ms });
            }
            let flights: Vec<u32> =
                agents.iter().filter_map(|a| state.agent(&a.id)).map(|a| a.stats.in_flight).collect();
            let spread = flights.iter().max().copied().unwrap_or(0) - flights.iter().min().copied().unwrap_or(0);
            spread_max = spread_max.max(spread);
        }
        if (now / 5) % 200 == 0 {
            state.validate().expect("invariants");
        }
        assert!(now < 1_000_000 + 100_000_000, "simulation did not finish");
    }
    (completed, spread_max)
}

fn agent(id: &str, work_ms: u64, success_per_mille: u64, capacity: u32) -> SimAgent {
    SimAgent { id: id.into(), work_ms, success_per_mille, capacity }
}

fn stats(completed: u64, failed: u64, latency: u64) -> OutcomeStats {
    OutcomeStats { completed, failed, latency_ewma_ms: latency }
}

fn cands<'a>(ids: &'a [String], stats: &'a [OutcomeStats], in_flight: &[u32]) -> Vec<Candidate<'a>> {
    ids.iter()
        .zip(stats)
        .zip(in_flight)
        .map(|((id, s), f)| Candidate { agent_id: id, in_flight: *f, capacity: 4, overall: s, by_capability: None })
        .collect()
}

#[test]
fn round_robin_rotates_exactly() {
    let ids: Vec<String> = ["c", "a", "b"].iter().map(|s| s.to_string()).collect();
    let st = vec![OutcomeStats::default(); 3];
    let mut d = Dispatcher::new(1);
    let picks: Vec<&str> = (0..9)
        .map(|_| ids[d.pick("q", Strategy::RoundRobin, &[], &cands(&ids, &st, &[0, 0, 0])).expect("pick")].as_str())
        .collect();
    assert_eq!(picks, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
    // An agent that is not waiting is skipped, and the rotation continues after the last pick.
    let two: Vec<String> = vec!["a".into(), "c".into()];
    let p = d.pick("q", Strategy::RoundRobin, &[], &cands(&two, &st[..2], &[0, 0])).expect("pick");
    assert_eq!(two[p], "a", "after c comes a");
    let p = d.pick("q", Strategy::RoundRobin, &[], &cands(&two, &st[..2], &[0, 0])).expect("pick");
    assert_eq!(two[p], "c", "b is not waiting, so c follows a");
}

#[test]
fn least_loaded_keeps_equal_agents_within_one() {
    let ids: Vec<String> = (0..5).map(|i| format!("agent{i}")).collect();
    let st = vec![OutcomeStats::default(); 5];
    let mut in_flight = [0u32; 5];
    let mut d = Dispatcher::new(1);
    // Assignments only: after every pick the spread is at most one.
    for step in 0..100 {
        let all = cands(&ids, &st, &in_flight);
        let eligible: Vec<Candidate<'_>> = all.into_iter().filter(|c| c.in_flight < 100).collect();
        let p = d.pick("q", Strategy::LeastLoaded, &[], &eligible).expect("pick");
        let i = ids.iter().position(|id| id == eligible[p].agent_id).expect("id");
        in_flight[i] += 1;
        let (min, max) = (in_flight.iter().min().copied().unwrap_or(0), in_flight.iter().max().copied().unwrap_or(0));
        assert!(max - min <= 1, "step {step}: in-flight spread {in_flight:?}");
    }
    // A loaded agent is avoided until the others catch up.
    in_flight = [0, 3, 3, 3, 3];
    for _ in 0..3 {
        let p = d.pick("q", Strategy::LeastLoaded, &[], &cands(&ids, &st, &in_flight)).expect("pick");
        assert_eq!(p, 0);
        in_flight[0] += 1;
    }
    // Through the engine: equal agents never differ by more than one task in flight, and share
    // the work evenly (ties rotate instead of favouring one agent).
    let agents: Vec<SimAgent> = (0..4).map(|i| agent(&format!("a{i}"), 50, 1000, 3)).collect();
    let (done, spread) = simulate_spread(Strategy::LeastLoaded, &agents, 2_000, 1);
    assert!(spread <= 1, "in-flight spread {spread}");
    let (min, max) = (done.iter().min().copied().unwrap_or(0), done.iter().max().copied().unwrap_or(0));
    assert!(max - min <= 20, "least loaded split {done:?}");
}

#[test]
fn random_stays_within_statistical_bounds() {
    let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let st = vec![OutcomeStats::default(); 3];
    let mut d = Dispatcher::new(12345);
    let mut counts = [0u64; 3];
    let n = 30_000u64;
    for _ in 0..n {
        counts[d.pick("q", Strategy::Random, &[], &cands(&ids, &st, &[0, 0, 0])).expect("pick")] += 1;
    }
    // Binomial(n, 1/3): σ ≈ 81.6; allow 5σ.
    for c in counts {
        assert!((c as i64 - 10_000).abs() < 410, "random split {counts:?}");
    }
    // And not a rotation in disguise: some agent gets picked twice in a row.
    let mut prev = usize::MAX;
    let mut repeats = 0;
    for _ in 0..300 {
        let p = d.pick("q", Strategy::Random, &[], &cands(&ids, &st, &[0, 0, 0])).expect("pick");
        if p == prev {
            repeats += 1;
        }
        prev = p;
    }
    assert!(repeats > 50, "only {repeats} repeats in 300 random picks");
}

#[test]
fn latency_based_sends_more_work_to_faster_agents() {
    let agents = [agent("fast", 20, 1000, 1), agent("medium", 60, 1000, 1), agent("slow", 200, 1000, 1)];
    let done = simulate(Strategy::LatencyBased, &agents, 1_500, 5);
    let rr = simulate(Strategy::RoundRobin, &agents, 1_500, 5);
    assert!(done[0] > done[2] * 3, "latency based split {done:?}");
    assert!(done[0] > rr[0], "latency based gives the fast agent more than round robin does: {done:?} vs {rr:?}");
}

#[test]
fn capability_best_sends_more_work_to_more_successful_agents() {
    let agents = [agent("reliable", 50, 990, 1), agent("flaky", 50, 500, 1), agent("broken", 50, 100, 1)];
    let done = simulate(Strategy::CapabilityBest, &agents, 1_000, 8);
    let rr = simulate(Strategy::RoundRobin, &agents, 1_000, 8);
    assert!(done[0] > done[1] && done[1] > done[2], "capability best split {done:?}");
    assert!(done[0] > rr[0], "capability best favours the reliable agent more than round robin: {done:?} vs {rr:?}");

    // Per-capability: the agent that is good at `gpu` wins gpu tasks even if it is worse overall.
    let ids: Vec<String> = vec!["generalist".into(), "gpu-expert".into()];
    let overall = [stats(100, 0, 10), stats(10, 30, 10)];
    let mut caps_a = BTreeMap::new();
    caps_a.insert("gpu".to_string(), stats(2, 8, 10));
    let mut caps_b = BTreeMap::new();
    caps_b.insert("gpu".to_string(), stats(10, 0, 10));
    let c = vec![
        Candidate { agent_id: &ids[0], in_flight: 0, capacity: 1, overall: &overall[0], by_capability: Some(&caps_a) },
        Candidate { agent_id: &ids[1], in_flight: 0, capacity: 1, overall: &overall[1], by_capability: Some(&caps_b) },
    ];
    let mut d = Dispatcher::new(1);
    assert_eq!(d.pick("q", Strategy::CapabilityBest, &["gpu".into()], &c), Some(1));
}

#[test]
fn weighted_round_robin_follows_its_weights() {
    let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    // Same success rate, different speeds: weights from throughput.
    let st = vec![stats(1000, 0, 10), stats(1000, 0, 20), stats(1000, 0, 50)];
    let w: Vec<i64> = st.iter().map(wrr_weight).collect();
    assert!(w[0] > w[1] && w[1] > w[2], "weights {w:?}");
    let total: i64 = w.iter().sum();
    let mut d = Dispatcher::new(1);
    let mut counts = [0i64; 3];
    let rounds = 20;
    for _ in 0..(total * rounds) {
        counts[d.pick("q", Strategy::WeightedRoundRobin, &[], &cands(&ids, &st, &[0, 0, 0])).expect("pick")] += 1;
    }
    for i in 0..3 {
        assert_eq!(
            counts[i],
            w[i] * rounds,
            "smooth WRR gives each agent exactly its weight per cycle: {counts:?} for {w:?}"
        );
    }
    // Smooth: the heaviest agent is never picked many times in a row.
    let mut run = 0;
    let mut longest = 0;
    for _ in 0..total {
        if d.pick("q", Strategy::WeightedRoundRobin, &[], &cands(&ids, &st, &[0, 0, 0])) == Some(0) {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    assert!(longest <= (w[0] / (w[1] + w[2]) + 2) as usize, "runs of {longest} picks of the heaviest agent");

    // Through the engine, weights learnt from observed throughput favour the fast agent.
    let agents = [agent("fast", 20, 1000, 1), agent("slow", 100, 1000, 1)];
    let done = simulate(Strategy::WeightedRoundRobin, &agents, 1_000, 3);
    assert!(done[0] > done[1] * 2, "weighted round robin split {done:?}");
}

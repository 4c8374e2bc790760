//! No false alarms: histories of a correct (sequential, atomic) task engine, with operations
//! overlapping in time and some answers lost, must pass every check.

use std::collections::BTreeMap;

use minion_checker::{check, Call, FinalTask, Granted, Op, Outcome, Ret, View};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MAX_ATTEMPTS: u32 = 3;

#[derive(Clone)]
struct T {
    key: String,
    state: &'static str,
    attempts: Vec<(u32, u64, String)>,
    token: Option<u64>,
}

/// The reference engine: one task map, one token counter, operations applied one at a time.
#[derive(Default)]
struct Engine {
    tasks: BTreeMap<u64, T>,
    keys: BTreeMap<String, u64>,
    next_token: u64,
}

impl Engine {
    fn end_attempt(t: &mut T) {
        t.token = None;
        t.state = if t.attempts.len() as u32 >= MAX_ATTEMPTS { "dead" } else { "failed" };
    }

    fn apply(&mut self, call: &Call) -> Outcome {
        match call {
            Call::Submit { key, .. } => {
                let next = self.tasks.len() as u64 + 1;
                let id = *self.keys.entry(key.clone()).or_insert(next);
                self.tasks.entry(id).or_insert(T { key: key.clone(), state: "ready", attempts: vec![], token: None });
                Outcome::Ok(Ret::Task(id))
            }
            Call::Claim { agent } => {
                let mut leases = Vec::new();
                if let Some((id, t)) = self.tasks.iter_mut().find(|(_, t)| matches!(t.state, "ready" | "failed")) {
                    self.next_token += 1;
                    let n = t.attempts.len() as u32 + 1;
                    t.attempts.push((n, self.next_token, agent.clone()));
                    t.state = "leased";
                    t.token = Some(self.next_token);
                    leases.push(Granted { task: *id, token: self.next_token, attempt: n });
                }
                Outcome::Ok(Ret::Leases(leases))
            }
            Call::Complete { task, token } | Call::Fail { task, token } | Call::Progress { task, token } => {
                let Some(t) = self.tasks.get_mut(task).filter(|t| t.token == Some(*token)) else {
                    return Outcome::Failed("stale_lease".into());
                };
                match call {
                    Call::Complete { .. } => {
                        t.state = "succeeded";
                        t.token = None;
                    }
                    Call::Fail { .. } => Self::end_attempt(t),
                    _ => {}
                }
                Outcome::Ok(Ret::Done)
            }
            Call::Read { task } => Outcome::Ok(Ret::View(self.tasks.get(task).map(|t| View {
                state: t.state.into(),
                attempts: t.attempts.len() as u32,
                token: t.token,
            }))),
        }
    }
}

fn run(seed: u64, steps: usize) -> (Vec<Op>, Vec<FinalTask>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut e = Engine::default();
    let mut tokens: Vec<(u64, u64)> = Vec::new();
    let mut history = Vec::new();
    for i in 0..steps {
        let at = 1_000 + i as u64 * 100;
        let call = match rng.gen_range(0..10) {
            0 | 1 => Call::Submit { key: format!("k{}", rng.gen_range(0..4)), max_attempts: MAX_ATTEMPTS },
            2 | 3 => Call::Claim { agent: ["a", "b", "c"][rng.gen_range(0..3)].into() },
            4..=6 if !tokens.is_empty() => {
                let (task, token) = tokens[rng.gen_range(0..tokens.len())];
                match rng.gen_range(0..3) {
                    0 => Call::Complete { task, token },
                    1 => Call::Fail { task, token },
                    _ => Call::Progress { task, token },
                }
            }
            7 => {
                // A lease expires: nobody sees it happen.
                let leased: Vec<u64> = e.tasks.iter().filter(|(_, t)| t.state == "leased").map(|(i, _)| *i).collect();
                if let Some(id) = leased.first() {
                    let t = e.tasks.get_mut(id).expect("task");
                    Engine::end_attempt(t);
                }
                continue;
            }
            _ => Call::Read { task: rng.gen_range(1..6) },
        };
        let lost = rng.gen_bool(0.15);
        let invoked = at - rng.gen_range(0..150);
        if lost && rng.gen_bool(0.5) {
            // Never reached the engine.
            if !matches!(call, Call::Read { .. }) {
                history.push(Op { process: 0, call, invoked, completed: None, outcome: Outcome::Unknown });
            }
            continue;
        }
        let outcome = e.apply(&call);
        if let Outcome::Ok(Ret::Leases(ls)) = &outcome {
            tokens.extend(ls.iter().map(|g| (g.task, g.token)));
        }
        if lost {
            if !matches!(call, Call::Read { .. }) {
                history.push(Op { process: 0, call, invoked, completed: None, outcome: Outcome::Unknown });
            }
        } else {
            let completed = Some(at + rng.gen_range(0..150));
            history.push(Op { process: 0, call, invoked, completed, outcome });
        }
    }
    let ledger = e
        .tasks
        .iter()
        .map(|(id, t)| FinalTask {
            id: *id,
            key: Some(t.key.clone()),
            max_attempts: MAX_ATTEMPTS,
            view: View { state: t.state.into(), attempts: t.attempts.len() as u32, token: t.token },
            attempts: t.attempts.clone(),
        })
        .collect();
    (history, ledger)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn histories_of_a_correct_engine_pass(seed in any::<u64>()) {
        let (h, l) = run(seed, 60);
        let r = check(&h, &l);
        prop_assert!(r.valid(), "seed {}: {}", seed, r.describe());
    }
}

/// And the same histories with one acknowledged lease removed from the ledger fail: the checker
/// is not passing everything.
#[test]
fn the_same_histories_with_a_lease_forgotten_fail() {
    let mut caught = 0;
    for seed in 0..200 {
        let (h, mut l) = run(seed, 60);
        let Some(t) = l.iter_mut().find(|t| !t.attempts.is_empty()) else { continue };
        t.attempts.remove(0);
        let r = check(&h, &l);
        assert!(!r.valid(), "seed {seed}: a forgotten attempt went unnoticed");
        caught += 1;
    }
    assert!(caught > 150, "most runs lease something ({caught})");
}

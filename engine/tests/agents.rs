//! The agent registry: incarnations, dead agents, draining, stall timeouts, statistics.

use minion_engine::{
    AgentSpec, AgentStatus, ApplyMeta, AttemptOutcome, Command, Memory, NewTask, Outcome, RejectCode, Request,
    Response, TaskRecord, TaskState,
};

struct Sim {
    state: Memory,
    now: u64,
}

impl Sim {
    fn new() -> Sim {
        Sim { state: Memory::default(), now: 1_000_000 }
    }
    fn run(&mut self, cmd: Command) -> Response {
        let r = self.state.apply(&Request { now_ms: self.now, cmd }, ApplyMeta { log_index: 0 });
        self.state.validate().expect("invariants");
        r
    }
    fn register(&mut self, id: &str, caps: &[&str], max: u32) -> u64 {
        let spec = AgentSpec {
            id: id.into(),
            name: id.into(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            max_concurrency: max,
            ..AgentSpec::default()
        };
        match self.run(Command::RegisterAgent { spec }) {
            Ok(Outcome::Agent(a)) => a.incarnation,
            other => panic!("register: {other:?}"),
        }
    }
    fn submit(&mut self, n: usize, caps: &[&str], stall: Option<u64>) -> Vec<u64> {
        let tasks = (0..n)
            .map(|_| NewTask {
                queue: "q".into(),
                payload: "null".into(),
                capabilities: caps.iter().map(|c| c.to_string()).collect(),
                stall_timeout_ms: stall,
                ..NewTask::default()
            })
            .collect();
        match self.run(Command::Submit { tasks }) {
            Ok(Outcome::Submitted(s)) => s.iter().map(|s| s.id).collect(),
            other => panic!("submit: {other:?}"),
        }
    }
    fn claim(&mut self, agent: &str, max: u32) -> Vec<TaskRecord> {
        match self.run(Command::Claim { agent_id: agent.into(), queues: vec!["q".into()], capabilities: vec![], max }) {
            Ok(Outcome::Claimed(t)) => t,
            other => panic!("claim: {other:?}"),
        }
    }
}

fn token(t: &TaskRecord) -> u64 {
    t.lease.as_ref().map(|l| l.token).expect("leased")
}

#[test]
fn registered_capabilities_and_concurrency_bound_claims() {
    let mut s = Sim::new();
    s.register("gpu-box", &["gpu"], 2);
    s.submit(3, &["gpu"], None);
    s.submit(1, &["tpu"], None);
    // The claim's own capability list is ignored for a registered agent: the registry decides.
    let got = s.claim("gpu-box", 10);
    assert_eq!(got.len(), 2, "max_concurrency 2 bounds the claim");
    assert!(got.iter().all(|t| t.capabilities == vec!["gpu".to_string()]));
    assert_eq!(s.state.agent("gpu-box").expect("agent").stats.in_flight, 2);
    assert!(s.claim("gpu-box", 10).is_empty(), "no free slot");
    s.run(Command::Complete { task_id: got[0].id, lease_token: token(&got[0]), result: None }).expect("complete");
    assert_eq!(s.claim("gpu-box", 10).len(), 1);
}

#[test]
fn a_dead_agents_leases_are_released_at_once_and_its_tokens_refused() {
    let mut s = Sim::new();
    let inc = s.register("a", &[], 4);
    s.register("b", &[], 4);
    s.submit(2, &[], None);
    let held = s.claim("a", 2);
    assert_eq!(held.len(), 2);
    s.run(Command::AgentsDead { agents: vec![("a".into(), inc)] }).expect("dead");
    let a = s.state.agent("a").expect("agent");
    assert_eq!((a.status, a.stats.in_flight), (AgentStatus::Dead, 0));
    for t in &held {
        let now = s.state.task(t.id).expect("task");
        assert_ne!(now.state, TaskState::Leased, "released without waiting for lease expiry");
        assert_eq!(now.attempts[0].outcome, Some(AttemptOutcome::AgentDead), "the attempt is recorded");
    }
    // After the retry backoff, another agent gets them with new tokens; the old ones are refused.
    s.now += 10_000;
    let again = s.claim("b", 2);
    assert_eq!(again.len(), 2);
    for (old, new) in held.iter().zip(&again) {
        assert_ne!(token(old), token(new));
    }
    let r = s.run(Command::Complete { task_id: held[0].id, lease_token: token(&held[0]), result: None });
    assert_eq!(r.expect_err("stale").code, RejectCode::StaleLease);
    // A dead agent is told to register again.
    let r = s.run(Command::Claim { agent_id: "a".into(), queues: vec!["q".into()], capabilities: vec![], max: 1 });
    assert_eq!(r.expect_err("dead").code, RejectCode::WrongState);
    // A stale death notice (old incarnation) changes nothing.
    let inc2 = s.register("a", &[], 4);
    assert!(inc2 > inc);
    s.run(Command::AgentsDead { agents: vec![("a".into(), inc)] }).expect("stale notice");
    assert_eq!(s.state.agent("a").expect("agent").status, AgentStatus::Active);
}

#[test]
fn only_a_dead_agent_of_the_named_incarnation_is_forgotten() {
    let mut s = Sim::new();
    let inc = s.register("a", &[], 4);
    s.register("b", &[], 4);
    // Alive: a forget notice changes nothing.
    s.run(Command::ForgetAgents { agents: vec![("a".into(), inc), ("b".into(), 0)] }).expect("forget");
    assert!(s.state.agent("a").is_some() && s.state.agent("b").is_some());
    s.run(Command::AgentsDead { agents: vec![("a".into(), inc)] }).expect("dead");
    // Registered again since the notice was drawn up: kept.
    let inc2 = s.register("a", &[], 4);
    s.run(Command::ForgetAgents { agents: vec![("a".into(), inc)] }).expect("stale forget");
    assert_eq!(s.state.agent("a").expect("kept").status, AgentStatus::Active);
    s.run(Command::AgentsDead { agents: vec![("a".into(), inc2)] }).expect("dead again");
    s.run(Command::ForgetAgents { agents: vec![("a".into(), inc2)] }).expect("forget");
    assert!(s.state.agent("a").is_none(), "a dead agent of that incarnation is removed");
    assert!(s.state.agent("b").is_some());
}

#[test]
fn re_registering_starts_a_new_incarnation_and_fences_the_old_one() {
    let mut s = Sim::new();
    let first = s.register("worker", &[], 1);
    s.submit(1, &[], None);
    let held = s.claim("worker", 1).remove(0);
    let second = s.register("worker", &[], 1);
    assert!(second > first);
    let t = s.state.task(held.id).expect("task");
    assert_eq!(t.attempts[0].outcome, Some(AttemptOutcome::AgentRestarted));
    let r = s.run(Command::Progress { task_id: held.id, lease_token: token(&held), percent: Some(1), message: None });
    assert_eq!(r.expect_err("old incarnation").code, RejectCode::StaleLease);
    s.now += 10_000;
    let again = s.claim("worker", 1).remove(0);
    assert_eq!(again.lease.as_ref().map(|l| l.incarnation), Some(second));
}

#[test]
fn draining_agents_get_nothing_new_and_keep_what_they_hold() {
    let mut s = Sim::new();
    s.register("d", &[], 4);
    s.submit(3, &[], None);
    let held = s.claim("d", 1).remove(0);
    s.run(Command::DrainAgent { id: "d".into() }).expect("drain");
    assert!(s.claim("d", 4).is_empty());
    assert_eq!(s.state.task(held.id).expect("task").state, TaskState::Leased);
    s.run(Command::Complete { task_id: held.id, lease_token: token(&held), result: None })
        .expect("in-flight work completes");
    let a = s.state.agent("d").expect("agent");
    assert_eq!((a.stats.overall.completed, a.stats.in_flight), (1, 0));
}

#[test]
fn stalled_tasks_are_released_even_while_the_lease_is_valid() {
    let mut s = Sim::new();
    s.register("quiet", &[], 1);
    let id = s.submit(1, &[], Some(1_000))[0];
    let held = s.claim("quiet", 1).remove(0);
    assert_eq!(held.lease_ms, 30_000);
    s.now += 800;
    s.run(Command::Progress { task_id: id, lease_token: token(&held), percent: Some(10), message: None })
        .expect("progress");
    s.now += 800;
    s.run(Command::Tick).expect("tick");
    assert_eq!(s.state.task(id).expect("task").state, TaskState::Leased, "progress moved the stall deadline");
    s.now += 1_000;
    s.run(Command::Tick).expect("tick");
    let t = s.state.task(id).expect("task");
    assert_ne!(t.state, TaskState::Leased);
    assert_eq!(t.attempts[0].outcome, Some(AttemptOutcome::Stalled), "the stall is recorded");
    assert_eq!(s.state.counters().stalls, 1);
}

#[test]
fn statistics_track_outcomes_latency_and_capabilities() {
    let mut s = Sim::new();
    s.register("x", &["gpu"], 4);
    s.submit(2, &["gpu"], None);
    let got = s.claim("x", 2);
    s.now += 100;
    s.run(Command::Complete { task_id: got[0].id, lease_token: token(&got[0]), result: None }).expect("complete");
    s.run(Command::Fail { task_id: got[1].id, lease_token: token(&got[1]), error: "e".into() }).expect("fail");
    let a = s.state.agent("x").expect("agent");
    assert_eq!((a.stats.overall.completed, a.stats.overall.failed, a.stats.overall.latency_ewma_ms), (1, 1, 100));
    assert_eq!(a.stats.by_capability["gpu"].completed, 1);
    // Deregistering releases nothing more and forgets the agent.
    s.run(Command::DeregisterAgent { id: "x".into() }).expect("deregister");
    assert!(s.state.agent("x").is_none());
    assert_eq!(s.run(Command::DrainAgent { id: "x".into() }).expect_err("gone").code, RejectCode::NotFound);
}

#[test]
fn a_released_lease_makes_the_task_ready_without_using_an_attempt() {
    let mut s = Sim::new();
    s.register("r", &[], 1);
    let id = s.submit(1, &[], None)[0];
    let held = s.claim("r", 1).remove(0);
    let r = s.run(Command::Release { task_id: id, lease_token: token(&held) }).expect("release");
    let Outcome::Task(t) = r else { panic!("task") };
    assert_eq!((t.state, t.attempt_limit), (TaskState::Ready, 4));
    assert_eq!(t.attempts[0].outcome, Some(AttemptOutcome::Released));
    assert_eq!(s.state.agent("r").expect("agent").stats.in_flight, 0);
    let again = s.run(Command::Release { task_id: id, lease_token: token(&held) });
    assert_eq!(again.expect_err("not leased").code, RejectCode::StaleLease);
}

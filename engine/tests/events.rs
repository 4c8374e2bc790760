//! Task events: each state change and each progress report, recorded only while watched.

use minion_engine::{ApplyMeta, Command, EventBody, Memory, NewTask, Outcome, Request, TaskEvent, TaskRecord};

fn run(m: &mut Memory, now: u64, cmd: Command) -> Outcome {
    m.apply(&Request { now_ms: now, cmd }, ApplyMeta { log_index: 0 }).expect("accepted")
}

fn names(events: &[TaskEvent]) -> Vec<&'static str> {
    events.iter().map(TaskEvent::name).collect()
}

fn submit(m: &mut Memory, now: u64, max_attempts: u32) -> u64 {
    let task = NewTask {
        queue: "q".into(),
        kind: "k".into(),
        payload: "1".into(),
        max_attempts: Some(max_attempts),
        ..NewTask::default()
    };
    match run(m, now, Command::Submit { tasks: vec![task] }) {
        Outcome::Submitted(s) => s[0].id,
        other => panic!("submit: {other:?}"),
    }
}

fn claim(m: &mut Memory, now: u64) -> TaskRecord {
    let cmd = Command::Claim { agent_id: "a1".into(), queues: vec!["q".into()], capabilities: vec![], max: 1 };
    match run(m, now, cmd) {
        Outcome::Claimed(mut t) => t.remove(0),
        other => panic!("claim: {other:?}"),
    }
}

fn token(t: &TaskRecord) -> u64 {
    t.lease.as_ref().expect("leased").token
}

#[test]
fn a_lifecycle_is_seen_as_events_in_order_with_results_and_errors() {
    let mut m = Memory::default();
    m.state.watch_events(true);
    let id = submit(&mut m, 1_000, 2);
    let t = claim(&mut m, 1_001);
    run(
        &mut m,
        1_002,
        Command::Progress { task_id: id, lease_token: token(&t), percent: Some(40), message: Some("half".into()) },
    );
    run(&mut m, 1_003, Command::Extend { task_id: id, lease_token: token(&t), lease_ms: Some(60_000) });
    run(&mut m, 1_004, Command::Fail { task_id: id, lease_token: token(&t), error: "boom".into() });
    let events = m.state.take_events();
    assert_eq!(names(&events), ["submitted", "leased", "progress", "failed"], "an extension is no event");
    assert!(events.iter().all(|e| e.task_id == id && e.queue == "q" && e.task_kind == "k"));
    match &events[2].body {
        EventBody::Progress { seq, report } => {
            assert_eq!(
                (*seq, report.percent, report.message.as_deref(), report.attempt),
                (0, Some(40), Some("half"), 1)
            );
        }
        other => panic!("progress: {other:?}"),
    }
    match &events[3].body {
        EventBody::State { error, attempt, agent_id, .. } => {
            assert_eq!((error.as_deref(), *attempt, agent_id.as_deref()), (Some("boom"), 1, Some("a1")));
        }
        other => panic!("failed: {other:?}"),
    }
    assert!(m.state.take_events().is_empty(), "taken once");

    // The retry comes due (housekeeping on a later apply) and succeeds.
    let later = 1_004 + 3_600_000;
    let t = claim(&mut m, later);
    run(
        &mut m,
        later + 1,
        Command::Complete { task_id: id, lease_token: token(&t), result: Some("{\"ok\":1}".into()) },
    );
    let events = m.state.take_events();
    assert_eq!(names(&events), ["ready", "leased", "succeeded"]);
    assert!(events[2].is_terminal());
    match &events[2].body {
        EventBody::State { result, attempt, .. } => assert_eq!((result.as_deref(), *attempt), (Some("{\"ok\":1}"), 2)),
        other => panic!("succeeded: {other:?}"),
    }
}

#[test]
fn nothing_is_recorded_while_nobody_watches() {
    let mut m = Memory::default();
    let id = submit(&mut m, 1_000, 1);
    assert!(m.state.take_events().is_empty());
    m.state.watch_events(true);
    run(&mut m, 1_001, Command::Cancel { task_id: id, reason: Some("no longer needed".into()) });
    let events = m.state.take_events();
    assert_eq!(names(&events), ["cancelled"]);
    match &events[0].body {
        EventBody::State { error, .. } => assert_eq!(error.as_deref(), Some("no longer needed"), "the reason"),
        other => panic!("cancelled: {other:?}"),
    }
    m.state.watch_events(false);
    submit(&mut m, 1_002, 1);
    assert!(m.state.take_events().is_empty());
}

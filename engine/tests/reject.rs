//! Rejected ingest records: recorded once per key, never claimable, not retryable, purged by
//! retention like any finished task.

use minion_engine::{
    ApplyMeta, Command, EngineConfig, Memory, Outcome, RejectCode, RejectedRecord, Request, Response, TaskState,
};

fn run(state: &mut Memory, now: u64, cmd: Command) -> Response {
    let r = state.apply(&Request { now_ms: now, cmd }, ApplyMeta { log_index: 0 });
    state.validate().expect("invariants");
    r
}

fn record(key: &str) -> RejectedRecord {
    RejectedRecord {
        queue: "inbox".into(),
        kind: "rejected".into(),
        reason: "envelope field priority has the wrong type".into(),
        payload: r#"{"source":"kafka:t/0@1"}"#.into(),
        idempotency_key: Some(key.into()),
    }
}

#[test]
fn rejected_records_are_kept_once_and_never_run() {
    let mut s = Memory::default();
    let now = 1_000_000;
    let cfg = EngineConfig { retention_ms: 60_000, ..EngineConfig::default() };
    run(&mut s, now, Command::Configure { config: cfg }).expect("configure");
    let ids = match run(&mut s, now, Command::Reject { records: vec![record("kafka:t/0@1"), record("kafka:t/0@2")] }) {
        Ok(Outcome::Submitted(v)) => v,
        other => panic!("reject: {other:?}"),
    };
    assert!(ids.iter().all(|s| !s.duplicate));
    // Redelivered: the same key finds the same task.
    match run(&mut s, now + 1, Command::Reject { records: vec![record("kafka:t/0@1")] }) {
        Ok(Outcome::Submitted(v)) => assert_eq!((v[0].id, v[0].duplicate), (ids[0].id, true)),
        other => panic!("again: {other:?}"),
    }
    let t = s.task(ids[0].id).expect("task");
    assert_eq!(t.state, TaskState::Rejected);
    assert_eq!(t.last_error.as_deref(), Some("envelope field priority has the wrong type"));
    assert_eq!(s.queue_stats("inbox").rejected, 2);

    let claim = Command::Claim { agent_id: "a".into(), queues: vec!["inbox".into()], capabilities: vec![], max: 10 };
    match run(&mut s, now + 2, claim) {
        Ok(Outcome::Claimed(t)) => assert!(t.is_empty(), "a rejected record is never claimable"),
        other => panic!("claim: {other:?}"),
    }
    let retry = run(&mut s, now + 3, Command::Retry { task_id: ids[0].id });
    assert_eq!(retry.expect_err("not retryable").code, RejectCode::WrongState);

    // Invalid rejections change nothing.
    let bad = RejectedRecord { reason: String::new(), ..record("k") };
    assert_eq!(
        run(&mut s, now, Command::Reject { records: vec![bad] }).expect_err("empty reason").code,
        RejectCode::Invalid
    );
    assert_eq!(run(&mut s, now, Command::Reject { records: vec![] }).expect_err("empty").code, RejectCode::Invalid);

    // Retention removes them like any finished task.
    run(&mut s, now + 61_000, Command::Tick).expect("tick");
    assert!(s.task(ids[0].id).is_none() && s.task(ids[1].id).is_none());
}

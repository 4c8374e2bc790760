//! Histories with planted anomalies, each of which the checker must find, and the same
//! histories without them, which it must pass.

use minion_checker::{check, Call, FinalTask, Granted, Kind, Op, Outcome, Ret, View};

fn op(call: Call, invoked: u64, completed: u64, outcome: Outcome) -> Op {
    Op { process: 0, call, invoked, completed: Some(completed), outcome }
}

fn unknown(call: Call, invoked: u64) -> Op {
    Op { process: 0, call, invoked, completed: None, outcome: Outcome::Unknown }
}

fn ok(r: Ret) -> Outcome {
    Outcome::Ok(r)
}

fn refused() -> Outcome {
    Outcome::Failed("stale_lease".into())
}

fn submit(key: &str) -> Call {
    Call::Submit { key: key.into(), max_attempts: 5 }
}

fn claim(agent: &str) -> Call {
    Call::Claim { agent: agent.into() }
}

fn lease(task: u64, token: u64, attempt: u32) -> Outcome {
    ok(Ret::Leases(vec![Granted { task, token, attempt }]))
}

fn view(state: &str, attempts: u32, token: Option<u64>) -> View {
    View { state: state.into(), attempts, token }
}

fn read(task: u64, v: Option<View>, at: u64) -> Op {
    op(Call::Read { task }, at, at + 5, ok(Ret::View(v)))
}

fn task(id: u64, key: &str, v: View, attempts: &[(u32, u64, &str)]) -> FinalTask {
    FinalTask {
        id,
        key: Some(key.into()),
        max_attempts: 5,
        view: v,
        attempts: attempts.iter().map(|(n, t, a)| (*n, *t, a.to_string())).collect(),
    }
}

/// Submit, lease to agent a (token 5), progress, complete; reads along the way.
fn clean() -> Vec<Op> {
    vec![
        op(submit("k1"), 0, 10, ok(Ret::Task(1))),
        read(1, Some(view("ready", 0, None)), 12),
        op(claim("a"), 20, 30, lease(1, 5, 1)),
        op(Call::Progress { task: 1, token: 5 }, 35, 40, ok(Ret::Done)),
        read(1, Some(view("leased", 1, Some(5))), 41),
        op(Call::Complete { task: 1, token: 5 }, 50, 60, ok(Ret::Done)),
        read(1, Some(view("succeeded", 1, None)), 70),
    ]
}

fn clean_ledger() -> Vec<FinalTask> {
    vec![task(1, "k1", view("succeeded", 1, None), &[(1, 5, "a")])]
}

fn kinds(h: &[Op], l: &[FinalTask]) -> Vec<Kind> {
    let r = check(h, &l.to_vec());
    assert!(r.undecided.is_empty(), "decided: {}", r.describe());
    let mut k: Vec<Kind> = r.anomalies.iter().map(|a| a.kind).collect();
    k.dedup();
    k
}

#[test]
fn a_clean_history_passes() {
    let r = check(&clean(), &clean_ledger());
    assert!(r.valid(), "{}", r.describe());
    assert_eq!((r.ops, r.acknowledged, r.unknown, r.tasks_checked), (7, 7, 0, 1));
}

#[test]
fn a_lost_acknowledged_submit_is_found() {
    let k = kinds(&clean(), &[]);
    assert!(k.contains(&Kind::LostAck) && k.contains(&Kind::NotLinearizable), "{k:?}");
}

#[test]
fn two_tasks_under_one_key_are_found() {
    let mut l = clean_ledger();
    l.push(task(2, "k1", view("ready", 0, None), &[]));
    assert!(kinds(&clean(), &l).contains(&Kind::DuplicateKey));
}

#[test]
fn acknowledgements_naming_different_tasks_are_found() {
    let mut h = clean();
    h.push(op(submit("k1"), 80, 90, ok(Ret::Task(2))));
    assert!(kinds(&h, &clean_ledger()).contains(&Kind::ConflictingAcks));
}

#[test]
fn a_task_under_another_key_is_found() {
    let l = vec![task(1, "other", view("succeeded", 1, None), &[(1, 5, "a")])];
    assert!(kinds(&clean(), &l).contains(&Kind::WrongKey));
}

#[test]
fn a_stale_read_is_found() {
    let mut h = clean();
    // After the complete was acknowledged, a read still sees the lease (as a lagging follower
    // answering on its own would).
    h.push(read(1, Some(view("leased", 1, Some(5))), 80));
    assert_eq!(kinds(&h, &clean_ledger()), vec![Kind::NotLinearizable]);
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_side() {
    for v in [view("leased", 1, Some(5)), view("succeeded", 1, None)] {
        let mut h = clean();
        h.pop();
        h.push(op(Call::Read { task: 1 }, 52, 58, ok(Ret::View(Some(v)))));
        let r = check(&h, &clean_ledger());
        assert!(r.valid(), "{}", r.describe());
    }
}

#[test]
fn a_read_from_the_future_is_found() {
    let mut h = clean();
    // Sees the task succeeded before the complete was sent.
    h.insert(3, read(1, Some(view("succeeded", 1, None)), 31));
    assert_eq!(kinds(&h, &clean_ledger()), vec![Kind::NotLinearizable]);
}

#[test]
fn a_stale_token_accepted_is_found() {
    // Agent a's lease expires, b gets attempt 2, and then a's complete under token 5 succeeds.
    let h = vec![
        op(submit("k1"), 0, 10, ok(Ret::Task(1))),
        op(claim("a"), 20, 30, lease(1, 5, 1)),
        op(claim("b"), 100, 110, lease(1, 7, 2)),
        op(Call::Complete { task: 1, token: 5 }, 120, 130, ok(Ret::Done)),
    ];
    let l = vec![task(1, "k1", view("succeeded", 2, None), &[(1, 5, "a"), (2, 7, "b")])];
    let k = kinds(&h, &l);
    assert!(k.contains(&Kind::StaleToken) && k.contains(&Kind::NotLinearizable), "{k:?}");
    // Refused instead, with b completing: clean.
    let mut fixed = h.clone();
    fixed[3].outcome = refused();
    fixed.push(op(Call::Complete { task: 1, token: 7 }, 140, 150, ok(Ret::Done)));
    let r = check(&fixed, &l);
    assert!(r.valid(), "{}", r.describe());
}

#[test]
fn a_refused_token_that_was_current_is_found() {
    // Nothing else happened to the lease, yet the complete under it was refused, and the task
    // then succeeded under the same token anyway.
    let mut h = clean();
    h.insert(5, op(Call::Complete { task: 1, token: 5 }, 44, 46, refused()));
    h.push(read(1, Some(view("leased", 1, Some(5))), 47));
    h.sort_by_key(|o| o.invoked);
    assert!(kinds(&h, &clean_ledger()).contains(&Kind::NotLinearizable));
}

#[test]
fn two_leases_for_one_attempt_are_found() {
    let h = vec![
        op(submit("k1"), 0, 10, ok(Ret::Task(1))),
        op(claim("a"), 20, 30, lease(1, 5, 1)),
        op(claim("b"), 21, 31, lease(1, 6, 1)),
    ];
    let l = vec![task(1, "k1", view("leased", 1, Some(6)), &[(1, 6, "b")])];
    let k = kinds(&h, &l);
    assert!(k.contains(&Kind::DoubleGrant) && k.contains(&Kind::LostLease), "{k:?}");
}

#[test]
fn tokens_that_fall_are_found() {
    let h = vec![
        op(submit("k1"), 0, 10, ok(Ret::Task(1))),
        op(claim("a"), 20, 30, lease(1, 9, 1)),
        op(Call::Fail { task: 1, token: 9 }, 40, 50, ok(Ret::Done)),
        op(claim("b"), 60, 70, lease(1, 6, 2)),
    ];
    let l = vec![task(1, "k1", view("leased", 2, Some(6)), &[(1, 9, "a"), (2, 6, "b")])];
    assert_eq!(kinds(&h, &l), vec![Kind::TokenOrder]);
}

#[test]
fn a_lease_after_an_acknowledged_complete_is_found() {
    let mut h = clean();
    h.push(op(claim("b"), 80, 90, lease(1, 8, 2)));
    let l = vec![task(1, "k1", view("leased", 2, Some(8)), &[(1, 5, "a"), (2, 8, "b")])];
    let k = kinds(&h, &l);
    assert!(k.contains(&Kind::LeaseAfterFinish) && k.contains(&Kind::NotLinearizable), "{k:?}");
}

#[test]
fn a_lost_update_is_found() {
    // The complete was acknowledged; the ledger still has the lease.
    let l = vec![task(1, "k1", view("leased", 1, Some(5)), &[(1, 5, "a")])];
    assert_eq!(kinds(&clean(), &l), vec![Kind::NotLinearizable]);
}

#[test]
fn unknown_outcomes_may_have_happened_or_not() {
    let mut h = clean();
    h[0] = unknown(submit("k1"), 0);
    let r = check(&h, &clean_ledger());
    assert!(r.valid(), "a submit without an answer that took effect: {}", r.describe());

    let mut h = clean();
    h.truncate(5);
    h.push(unknown(Call::Complete { task: 1, token: 5 }, 50));
    for l in [clean_ledger(), vec![task(1, "k1", view("leased", 1, Some(5)), &[(1, 5, "a")])]] {
        let r = check(&h, &l);
        assert!(r.valid(), "a complete without an answer, either way: {}", r.describe());
    }
    // But an unknown complete cannot explain a success seen before it was sent.
    h.insert(4, read(1, Some(view("succeeded", 1, None)), 42));
    assert!(kinds(&h, &clean_ledger()).contains(&Kind::NotLinearizable));
}

#[test]
fn a_lease_from_a_claim_whose_answer_was_lost_is_explained() {
    // b's claim timed out but leased the task (attempt 2) after a's lease expired; b never
    // learned the token, the lease expired too, and c completed attempt 3.
    let h = vec![
        op(submit("k1"), 0, 10, ok(Ret::Task(1))),
        op(claim("a"), 20, 30, lease(1, 5, 1)),
        unknown(claim("b"), 40),
        op(claim("c"), 200, 210, lease(1, 11, 3)),
        op(Call::Complete { task: 1, token: 11 }, 220, 230, ok(Ret::Done)),
    ];
    let l = vec![task(1, "k1", view("succeeded", 3, None), &[(1, 5, "a"), (2, 9, "b"), (3, 11, "c")])];
    let r = check(&h, &l);
    assert!(r.valid(), "{}", r.describe());
    // The same lease to an agent with no claim in flight is not.
    let l = vec![task(1, "k1", view("succeeded", 3, None), &[(1, 5, "a"), (2, 9, "z"), (3, 11, "c")])];
    assert_eq!(kinds(&h, &l), vec![Kind::UnexplainedLease]);
}

#[test]
fn a_lease_the_ledger_lost_is_found() {
    let l = vec![task(1, "k1", view("succeeded", 1, None), &[(1, 6, "a")])];
    assert!(kinds(&clean(), &l).contains(&Kind::LostLease));
}

#[test]
fn running_out_of_attempts_ends_dead() {
    let h = vec![
        op(Call::Submit { key: "k1".into(), max_attempts: 1 }, 0, 10, ok(Ret::Task(1))),
        op(claim("a"), 20, 30, lease(1, 5, 1)),
        op(Call::Fail { task: 1, token: 5 }, 40, 50, ok(Ret::Done)),
        read(1, Some(view("dead", 1, None)), 60),
    ];
    let mut t = task(1, "k1", view("dead", 1, None), &[(1, 5, "a")]);
    t.max_attempts = 1;
    let r = check(&h, &[t.clone()].to_vec());
    assert!(r.valid(), "{}", r.describe());
    // Retried although it had no attempt left.
    let mut wrong = h.clone();
    wrong[3] = read(1, Some(view("failed", 1, None)), 60);
    assert!(kinds(&wrong, &[t]).contains(&Kind::NotLinearizable));
}

#[test]
fn only_lease_refusals_say_the_token_was_not_current() {
    // A complete refused as malformed while the lease was current, then completed: clean.
    let mut h = clean();
    h.insert(5, op(Call::Complete { task: 1, token: 5 }, 44, 46, Outcome::Failed("invalid_request".into())));
    let r = check(&h, &clean_ledger());
    assert!(r.valid(), "{}", r.describe());
    // The same refusal as stale_lease cannot be: the lease was current.
    h[5].outcome = refused();
    h.insert(6, read(1, Some(view("leased", 1, Some(5))), 47));
    h.sort_by_key(|o| o.invoked);
    assert!(kinds(&h, &clean_ledger()).contains(&Kind::NotLinearizable));
}

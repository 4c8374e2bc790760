//! A command sequence decoded from bytes, applied to the engine (with its records in memory) with
//! every invariant checked after every command, restarts (RAM rebuilt from the records, each sent
//! through the codec first) and restores (the records streamed into a fresh engine) along the way.

use minion_engine::rate::Rate;
use minion_engine::{AgentSpec, ApplyMeta, Command, Memory, NewTask, Record, RejectedRecord, Request, TaskState};
use minion_storage::codec;

struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let b = self.data.get(self.at).copied();
        self.at += 1;
        b
    }
    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
}

const QUEUES: [&str; 3] = ["a", "b", "c"];
const AGENTS: [&str; 3] = ["x", "y", "z"];

/// A lease token that is real half of the time (so that work progresses), made up otherwise.
fn token(s: &Memory, task: u64, b: u8) -> u64 {
    match s.record(task).and_then(|t| t.lease) {
        Some(l) if b.is_multiple_of(2) => l.token,
        _ => b as u64,
    }
}

/// Every record but the counters, with audit entries keyed by content (a restore renumbers them).
fn comparable(m: &Memory) -> Vec<Record> {
    m.store
        .records()
        .filter(|r| !matches!(r, Record::Meta(_)))
        .map(|r| match r {
            Record::Audit(e) => Record::Audit(minion_engine::AuditEntry { seq: 0, ..e.clone() }),
            other => other.clone(),
        })
        .collect()
}

/// Stream `from`'s records into `into` as a restore would; the answers.
fn restore(into: &mut Memory, from: &Memory, now: u64, index: &mut u64) -> Vec<minion_engine::Response> {
    let mut out = Vec::new();
    let mut apply = |into: &mut Memory, cmd| {
        *index += 1;
        into.apply(&Request { now_ms: now, cmd }, ApplyMeta { log_index: *index })
    };
    out.push(apply(into, Command::RestoreBegin { restore_id: "r".into() }));
    let records: Vec<Record> = from.store.records().filter(|r| !matches!(r, Record::Meta(_))).cloned().collect();
    let total = records.len() as u64;
    for chunk in records.chunks(7) {
        out.push(apply(into, Command::RestoreRecords { restore_id: "r".into(), records: chunk.to_vec() }));
    }
    let meta = Box::new(from.state.meta().clone());
    out.push(apply(into, Command::RestoreEnd { restore_id: "r".into(), records_total: total, meta }));
    out
}

/// A schedule: an interval, a cron expression with seconds in a time zone, or one of the kinds
/// the engine refuses (a bad expression, an unknown zone, a too short interval, no catch-up).
fn schedule(arg: u8, queue: &str) -> minion_engine::schedule::ScheduleDef {
    use minion_engine::schedule::Missed;
    let (cron, every_ms, timezone) = match arg % 6 {
        0 => (None, Some(1_000 + arg as u64 * 13), None),
        1 => (Some(format!("*/{} * * * * *", 1 + arg % 7)), None, Some("Europe/Berlin".to_string())),
        2 => (Some("0 30 9 * * Mon-Fri".to_string()), None, None),
        3 => (Some("61 * * * *".to_string()), None, None),
        4 => (Some("* * * * *".to_string()), None, Some("Mars/Olympus".to_string())),
        _ => (None, Some(arg as u64), None),
    };
    minion_engine::schedule::ScheduleDef {
        name: format!("s{}", arg % 3),
        cron,
        every_ms,
        timezone,
        task: NewTask { queue: queue.to_string(), payload: "1".into(), ..NewTask::default() },
        missed: match arg % 4 {
            0 => Missed::Skip,
            3 => Missed::CatchUp(0),
            n => Missed::CatchUp(n as u32 * 50),
        },
        paused: arg.is_multiple_of(11),
    }
}

pub fn state_machine(data: &[u8]) {
    let mut s = Memory::default();
    let mut now = 1_000_000u64;
    let mut b = Bytes { data, at: 0 };
    let mut index = 0u64;
    while let Some(op) = b.next() {
        now += b.byte() as u64 * 97;
        let arg = b.byte();
        let task = (b.byte() % 24) as u64;
        let q = QUEUES[arg as usize % 3].to_string();
        let agent = AGENTS[(arg / 3) as usize % 3].to_string();
        let cmd = match op % 16 {
            0 | 1 => {
                let tasks = (0..1 + arg % 3)
                    .map(|i| NewTask {
                        queue: q.clone(),
                        payload: "1".into(),
                        priority: (arg as i32 % 5) - 2,
                        idempotency_key: arg.is_multiple_of(4).then(|| format!("k{}", (arg / 4 + i) % 8)),
                        delay_ms: (arg % 5 == 1).then_some(arg as u64 * 10),
                        max_attempts: Some(1 + (arg % 3) as u32),
                        lease_ms: Some(1_000 + arg as u64 * 100),
                        capabilities: if arg.is_multiple_of(7) { vec!["gpu".into()] } else { vec![] },
                        ..NewTask::default()
                    })
                    .collect();
                // Some submits carry a trace context, now and then a malformed one.
                match (op / 16) % 4 {
                    1 => Command::SubmitTraced {
                        tasks,
                        trace_parent: format!("00-{:032x}-{:016x}-01", arg as u128 + 1, 7),
                    },
                    2 if arg.is_multiple_of(4) => {
                        Command::SubmitTraced { tasks, trace_parent: format!("00-{arg}-x-01") }
                    }
                    // Dependencies (on existing tasks, other members, itself: refused) and deadlines.
                    3 => {
                        let n = tasks.len() as u32;
                        let flows = (0..n)
                            .map(|i| minion_engine::TaskFlow {
                                depends_on: match arg.wrapping_add(i as u8) % 4 {
                                    0 => vec![],
                                    1 => vec![minion_engine::DepRef::Task(task)],
                                    2 => vec![minion_engine::DepRef::Batch((i + 1) % n)],
                                    _ => vec![minion_engine::DepRef::Batch(0), minion_engine::DepRef::Task(task + 1)],
                                },
                                on_dependency_failure: if arg.is_multiple_of(3) {
                                    minion_engine::DepPolicy::RunAnyway
                                } else {
                                    minion_engine::DepPolicy::Cancel
                                },
                                deadline_in_ms: (arg % 5 == 2).then_some(arg as u64 * 20),
                                // Concurrency keys (now and then an empty one: refused).
                                ext: match arg.wrapping_add(i as u8) % 5 {
                                    0 | 1 => vec![],
                                    4 if arg.is_multiple_of(8) => {
                                        vec![minion_engine::FlowExt::ConcurrencyKey(String::new())]
                                    }
                                    k => vec![minion_engine::FlowExt::ConcurrencyKey(format!("key{}", k % 3))],
                                },
                                ..minion_engine::TaskFlow::default()
                            })
                            .collect();
                        Command::SubmitWith { tasks, flows, trace_parent: None }
                    }
                    _ => Command::Submit { tasks },
                }
            }
            2 | 3 => Command::Claim {
                agent_id: agent,
                queues: vec![q],
                capabilities: if arg.is_multiple_of(2) { vec!["gpu".into()] } else { vec![] },
                max: 1 + (arg % 3) as u32,
            },
            4 => Command::Complete { task_id: task, lease_token: token(&s, task, arg), result: Some("2".into()) },
            5 => Command::Fail { task_id: task, lease_token: token(&s, task, arg), error: "e".into() },
            6 => Command::Progress {
                task_id: task,
                lease_token: token(&s, task, arg),
                percent: Some(arg % 101),
                message: None,
            },
            7 => Command::Extend { task_id: task, lease_token: token(&s, task, arg), lease_ms: Some(500 + arg as u64) },
            // Children under a lease (real half of the time), and a parent waiting for them.
            8 if (op / 16) % 4 == 1 => Command::SubmitWith {
                tasks: (0..1 + arg % 3)
                    .map(|_| NewTask { queue: q.clone(), payload: "1".into(), ..NewTask::default() })
                    .collect(),
                flows: (0..1 + arg % 3)
                    .map(|_| minion_engine::TaskFlow {
                        ext: vec![
                            minion_engine::FlowExt::Parent(task),
                            minion_engine::FlowExt::ParentLease(token(&s, task, arg)),
                        ],
                        ..minion_engine::TaskFlow::default()
                    })
                    .collect(),
                trace_parent: None,
            },
            8 if (op / 16) % 4 == 2 => Command::WaitChildren { task_id: task, lease_token: token(&s, task, arg) },
            8 => Command::Release { task_id: task, lease_token: token(&s, task, arg) },
            9 => Command::Cancel { task_id: task, reason: None },
            10 => Command::Retry { task_id: task },
            11 => Command::Tick,
            12 => Command::RegisterAgent {
                spec: AgentSpec {
                    id: agent,
                    name: String::new(),
                    capabilities: vec!["gpu".into()],
                    max_concurrency: arg as u32 % 4,
                    ..AgentSpec::default()
                },
            },
            13 => {
                let incarnation = s.agents().find(|a| a.id == agent).map(|a| a.incarnation).unwrap_or(arg as u64);
                if arg.is_multiple_of(2) {
                    Command::AgentsDead { agents: vec![(agent, incarnation)] }
                } else {
                    Command::ForgetAgents { agents: vec![(agent, incarnation)] }
                }
            }
            14 => Command::Reject {
                records: vec![RejectedRecord {
                    queue: q,
                    kind: "rejected".into(),
                    reason: "bad".into(),
                    payload: "{}".into(),
                    idempotency_key: Some(format!("k{}", arg % 8)),
                }],
            },
            15 if (op / 16) % 4 == 2 => {
                // An administrative command, audited: tokens (some invalid), a cancel, queue
                // limits, schedules.
                let id = format!("{:016x}", arg % 4);
                let inner = match arg % 7 {
                    0 | 1 => Command::CreateToken {
                        token: minion_engine::Token {
                            id: if arg % 10 == 1 { "bad".into() } else { id },
                            name: "t".into(),
                            role: minion_engine::Role::ALL[arg as usize % 5],
                            queues: if arg.is_multiple_of(3) { vec!["a*".into()] } else { vec![] },
                            deny: vec![],
                            secret_sha256: [arg; 32],
                            created_ms: now,
                            created_by: "fuzz".into(),
                            expires_ms: arg.is_multiple_of(2).then_some(now + 1_000),
                            revoked_ms: None,
                            rate_per_sec: arg.is_multiple_of(7).then_some(arg as u32 % 3),
                        },
                    },
                    2 => Command::RevokeToken { id },
                    3 => Command::Cancel { task_id: task, reason: Some("fuzz".into()) },
                    5 => Command::PutSchedule { def: schedule(arg, &q) },
                    6 => Command::DeleteSchedule { name: format!("s{}", arg % 3) },
                    // Limits: one for every key (half of them fair), one key held back, rates (of
                    // the queue, of every key, of one key; some out of range: refused), or none.
                    _ => Command::SetLimits {
                        queue: q,
                        rules: match arg % 6 {
                            0 => vec![],
                            1 => {
                                let mut rules = vec![minion_engine::LimitRule::KeyConcurrency(1 + arg as u32 % 2)];
                                rules.extend(arg.is_multiple_of(2).then_some(minion_engine::LimitRule::Fair));
                                rules
                            }
                            2 => vec![minion_engine::LimitRule::KeyConcurrencyOf("key1".into(), 0)],
                            3 => vec![minion_engine::LimitRule::QueueRate(Rate {
                                starts: 1 + arg as u32 % 3,
                                period_ms: 500,
                            })],
                            4 => vec![
                                minion_engine::LimitRule::KeyRate(Rate { starts: 1, period_ms: 1 + arg as u64 * 37 }),
                                minion_engine::LimitRule::KeyRateOf("key0".into(), Rate { starts: 2, period_ms: 300 }),
                            ],
                            _ => {
                                vec![minion_engine::LimitRule::KeyRate(Rate { starts: arg as u32 % 2, period_ms: 100 })]
                            }
                        },
                    },
                };
                Command::Audited { actor: "fuzz".into(), cmd: Box::new(inner) }
            }
            15 if (op / 16) % 4 == 1 => Command::AuditNote {
                actor: "fuzz".into(),
                action: if arg.is_multiple_of(9) { String::new() } else { "cluster.add_learner".into() },
                target: arg.to_string(),
                detail: String::new(),
            },
            15 if (op / 16) % 4 == 3 => {
                // Restore a copy of this state: refused (it is not empty) and changing nothing,
                // except into a fresh engine, where it must reproduce every record.
                let pristine =
                    s.meta().next_id == 1 && s.agents().next().is_none() && s.queue_configs().next().is_none();
                if !pristine {
                    // Housekeeping due now runs first, whatever the command: let it.
                    index += 1;
                    let _ = s.apply(&Request { now_ms: now, cmd: Command::Tick }, ApplyMeta { log_index: index });
                    let before = comparable(&s);
                    index += 1;
                    let r = s.apply(
                        &Request { now_ms: now, cmd: Command::RestoreBegin { restore_id: "x".into() } },
                        ApplyMeta { log_index: index },
                    );
                    assert!(r.is_err(), "a restore into a state that holds tasks was accepted");
                    assert_eq!(comparable(&s), before, "a refused restore changed nothing");
                    let mut fresh = Memory::default();
                    let mut fresh_index = 0;
                    for r in restore(&mut fresh, &s, now, &mut fresh_index) {
                        r.expect("a restore into an empty engine");
                    }
                    fresh.validate().unwrap_or_else(|v| panic!("invariant violated after a restore: {v}"));
                    assert_eq!(comparable(&fresh), comparable(&s), "a restore reproduces every record");
                }
                continue;
            }
            _ => {
                // Restart: every record through the codec, then RAM rebuilt from the records, as
                // after a crash or a snapshot install.
                for r in s.store.records() {
                    let (k, v) = codec::encode(r).expect("a record encodes");
                    assert_eq!(&codec::decode(&k, &v).expect("a record decodes"), r);
                    assert_eq!(codec::decode_key(&k).expect("a key decodes"), r.key());
                }
                let before: Vec<Record> = s.store.records().cloned().collect();
                s = s.restart();
                assert_eq!(s.store.records().cloned().collect::<Vec<_>>(), before, "a restart changes no record");
                s.validate().unwrap_or_else(|v| panic!("invariant violated after a restart: {v}"));
                continue;
            }
        };
        index += 1;
        let _ = s.apply(&Request { now_ms: now, cmd }, ApplyMeta { log_index: index });
        s.validate().unwrap_or_else(|v| panic!("invariant violated after command {index}: {v}"));
        // A finished task never has a lease.
        for id in 0..24 {
            if let Some(t) = s.record(id) {
                assert!(t.lease.is_none() || t.state == TaskState::Leased, "task {id} is {:?} with a lease", t.state);
            }
        }
    }
}

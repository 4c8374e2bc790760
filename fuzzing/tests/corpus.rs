//! The fuzz targets on stable, in CI: every checked-in seed (`fuzz/corpus/<target>/`), then a
//! fixed number of inputs made from the seeds by seeded random mutation (flips, inserts,
//! truncations, splices) and pure noise. Coverage-guided runs use cargo-fuzz on the same
//! functions (`fuzz/`, see docs/reliability.md).

use std::path::PathBuf;

use minion_engine::{Command, Memory, NewTask, Record, Request};
use minion_storage::frame;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("seed corpus of {target}: {e}"))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).expect("seed")).collect()
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = if seeds.is_empty() || rng.gen_bool(0.1) {
        (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect()
    } else {
        seeds[rng.gen_range(0..seeds.len())].clone()
    };
    for _ in 0..rng.gen_range(1..6) {
        match rng.gen_range(0..5) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let i = rng.gen_range(0..=v.len());
                v.insert(i, rng.gen());
            }
            2 if !v.is_empty() => v.truncate(rng.gen_range(0..v.len())),
            3 if !seeds.is_empty() => {
                let other = &seeds[rng.gen_range(0..seeds.len())];
                let at = rng.gen_range(0..=other.len());
                v.extend_from_slice(&other[at..]);
            }
            _ if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            _ => {}
        }
    }
    v
}

fn run(target: &str, f: fn(&[u8]), generated: usize) {
    let seeds = seeds(target);
    assert!(!seeds.is_empty(), "{target} has seeds");
    for s in &seeds {
        f(s);
    }
    let mut rng = StdRng::seed_from_u64(0x5eed ^ target.len() as u64);
    for _ in 0..generated {
        let input = mutate(&mut rng, &seeds);
        f(&input);
    }
}

#[test]
fn decode_frames() {
    run("decode_frames", minion_fuzzing::decode_frames, 20_000);
}

#[test]
fn state_machine() {
    run("state_machine", minion_fuzzing::state_machine, 3_000);
}

#[test]
fn http_request() {
    run("http_request", minion_fuzzing::http_request, 1_500);
}

/// The checked-in seeds are what this generator makes (set MINION_WRITE_SEEDS=1 to rewrite them).
#[test]
fn seeds_are_current() {
    let mut want: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let submit = Command::Submit {
        tasks: vec![NewTask {
            queue: "q".into(),
            payload: "{\"a\":1}".into(),
            idempotency_key: Some("k".into()),
            ..NewTask::default()
        }],
    };
    let claim = Command::Claim { agent_id: "a".into(), queues: vec!["q".into()], capabilities: vec![], max: 2 };
    let traced = Command::SubmitTraced {
        tasks: vec![NewTask { queue: "q".into(), payload: "2".into(), ..NewTask::default() }],
        trace_parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    };
    let flow = Command::SubmitWith {
        tasks: vec![NewTask { queue: "q".into(), payload: "3".into(), ..NewTask::default() }],
        flows: vec![minion_engine::TaskFlow {
            depends_on: vec![minion_engine::DepRef::Task(1)],
            deadline_in_ms: Some(60_000),
            ext: vec![minion_engine::FlowExt::ConcurrencyKey("tenant-a".into())],
            ..minion_engine::TaskFlow::default()
        }],
        trace_parent: None,
    };
    let limits = Command::SetLimits {
        queue: "q".into(),
        rules: vec![
            minion_engine::LimitRule::KeyConcurrency(1),
            minion_engine::LimitRule::KeyConcurrencyOf("tenant-b".into(), 3),
            minion_engine::LimitRule::QueueRate(minion_engine::rate::Rate { starts: 100, period_ms: 60_000 }),
            minion_engine::LimitRule::KeyRate(minion_engine::rate::Rate { starts: 5, period_ms: 1_000 }),
            minion_engine::LimitRule::KeyRateOf(
                "tenant-b".into(),
                minion_engine::rate::Rate { starts: 1, period_ms: 10 },
            ),
            minion_engine::LimitRule::Fair,
        ],
    };
    let mut state = Memory::default();
    let mut frames: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, cmd) in [submit, claim, traced, flow, limits].into_iter().enumerate() {
        let req = Request { now_ms: 1_000, cmd };
        frames.push((format!("request-{i}"), frame::encode(&req).expect("encode")));
        let _ = state.apply(&req, minion_engine::ApplyMeta { log_index: i as u64 + 1 });
    }
    let task = state.task(1).expect("task 1");
    frames.push(("task".into(), frame::encode(&task).expect("encode")));
    let record = state.record(1).expect("task 1");
    frames.push(("task-record".into(), frame::encode(&record).expect("encode")));
    // A waiting task's record as stored (record version 3, with its flow and concurrency key).
    let waiting = Record::Task(state.record(3).expect("task 3"));
    let (k, v) = minion_storage::codec::encode(&waiting).expect("encode");
    frames.push(("record-waiting".into(), [vec![k.len() as u8], k, v].concat()));
    // Stored records: one byte of key length, the key, the value.
    for (i, r) in state.store.records().take(6).enumerate() {
        let (k, v) = minion_storage::codec::encode(r).expect("encode");
        let mut bytes = vec![k.len() as u8];
        bytes.extend(k);
        bytes.extend(v);
        frames.push((format!("record-{i}"), bytes));
    }
    let restore = Request {
        now_ms: 2_000,
        cmd: Command::RestoreRecords {
            restore_id: "r".into(),
            records: state.store.records().filter(|r| !matches!(r, Record::Meta(_))).cloned().collect(),
        },
    };
    frames.push(("request-restore".into(), frame::encode(&restore).expect("encode")));
    frames.push((
        "wal-record".into(),
        minion_storage::wal::encode_record(
            minion_storage::wal::LogPos { index: 4, term: 1, node: 1 },
            &postcard::to_allocvec(&restore).expect("encode"),
        ),
    ));
    // The files a node reads at start, and a peer's answers.
    let checkpoint = minion_storage::checkpoint::Checkpoint {
        log_durable: Some(4),
        state_durable: Some(3),
        state_valid: true,
        committed: Some(minion_storage::wal::LogPos { index: 4, term: 1, node: 1 }),
        clean: true,
    };
    frames.push(("checkpoint".into(), frame::encode(&checkpoint).expect("encode")));
    let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 4);
    let applied = minion_raft::state_machine::Applied { last_applied: Some(log_id), ..Default::default() };
    frames.push(("applied-marker".into(), frame::encode(&applied.marker().expect("marker")).expect("encode")));
    let vote = openraft::Vote::<minion_raft::NodeId>::new_committed(1, 1);
    frames.push(("vote".into(), frame::encode(&postcard::to_allocvec(&vote).expect("encode")).expect("encode")));
    let meta = openraft::SnapshotMeta::<minion_raft::NodeId, minion_raft::Node> {
        last_log_id: Some(log_id),
        snapshot_id: "1-1-4".into(),
        ..Default::default()
    };
    frames.push(("snapshot-meta".into(), postcard::to_allocvec(&meta).expect("encode")));
    let answer: Result<
        openraft::raft::VoteResponse<minion_raft::NodeId>,
        openraft::error::RaftError<minion_raft::NodeId>,
    > = Ok(openraft::raft::VoteResponse { vote, vote_granted: true, last_log_id: Some(log_id) });
    frames.push(("vote-answer".into(), frame::encode(&answer).expect("encode")));
    // A log segment file of three entries.
    let fs = minion_storage::sim::SimFs::with_dirs(&["/w"]);
    let vfs: minion_storage::vfs::SharedVfs = std::sync::Arc::new(fs.clone());
    let opts = minion_storage::wal::WalOptions::default();
    let (mut wal, _) = minion_storage::wal::Wal::open(vfs, std::path::Path::new("/w/log"), opts, None).expect("open");
    let payload = postcard::to_allocvec(&restore).expect("encode");
    let entries: Vec<(minion_storage::wal::LogPos, &[u8])> =
        (0..3).map(|index| (minion_storage::wal::LogPos { index, term: 1, node: 1 }, payload.as_slice())).collect();
    wal.append(&entries).expect("append");
    wal.sync().expect("sync");
    drop(wal);
    let segment = std::path::Path::new("/w/log").join(minion_storage::wal::segment_name(0));
    frames.push(("wal-segment".into(), fs.contents(&segment).expect("segment file")));
    // A snapshot (backup) file of the state's records.
    let fs = minion_storage::sim::SimFs::with_dirs(&["/s"]);
    let vfs: minion_storage::vfs::SharedVfs = std::sync::Arc::new(fs.clone());
    let path = std::path::Path::new("/s/seed.snap");
    let header = minion_storage::snapshot::SnapshotHeader {
        format: minion_storage::snapshot::FORMAT,
        last_index: Some(3),
        ..Default::default()
    };
    let mut w = minion_storage::snapshot::SnapshotWriter::create(&vfs, path, &header).expect("create");
    let kvs: Vec<(Vec<u8>, Vec<u8>)> =
        state.store.records().map(|r| minion_storage::codec::encode(r).expect("encode")).collect();
    w.write_chunk(&kvs).expect("write");
    w.finish().expect("finish");
    frames.push(("snapshot".into(), fs.contents(path).expect("file")));
    // A state block of those records (keys ascending, as the store writes them).
    let mut sorted = kvs.clone();
    sorted.sort();
    frames.push(("block".into(), minion_storage::block::encode(&sorted)));
    // Ingest records: format byte (0 auto, 1 envelope, 2 json, 3 raw; +4: no value), attributes
    // up to the first NUL, then the value.
    frames.push((
        "ingest-envelope".into(),
        b"\x01priority=5\ncapabilities=gpu\0{\"payload\":{\"n\":1},\"queue\":\"q\",\"kind\":\"k\",\"delay_ms\":10}"
            .to_vec(),
    ));
    frames.push(("ingest-raw".into(), b"\x03kind=resize\0\xff\xfehello".to_vec()));
    // Found by libFuzzer (2026-12-06): a record whose value is JSON `null` (auto format).
    frames.push(("ingest-null".into(), b"\x10null".to_vec()));
    // The state image of releases before the record store, both layouts.
    let legacy = minion_engine::legacy::LegacyImageV1 {
        meta: minion_engine::legacy::LegacyMeta {
            config: minion_engine::legacy::LegacyEngineConfig {
                max_attempts: 3,
                lease_ms: 30_000,
                dedup_ttl_ms: 86_400_000,
                retry_base_ms: 1_000,
                retry_max_ms: 300_000,
                retention_ms: 604_800_000,
                payload_bytes_max: 1 << 20,
                strategy: minion_engine::Strategy::RoundRobin,
            },
            next_id: 2,
            next_token: 2,
            clock: 1_000,
            next_incarnation: 1,
        },
        tasks: vec![std::sync::Arc::new(task)],
        dedup: vec![],
        queues: vec![],
        agents: vec![],
    };
    frames.push(("image-v1".into(), frame::encode(&legacy).expect("encode")));
    let legacy2: minion_engine::legacy::LegacyImage = legacy.into();
    frames.push(("image".into(), frame::encode(&legacy2).expect("encode")));
    for (name, bytes) in frames {
        want.push(("decode_frames", name, bytes));
    }
    let bodies: [(u8, &str, &str); 15] = [
        (0, "submit", r#"{"queue":"q","payload":{"x":1},"idempotency_key":"k1","priority":3}"#),
        (0, "batch", r#"{"tasks":[{"queue":"q","payload":1},{"queue":"r","delay_ms":100}]}"#),
        (
            1,
            "rejections",
            r#"{"records":[{"queue":"q","reason":"bad","source":"kafka:t/0@1","idempotency_key":"kafka:t/0@1"}]}"#,
        ),
        (2, "claim", r#"{"agent_id":"a","queues":["q"],"max":2,"wait_ms":0}"#),
        (3, "complete", r#"{"lease_token":1,"result":{"ok":true}}"#),
        (4, "fail", r#"{"lease_token":1,"error":"boom"}"#),
        (9, "queue", r#"{"max_attempts":5,"lease_ms":2000,"strategy":"least_loaded"}"#),
        (10, "agent", r#"{"id":"b","capabilities":["gpu"],"max_concurrency":2}"#),
        (14, "list", "queue=q&state=ready&limit=10"),
        (0, "malformed", r#"{"queue":"q","payload":"#),
        (16, "limits", r#"{"concurrency_per_key":2,"rate":{"starts":10,"period_ms":1000},"fair":true}"#),
        (
            17,
            "schedule-cron",
            r#"{"cron":"*/5 * * * * *","timezone":"Europe/Berlin","task":{"queue":"q","payload":1},"missed":"catch_up","catch_up":3}"#,
        ),
        (17, "schedule-every", r#"{"every_ms":1000,"task":{"queue":"q","kind":"k","priority":2},"paused":true}"#),
        (
            18,
            "children",
            r#"{"lease_token":1,"tasks":[{"queue":"q","idempotency_key":"a"},{"queue":"q","depends_on":["a"]}]}"#,
        ),
        (19, "wait-children", r#"{"lease_token":1}"#),
    ];
    for (route, name, body) in bodies {
        let mut v = vec![route];
        v.extend_from_slice(body.as_bytes());
        want.push(("http_request", name.to_string(), v));
    }
    // Whole requests through the router with authentication on.
    let admin = minion_fuzzing::http::ADMIN_TOKEN;
    let raw: [(&str, String); 6] = [
        ("raw-submit", format!("POST /v1/tasks\nauthorization: Bearer {admin}\ncontent-type: application/json\nidempotency-key: r1\n\n{{\"queue\":\"q\",\"payload\":7}}")),
        ("raw-get", format!("GET /v1/tasks/1?consistency=linearizable\nauthorization: Bearer {admin}\n\n")),
        ("raw-token", format!("POST /v1/tokens\nauthorization: Bearer {admin}\ncontent-type: application/json\n\n{{\"role\":\"producer\",\"queues\":[\"q*\"]}}")),
        ("raw-bad-token", "GET /v1/queues\nauthorization: Bearer mn_1_secret\n\n".to_string()),
        ("raw-path", format!("DELETE /v1/agents/%FF%00..%2F\nauthorization: Bearer {admin}\n\n")),
        ("raw-wait", format!("GET /v1/tasks/2?wait_ms=0\nauthorization: Bearer {admin}\n\n")),
    ];
    for (name, text) in raw {
        let mut v = vec![minion_fuzzing::http::RAW];
        v.extend_from_slice(text.as_bytes());
        want.push(("http_request", name.to_string(), v));
    }
    // Submit, claim, complete with the real token, restart, tick; and a longer mixed run.
    want.push((
        "state_machine",
        "lifecycle".into(),
        vec![0, 1, 8, 0, 2, 1, 0, 0, 4, 1, 0, 0, 15, 0, 0, 0, 11, 9, 0, 0],
    ));
    // A traced submit, a claim, a restore of a copy (refused here, checked into a fresh state).
    want.push(("state_machine", "traced-restore".into(), vec![16, 1, 8, 0, 2, 1, 0, 0, 63, 0, 0, 0, 15, 0, 0, 0]));
    // Audited token creation, revocation and cancel; an audit note; a restart keeps them.
    want.push((
        "state_machine",
        "audited".into(),
        vec![0, 1, 8, 0, 47, 1, 0, 0, 47, 1, 2, 0, 47, 1, 3, 1, 31, 1, 4, 0, 15, 0, 0, 0],
    ));
    // Schedules: an interval, a cron in a time zone catching up, weekdays; refused ones (a bad
    // expression, an unknown zone, a too short interval); ticks fire them across a restart; a
    // delete.
    want.push((
        "state_machine",
        "schedules".into(),
        vec![
            47, 0, 12, 0, 47, 0, 61, 0, 47, 0, 26, 0, 47, 0, 33, 0, 47, 0, 40, 0, 47, 0, 47, 0, 11, 255, 0, 0, 11, 255,
            0, 0, 15, 0, 0, 0, 11, 255, 0, 0, 47, 0, 6, 0, 11, 255, 0, 0,
        ],
    ));
    // A parent: submitted, claimed, two children under its real lease (and one under a made-up
    // token), waits for them; they are claimed and completed, it is claimed again; a cancel of
    // the root cascades.
    want.push((
        "state_machine",
        "children".into(),
        vec![
            0, 0, 0, 0, 2, 0, 0, 0, 24, 0, 2, 1, 24, 0, 3, 1, 40, 0, 2, 1, 2, 0, 0, 0, 4, 0, 0, 2, 4, 0, 0, 3, 2, 0, 0,
            0, 24, 0, 2, 1, 9, 0, 0, 1,
        ],
    ));
    want.push((
        "state_machine",
        "mixed".into(),
        (0u8..=255).flat_map(|i| [i, i.wrapping_mul(7), i % 24, i / 3]).collect(),
    ));

    let write = std::env::var("MINION_WRITE_SEEDS").is_ok();
    for (target, name, bytes) in want {
        let path = corpus_dir(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write seed");
        } else {
            let have = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (MINION_WRITE_SEEDS=1 writes it)", path.display()));
            assert_eq!(have, bytes, "{} is stale (MINION_WRITE_SEEDS=1 rewrites it)", path.display());
        }
    }
}

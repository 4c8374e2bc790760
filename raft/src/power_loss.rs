//! Power-loss simulation of the whole durability path: the write-ahead log, the state writer and
//! store, snapshots (built and installed), the checkpoint and the vote, on a simulated disk
//! ([`SimFs`]) and state store ([`MemStateStore`]).
//!
//! Each run is one seed: a single node proposes random commands (submits with idempotency keys,
//! claims, progress, completions, failures, cancels, retries, agents), appends them to the log,
//! syncs (which commits and applies them, acknowledging them to their callers), and now and then
//! writes the state store, makes it durable, saves the checkpoint, builds or installs a snapshot and
//! purges the log — in the order and with the code production uses, minus the threads. At a
//! seeded point the power goes out: the disk keeps what a completed sync covered (and, by the
//! seed, a prefix of the rest, perhaps torn), the state store keeps a prefix of its writes since
//! its last durable point, or nothing at all. The node reopens and replays its log.
//!
//! Oracle: the directory opens (it only lost unsynced data); every acknowledged entry is in the
//! log; the state equals, record for record, a reference engine that applied the recovered log
//! once; every acknowledged answer is the answer the reference gives (nothing applied twice, no
//! id reused); every invariant holds.
//!
//! `MINION_CRASH_RUNS` (default 10,000) sets the number of seeds, `MINION_CRASH_SEED` the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minion_engine::{
    Ack, AgentSpec, ApplyMeta, Command, Memory, NewTask, Outcome, Request, Response, State, TaskState,
};
use minion_storage::disk::{Disk, DiskOptions};
use minion_storage::mem_store::MemStateStore;
use minion_storage::packed::{PackConfig, Packed};
use minion_storage::sim::{Dice, Loss, SimFs};
use minion_storage::state_store::{StateStore, StoreError, STATE_KEYS_FROM, STATE_KEYS_TO};
use minion_storage::vfs::{OpenMode, SharedVfs};
use minion_storage::wal::{LogPos, Wal, WalOptions};
use minion_storage::{codec, layout};
use openraft::EntryPayload;

use crate::checkpointer::Checkpointer;
use crate::log_store::purge_target;
use crate::state_machine::{apply_entries, build, install, Applied, SharedState, SmDisk, StateMachine};
use crate::{log_id, Entry, PurgeBounds};

const DIR: &str = "/data";

/// A node's storage as the simulation drives it (production's parts, without threads).
pub(crate) struct SimNode {
    wal: Wal,
    pub(crate) shared: SharedState,
    pub(crate) disk: Arc<SmDisk>,
    checkpointer: Arc<Checkpointer>,
    bounds: Arc<PurgeBounds>,
    store: MemStateStore,
}

fn now_of(index: u64) -> u64 {
    1_000_000 + index * 37
}

pub(crate) fn entry(index: u64, cmd: Option<Command>) -> Entry {
    let log_id = log_id(&LogPos { index, term: 1, node: 1 });
    match cmd {
        Some(cmd) => Entry { log_id, payload: EntryPayload::Normal(Request { now_ms: now_of(index), cmd }) },
        None => Entry { log_id, payload: EntryPayload::Blank },
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Open the directory as production does (recovery included), then replay the log.
pub(crate) fn open(fs: &SimFs, store: MemStateStore, store_opens: bool) -> Result<SimNode, String> {
    let vfs: SharedVfs = Arc::new(fs.clone());
    let dir = Path::new(DIR);
    let opts = DiskOptions {
        wal: WalOptions { segment_bytes: 2_048, fsync: true },
        writer_queue_bytes: 1 << 30,
        verify_snapshot_bytes_max: u64::MAX,
    };
    let fresh = Mutex::new(None::<MemStateStore>);
    let mut open_store = |wipe: bool| -> Result<Arc<dyn StateStore>, StoreError> {
        if wipe {
            let s = MemStateStore::default();
            *fresh.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
            return Ok(Arc::new(Packed::new(s, sim_packing())));
        }
        if !store_opens {
            return Err(StoreError::Corrupt { path: "mem".into(), what: "simulated damage".into() });
        }
        Ok(Arc::new(Packed::new(store.clone(), sim_packing())))
    };
    let disk = Disk::open(vfs.clone(), dir, &opts, &mut open_store).map_err(err)?;
    let store = fresh.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or(store);
    let checkpointer = Arc::new(Checkpointer::new(vfs.clone(), dir.to_path_buf(), disk.checkpoint.clone()));
    let bounds = Arc::new(PurgeBounds::default());
    bounds.set_state_durable(disk.applied.index);
    bounds.set_snapshot(disk.summary.snapshot.as_ref().and_then(|s| s.index));
    let engine = State::load(&disk.records).map_err(err)?;
    engine.validate(&disk.records, false)?;
    let applied = Applied::from_marker(&disk.applied)?;
    let sm_disk = Arc::new(SmDisk {
        vfs,
        writer: disk.writer.clone(),
        snapshots: Mutex::new(disk.snapshots),
        snapshot_dir: dir.join(layout::SNAPSHOT_DIR),
        checkpointer: checkpointer.clone(),
        bounds: bounds.clone(),
        origin: "sim".into(),
        on_purge_bounds: Box::new(|| {}),
    });
    let sm = StateMachine::new(engine, applied, disk.records.clone(), sm_disk.clone());
    let mut node = SimNode { wal: disk.wal, shared: sm.shared(), disk: sm_disk, checkpointer, bounds, store };
    // Replay: a single node commits everything in its log (its first entry as leader does).
    let from = node.shared.read().applied.last_applied.map(|l| l.index + 1).unwrap_or(0);
    let last = node.wal.reader().last_pos().map(|p| p.index + 1).unwrap_or(0);
    let entries: Vec<Entry> = node
        .wal
        .reader()
        .read_range(from, last)
        .map_err(err)?
        .into_iter()
        .map(|(_, b)| postcard::from_bytes(&b).map_err(err))
        .collect::<Result<_, _>>()?;
    if entries.len() as u64 != last.saturating_sub(from) {
        return Err(format!("replay from {from}: {} entries of {}", entries.len(), last - from));
    }
    apply_entries(&node.shared, &node.disk.writer, entries, &tracing::Span::none()).map_err(err)?;
    node.disk.writer.write_pending().map_err(err)?;
    let _ = &mut node;
    Ok(node)
}

/// One command a client might send, against what the node holds now.
fn command(d: &mut Dice, node: &SimNode, next_key: &mut u64) -> Command {
    let g = node.shared.read();
    let leased: Vec<(u64, u64)> =
        g.engine.live_tasks().filter_map(|t| t.lease.as_ref().map(|l| (t.id, l.token))).collect();
    let next_id = g.engine.meta().next_id;
    drop(g);
    let queue = ["a", "b"][d.below(2) as usize].to_string();
    match d.below(12) {
        0..=3 => {
            let n = 1 + d.below(3);
            let tasks = (0..n)
                .map(|_| {
                    let key = if d.chance(600) {
                        *next_key += 1;
                        Some(format!("k{}", d.below(*next_key)))
                    } else {
                        None
                    };
                    NewTask {
                        queue: queue.clone(),
                        kind: "k".into(),
                        payload: format!("{{\"n\":{}}}", d.below(1_000)),
                        idempotency_key: key,
                        max_attempts: Some(1 + d.below(3) as u32),
                        delay_ms: d.chance(150).then(|| d.below(500)),
                        lease_ms: Some(200 + d.below(500)),
                        ..NewTask::default()
                    }
                })
                .collect();
            Command::Submit { tasks }
        }
        4 | 5 => Command::Claim {
            agent_id: ["x", "y", "anon"][d.below(3) as usize].into(),
            queues: vec![queue],
            capabilities: vec![],
            max: 1 + d.below(3) as u32,
        },
        6 | 7 if !leased.is_empty() => {
            let (id, token) = leased[d.below(leased.len() as u64) as usize];
            match d.below(5) {
                // Several at once, perhaps the same task twice or one already finished.
                4 => Command::Acknowledge {
                    acks: (0..1 + d.below(3))
                        .map(|_| {
                            let (id, token) = if d.chance(200) {
                                (1 + d.below(next_id), 1)
                            } else {
                                leased[d.below(leased.len() as u64) as usize]
                            };
                            if d.chance(300) {
                                Ack::Fail { task_id: id, lease_token: token, error: "boom".into() }
                            } else {
                                Ack::Complete { task_id: id, lease_token: token, result: Some("1".into()) }
                            }
                        })
                        .collect(),
                },
                0 => Command::Fail { task_id: id, lease_token: token, error: "boom".into() },
                1 => Command::Progress {
                    task_id: id,
                    lease_token: token,
                    percent: Some(50),
                    message: Some("half".into()),
                },
                _ => Command::Complete { task_id: id, lease_token: token, result: Some("\"ok\"".into()) },
            }
        }
        8 => Command::Cancel { task_id: 1 + d.below(next_id), reason: None },
        9 => Command::Retry { task_id: 1 + d.below(next_id) },
        10 => Command::RegisterAgent {
            spec: AgentSpec {
                id: ["x", "y"][d.below(2) as usize].into(),
                max_concurrency: 1 + d.below(3) as u32,
                ..AgentSpec::default()
            },
        },
        _ => Command::Tick,
    }
}

/// Production's packed kinds with small blocks, packed every few puts, so that crashes land
/// between records and their blocks too.
fn sim_packing() -> PackConfig {
    let kinds = PackConfig::minion().kinds.into_iter().map(|(k, _)| (k, 200)).collect();
    PackConfig { kinds, trigger: 4, step: 4, steps_per_write: 2, min_run: 3 }
}

/// Records found in blocks by [`store_contents`], over every run (so the test knows packing ran).
static PACKED_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Everything in the state store, by key, as the record layer reads it (through the blocks).
fn store_contents(store: &MemStateStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let packed = Packed::new(store.clone(), sim_packing());
    if let Ok((_, entries)) = packed.block_stats() {
        PACKED_SEEN.fetch_add(entries, std::sync::atomic::Ordering::Relaxed);
    }
    packed
        .range(std::ops::Bound::Included(STATE_KEYS_FROM), STATE_KEYS_TO, usize::MAX)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn run(seed: u64) -> Result<(), String> {
    let mut d = Dice::new(seed, 0x2545_F491_4F6C_DD1D);
    let fs = SimFs::with_dirs(&[DIR]);
    let store = MemStateStore::default();
    let mut node = open(&fs, store, true).map_err(|e| format!("first open: {e}"))?;
    // Every entry ever appended, in order (one node: the log only grows).
    let mut history: Vec<Entry> = Vec::new();
    let mut acked: Vec<(u64, Response)> = Vec::new();
    let mut next_key = 0u64;
    let mut appended = 0u64;
    let mut applied = 0u64;
    // The first entry, as openraft's: blank, committed before anything else.
    let crash_at = fs.ops() + d.below(250);
    fs.crash_at(crash_at);
    let mut step = |node: &mut SimNode, d: &mut Dice| -> Result<(), String> {
        match d.below(20) {
            // Propose: append a few entries (not yet durable, not yet acknowledged).
            0..=7 => {
                let n = 1 + d.below(3);
                let mut batch = Vec::new();
                for _ in 0..n {
                    let e = if appended == 0 {
                        entry(0, None)
                    } else {
                        entry(appended, Some(command(d, node, &mut next_key)))
                    };
                    appended += 1;
                    batch.push((e.log_id, postcard::to_allocvec(&e).map_err(err)?));
                    history.push(e);
                }
                let refs: Vec<(LogPos, &[u8])> =
                    batch.iter().map(|(id, b)| (crate::log_pos(id), b.as_slice())).collect();
                node.wal.append(&refs).map_err(err)
            }
            // Sync: the entries are durable, hence committed; apply them and acknowledge.
            8..=10 => {
                node.wal.sync().map_err(err)?;
                let todo: Vec<Entry> = history[applied as usize..appended as usize].to_vec();
                let first = applied;
                let (answers, _) =
                    apply_entries(&node.shared, &node.disk.writer, todo, &tracing::Span::none()).map_err(err)?;
                for (i, a) in answers.into_iter().enumerate() {
                    acked.push((first + i as u64, a));
                }
                applied = appended;
                Ok(())
            }
            11 | 12 => node.disk.writer.write_pending().map(|_| ()).map_err(err),
            13 => {
                node.disk.writer.write_pending().map_err(err)?;
                let durable = node.disk.writer.make_durable().map_err(err)?;
                node.bounds.set_state_durable(durable);
                node.checkpointer.update(|c| c.state_durable = durable.max(c.state_durable));
                Ok(())
            }
            14 => {
                let synced = applied.checked_sub(1);
                node.checkpointer.update(|c| {
                    c.log_durable = synced.max(c.log_durable);
                    c.committed = synced.map(|i| crate::log_pos(&history[i as usize].log_id));
                });
                node.checkpointer.save().map_err(err)
            }
            15 => {
                node.disk.writer.write_pending().map_err(err)?;
                build(&node.disk).map(|_| ())
            }
            16 => {
                // Purge as raft asks after a snapshot, clamped as the log thread clamps it.
                let Some(want) = applied.checked_sub(1 + d.below(4)) else { return Ok(()) };
                let pos = crate::log_pos(&history[want as usize].log_id);
                match purge_target(pos, node.bounds.limit(), &node.wal.reader()) {
                    Some(t) => node.wal.purge(t).map_err(err),
                    None => Ok(()),
                }
            }
            17 if d.chance(300) => {
                // Install a snapshot of this very state, as a follower would one received.
                node.disk.writer.write_pending().map_err(err)?;
                let (meta, path) = build(&node.disk)?;
                let tmp = node.disk.snapshots.lock().unwrap_or_else(|p| p.into_inner()).temp_path("recv");
                let bytes = node.disk.vfs.open(&path, OpenMode::Read).and_then(|f| f.read_all()).map_err(err)?;
                let f = node.disk.vfs.open(&tmp, OpenMode::Truncate).map_err(err)?;
                f.write_all_at(&bytes, 0).map_err(err)?;
                drop(f);
                let engine = install(&node.disk, &node.shared.records, &meta, &tmp)?;
                let applied = Applied { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
                node.shared.replace_engine(engine, applied);
                Ok(())
            }
            _ => node.disk.writer.write_pending().map(|_| ()).map_err(err),
        }
    };
    for _ in 0..300 {
        if fs.crashed() {
            break;
        }
        if step(&mut node, &mut d).is_err() {
            break;
        }
    }
    fs.crash_now();
    node.store.crash();
    let writes = node.store.writes_since_durable();
    let keep = if d.chance(100) { None } else { Some(d.below(writes as u64 + 1) as usize) };
    let loss = [Loss::Unsynced, Loss::Prefix, Loss::Torn][d.below(3) as usize];
    let fs2 = fs.after_power_loss(loss, &mut |n| d.below(n));
    let store2 = node.store.after_power_loss(keep);
    let store_opens = !d.chance(50);
    let what = format!("seed {seed} (crash at op {crash_at}, {loss:?}, store keeps {keep:?}, opens {store_opens})");
    drop(node);
    let node = open(&fs2, store2, store_opens).map_err(|e| format!("{what}: reopening failed: {e}"))?;

    // Every acknowledged entry is in the log (or covered by what the state holds).
    let applied_now = node.shared.read().applied.last_applied.map(|l| l.index);
    if let Some((last_acked, _)) = acked.last() {
        if applied_now.is_none_or(|a| a < *last_acked) {
            return Err(format!("{what}: entry {last_acked} was acknowledged, the node recovered to {applied_now:?}"));
        }
    }
    let recovered = applied_now.map(|a| a + 1).unwrap_or(0) as usize;
    if recovered > history.len() {
        return Err(format!("{what}: recovered {recovered} entries, only {} were ever written", history.len()));
    }
    // A reference engine applies the recovered log once.
    let mut reference = Memory::new(minion_engine::EngineConfig::default());
    let mut answers = Vec::new();
    for e in &history[..recovered] {
        answers.push(match &e.payload {
            EntryPayload::Normal(req) => reference.apply(req, ApplyMeta { log_index: e.log_id.index }),
            _ => Ok(Outcome::Done),
        });
    }
    for (index, got) in &acked {
        if answers.get(*index as usize) != Some(got) {
            return Err(format!(
                "{what}: entry {index} was acknowledged with {got:?}, the recovered log answers {:?}",
                answers.get(*index as usize)
            ));
        }
    }
    let want: BTreeMap<Vec<u8>, Vec<u8>> =
        reference.store.records().map(|r| codec::encode(r).map_err(err)).collect::<Result<_, _>>()?;
    let mut got = store_contents(&node.store);
    // Nothing applied since a fresh start writes no counters yet: RAM has them.
    let meta = codec::encode(&minion_engine::Record::Meta(node.shared.read().engine.meta().clone())).map_err(err)?;
    got.entry(meta.0).or_insert(meta.1);
    if got != want {
        let missing: Vec<_> =
            want.keys().filter(|k| !got.contains_key(*k)).take(5).map(|k| codec::decode_key(k)).collect();
        let extra: Vec<_> =
            got.keys().filter(|k| !want.contains_key(*k)).take(5).map(|k| codec::decode_key(k)).collect();
        let changed: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
            .take(5)
            .map(|(k, _)| codec::decode_key(k))
            .collect();
        return Err(format!(
            "{what}: the recovered state differs from the reference: missing {missing:?}, extra {extra:?}, changed {changed:?}"
        ));
    }
    node.shared.read().engine.validate(&node.shared.records, true).map_err(|v| format!("{what}: {v}"))?;
    // The directory keeps working: one more write lands.
    let _ = TaskState::Ready;
    Ok(())
}

#[test]
fn seeded_power_losses_lose_nothing_acknowledged() {
    let runs: u64 = std::env::var("MINION_CRASH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let base: u64 = std::env::var("MINION_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for seed in base..base + runs {
        if let Err(e) = run(seed) {
            failures.push(e);
            if failures.len() == 5 {
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{} failures, first ones:\n{}", failures.len(), failures.join("\n"));
    let packed = PACKED_SEEN.load(std::sync::atomic::Ordering::Relaxed);
    assert!(runs < 100 || packed > 0, "no run recovered a store with records in blocks");
    eprintln!(
        "{runs} seeded power losses in {:.1} s ({packed} records read back from blocks)",
        started.elapsed().as_secs_f64()
    );
    let _: Option<PathBuf> = None;
}

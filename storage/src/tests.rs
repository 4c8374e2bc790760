use minion_engine::{ApplyMeta, Command, NewTask, Request, State};

use super::*;

fn submit(state: &mut State, n: usize, key: Option<&str>) {
    let tasks = (0..n)
        .map(|i| NewTask {
            queue: "q".into(),
            kind: "k".into(),
            payload: format!("{{\"i\":{i}}}"),
            idempotency_key: key.map(|k| format!("{k}-{i}")),
            ..NewTask::default()
        })
        .collect();
    state
        .apply(&Request { now_ms: 1_000, cmd: Command::Submit { tasks } }, ApplyMeta { log_index: 1 })
        .expect("submit");
}

#[test]
fn persisted_state_reloads_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Durability::Fsync).expect("open");
    let mut state = State::default();
    submit(&mut state, 10, Some("key"));
    let dirty = state.take_dirty();
    store.sm_persist(&state, &dirty, &7u64, &[]).expect("persist");
    store.sync().expect("sync");
    drop(store);

    let store = Store::open(dir.path(), Durability::Fsync).expect("reopen");
    let (loaded, applied) = store.sm_load::<u64>().expect("load");
    assert_eq!(applied, Some(7));
    assert_eq!(loaded.image(), state.image());
    loaded.validate().expect("invariants after reload");
}

fn submit_traced(state: &mut State, tp: &str) {
    let tasks = vec![NewTask { queue: "q".into(), payload: "1".into(), ..NewTask::default() }];
    let cmd = Command::SubmitTraced { tasks, trace_parent: tp.into() };
    state.apply(&Request { now_ms: 2_000, cmd }, ApplyMeta { log_index: 2 }).expect("submit traced");
}

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn trace_contexts_persist_reload_and_travel_in_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Durability::Fsync).expect("open");
    let mut state = State::default();
    submit(&mut state, 3, None);
    submit_traced(&mut state, TP);
    let dirty = state.take_dirty();
    assert_eq!(dirty.traces.len(), 1);
    store.sm_persist(&state, &dirty, &3u64, &[]).expect("persist");
    drop(store);
    let store = Store::open(dir.path(), Durability::Fsync).expect("reopen");
    let (loaded, _) = store.sm_load::<u64>().expect("load");
    assert_eq!(loaded.trace_parent(4), Some(TP));
    assert_eq!(loaded.image(), state.image());

    // A snapshot image carries them, and installing one writes them.
    let image = state.image();
    assert_eq!(image.extras.len(), 1);
    let bytes = frame::encode(&image).expect("encode");
    assert_eq!(frame::decode_image(&bytes).expect("decode"), image);
    let other = tempfile::tempdir().expect("tempdir");
    let store2 = Store::open(other.path(), Durability::Fsync).expect("open");
    store2.sm_replace(&image, &9u64, 9).expect("install");
    let (installed, _) = store2.sm_load::<u64>().expect("load");
    assert_eq!(installed.trace_parent(4), Some(TP));
    installed.validate().expect("invariants");
}

#[test]
fn images_written_before_extras_existed_still_decode() {
    let mut state = State::default();
    submit(&mut state, 5, Some("key"));
    let now = state.image();
    let old = minion_engine::StateImageV1 {
        meta: now.meta.clone(),
        tasks: now.tasks.clone(),
        dedup: now.dedup.clone(),
        queues: now.queues.clone(),
        agents: now.agents.clone(),
    };
    let bytes = frame::encode(&old).expect("encode");
    assert!(frame::decode::<StateImage>(&bytes).is_err(), "the old layout is not the current one");
    assert_eq!(frame::decode_image(&bytes).expect("decode"), now);
    // A current image is never read as an old one, and damage is still reported as such.
    let cur = frame::encode(&now).expect("encode");
    assert!(frame::decode::<minion_engine::StateImageV1>(&cur).is_err());
    let mut damaged = bytes.clone();
    damaged[8] ^= 1;
    assert!(matches!(frame::decode_image(&damaged), Err(FrameError::Checksum { .. })));
}

#[test]
fn log_append_range_truncate_purge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Durability::Flush).expect("open");
    let entries: Vec<(u64, String)> = (1..=10).map(|i| (i, format!("e{i}"))).collect();
    store.log_append(entries.iter().map(|(i, e)| (*i, e))).expect("append");
    assert_eq!(store.log_range::<String>(3..6).expect("range"), vec!["e3", "e4", "e5"]);
    store.log_truncate(8).expect("truncate");
    assert_eq!(store.log_last::<String>().expect("last"), Some("e7".into()));
    store.log_purge(4).expect("purge");
    assert_eq!(store.log_range::<String>(..).expect("range"), vec!["e5", "e6", "e7"]);
}

#[test]
fn a_corrupt_record_is_reported_with_the_path_never_read_as_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Durability::Flush).expect("open");
    let mut state = State::default();
    submit(&mut state, 3, None);
    let dirty = state.take_dirty();
    store.sm_persist(&state, &dirty, &1u64, &[]).expect("persist");
    // Flip one byte of task 2's stored record, bypassing the frame.
    let key = task_key(2);
    let mut raw = store.inner.sm.get(key).expect("get").expect("present").to_vec();
    let last = raw.len() - 1;
    raw[last] ^= 0x40;
    store.inner.sm.insert(key, raw).expect("insert");
    let err = store.sm_load::<u64>().err().expect("load must fail");
    let msg = err.to_string();
    assert!(msg.contains("task record 2") && msg.contains("checksum"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "error names the data path: {msg}");

    store.log_append([(1u64, &"entry".to_string())]).expect("append");
    let mut raw = store.inner.log.get(index_key(1)).expect("get").expect("present").to_vec();
    raw[6] ^= 1;
    store.inner.log.insert(index_key(1), raw).expect("insert");
    let msg = store.log_range::<String>(..).err().expect("log read must fail").to_string();
    assert!(msg.contains("raft log entry 1"), "{msg}");
}

#[test]
fn a_log_shorter_than_the_checkpoint_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), Durability::Fsync).expect("open");
        let entries: Vec<(u64, String)> = (1..=10).map(|i| (i, format!("e{i}"))).collect();
        store.log_append(entries.iter().map(|(i, e)| (*i, e))).expect("append");
        store.sync().expect("sync");
        store.checkpoint(10).expect("checkpoint");
        store.checkpoint(5).expect("an older checkpoint is a no-op");
        // Simulate sled recovering only a prefix: the tail of the log is gone.
        store.log_truncate(8).expect("truncate");
        store.sync().expect("sync");
    }
    let err = Store::open(dir.path(), Durability::Fsync).err().expect("must refuse");
    let msg = err.to_string();
    assert!(msg.contains("ends at index 7") && msg.contains("index 10"), "{msg}");

    // Purged entries count as present: a compacted log is not a lost log.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path(), Durability::Fsync).expect("open");
        let entries: Vec<(u64, String)> = (1..=10).map(|i| (i, format!("e{i}"))).collect();
        store.log_append(entries.iter().map(|(i, e)| (*i, e))).expect("append");
        store.log_purge(10).expect("purge");
        store.sync().expect("sync");
        store.checkpoint(10).expect("checkpoint");
    }
    Store::open(dir.path(), Durability::Fsync).expect("a purged log up to the checkpoint opens");

    // A damaged checkpoint file is itself reported.
    std::fs::write(dir.path().join(CHECKPOINT_FILE), b"\x01garbage").expect("write");
    let msg = Store::open(dir.path(), Durability::Fsync).err().expect("must refuse").to_string();
    assert!(msg.contains("checkpoint"), "{msg}");
}

#[test]
fn the_change_feed_is_written_with_the_state_and_read_in_whole_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Durability::Flush).expect("open");
    let mut state = State::default();
    let mut feed = Vec::new();
    for index in 1..=5u64 {
        submit(&mut state, 2, None);
        let dirty = state.take_dirty();
        feed.push((index, minion_engine::changes::changes(&state, &dirty)));
        store.sm_persist(&state, &dirty, &index, &feed[feed.len() - 1..]).expect("persist");
    }
    assert_eq!(store.changes_purged_before().expect("watermark"), 0);
    let got = store.changes_after(2, 3).expect("read");
    assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![3, 4], "whole entries until 3 records");
    assert_eq!(got[0].1.len(), 2);
    assert_eq!(store.changes_purge_before(4).expect("purge"), 3);
    assert_eq!(store.changes_purged_before().expect("watermark"), 4);
    assert_eq!(store.changes_after(0, 100).expect("read")[0].0, 4, "entries 1..3 are gone");
}

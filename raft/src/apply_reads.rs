//! Apply reads the state store before it takes the engine's write lock: records the engine
//! names ahead (idempotency keys the bloom filter may hold, finished tasks) are read with no lock
//! held, so API readers never wait behind a disk read of apply's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use minion_engine::{Ack, Command, NewTask, Outcome};
use minion_storage::mem_store::MemStateStore;
use minion_storage::sim::SimFs;

use crate::power_loss::{entry, open};
use crate::state_machine::apply_entries;

fn keyed(keys: std::ops::Range<u32>) -> Command {
    let tasks = keys
        .map(|k| NewTask {
            queue: "q".into(),
            kind: "k".into(),
            payload: "1".into(),
            idempotency_key: Some(format!("key-{k}")),
            ..NewTask::default()
        })
        .collect();
    Command::Submit { tasks }
}

#[test]
fn apply_reads_the_state_store_only_outside_the_engine_lock() {
    let fs = SimFs::with_dirs(&["/data"]);
    let store = MemStateStore::default();
    let node = open(&fs, store.clone(), true).expect("open");
    let reads = Arc::new(AtomicU64::new(0));
    let under_lock = Arc::new(Mutex::new(Vec::new()));
    {
        let (reads, under_lock) = (reads.clone(), under_lock.clone());
        let me = std::thread::current().id();
        store.on_get(Arc::new(move |key: &[u8]| {
            if std::thread::current().id() != me {
                return; // not this test's apply
            }
            reads.fetch_add(1, Ordering::Relaxed);
            // This thread's apply holding the lock (not the lock held by some other thread, such
            // as a bloom-filter rebuild installing its filter: that made this test flaky).
            if crate::state_machine::apply_lock::held_here() {
                under_lock.lock().unwrap_or_else(|p| p.into_inner()).push(minion_storage::codec::decode_key(key));
            }
        }));
    }
    let mut index = 1;
    let mut apply = |cmd: Command| -> minion_engine::Response {
        let mut out =
            apply_entries(&node.shared, &node.disk.writer, vec![entry(index, Some(cmd))], &tracing::Span::none())
                .expect("apply")
                .0;
        index += 1;
        // Everything reaches the store, so the next apply must read from it, not the overlay.
        node.disk.writer.write_pending().expect("write");
        out.pop().expect("one answer")
    };
    apply(keyed(0..50)).expect("submit");
    let again = apply(keyed(25..75)).expect("submit with half the keys seen");
    let Outcome::Submitted(s) = again else { panic!("{again:?}") };
    assert_eq!(s.iter().filter(|t| t.duplicate).count(), 25, "keys 25..50 were read from the store");
    let claimed =
        apply(Command::Claim { agent_id: "a".into(), queues: vec!["q".into()], capabilities: vec![], max: 10 });
    let Ok(Outcome::Claimed(ts)) = claimed else { panic!("{claimed:?}") };
    let acks: Vec<Ack> = ts
        .iter()
        .map(|t| Ack::Complete { task_id: t.id, lease_token: t.lease.as_ref().expect("lease").token, result: None })
        .collect();
    apply(Command::Acknowledge { acks: acks.clone() }).expect("acknowledge");
    // The same again: every task is finished now, its record is read from the store.
    let Ok(Outcome::Batch(outs)) = apply(Command::Acknowledge { acks }) else { panic!("acknowledge") };
    assert!(outs.iter().all(|o| o.is_err()), "finished tasks cannot be completed again: {outs:?}");
    let done = ts[0].id;
    apply(Command::Cancel { task_id: done, reason: None }).expect_err("a finished task cannot be cancelled");
    apply(Command::Retry { task_id: done }).expect_err("a succeeded task cannot be retried");
    apply(Command::Batch {
        cmds: vec![keyed(0..5), Command::Complete { task_id: done, lease_token: 1, result: None }],
    })
    .expect("group commit");

    let reads = reads.load(Ordering::Relaxed);
    assert!(reads >= 25 + 10 + 2 + 5, "the workload reads records from the store: {reads} reads");
    let under_lock = under_lock.lock().unwrap_or_else(|p| p.into_inner());
    assert!(under_lock.is_empty(), "state store reads while apply held the engine's write lock: {under_lock:?}");
}

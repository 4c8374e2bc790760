//! The log tail's bound is a bound on memory. With dhat counting every allocation of this test
//! binary, a tail filled far past its bound with small commands (the claims and completions that
//! make up most of a busy log) holds no more heap than its count says, give or take a quarter;
//! and the same entries kept decoded — what the tail held before, counted by their encoded size —
//! take several times that, which is why the three-node soak's RSS climbed to ~0.9 GiB between
//! snapshots (docs/reliability.md).

use minion_engine::{Command, Request};
use minion_raft::log_tail::Tail;
use minion_raft::Entry;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn entry(index: u64) -> Entry {
    let cmd = if index.is_multiple_of(2) {
        Command::Claim {
            agent_id: format!("agent-{}", index % 16),
            queues: vec!["q".into()],
            capabilities: vec![],
            max: 1,
        }
    } else {
        Command::Complete { task_id: index, lease_token: index, result: Some("{\"ok\":true}".into()) }
    };
    Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: openraft::EntryPayload::Normal(Request { now_ms: index, cmd }),
    }
}

fn heap() -> usize {
    dhat::HeapStats::get().curr_bytes
}

#[test]
fn the_tail_holds_what_it_counts() {
    let _profiler = dhat::Profiler::builder().testing().build();
    const MAX: usize = 4 << 20;
    const N: u64 = 200_000;

    let base = heap();
    let mut tail = Tail::new(MAX);
    for i in 0..N {
        tail.insert(i, postcard::to_allocvec(&entry(i)).expect("encode"));
        tail.trim(i + 1);
    }
    let held = heap() - base;
    let counted = tail.bytes();
    assert!(counted <= MAX, "trimmed to the bound: {counted}");
    assert!(tail.len() < N as usize / 2, "the bound was reached and entries dropped: {}", tail.len());
    eprintln!("encoded tail: {} entries, counted {counted} B, heap {held} B", tail.len());
    assert!(held <= counted + counted / 4, "the tail holds {held} B of heap but counts {counted} B");
    assert!(held >= counted / 2, "the count is not a gross overestimate either: {held} B held, {counted} B counted");
    let mut out = Vec::new();
    tail.read(N - 3, N, &mut out).expect("read");
    assert_eq!(out.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![N - 3, N - 2, N - 1]);
    let entries = tail.len();
    drop((tail, out));

    // The same number of entries, decoded, against their encoded size.
    let base = heap();
    let mut decoded = std::collections::BTreeMap::new();
    let mut encoded_bytes = 0;
    for i in 0..entries as u64 {
        let e = entry(i);
        encoded_bytes += postcard::to_allocvec(&e).expect("encode").len();
        decoded.insert(i, e);
    }
    let held_decoded = heap() - base;
    eprintln!("decoded: {entries} entries, {encoded_bytes} B encoded, heap {held_decoded} B");
    assert!(
        held_decoded > 4 * encoded_bytes,
        "decoded entries take several times their encoded size ({held_decoded} B for {encoded_bytes} B)"
    );
}

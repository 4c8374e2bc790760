//! The log's in-memory tail: the entries appended last, readable at once (before the log thread
//! has written them) and cheaply afterwards (replication and apply read what was just appended).
//!
//! Entries are kept **encoded**, as the log writes them, and decoded on read. What the tail counts
//! against its bound is then what it holds: the encoded bytes (the allocation's capacity) plus a
//! fixed cost per entry for the map slot and the allocator. A decoded entry of a small command
//! (a claim, a completion) takes about 25 times its encoded size in memory (measured by
//! `tests/log_tail_memory.rs`), so a tail of decoded entries counted by encoded size held
//! ~0.7 GiB when its bound said 64 MiB (the three-node soak in docs/reliability.md).

use std::collections::BTreeMap;

use crate::Entry;

/// What one entry costs besides its bytes: the map's slot (key, vector header) with the B-tree's
/// slack, and the allocator's header and rounding for the bytes.
pub const ENTRY_OVERHEAD: usize = 96;

pub struct Tail {
    entries: BTreeMap<u64, Vec<u8>>,
    bytes: usize,
    max: usize,
}

fn cost(bytes: &[u8]) -> usize {
    bytes.len() + ENTRY_OVERHEAD
}

impl Tail {
    /// A tail that keeps at most about `max` bytes of entries already on disk.
    pub fn new(max: usize) -> Tail {
        Tail { entries: BTreeMap::new(), bytes: 0, max }
    }

    /// What the tail holds, by the count it is bounded by.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first index held.
    pub fn first(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    /// Hold entry `index`, encoded (a re-append after a truncation replaces what was there).
    pub fn insert(&mut self, index: u64, mut bytes: Vec<u8>) {
        bytes.shrink_to_fit();
        self.bytes += cost(&bytes);
        if let Some(old) = self.entries.insert(index, bytes) {
            self.bytes -= cost(&old);
        }
    }

    /// Drop the oldest entries while over the bound, but only those before `synced` (entries not
    /// yet on disk can be read nowhere else).
    pub fn trim(&mut self, synced: u64) {
        while self.bytes > self.max {
            match self.entries.first_key_value() {
                Some((&i, _)) if i < synced => {}
                _ => break,
            }
            if let Some((_, b)) = self.entries.pop_first() {
                self.bytes -= cost(&b);
            }
        }
    }

    /// Drop entries from `index` on (a truncation).
    pub fn truncate_from(&mut self, index: u64) {
        let removed = self.entries.split_off(&index);
        self.bytes -= removed.values().map(|b| cost(b)).sum::<usize>();
    }

    /// Drop entries up to and including `index` (a purge).
    pub fn purge_through(&mut self, index: u64) {
        let keep = self.entries.split_off(&index.saturating_add(1));
        let dropped = std::mem::replace(&mut self.entries, keep);
        self.bytes -= dropped.values().map(|b| cost(b)).sum::<usize>();
    }

    /// The entries in `start..end` the tail holds, decoded.
    pub fn read(&self, start: u64, end: u64, out: &mut Vec<Entry>) -> Result<(), String> {
        for (i, b) in self.entries.range(start..end) {
            out.push(postcard::from_bytes(b).map_err(|e| format!("log entry {i} in memory does not decode: {e}"))?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, queue: &str) -> (u64, Vec<u8>) {
        let cmd = minion_engine::Command::Claim {
            agent_id: "agent-1".into(),
            queues: vec![queue.into()],
            capabilities: vec![],
            max: 1,
        };
        let e = Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(minion_engine::Request { now_ms: 1, cmd }),
        };
        (index, postcard::to_allocvec(&e).expect("encode"))
    }

    #[test]
    fn reads_decode_what_was_appended_and_replacements_keep_the_count_right() {
        let mut t = Tail::new(1 << 20);
        for i in 0..10 {
            let (i, b) = entry(i, "q");
            t.insert(i, b);
        }
        let before = t.bytes();
        let (i, b) = entry(4, "a-longer-queue-name");
        t.insert(i, b.clone());
        assert_eq!(t.bytes(), before + b.len() - entry(4, "q").1.len());
        let mut out = Vec::new();
        t.read(3, 6, &mut out).expect("read");
        assert_eq!(out.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![3, 4, 5]);
        match &out[1].payload {
            openraft::EntryPayload::Normal(r) => match &r.cmd {
                minion_engine::Command::Claim { queues, .. } => assert_eq!(queues, &["a-longer-queue-name"]),
                other => panic!("{other:?}"),
            },
            _ => panic!("not a normal entry"),
        }
        t.truncate_from(8);
        t.purge_through(1);
        assert_eq!((t.first(), t.len()), (Some(2), 6));
        let sum: usize = (2..8).map(|i| if i == 4 { b.len() } else { entry(i, "q").1.len() } + ENTRY_OVERHEAD).sum();
        assert_eq!(t.bytes(), sum, "the count is what is held");
        t.purge_through(u64::MAX);
        assert!(t.is_empty());
        assert_eq!(t.bytes(), 0);
    }

    #[test]
    fn the_bound_keeps_entries_not_yet_on_disk() {
        let mut t = Tail::new(10 * (entry(0, "q").1.len() + ENTRY_OVERHEAD));
        for i in 0..100 {
            let (i, b) = entry(i, "q");
            t.insert(i, b);
        }
        t.trim(95);
        assert_eq!(t.first(), Some(90), "over the bound, down to it");
        t.trim(0);
        assert_eq!(t.first(), Some(90));
        let mut t = Tail::new(0);
        for i in 0..5 {
            let (i, b) = entry(i, "q");
            t.insert(i, b);
        }
        t.trim(3);
        assert_eq!(t.first(), Some(3), "what is not on disk stays");
    }
}

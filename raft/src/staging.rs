//! Large log entries travel to a follower ahead of the append that carries them.
//!
//! openraft 0.9 gives every AppendEntries the heartbeat interval and cancels it after that, so an
//! entry too large to cross the link in one interval could never replicate, and every later write
//! would wait behind it. The network therefore sizes each append by bytes: small entries go inline
//! (up to [`INLINE_BYTES_MAX`] per request); an entry over [`STAGE_ENTRY_BYTES`] is first uploaded
//! on its own (`/raft/stage`, in a task openraft cannot cancel, with a deadline that grows with
//! its bytes) into the follower's [`StagingCache`], and the append then names it
//! ([`WireEntry::Staged`]). While an upload runs, appends carry what fits before it (or nothing,
//! as a heartbeat) and answer "partially replicated", so the follower keeps hearing from its
//! leader and nothing already sent is resent.

use std::collections::BTreeMap;
use std::sync::Mutex;

use openraft::Vote;
use serde::{Deserialize, Serialize};

use crate::{Entry, LogId, NodeId};

/// Bytes of entries sent inline in one append request, at most (one entry larger than this and
/// smaller than [`STAGE_ENTRY_BYTES`] still goes alone).
pub const INLINE_BYTES_MAX: usize = 1 << 20;
/// Entries of at least this many bytes are staged first.
pub const STAGE_ENTRY_BYTES: usize = 256 << 10;
/// Bytes a follower keeps staged, at most (the oldest go first).
pub const STAGING_BYTES_MAX: usize = 512 << 20;
/// The slowest link a staging upload is given time for: its deadline is 10 s plus its bytes at
/// this rate.
pub const STAGE_BYTES_PER_SEC_MIN: u64 = 256 << 10;

#[derive(Debug, Serialize, Deserialize)]
pub enum WireEntry {
    Inline(Entry),
    /// Uploaded earlier with `/raft/stage`.
    Staged(LogId),
}

/// An append request as it crosses the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireAppend {
    pub vote: Vote<NodeId>,
    pub prev_log_id: Option<LogId>,
    pub leader_commit: Option<LogId>,
    pub entries: Vec<WireEntry>,
}

/// Rough bytes of an entry on the wire.
pub fn entry_bytes(e: &Entry) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(req) => 64 + req.cmd.approx_bytes(),
        _ => 256,
    }
}

/// A follower's staged entries, by log index.
#[derive(Default)]
pub struct StagingCache {
    inner: Mutex<(BTreeMap<u64, (LogId, Entry, usize)>, usize)>,
}

impl StagingCache {
    pub fn put(&self, e: Entry) {
        let size = entry_bytes(&e);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, old)) = g.0.insert(e.log_id.index, (e.log_id, e, size)) {
            g.1 -= old;
        }
        g.1 += size;
        while g.1 > STAGING_BYTES_MAX {
            let Some((_, (_, _, s))) = g.0.pop_first() else { break };
            g.1 -= s;
        }
        metrics::gauge!("minion_peer_staged_bytes").set(g.1 as f64);
    }

    /// The staged entry with exactly this log id, removed from the cache.
    pub fn take(&self, id: &LogId) -> Option<Entry> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match g.0.get(&id.index) {
            Some((staged, _, _)) if staged == id => {}
            _ => return None,
        }
        let (_, e, size) = g.0.remove(&id.index)?;
        g.1 -= size;
        Some(e)
    }
}

//! The raft log and vote over Minion's write-ahead log.
//!
//! One thread owns the log ([`run_log_thread`]): it takes appends, truncations, purges and votes
//! in the order raft issued them, writes a group of appends with one `write`, makes it durable
//! with one `fdatasync`, and only then calls their callbacks (so raft counts an entry as stored
//! only once it is on disk). Appended entries are readable at once from an in-memory tail; raft's
//! core loop never waits for a disk except on a vote or a truncation, which must be durable
//! before raft goes on.
//!
//! A purge is logical at once (entries up to it are no longer served) and physical — whole
//! segments removed — only up to what the state store has made durable and the current snapshot
//! covers ([`crate::PurgeBounds`]), so the state can always be rebuilt from the snapshot and the
//! log.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use minion_storage::disk::{read_vote, save_vote};
use minion_storage::vfs::SharedVfs;
use minion_storage::wal::{LogPos, Wal, WalReader};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogReader, StorageIOError, Vote};

use crate::checkpointer::Checkpointer;
use crate::log_tail::Tail;
use crate::{log_id, log_pos, Entry, LogId, NodeId, PurgeBounds, StorageError, TypeConfig};

/// Operations queued for the log thread at most.
const QUEUE_MAX: usize = 4_096;
/// Appends written before one `fdatasync`, at most.
const GROUP_APPENDS_MAX: usize = 1_024;
/// Recent entries kept in memory for readers (replication reads what was just appended).
const TAIL_BYTES_MAX: usize = 64 << 20;

type Done = tokio::sync::oneshot::Sender<Result<(), String>>;

enum LogOp {
    Append(Vec<(LogPos, Vec<u8>)>, LogFlushed<TypeConfig>),
    Truncate(u64, Done),
    Purge(LogPos),
    Vote(Vec<u8>, Done),
    /// Retry a physical purge (the bounds moved).
    PurgeAgain,
}

struct Shared {
    reader: WalReader,
    tail: RwLock<Tail>,
    /// raft's purge point: entries up to it are not served (they may still be on disk).
    purged: Mutex<Option<LogId>>,
    committed: Mutex<Option<LogId>>,
    /// The last index made durable, +1 (0: none).
    synced: AtomicU64,
    /// The last index appended, +1 (0: none).
    appended: AtomicU64,
    vfs: SharedVfs,
    dir: PathBuf,
    checkpointer: Arc<Checkpointer>,
    /// A fatal I/O error: every later operation fails.
    failed: Mutex<Option<String>>,
    bounds: Arc<PurgeBounds>,
    /// Bytes of entries appended since this process started, and that count when the last
    /// snapshot was asked for.
    appended_bytes: AtomicU64,
    snapshot_mark: AtomicU64,
    wal_bytes: AtomicU64,
    /// When the log thread began the group of operations it is working on, in ms since `epoch`
    /// (+1; 0: idle): how long a write or sync has been stalled.
    busy_since: AtomicU64,
    epoch: Instant,
}

#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    tx: SyncSender<LogOp>,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn read_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_logs(AnyError::error(e.to_string())).into()
}

fn write_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

impl LogStore {
    /// Start the log thread over an opened log. `committed` is the last committed position the
    /// checkpoint recorded.
    ///
    /// `make_state_durable` makes the state store durable now and returns its applied index: a
    /// purge past the end of the log (the state is ahead of the log) restarts the log only once
    /// the state it replaces is durable.
    pub fn start(
        wal: Wal,
        vfs: SharedVfs,
        dir: PathBuf,
        checkpointer: Arc<Checkpointer>,
        bounds: Arc<PurgeBounds>,
        committed: Option<LogPos>,
        make_state_durable: Box<dyn Fn() -> Option<u64> + Send>,
    ) -> std::io::Result<LogStore> {
        let reader = wal.reader();
        let last = reader.last_pos().map(|p| p.index + 1).unwrap_or(0);
        let shared = Arc::new(Shared {
            purged: Mutex::new(reader.purged().map(|p| log_id(&p))),
            reader,
            tail: RwLock::new(Tail::new(TAIL_BYTES_MAX)),
            committed: Mutex::new(committed.map(|p| log_id(&p))),
            synced: AtomicU64::new(last),
            appended: AtomicU64::new(last),
            vfs,
            dir,
            checkpointer,
            failed: Mutex::new(None),
            bounds: bounds.clone(),
            appended_bytes: AtomicU64::new(0),
            snapshot_mark: AtomicU64::new(0),
            wal_bytes: AtomicU64::new(wal.bytes()),
            busy_since: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_MAX);
        let s = shared.clone();
        std::thread::Builder::new()
            .name("minion-wal".into())
            .spawn(move || run_log_thread(wal, rx, s, bounds, make_state_durable))?;
        Ok(LogStore { shared, tx })
    }

    /// The last committed index raft reported, for metrics and the checkpoint.
    pub fn committed_index(&self) -> Option<u64> {
        crate::poison::or_stop(self.shared.committed.lock(), "log").map(|c| c.index)
    }

    /// How long the log thread has been on its current group of writes (and their sync), if it
    /// is on one: a long time means a stalled disk.
    pub fn stalled_for(&self) -> Option<std::time::Duration> {
        let since = self.shared.busy_since.load(Ordering::Acquire).checked_sub(1)?;
        let now = self.shared.epoch.elapsed().as_millis() as u64;
        Some(std::time::Duration::from_millis(now.saturating_sub(since)))
    }

    /// The last index known durable in the log.
    pub fn synced_index(&self) -> Option<u64> {
        self.shared.synced.load(Ordering::Acquire).checked_sub(1)
    }

    /// The first index still on disk.
    pub fn first_index(&self) -> u64 {
        self.shared.reader.first_index()
    }

    /// Bytes in the log's segments on disk.
    pub fn wal_bytes(&self) -> u64 {
        self.shared.wal_bytes.load(Ordering::Relaxed)
    }

    /// Bytes appended since the last snapshot was asked for.
    pub fn bytes_since_snapshot(&self) -> u64 {
        let a = self.shared.appended_bytes.load(Ordering::Relaxed);
        a.saturating_sub(self.shared.snapshot_mark.load(Ordering::Relaxed))
    }

    pub fn note_snapshot_requested(&self) {
        let a = self.shared.appended_bytes.load(Ordering::Relaxed);
        self.shared.snapshot_mark.store(a, Ordering::Relaxed);
    }

    /// Bytes of the current snapshot file.
    pub fn snapshot_bytes(&self) -> u64 {
        self.shared.bounds.snapshot_bytes.load(Ordering::Relaxed)
    }

    /// Ask the log thread to purge again (the state store or the snapshot moved on).
    pub fn purge_again(&self) {
        let _ = self.tx.try_send(LogOp::PurgeAgain);
    }

    fn failed(&self) -> Option<String> {
        crate::poison::or_stop(self.shared.failed.lock(), "log").clone()
    }

    fn send(&self, op: LogOp) -> Result<(), String> {
        if let Some(f) = self.failed() {
            return Err(f);
        }
        match self.tx.try_send(op) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(op)) => self.tx.send(op).map_err(|_| "the log thread has stopped".to_string()),
            Err(TrySendError::Disconnected(_)) => Err("the log thread has stopped".into()),
        }
    }

    /// Queue an operation raft needs durable before it goes on (a vote, a truncation: each waits
    /// for the appends queued before it) and wait for it.
    async fn wait(&self, make: impl FnOnce(Done) -> LogOp) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| "the log thread has stopped".to_string())?
    }
}

/// The log thread. See the module documentation.
fn run_log_thread(
    mut wal: Wal,
    rx: Receiver<LogOp>,
    shared: Arc<Shared>,
    bounds: Arc<PurgeBounds>,
    make_state_durable: Box<dyn Fn() -> Option<u64> + Send>,
) {
    let mut want_purge: Option<LogPos> = None;
    let fail = |shared: &Shared, e: String| {
        tracing::error!(error = %e, "write-ahead log failed; the node stops writing");
        *crate::poison::or_stop(shared.failed.lock(), "log") = Some(e);
    };
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < GROUP_APPENDS_MAX {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut waiting: Vec<(LogFlushed<TypeConfig>, u64)> = Vec::new();
        let started = Instant::now();
        shared.busy_since.store(shared.epoch.elapsed().as_millis() as u64 + 1, Ordering::Release);
        let sync = |wal: &mut Wal, waiting: &mut Vec<(LogFlushed<TypeConfig>, u64)>| -> bool {
            if waiting.is_empty() {
                return true;
            }
            let t = Instant::now();
            let r = wal.sync();
            metrics::histogram!("minion_storage_sync_seconds").record(t.elapsed().as_secs_f64());
            metrics::histogram!("minion_storage_sync_appends").record(waiting.len() as f64);
            let ok = r.is_ok();
            if let Some(last) = waiting.last().map(|w| w.1) {
                if ok {
                    shared.synced.fetch_max(last + 1, Ordering::AcqRel);
                }
            }
            for (cb, _) in waiting.drain(..) {
                cb.log_io_completed(match &r {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io_err(e)),
                });
            }
            if let Err(e) = r {
                fail(&shared, e.to_string());
            }
            ok
        };
        for op in ops {
            if crate::poison::or_stop(shared.failed.lock(), "log").is_some() {
                match op {
                    LogOp::Append(_, cb) => cb.log_io_completed(Err(io_err("the write-ahead log failed earlier"))),
                    LogOp::Truncate(_, done) | LogOp::Vote(_, done) => {
                        let _ = done.send(Err("the write-ahead log failed earlier".into()));
                    }
                    LogOp::Purge(_) | LogOp::PurgeAgain => {}
                }
                continue;
            }
            match op {
                LogOp::Append(entries, cb) => {
                    let last = entries.last().map(|e| e.0.index);
                    let refs: Vec<(LogPos, &[u8])> = entries.iter().map(|(p, b)| (*p, b.as_slice())).collect();
                    let t = Instant::now();
                    match wal.append(&refs) {
                        Ok(()) => {
                            metrics::histogram!("minion_raft_append_seconds").record(t.elapsed().as_secs_f64());
                            if let Some(last) = last {
                                waiting.push((cb, last));
                            } else {
                                cb.log_io_completed(Ok(()));
                            }
                        }
                        Err(e) => {
                            cb.log_io_completed(Err(io_err(&e)));
                            fail(&shared, e.to_string());
                        }
                    }
                }
                LogOp::Truncate(from, done) => {
                    if !sync(&mut wal, &mut waiting) {
                        let _ = done.send(Err("sync failed".into()));
                        continue;
                    }
                    let r = wal.truncate(from).map_err(|e| e.to_string());
                    if r.is_ok() {
                        shared.synced.fetch_min(from, Ordering::AcqRel);
                    }
                    let _ = done.send(r);
                }
                LogOp::Vote(bytes, done) => {
                    if !sync(&mut wal, &mut waiting) {
                        let _ = done.send(Err("sync failed".into()));
                        continue;
                    }
                    let _ = done.send(save_vote(&shared.vfs, &shared.dir, &bytes).map_err(|e| e.to_string()));
                }
                LogOp::Purge(p) => {
                    want_purge = Some(want_purge.map_or(p, |w: LogPos| w.max(p)));
                    // Past the end of the log, later appends continue after it: restart the log
                    // now, once the state it stands in for is durable.
                    let last = shared.reader.last_pos().map(|l| l.index);
                    if last.is_none_or(|l| p.index > l) {
                        if !sync(&mut wal, &mut waiting) {
                            continue;
                        }
                        // A snapshot being installed makes the state durable through it when it
                        // finishes: wait for that (appends after the purge queue behind it).
                        let deadline = Instant::now() + std::time::Duration::from_secs(120);
                        loop {
                            let durable = make_state_durable();
                            if durable.is_some_and(|d| d >= p.index) {
                                match wal.purge(p) {
                                    Ok(()) => want_purge = None,
                                    Err(e) => fail(&shared, e.to_string()),
                                }
                                break;
                            }
                            if Instant::now() > deadline {
                                fail(&shared, format!("cannot restart the log after entry {}: the state store is durable only through {durable:?}", p.index));
                                break;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(10));
                        }
                    }
                }
                LogOp::PurgeAgain => {}
            }
        }
        sync(&mut wal, &mut waiting);
        shared.busy_since.store(0, Ordering::Release);
        shared.wal_bytes.store(wal.bytes(), Ordering::Relaxed);
        metrics::histogram!("minion_storage_group_seconds").record(started.elapsed().as_secs_f64());
        if shared.reader.purged().is_some_and(|p| want_purge.is_some_and(|w| p.index >= w.index)) {
            want_purge = None;
        }
        if let Some(want) = want_purge {
            if let Some(t) = purge_target(want, bounds.limit(), &shared.reader) {
                if let Err(e) = wal.purge(t) {
                    fail(&shared, e.to_string());
                }
                if t.index >= want.index {
                    want_purge = None;
                }
            }
        }
    }
}

/// Where a purge raft asked for (`want`) may go on disk now: never past `limit` (what the state
/// store made durable and the snapshot covers), and only forward. `None`: nowhere yet.
pub(crate) fn purge_target(want: LogPos, limit: Option<u64>, reader: &WalReader) -> Option<LogPos> {
    let target = match limit {
        Some(l) if want.index <= l => Some(want),
        Some(l) => reader.read(l).ok().flatten().map(|(p, _)| p),
        None => None,
    }?;
    reader.purged().is_none_or(|p| p.index < target.index).then_some(target)
}

impl LogStore {
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        let purged = crate::poison::or_stop(self.shared.purged.lock(), "log").map(|p| p.index);
        let start = match purged {
            Some(p) => start.max(p + 1),
            None => start,
        };
        let end = end.min(self.shared.appended.load(Ordering::Acquire));
        if start >= end {
            return Ok(Vec::new());
        }
        let tail = crate::poison::or_stop(self.shared.tail.read(), "log");
        let tail_start = tail.first().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((end - start) as usize);
        if start < tail_start {
            let disk_end = end.min(tail_start);
            drop(tail);
            for (pos, bytes) in self.shared.reader.read_range(start, disk_end).map_err(read_err)? {
                let e: Entry = postcard::from_bytes(&bytes)
                    .map_err(|e| read_err(format!("log entry {} does not decode: {e}", pos.index)))?;
                out.push(e);
            }
            if disk_end == end {
                return Ok(out);
            }
            let tail = crate::poison::or_stop(self.shared.tail.read(), "log");
            tail.read(disk_end, end, &mut out).map_err(read_err)?;
            return Ok(out);
        }
        tail.read(start, end, &mut out).map_err(read_err)?;
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        self.read_range(start, end)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged = *crate::poison::or_stop(self.shared.purged.lock(), "log");
        let appended = self.shared.appended.load(Ordering::Acquire);
        let last = match appended.checked_sub(1) {
            Some(i) if purged.is_none_or(|p| i > p.index) => self.read_range(i, i + 1)?.pop().map(|e| e.log_id),
            _ => None,
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// The vote is on disk (and every append before it) when this returns.
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(vote).map_err(|e| StorageIOError::write_vote(AnyError::error(e)))?;
        self.wait(|done| LogOp::Vote(bytes, done))
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::error(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        match read_vote(&self.shared.vfs, &self.shared.dir)
            .map_err(|e| StorageIOError::read_vote(AnyError::error(e)))?
        {
            None => Ok(None),
            Some(b) => postcard::from_bytes(&b).map(Some).map_err(|e| {
                StorageIOError::read_vote(AnyError::error(format!("the vote does not decode: {e}"))).into()
            }),
        }
    }

    /// Kept in memory and recorded by the next checkpoint (it only shortens replay after a restart).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        *crate::poison::or_stop(self.shared.committed.lock(), "log") = committed;
        let synced = self.synced_index();
        let pos = committed.map(|c| log_pos(&c));
        self.shared.checkpointer.update(|cp| {
            cp.committed = pos;
            cp.log_durable = pos.map(|p| p.index).min(synced).max(cp.log_durable);
        });
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(*crate::poison::or_stop(self.shared.committed.lock(), "log"))
    }

    /// Entries are readable on return; the callback fires once they are on disk.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        {
            let mut tail = crate::poison::or_stop(self.shared.tail.write(), "log");
            let mut purged = crate::poison::or_stop(self.shared.purged.lock(), "log");
            for e in entries {
                let bytes = postcard::to_allocvec(&e).map_err(write_err)?;
                let index = e.log_id.index;
                // An entry at or before the purge point starts the (empty) log again there.
                if purged.is_some_and(|p| index <= p.index) {
                    *purged = None;
                }
                self.shared.appended_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                tail.insert(index, bytes.clone());
                encoded.push((log_pos(&e.log_id), bytes));
                self.shared.appended.store(index + 1, Ordering::Release);
            }
            // Keep the tail bounded: drop the oldest entries that are already on disk.
            tail.trim(self.shared.synced.load(Ordering::Acquire));
        }
        self.send(LogOp::Append(encoded, callback)).map_err(write_err)
    }

    /// Durable when it returns.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut tail = crate::poison::or_stop(self.shared.tail.write(), "log");
            tail.truncate_from(log_id.index);
            let appended = self.shared.appended.load(Ordering::Acquire);
            self.shared.appended.store(appended.min(log_id.index), Ordering::Release);
        }
        self.wait(|done| LogOp::Truncate(log_id.index, done)).await.map_err(write_err)
    }

    /// Logical at once; physical (whole segments) as far as the state store and the snapshot allow.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut p = crate::poison::or_stop(self.shared.purged.lock(), "log");
            if p.is_none_or(|p| p.index < log_id.index) {
                *p = Some(log_id);
            }
        }
        {
            crate::poison::or_stop(self.shared.tail.write(), "log").purge_through(log_id.index);
            let appended = self.shared.appended.load(Ordering::Acquire);
            self.shared.appended.store(appended.max(log_id.index + 1), Ordering::Release);
        }
        self.send(LogOp::Purge(log_pos(&log_id))).map_err(write_err)
    }
}

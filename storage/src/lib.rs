//! Minion's on-disk layout. The only crate that names sled.
//!
//! One sled database at `<data-dir>/db` with three trees:
//!
//! | tree       | key                          | value (framed, see [`frame`])            |
//! |------------|------------------------------|------------------------------------------|
//! | `log`      | log index, u64 big-endian    | a raft log entry                          |
//! | `raft`     | `vote`, `committed`, `purged`| raft's own metadata                       |
//! | `sm`       | `t` + task id (u64 BE)       | a task record                             |
//! |            | `d` + queue + `\0` + key     | a dedup entry                             |
//! |            | `q` + queue name             | a queue's configuration                   |
//! |            | `a` + agent id               | an agent's registry record                |
//! |            | `m:engine`, `m:applied`      | engine counters/config; last applied log  |
//!
//! Next to it, `<data-dir>/snapshot` holds the last built or installed raft snapshot and
//! `<data-dir>/checkpoint` a log index known to be durable (both framed, written atomically).
//! Durability: sled makes writes durable only on `flush`; [`Store::sync`] flushes and, in the
//! [`Durability::Fsync`] tier, also `fdatasync`s sled's data file (sled's own flush uses
//! `sync_file_range` on Linux, which neither flushes the disk cache nor file-size metadata).
//! Recovery of a sled database yields a prefix of its writes across all trees, so state-machine
//! writes are never on disk without the log entries they came from.

pub mod frame;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod vfs;
pub mod wal;

use std::fs::File;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minion_engine::{Agent, Change, DedupKey, Dirty, Extra, Meta, QueueConfig, State, StateImage, Task};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use frame::FrameError;

/// How far [`Store::sync`] goes before a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// sled flush + fdatasync of the data file: survives power loss.
    Fsync,
    /// sled flush only (data handed to the OS): survives a process crash, not power loss.
    Flush,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Flush => "flush",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage I/O error in {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("sled error in {path}: {message}")]
    Sled { path: PathBuf, message: String },
    #[error("corrupt data in {path}: {what}: {source}")]
    Corrupt { path: PathBuf, what: String, source: FrameError },
    #[error("{0}")]
    Encode(FrameError),
}

pub type Result<T> = std::result::Result<T, StorageError>;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";
const KEY_PURGED_INDEX: &[u8] = b"purged_index";
const KEY_FEED_PURGED_BEFORE: &[u8] = b"feed_purged_before";
/// File next to sled's directory recording a log index known to be durable (see [`Store::checkpoint`]).
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// The last built or installed raft snapshot, next to sled's directory.
pub const SNAPSHOT_FILE: &str = "snapshot";
const KEY_ENGINE: &[u8] = b"m:engine";
const KEY_APPLIED: &[u8] = b"m:applied";
const PREFIX_TASK: u8 = b't';
const PREFIX_DEDUP: u8 = b'd';
const PREFIX_QUEUE: u8 = b'q';
const PREFIX_AGENT: u8 = b'a';
const PREFIX_TRACE: u8 = b'r';
const PREFIX_TOKEN: u8 = b'k';
const PREFIX_AUDIT: u8 = b'u';

/// Big-endian so that sled's byte order is numeric order.
fn task_key(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PREFIX_TASK;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn dedup_key(k: &DedupKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + k.queue.len() + k.key.len());
    out.push(PREFIX_DEDUP);
    out.extend_from_slice(k.queue.as_bytes());
    out.push(0);
    out.extend_from_slice(k.key.as_bytes());
    out
}

/// A key of `prefix` then the name's bytes.
fn name_key(prefix: u8, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + name.len());
    out.push(prefix);
    out.extend_from_slice(name.as_bytes());
    out
}

fn queue_key(name: &str) -> Vec<u8> {
    name_key(PREFIX_QUEUE, name)
}

fn agent_key(id: &str) -> Vec<u8> {
    name_key(PREFIX_AGENT, id)
}

fn token_key(id: &str) -> Vec<u8> {
    name_key(PREFIX_TOKEN, id)
}

/// A key of `prefix` then the number big-endian, in numeric order like [`task_key`].
fn number_key(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = task_key(n);
    k[0] = prefix;
    k
}

fn trace_key(id: u64) -> [u8; 9] {
    number_key(PREFIX_TRACE, id)
}

fn audit_key(seq: u64) -> [u8; 9] {
    number_key(PREFIX_AUDIT, seq)
}

fn index_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn index_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The data directory's database. Cheap to clone; all clones share one sled instance.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    durability: Durability,
    db: sled::Db,
    data_file: File,
    checkpoint_path: PathBuf,
    checkpointed: std::sync::Mutex<u64>,
    log: sled::Tree,
    raft: sled::Tree,
    sm: sled::Tree,
    changes: sled::Tree,
}

/// sled's page cache unless configured otherwise.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

impl Store {
    /// Open (or create) the database under `data_dir`, with sled's page cache at
    /// [`DEFAULT_CACHE_BYTES`].
    pub fn open(data_dir: &Path, durability: Durability) -> Result<Store> {
        Store::open_with_cache(data_dir, durability, DEFAULT_CACHE_BYTES)
    }

    /// Open with sled's page cache bounded at `cache_bytes` (sled's own default is 1 GiB, which
    /// a long-running node grows into).
    pub fn open_with_cache(data_dir: &Path, durability: Durability, cache_bytes: u64) -> Result<Store> {
        let path = data_dir.join("db");
        std::fs::create_dir_all(&path).map_err(|source| StorageError::Io { path: path.clone(), source })?;
        let db = sled::Config::new()
            .path(&path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|e| sled_err(&path, e))?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| sled_err(&path, e));
        let log = tree("log")?;
        let raft = tree("raft")?;
        let sm = tree("sm")?;
        let changes = tree("changes")?;
        let data_path = path.join("db");
        let data_file = File::open(&data_path).map_err(|source| StorageError::Io { path: data_path, source })?;
        let checkpoint_path = data_dir.join(CHECKPOINT_FILE);
        let store = Store {
            inner: Arc::new(Inner {
                path,
                durability,
                db,
                data_file,
                checkpoint_path,
                checkpointed: std::sync::Mutex::new(0),
                log,
                raft,
                sm,
                changes,
            }),
        };
        store.verify_checkpoint()?;
        Ok(store)
    }

    /// sled recovers a prefix of its writes and treats a damaged segment as the end of its log,
    /// so corruption in the middle of its file can silently drop data. The checkpoint file records
    /// a log index that was durable when it was written; a log that ends before it has lost
    /// acknowledged entries, and the store refuses to open.
    fn verify_checkpoint(&self) -> Result<()> {
        let path = &self.inner.checkpoint_path;
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StorageError::Io { path: path.clone(), source }),
        };
        let recorded: u64 = frame::decode(&bytes).map_err(|source| StorageError::Corrupt {
            path: path.clone(),
            what: "checkpoint file".into(),
            source,
        })?;
        let have = self.log_last_index()?;
        if have < recorded {
            return Err(StorageError::Corrupt {
                path: self.inner.path.join("db"),
                what: format!(
                    "the raft log ends at index {have} but {} records index {recorded} as durable: \
                     the data file lost acknowledged entries (damaged or truncated)",
                    path.display()
                ),
                source: FrameError::Decode("log shorter than checkpoint".into()),
            });
        }
        *self.inner.checkpointed.lock().unwrap_or_else(|p| p.into_inner()) = recorded;
        Ok(())
    }

    /// Record that the log is durable up to `log_index` (which must already be synced). Written
    /// to a temporary file, fsynced and renamed, so the checkpoint itself is never torn.
    /// Blocking.
    pub fn checkpoint(&self, log_index: u64) -> Result<()> {
        let mut done = self.inner.checkpointed.lock().unwrap_or_else(|p| p.into_inner());
        if log_index <= *done {
            return Ok(());
        }
        let path = &self.inner.checkpoint_path;
        let io = |source| StorageError::Io { path: path.clone(), source };
        let tmp = path.with_extension("tmp");
        let bytes = frame::encode(&log_index).map_err(StorageError::Encode)?;
        {
            use std::io::Write;
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        *done = log_index;
        Ok(())
    }

    /// The index of the last log entry, or of the last purged one when the log is empty.
    pub fn log_last_index(&self) -> Result<u64> {
        let last = self.inner.log.last().map_err(|e| self.sled(e))?.and_then(|(k, _)| index_of(&k)).unwrap_or(0);
        let purged = match self.inner.raft.get(KEY_PURGED_INDEX).map_err(|e| self.sled(e))? {
            Some(v) => self.decode::<u64>(|| "raft purged_index".into(), &v)?,
            None => 0,
        };
        Ok(last.max(purged))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    fn corrupt(&self, what: impl Into<String>, source: FrameError) -> StorageError {
        StorageError::Corrupt { path: self.inner.path.clone(), what: what.into(), source }
    }

    fn sled(&self, e: sled::Error) -> StorageError {
        sled_err(&self.inner.path, e)
    }

    fn decode<T: DeserializeOwned>(&self, what: impl FnOnce() -> String, bytes: &[u8]) -> Result<T> {
        frame::decode(bytes).map_err(|e| self.corrupt(what(), e))
    }

    /// Make every write so far durable at this store's [`Durability`] tier.
    ///
    /// Blocking: call it from a blocking context (`spawn_blocking`) in async code.
    pub fn sync(&self) -> Result<()> {
        self.inner.db.flush().map_err(|e| self.sled(e))?;
        if self.inner.durability == Durability::Fsync {
            self.inner
                .data_file
                .sync_data()
                .map_err(|source| StorageError::Io { path: self.inner.path.join("db"), source })?;
        }
        Ok(())
    }

    /// Bytes sled reports on disk, for metrics and the soak benchmark.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }

    // ---- raft log ------------------------------------------------------------------------------

    /// Stage log entries; durable after [`Store::sync`].
    pub fn log_append<'a, T: Serialize + 'a>(&self, entries: impl IntoIterator<Item = (u64, &'a T)>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (index, entry) in entries {
            batch.insert(&index_key(index), frame::encode(entry).map_err(StorageError::Encode)?);
        }
        self.inner.log.apply_batch(batch).map_err(|e| self.sled(e))
    }

    pub fn log_range<T: DeserializeOwned>(&self, range: impl RangeBounds<u64>) -> Result<Vec<T>> {
        let start = match range.start_bound() {
            std::ops::Bound::Included(s) => *s,
            std::ops::Bound::Excluded(s) => s.saturating_add(1),
            std::ops::Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for item in self.inner.log.range(index_key(start)..) {
            let (k, v) = item.map_err(|e| self.sled(e))?;
            let index = index_of(&k).ok_or_else(|| self.corrupt("raft log key", FrameError::Short(k.len())))?;
            if !range.contains(&index) {
                break;
            }
            out.push(self.decode(|| format!("raft log entry {index}"), &v)?);
        }
        Ok(out)
    }

    pub fn log_last<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        match self.inner.log.last().map_err(|e| self.sled(e))? {
            Some((k, v)) => {
                let index = index_of(&k).unwrap_or_default();
                Ok(Some(self.decode(|| format!("raft log entry {index}"), &v)?))
            }
            None => Ok(None),
        }
    }

    /// Remove entries with index ≥ `from`.
    pub fn log_truncate(&self, from: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        for k in self.inner.log.range(index_key(from)..).keys() {
            batch.remove(k.map_err(|e| self.sled(e))?);
        }
        self.inner.log.apply_batch(batch).map_err(|e| self.sled(e))
    }

    /// Remove entries with index ≤ `upto`.
    pub fn log_purge(&self, upto: u64) -> Result<()> {
        self.inner
            .raft
            .insert(KEY_PURGED_INDEX, frame::encode(&upto).map_err(StorageError::Encode)?)
            .map_err(|e| self.sled(e))?;
        let mut batch = sled::Batch::default();
        for k in self.inner.log.range(..=index_key(upto)).keys() {
            batch.remove(k.map_err(|e| self.sled(e))?);
        }
        self.inner.log.apply_batch(batch).map_err(|e| self.sled(e))
    }

    fn raft_put<T: Serialize>(&self, key: &[u8], v: &T) -> Result<()> {
        self.inner.raft.insert(key, frame::encode(v).map_err(StorageError::Encode)?).map_err(|e| self.sled(e))?;
        Ok(())
    }

    fn raft_get<T: DeserializeOwned>(&self, key: &'static [u8]) -> Result<Option<T>> {
        match self.inner.raft.get(key).map_err(|e| self.sled(e))? {
            Some(v) => Ok(Some(self.decode(|| format!("raft {}", String::from_utf8_lossy(key)), &v)?)),
            None => Ok(None),
        }
    }

    /// Save the vote; durable after [`Store::sync`].
    pub fn put_vote<T: Serialize>(&self, v: &T) -> Result<()> {
        self.raft_put(KEY_VOTE, v)
    }
    pub fn vote<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.raft_get(KEY_VOTE)
    }
    pub fn put_committed<T: Serialize>(&self, v: &T) -> Result<()> {
        self.raft_put(KEY_COMMITTED, v)
    }
    pub fn committed<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.raft_get(KEY_COMMITTED)
    }
    pub fn put_purged<T: Serialize>(&self, v: &T) -> Result<()> {
        self.raft_put(KEY_PURGED, v)
    }
    pub fn purged<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.raft_get(KEY_PURGED)
    }

    // ---- state machine -------------------------------------------------------------------------

    /// Write what apply changed, together with the last-applied marker and the change-feed records
    /// of the applied entries, atomically (sled applies the transaction as a whole or not at all).
    pub fn sm_persist<A: Serialize>(
        &self,
        state: &State,
        dirty: &Dirty,
        applied: &A,
        feed: &[(u64, Vec<Change>)],
    ) -> Result<()> {
        if feed.is_empty() {
            return self.sm_persist_state(state, dirty, applied);
        }
        let mut feed_batch = sled::Batch::default();
        for (index, changes) in feed {
            feed_batch.insert(&index_key(*index), frame::encode(changes).map_err(StorageError::Encode)?);
        }
        let state_batch = self.sm_batch(state, dirty, applied)?;
        use sled::Transactional;
        (&self.inner.sm, &self.inner.changes)
            .transaction(|(sm, ch)| {
                sm.apply_batch(&state_batch)?;
                ch.apply_batch(&feed_batch)?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => self.sled(e),
                sled::transaction::TransactionError::Abort(()) => {
                    self.sled(sled::Error::Unsupported("state-machine transaction aborted".into()))
                }
            })
    }

    fn sm_persist_state<A: Serialize>(&self, state: &State, dirty: &Dirty, applied: &A) -> Result<()> {
        let batch = self.sm_batch(state, dirty, applied)?;
        self.inner.sm.apply_batch(batch).map_err(|e| self.sled(e))
    }

    fn sm_batch<A: Serialize>(&self, state: &State, dirty: &Dirty, applied: &A) -> Result<sled::Batch> {
        let enc = |v: &dyn erased::Encode| v.encode().map_err(StorageError::Encode);
        let mut batch = sled::Batch::default();
        for id in &dirty.tasks {
            match state.task(*id) {
                Some(t) => batch.insert(&task_key(*id), enc(t)?),
                None => batch.remove(&task_key(*id)),
            }
        }
        for k in &dirty.dedup {
            match state.dedup_entry(k) {
                Some(e) => batch.insert(dedup_key(k), enc(e)?),
                None => batch.remove(dedup_key(k)),
            }
        }
        for q in &dirty.queues {
            match state.queue_config(q) {
                Some(c) => batch.insert(queue_key(q), enc(c)?),
                None => batch.remove(queue_key(q)),
            }
        }
        for a in &dirty.agents {
            match state.agent(a) {
                Some(agent) => batch.insert(agent_key(a), enc(agent)?),
                None => batch.remove(agent_key(a)),
            }
        }
        for id in &dirty.traces {
            match state.trace_parent(*id) {
                Some(tp) => batch.insert(&trace_key(*id), frame::encode(tp).map_err(StorageError::Encode)?),
                None => batch.remove(&trace_key(*id)),
            }
        }
        for id in &dirty.tokens {
            match state.token(id) {
                Some(t) => batch.insert(token_key(id), frame::encode(t).map_err(StorageError::Encode)?),
                None => batch.remove(token_key(id)),
            }
        }
        for seq in &dirty.audit {
            match state.audit_entry(*seq) {
                Some(e) => batch.insert(&audit_key(*seq), frame::encode(e).map_err(StorageError::Encode)?),
                None => batch.remove(&audit_key(*seq)),
            }
        }
        batch.insert(KEY_ENGINE, enc(state.meta())?);
        batch.insert(KEY_APPLIED, frame::encode(applied).map_err(StorageError::Encode)?);
        Ok(batch)
    }

    // ---- change feed ---------------------------------------------------------------------------

    /// Feed entries with index > `after`, whole entries only, until at least `records_max` records.
    pub fn changes_after(&self, after: u64, records_max: usize) -> Result<Vec<(u64, Vec<Change>)>> {
        let mut out = Vec::new();
        let mut n = 0;
        for item in self.inner.changes.range(index_key(after.saturating_add(1))..) {
            let (k, v) = item.map_err(|e| self.sled(e))?;
            let index = index_of(&k).unwrap_or_default();
            let changes: Vec<Change> = self.decode(|| format!("change feed entry {index}"), &v)?;
            n += changes.len();
            out.push((index, changes));
            if n >= records_max {
                break;
            }
        }
        Ok(out)
    }

    /// Feed entries with an index below this were purged (0: never).
    pub fn changes_purged_before(&self) -> Result<u64> {
        match self.inner.raft.get(KEY_FEED_PURGED_BEFORE).map_err(|e| self.sled(e))? {
            Some(v) => self.decode(|| "feed purge watermark".into(), &v),
            None => Ok(0),
        }
    }

    fn set_feed_purged_before(&self, before: u64) -> Result<()> {
        if before > self.changes_purged_before()? {
            let v = frame::encode(&before).map_err(StorageError::Encode)?;
            self.inner.raft.insert(KEY_FEED_PURGED_BEFORE, v).map_err(|e| self.sled(e))?;
        }
        Ok(())
    }

    /// Drop feed entries with index < `before`.
    pub fn changes_purge_before(&self, before: u64) -> Result<usize> {
        self.set_feed_purged_before(before)?;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for k in self.inner.changes.range(..index_key(before)).keys() {
            batch.remove(k.map_err(|e| self.sled(e))?);
            n += 1;
        }
        self.inner.changes.apply_batch(batch).map_err(|e| self.sled(e))?;
        Ok(n)
    }

    /// Replace the whole state machine (snapshot install, up to log index `applied_index`) in one
    /// atomic batch.
    pub fn sm_replace<A: Serialize>(&self, image: &StateImage, applied: &A, applied_index: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        for k in self.inner.sm.iter().keys() {
            batch.remove(k.map_err(|e| self.sled(e))?);
        }
        let enc = |v: &dyn erased::Encode| v.encode().map_err(StorageError::Encode);
        for t in &image.tasks {
            batch.insert(&task_key(t.id), enc(t)?);
        }
        for (k, e) in &image.dedup {
            batch.insert(dedup_key(k), enc(e)?);
        }
        for (q, c) in &image.queues {
            batch.insert(queue_key(q), enc(c)?);
        }
        for a in &image.agents {
            batch.insert(agent_key(&a.id), enc(a)?);
        }
        for extra in &image.extras {
            match extra {
                Extra::Traces(traces) => {
                    for (id, tp) in traces {
                        batch.insert(&trace_key(*id), frame::encode(tp).map_err(StorageError::Encode)?);
                    }
                }
                Extra::Tokens(tokens) => {
                    for t in tokens {
                        batch.insert(token_key(&t.id), frame::encode(t).map_err(StorageError::Encode)?);
                    }
                }
                Extra::Audit(entries) => {
                    for e in entries {
                        batch.insert(&audit_key(e.seq), frame::encode(e).map_err(StorageError::Encode)?);
                    }
                }
            }
        }
        batch.insert(KEY_ENGINE, enc(&image.meta)?);
        batch.insert(KEY_APPLIED, frame::encode(applied).map_err(StorageError::Encode)?);
        self.inner.sm.apply_batch(batch).map_err(|e| self.sled(e))?;
        // The feed cannot describe a jump to a snapshot: readers behind it must backfill.
        self.inner.changes.clear().map_err(|e| self.sled(e))?;
        self.set_feed_purged_before(applied_index.saturating_add(1))
    }

    /// Load the state machine: the engine state and the last-applied marker.
    pub fn sm_load<A: DeserializeOwned>(&self) -> Result<(State, Option<A>)> {
        let mut meta = Meta::default();
        let mut applied = None;
        let mut tasks: Vec<Arc<Task>> = Vec::new();
        let mut dedup = Vec::new();
        let mut queues: Vec<(String, QueueConfig)> = Vec::new();
        let mut agents: Vec<Agent> = Vec::new();
        let mut traces: Vec<(u64, String)> = Vec::new();
        let mut tokens = Vec::new();
        let mut audit = Vec::new();
        for item in self.inner.sm.iter() {
            let (k, v) = item.map_err(|e| self.sled(e))?;
            let lossy = || String::from_utf8_lossy(&k).into_owned();
            match k.first() {
                Some(&PREFIX_TASK) => {
                    let id = index_of(&k[1..]).unwrap_or_default();
                    let t: Task = self.decode(|| format!("task record {id}"), &v)?;
                    tasks.push(Arc::new(t));
                }
                Some(&PREFIX_DEDUP) => {
                    let raw = &k[1..];
                    let split = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
                    let key = DedupKey {
                        queue: String::from_utf8_lossy(&raw[..split]).into_owned(),
                        key: String::from_utf8_lossy(raw.get(split + 1..).unwrap_or_default()).into_owned(),
                    };
                    let e = self.decode(|| format!("dedup entry {}", lossy()), &v)?;
                    dedup.push((key, e));
                }
                Some(&PREFIX_QUEUE) => {
                    let name = String::from_utf8_lossy(&k[1..]).into_owned();
                    let c = self.decode(|| format!("queue config {name}"), &v)?;
                    queues.push((name, c));
                }
                Some(&PREFIX_AGENT) => {
                    let id = String::from_utf8_lossy(&k[1..]).into_owned();
                    agents.push(self.decode(|| format!("agent record {id}"), &v)?);
                }
                Some(&PREFIX_TOKEN) => tokens.push(self.decode(|| format!("token {}", lossy()), &v)?),
                Some(&PREFIX_AUDIT) => {
                    let seq = index_of(&k[1..]).unwrap_or_default();
                    audit.push(self.decode(|| format!("audit entry {seq}"), &v)?);
                }
                Some(&PREFIX_TRACE) => {
                    let id = index_of(&k[1..]).unwrap_or_default();
                    traces.push((id, self.decode(|| format!("trace context of task {id}"), &v)?));
                }
                _ if &*k == KEY_ENGINE => meta = self.decode(|| "engine meta".into(), &v)?,
                _ if &*k == KEY_APPLIED => applied = Some(self.decode(|| "last applied marker".into(), &v)?),
                _ => {
                    return Err(self.corrupt(
                        format!("unknown state machine key {:?}", lossy()),
                        FrameError::Decode("unknown key".into()),
                    ))
                }
            }
        }
        let extras = [Extra::Traces(traces), Extra::Tokens(tokens), Extra::Audit(audit)];
        Ok((State::from_parts(meta, tasks, dedup, queues, agents, extras), applied))
    }

    // ---- snapshots -----------------------------------------------------------------------------

    /// Store the current snapshot in its own file (`<data-dir>/snapshot`: temporary file,
    /// fdatasync, rename, directory fsync), so a large snapshot never sits in sled's log in front
    /// of the raft log's syncs. Blocking.
    pub fn put_snapshot<T: Serialize>(&self, snapshot: &T) -> Result<()> {
        let path = self.snapshot_path();
        let io = |source| StorageError::Io { path: path.clone(), source };
        let bytes = frame::encode(snapshot).map_err(StorageError::Encode)?;
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    pub fn snapshot<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let path = self.snapshot_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StorageError::Io { path, source }),
        };
        frame::decode(&bytes).map(Some).map_err(|source| StorageError::Corrupt {
            path,
            what: "snapshot file".into(),
            source,
        })
    }

    fn snapshot_path(&self) -> PathBuf {
        self.inner.checkpoint_path.with_file_name(SNAPSHOT_FILE)
    }
}

fn sled_err(path: &Path, e: sled::Error) -> StorageError {
    match e {
        sled::Error::Io(source) => StorageError::Io { path: path.to_path_buf(), source },
        sled::Error::Corruption { at, .. } => StorageError::Corrupt {
            path: path.to_path_buf(),
            what: format!("sled reports corruption at {at:?}"),
            source: FrameError::Decode("sled checksum".into()),
        },
        other => StorageError::Sled { path: path.to_path_buf(), message: other.to_string() },
    }
}

/// Object-safe framing for the heterogeneous values of one batch.
mod erased {
    use crate::frame::{self, FrameError};

    pub trait Encode {
        fn encode(&self) -> Result<Vec<u8>, FrameError>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Result<Vec<u8>, FrameError> {
            frame::encode(self)
        }
    }
}

#[cfg(test)]
mod tests;

//! The state machine adapter: applies committed entries to the engine and hands their effects to
//! the state writer; builds and installs snapshots as streamed files.
//!
//! Apply updates RAM and the write overlay and returns: the records reach sled on the writer
//! thread, batched, each write carrying the applied marker (log id and membership) of its last
//! entry. Nothing acknowledged waits for sled: the entries are durable in the log, and after a
//! crash the state is the store's (or the snapshot's) plus a replay of the log from its marker.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use minion_engine::{changes, ApplyMeta, ColdError, Effect, Outcome, State, Task, TaskEvent, TaskId, TaskRecord};
use minion_storage::records::Records;
use minion_storage::snapshot::{SnapshotDir, SnapshotHeader, SnapshotReader, SnapshotWriter, FORMAT};
use minion_storage::state_store::{AppliedMarker, Change, Kv};
use minion_storage::vfs::{OpenMode, SharedVfs};
use minion_storage::warmed::Warmed;
use minion_storage::writer::{Batch, Writer};
use minion_storage::{codec, frame};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch, Notify};

use crate::checkpointer::Checkpointer;
use crate::{
    blocking, Entry, LogId, PurgeBounds, SnapshotData, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// Stored with every write of the state store: where it is in the log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

impl Applied {
    pub fn marker(&self) -> Result<AppliedMarker, String> {
        Ok(AppliedMarker {
            index: self.last_applied.map(|l| l.index),
            raft: postcard::to_allocvec(self).map_err(|e| e.to_string())?,
        })
    }

    pub fn from_marker(m: &AppliedMarker) -> Result<Applied, String> {
        if m.raft.is_empty() {
            return Ok(Applied::default());
        }
        postcard::from_bytes(&m.raft).map_err(|e| format!("the applied marker does not decode: {e}"))
    }
}

pub struct Inner {
    pub engine: State,
    pub applied: Applied,
}

/// The applied state, shared with the API for reads.
#[derive(Clone)]
pub struct SharedState {
    inner: Arc<RwLock<Inner>>,
    /// Woken after every applied batch (long-poll claims wait on it).
    changed: Arc<Notify>,
    applied_index: watch::Sender<u64>,
    /// Snapshots received from a leader and installed since this process started.
    snapshots_installed: Arc<AtomicU64>,
    /// Bumped when a snapshot replaces the state (a bloom-filter rebuild of the old one is dropped).
    generation: Arc<AtomicU64>,
    pub(crate) records: Records,
    /// Task events of applied entries, for watchers (recorded only while one subscribes).
    events: broadcast::Sender<Arc<AppliedEvents>>,
}

/// The task events of one applied entry; or, `reset`, word that a snapshot replaced the state
/// (watchers catch up from the change feed).
#[derive(Debug)]
pub struct AppliedEvents {
    pub index: u64,
    pub events: Vec<TaskEvent>,
    pub reset: bool,
}

/// Entries the event channel holds for a slow watcher; one further behind catches up from the
/// change feed instead.
const EVENT_ENTRIES_BUFFERED: usize = 256;

impl SharedState {
    /// Read the state. Never hold the guard across an await or a disk read.
    pub fn read(&self) -> RwLockReadGuard<'_, Inner> {
        crate::poison::or_stop(self.inner.read(), "engine state")
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        crate::poison::or_stop(self.inner.write(), "engine state")
    }

    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Follow the task events of entries applied from now on. Events are sent before the applied
    /// index moves past their entry.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<AppliedEvents>> {
        self.events.subscribe()
    }

    /// The last applied log index, observable.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.load(Ordering::Relaxed)
    }

    /// The records (finished tasks, payloads, progress, keys), read without the state's lock.
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// A task's full view: its record (from RAM while it is live), payload and progress.
    pub fn task(&self, id: TaskId) -> Result<Option<Task>, ColdError> {
        let live = self.read().engine.live_task(id).cloned();
        match live {
            Some(rec) => self.view(rec).map(Some),
            None => minion_engine::task_view(&self.records, id),
        }
    }

    /// Replace the engine (a snapshot was installed): a bloom-filter rebuild of the old state in
    /// progress is dropped.
    pub(crate) fn replace_engine(&self, engine: State, applied: Applied) {
        let mut g = self.write();
        g.engine = engine;
        g.applied = applied;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The full view of a record an operation answered with.
    pub fn view(&self, rec: TaskRecord) -> Result<Task, ColdError> {
        let (payload, progress) = minion_engine::task_details(&self.records, &rec)?;
        Ok(rec.into_task(payload, progress))
    }
}

/// What the state machine shares with its snapshot builders and the open path.
pub(crate) struct SmDisk {
    pub vfs: SharedVfs,
    pub writer: Arc<Writer>,
    pub snapshots: Mutex<SnapshotDir>,
    pub snapshot_dir: PathBuf,
    pub checkpointer: Arc<Checkpointer>,
    pub bounds: Arc<PurgeBounds>,
    /// Who writes the snapshots (for their headers).
    pub origin: String,
    pub on_purge_bounds: Box<dyn Fn() + Send + Sync>,
}

pub struct StateMachine {
    shared: SharedState,
    disk: Arc<SmDisk>,
    /// Change-feed entries kept behind the applied index (older ones are purged).
    feed_retained_entries: u64,
    applies: u64,
}

/// Default number of log entries the change feed keeps.
pub const FEED_RETAINED_ENTRIES: u64 = 100_000;
/// Bytes of records per snapshot block.
const SNAPSHOT_BLOCK_BYTES: usize = 1 << 20;

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn encode_effects(effects: &[Effect]) -> Result<Vec<Change>, String> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Put(r) => codec::encode(r).map(|(k, v)| (k, Some(v))).map_err(|e| e.to_string()),
            Effect::Delete(k) => Ok((codec::encode_key(k), None)),
        })
        .collect()
}

impl StateMachine {
    pub(crate) fn new(engine: State, applied: Applied, records: Records, disk: Arc<SmDisk>) -> StateMachine {
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        let shared = SharedState {
            inner: Arc::new(RwLock::new(Inner { engine, applied })),
            changed: Arc::new(Notify::new()),
            applied_index: watch::Sender::new(index),
            snapshots_installed: Arc::default(),
            generation: Arc::default(),
            records,
            events: broadcast::Sender::new(EVENT_ENTRIES_BUFFERED),
        };
        let sm = StateMachine { shared, disk, feed_retained_entries: FEED_RETAINED_ENTRIES, applies: 0 };
        sm.maybe_rebuild_bloom();
        sm
    }

    pub fn with_feed_retained_entries(mut self, entries: u64) -> Self {
        self.feed_retained_entries = entries.max(1);
        self
    }

    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }

    /// The state writer (for metrics and shutdown).
    pub fn writer(&self) -> Arc<Writer> {
        self.disk.writer.clone()
    }

    /// Rebuild the dedup bloom filter in the background when the engine asks for it.
    fn maybe_rebuild_bloom(&self) {
        let keys = {
            let mut g = self.shared.write();
            if !g.engine.dedup_rebuild_needed() {
                return;
            }
            g.engine.dedup_rebuild_begin();
            g.engine.dedup_keys()
        };
        let shared = self.shared.clone();
        let generation = shared.generation.load(Ordering::Acquire);
        let spawned = std::thread::Builder::new().name("minion-bloom".into()).spawn(move || {
            let started = Instant::now();
            let built = State::build_bloom(&shared.records, keys);
            let mut g = shared.write();
            if shared.generation.load(Ordering::Acquire) != generation {
                return;
            }
            match built {
                Ok(b) => {
                    g.engine.dedup_rebuild_finish(b);
                    tracing::info!(keys, seconds = started.elapsed().as_secs_f64(), "dedup bloom filter built");
                }
                Err(e) => {
                    g.engine.dedup_rebuild_abandon();
                    tracing::error!(error = %e, "building the dedup bloom filter failed; lookups read the exact store");
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the bloom filter rebuild");
            self.shared.write().engine.dedup_rebuild_abandon();
        }
    }
}

pub struct SnapshotBuilder {
    disk: Arc<SmDisk>,
}

/// Build a snapshot file from the store as of the last written index (see the writer's
/// documentation: consistent while writes go on). Blocking.
pub(crate) fn build(disk: &SmDisk) -> Result<(SnapshotMeta, PathBuf), String> {
    disk.writer.flush().map_err(|e| e.to_string())?;
    let mut view = disk.writer.begin_snapshot().map_err(|e| e.to_string())?;
    let applied = Applied::from_marker(view.applied())?;
    let taken_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let index = applied.last_applied.map(|l| l.index);
    let meta = SnapshotMeta {
        last_log_id: applied.last_applied,
        last_membership: applied.membership.clone(),
        snapshot_id: format!(
            "{}-{}-{taken_ms}",
            applied.last_applied.map(|l| l.leader_id.term).unwrap_or(0),
            index.unwrap_or(0)
        ),
    };
    let header = SnapshotHeader {
        format: FORMAT,
        last_index: index,
        raft: postcard::to_allocvec(&meta).map_err(|e| e.to_string())?,
        taken_ms,
        origin: disk.origin.clone(),
    };
    let tmp = crate::poison::or_stop(disk.snapshots.lock(), "snapshot directory").temp_path("build");
    let written = (|| -> Result<(u64, u64), String> {
        let mut w = SnapshotWriter::create(&disk.vfs, &tmp, &header).map_err(|e| e.to_string())?;
        let mut block: Vec<Kv> = Vec::new();
        let mut bytes = 0usize;
        while let Some(chunk) = view.next_chunk(256).map_err(|e| e.to_string())? {
            for (k, v) in chunk {
                bytes += k.len() + v.len();
                block.push((k, v));
            }
            if bytes >= SNAPSHOT_BLOCK_BYTES {
                w.write_chunk(&block).map_err(|e| e.to_string())?;
                block.clear();
                bytes = 0;
            }
        }
        w.write_chunk(&block).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())
    })();
    let mut dir = crate::poison::or_stop(disk.snapshots.lock(), "snapshot directory");
    let (records, bytes) = match written {
        Ok(w) => w,
        Err(e) => {
            dir.discard(&tmp);
            return Err(e);
        }
    };
    let file = dir.publish(&tmp, index).map_err(|e| e.to_string())?;
    drop(dir);
    if file.index == index {
        disk.bounds.set_snapshot(index);
        disk.bounds.snapshot_bytes.store(bytes, Ordering::Relaxed);
        (disk.on_purge_bounds)();
    }
    tracing::info!(snapshot = %meta.snapshot_id, records, bytes, "snapshot built");
    Ok((meta, file.path))
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// The snapshot file is synced and published (renamed, directory synced) before this
    /// returns, so the log up to it may be purged.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = Instant::now();
        let disk = self.disk.clone();
        let (meta, path) = blocking(move || build(&disk))
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::error(e)))?;
        metrics::histogram!("minion_raft_snapshot_build_seconds").record(started.elapsed().as_secs_f64());
        let data = SnapshotData::open(&path).await.map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Snapshot { meta, snapshot: Box::new(data) })
    }
}

/// Install a received snapshot: sync and check the file, publish it, mark the state store
/// untrusted in the checkpoint, load the store from the file, rebuild RAM, check it, and vouch
/// for the store again. Blocking.
pub(crate) fn install(disk: &SmDisk, records: &Records, meta: &SnapshotMeta, received: &Path) -> Result<State, String> {
    let ours = received.parent() == Some(disk.snapshot_dir.as_path())
        && received.file_name().is_some_and(|n| n.to_string_lossy().starts_with("recv-"));
    let path = if ours {
        received.to_path_buf()
    } else {
        // Handed a file that is not ours (e.g. another store's snapshot): copy it in, in chunks.
        let tmp = crate::poison::or_stop(disk.snapshots.lock(), "snapshot directory").temp_path("recv");
        let src = std::fs::File::open(received).map_err(|e| format!("{}: {e}", received.display()))?;
        let dst = disk.vfs.open(&tmp, OpenMode::Truncate).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        loop {
            let n = std::os::unix::fs::FileExt::read_at(&src, &mut buf, at).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            dst.write_all_at(&buf[..n], at).map_err(|e| e.to_string())?;
            at += n as u64;
        }
        tmp
    };
    disk.vfs.open(&path, OpenMode::ReadWrite).and_then(|f| f.sync_data()).map_err(|e| e.to_string())?;
    let reader = SnapshotReader::open(&disk.vfs, &path).map_err(|e| e.to_string())?;
    let index = meta.last_log_id.map(|l| l.index);
    if reader.header().last_index != index {
        return Err(format!(
            "the snapshot file is as of {:?}, its metadata says {index:?}",
            reader.header().last_index
        ));
    }
    reader.verify().map_err(|e| e.to_string())?;
    let file = crate::poison::or_stop(disk.snapshots.lock(), "snapshot directory")
        .publish(&path, index)
        .map_err(|e| e.to_string())?;
    if file.index != index {
        return Err(format!("a newer snapshot ({:?}) is already installed", file.index));
    }
    disk.checkpointer.update_and_save(|cp| cp.state_valid = false).map_err(|e| e.to_string())?;
    let applied = Applied { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
    let mut r = SnapshotReader::open(&disk.vfs, &file.path).map_err(|e| e.to_string())?;
    let mut failure = None;
    disk.writer
        .replace(
            || match r.next_chunk() {
                Ok(c) => Ok(c),
                Err(e) => {
                    failure = Some(e.to_string());
                    Err(minion_storage::state_store::StoreError::Corrupt {
                        path: "snapshot".into(),
                        what: "read".into(),
                    })
                }
            },
            applied.marker()?,
        )
        .map_err(|e| failure.take().unwrap_or_else(|| e.to_string()))?;
    let engine = State::load(records).map_err(|e| e.to_string())?;
    engine.validate(records, false).map_err(|v| format!("the installed state is not consistent: {v}"))?;
    disk.checkpointer
        .update_and_save(|cp| {
            cp.state_valid = true;
            cp.state_durable = index;
        })
        .map_err(|e| e.to_string())?;
    disk.bounds.set_snapshot(index);
    disk.bounds.set_state_durable(index);
    let size = disk.vfs.open(&file.path, OpenMode::Read).and_then(|f| f.len()).unwrap_or(0);
    disk.bounds.snapshot_bytes.store(size, Ordering::Relaxed);
    (disk.on_purge_bounds)();
    Ok(engine)
}

/// Apply entries in log order to the engine and hand each entry's effects to the writer (readable
/// at once through the overlay). Returns the answers and the last applied index.
pub(crate) fn apply_entries(
    shared: &SharedState,
    writer: &Writer,
    entries: impl IntoIterator<Item = Entry>,
    span: &tracing::Span,
) -> Result<(Vec<minion_engine::Response>, u64), StorageError> {
    let mut out = Vec::new();
    let entries: Vec<Entry> = entries.into_iter().collect();
    // Read what the entries will need from disk before taking the write lock (the read lock is
    // held only while the engine names the records, from RAM).
    let keys: Vec<minion_engine::Key> = {
        let g = shared.read();
        entries
            .iter()
            .filter_map(|e| match &e.payload {
                EntryPayload::Normal(req) => Some(g.engine.cold_keys(req)),
                _ => None,
            })
            .flatten()
            .collect()
    };
    let mut cold = Warmed::read(&shared.records, keys).map_err(sm_err)?;
    writer.wait_for_room().map_err(sm_err)?;
    let mut g = shared.write();
    #[cfg(test)]
    let _held = apply_lock::Held::mark();
    g.engine.watch_events(shared.events.receiver_count() > 0);
    let mut first = None;
    for entry in entries {
        let index = entry.log_id.index;
        first.get_or_insert(index);
        g.applied.last_applied = Some(entry.log_id);
        let resp = match entry.payload {
            EntryPayload::Blank => Ok(Outcome::Done),
            EntryPayload::Normal(req) => g.engine.apply(&req, ApplyMeta { log_index: index }, &cold).map_err(sm_err)?,
            EntryPayload::Membership(m) => {
                g.applied.membership = StoredMembership::new(Some(entry.log_id), m);
                Ok(Outcome::Done)
            }
        };
        out.push(resp);
        let effects = g.engine.take_effects();
        let events = g.engine.take_events();
        if !events.is_empty() {
            let _ = shared.events.send(Arc::new(AppliedEvents { index, events, reset: false }));
        }
        let touched = changes::touched(&effects);
        let feed =
            if touched.is_empty() { Vec::new() } else { vec![(index, frame::encode(&touched).map_err(sm_err)?)] };
        let batch = Batch {
            seq: index,
            applied: g.applied.marker().map_err(sm_err)?,
            changes: encode_effects(&effects).map_err(sm_err)?,
            feed,
        };
        cold.forget(&batch.changes);
        writer.submit(batch).map_err(sm_err)?;
    }
    let last_index = g.applied.last_applied.map(|l| l.index).unwrap_or(0);
    span.record("first_index", first.unwrap_or(last_index));
    span.record("last_index", last_index);
    span.record("entries", out.len());
    #[cfg(debug_assertions)]
    if g.engine.live_count() <= 2_000 || last_index % 512 == 0 {
        if let Err(violation) = g.engine.validate_ram() {
            panic!("engine invariant violated after applying up to {last_index}: {violation}");
        }
    }
    Ok((out, last_index))
}

/// Whether this thread is inside [`apply_entries`] holding the engine's write lock (tests watching
/// apply; another thread holding the lock, such as a bloom-filter rebuild, does not count).
#[cfg(test)]
pub(crate) mod apply_lock {
    use std::cell::Cell;

    thread_local! {
        static HELD: Cell<bool> = const { Cell::new(false) };
    }

    pub(crate) struct Held;

    impl Held {
        pub(crate) fn mark() -> Held {
            HELD.with(|h| h.set(true));
            Held
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            HELD.with(|h| h.set(false));
        }
    }

    pub(crate) fn held_here() -> bool {
        HELD.with(|h| h.get())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let g = self.shared.read();
        Ok((g.applied.last_applied, g.applied.membership.clone()))
    }

    /// Applies in log order. Each entry's effects go to the overlay (readable at once) and the
    /// writer's queue; nothing here waits for a disk.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<minion_engine::Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let started = Instant::now();
        let span = tracing::info_span!(
            "raft.apply",
            first_index = tracing::field::Empty,
            last_index = tracing::field::Empty,
            entries = tracing::field::Empty
        );
        let entered = span.enter();
        let (out, last_index) = apply_entries(&self.shared, &self.disk.writer, entries, &span)?;
        drop(entered);
        metrics::histogram!("minion_raft_apply_seconds").record(started.elapsed().as_secs_f64());
        metrics::gauge!("minion_state_overlay_bytes").set(self.shared.records.overlay().bytes() as f64);
        self.applies += 1;
        if self.applies.is_multiple_of(1_024) && last_index > self.feed_retained_entries {
            let store = self.shared.records.store().clone();
            let before = last_index - self.feed_retained_entries;
            blocking(move || store.feed_purge_before(before)).await.map_err(sm_err)?;
        }
        self.maybe_rebuild_bloom();
        self.shared.applied_index.send_replace(last_index);
        self.shared.changed.notify_waiters();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { disk: self.disk.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        let path = crate::poison::or_stop(self.disk.snapshots.lock(), "snapshot directory").temp_path("recv");
        let data = SnapshotData::create(&path).await.map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(data))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        let started = Instant::now();
        let sig = Some(meta.signature());
        snapshot.finish_writes().await.map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        let bytes = snapshot.len().await.unwrap_or(0);
        let received = snapshot.path().to_path_buf();
        drop(snapshot);
        let disk = self.disk.clone();
        let records = self.shared.records.clone();
        let m = meta.clone();
        let engine = blocking(move || install(&disk, &records, &m, &received))
            .await
            .map_err(|e| StorageIOError::write_snapshot(sig, AnyError::error(e)))?;
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        self.shared.replace_engine(
            engine,
            Applied { last_applied: meta.last_log_id, membership: meta.last_membership.clone() },
        );
        self.maybe_rebuild_bloom();
        let _ = self.shared.events.send(Arc::new(AppliedEvents { index, events: Vec::new(), reset: true }));
        self.shared.applied_index.send_replace(index);
        self.shared.changed.notify_waiters();
        self.shared.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("minion_raft_snapshot_installs_total").increment(1);
        metrics::histogram!("minion_raft_snapshot_install_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(snapshot = %meta.snapshot_id, bytes, index, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let disk = self.disk.clone();
        let found = blocking(move || -> Result<Option<(SnapshotMeta, PathBuf)>, String> {
            let Some(file) = crate::poison::or_stop(disk.snapshots.lock(), "snapshot directory")
                .current()
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let r = SnapshotReader::open(&disk.vfs, &file.path).map_err(|e| e.to_string())?;
            let meta: SnapshotMeta = postcard::from_bytes(&r.header().raft)
                .map_err(|e| format!("snapshot metadata does not decode: {e}"))?;
            Ok(Some((meta, file.path)))
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, AnyError::error(e)))?;
        match found {
            None => Ok(None),
            Some((meta, path)) => {
                let data = SnapshotData::open(&path).await.map_err(|e| StorageIOError::read_snapshot(None, &e))?;
                Ok(Some(Snapshot { meta, snapshot: Box::new(data) }))
            }
        }
    }
}

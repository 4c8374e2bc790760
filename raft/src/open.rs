//! Opening a node's storage: the data directory is recovered ([`minion_storage::disk::Disk`]),
//! the log thread and the state writer start, and the engine's RAM is rebuilt from the records
//! and checked. raft then replays the log from the applied index.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use minion_engine::State;
use minion_storage::disk::{Disk, DiskOptions, OpenStore, OpenSummary};
use minion_storage::layout;
use minion_storage::packed::{PackConfig, Packed};
use minion_storage::sled_store::SledStore;
use minion_storage::snapshot::{SnapshotHeader, SnapshotReader, SnapshotWriter, FORMAT};
use minion_storage::state_store::{Kv, StateStore};
use minion_storage::vfs::{RealFs, SharedVfs};
use minion_storage::wal::WalOptions;
use minion_storage::writer::Writer;
use minion_storage::Durability;

use crate::checkpointer::Checkpointer;
use crate::log_store::LogStore;
use crate::state_machine::{Applied, SmDisk, StateMachine};
use crate::PurgeBounds;

#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub durability: Durability,
    /// sled's page cache.
    pub cache_bytes: u64,
    pub segment_bytes: u64,
    /// Bytes of effects queued for the state store before apply waits.
    pub writer_queue_bytes: usize,
    /// How often the state store is made durable (the log is kept back to that point).
    pub durable_every: Duration,
    /// Who writes this node's snapshots (for their headers).
    pub origin: String,
    pub feed_retained_entries: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            durability: Durability::Fsync,
            cache_bytes: minion_storage::DEFAULT_CACHE_BYTES,
            segment_bytes: 64 << 20,
            writer_queue_bytes: 64 << 20,
            durable_every: Duration::from_secs(1),
            origin: String::new(),
            feed_retained_entries: crate::state_machine::FEED_RETAINED_ENTRIES,
        }
    }
}

/// A node's storage, open: what raft takes, and a handle on the rest.
pub struct Opened {
    pub log_store: LogStore,
    pub state_machine: StateMachine,
    pub handle: StorageHandle,
}

/// The parts of open storage raft does not own.
pub struct StorageHandle {
    pub checkpointer: Arc<Checkpointer>,
    pub writer: Arc<Writer>,
    pub store: Arc<dyn StateStore>,
    pub summary: OpenSummary,
    pub log_store: LogStore,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
}

impl StorageHandle {
    /// Read every record of the state as of one applied index (the last written one, after
    /// waiting for queued writes), in key order and in chunks, while writes go on. Returns the
    /// index. Blocking.
    pub fn consistent_scan(&self, mut each: impl FnMut(&[Kv]) -> Result<(), String>) -> Result<Option<u64>, String> {
        self.writer.flush().map_err(|e| e.to_string())?;
        let mut view = self.writer.begin_snapshot().map_err(|e| e.to_string())?;
        let index = view.applied().index;
        while let Some(chunk) = view.next_chunk(1_024).map_err(|e| e.to_string())? {
            each(&chunk)?;
        }
        Ok(index)
    }

    /// Write a backup file (the snapshot format) of the state as of one applied index to `path`,
    /// synced. Returns (index, records, bytes). Blocking.
    pub fn export_backup(&self, path: &Path, origin: String) -> Result<(Option<u64>, u64, u64), String> {
        let vfs: SharedVfs = RealFs::shared();
        self.writer.flush().map_err(|e| e.to_string())?;
        let mut view = self.writer.begin_snapshot().map_err(|e| e.to_string())?;
        let header = SnapshotHeader {
            format: FORMAT,
            last_index: view.applied().index,
            raft: view.applied().raft.clone(),
            taken_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            origin,
        };
        let mut w = SnapshotWriter::create(&vfs, path, &header).map_err(|e| e.to_string())?;
        while let Some(chunk) = view.next_chunk(1_024).map_err(|e| e.to_string())? {
            w.write_chunk(&chunk).map_err(|e| e.to_string())?;
        }
        let (records, bytes) = w.finish().map_err(|e| e.to_string())?;
        Ok((header.last_index, records, bytes))
    }

    /// Stop the state writer (after a last write and durable point) and save the checkpoint,
    /// marked clean when everything was written and made durable. Call after raft has stopped.
    pub fn shutdown(&self) {
        self.writer.stop();
        if let Some(t) = self.writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        let clean = self.writer.flush().and_then(|_| self.writer.make_durable()).ok();
        let r = self.checkpointer.update_and_save(|c| {
            if let Some(durable) = clean {
                c.state_durable = durable.max(c.state_durable);
                c.clean = true;
            }
        });
        if let Err(e) = r {
            tracing::error!(error = %e, "saving the checkpoint at shutdown");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Disk(#[from] minion_storage::disk::DiskError),
    #[error("data directory {path}: {what}")]
    Other { path: PathBuf, what: String },
}

/// Open (or create) the data directory `dir` on the real file system with sled as state store.
pub fn open(dir: &Path, opts: &OpenOptions) -> Result<Opened, OpenError> {
    let vfs: SharedVfs = RealFs::shared();
    let state_path = dir.join(layout::STATE_DIR);
    let cache = opts.cache_bytes;
    let mut open_store = |wipe: bool| -> Result<Arc<dyn StateStore>, minion_storage::state_store::StoreError> {
        if wipe {
            tracing::warn!(path = %state_path.display(), "removing the state store to rebuild it");
            let _ = std::fs::remove_dir_all(&state_path);
        }
        Ok(Arc::new(Packed::new(SledStore::open(&state_path, cache)?, PackConfig::minion())))
    };
    open_with(vfs, dir, opts, &mut open_store)
}

/// Open with any file system and state store (the simulations use this).
pub fn open_with(
    vfs: SharedVfs,
    dir: &Path,
    opts: &OpenOptions,
    open_store: &mut OpenStore<'_>,
) -> Result<Opened, OpenError> {
    let other = |what: String| OpenError::Other { path: dir.to_path_buf(), what };
    let disk_opts = DiskOptions {
        wal: WalOptions { segment_bytes: opts.segment_bytes, fsync: opts.durability == Durability::Fsync },
        writer_queue_bytes: opts.writer_queue_bytes,
        ..DiskOptions::default()
    };
    let disk = Disk::open(vfs.clone(), dir, &disk_opts, open_store)?;
    if let Some(why) = &disk.summary.rebuilt {
        tracing::warn!(reason = %why, applied = ?disk.applied.index, "the state store was rebuilt from the snapshot and the log");
    }
    if disk.summary.wal.torn_bytes > 0 {
        tracing::warn!(bytes = disk.summary.wal.torn_bytes, reason = ?disk.summary.wal.torn_reason, "a torn log tail was cut");
    }
    let checkpointer = Arc::new(Checkpointer::new(vfs.clone(), dir.to_path_buf(), disk.checkpoint.clone()));
    let bounds = Arc::new(PurgeBounds::default());
    bounds.set_state_durable(disk.applied.index);
    bounds.set_snapshot(disk.summary.snapshot.as_ref().and_then(|s| s.index));
    if let Some(s) = &disk.summary.snapshot {
        let size = vfs.open(&s.path, minion_storage::vfs::OpenMode::Read).and_then(|f| f.len()).unwrap_or(0);
        bounds.snapshot_bytes.store(size, std::sync::atomic::Ordering::Relaxed);
    }
    let (w, b) = (disk.writer.clone(), bounds.clone());
    let make_state_durable = Box::new(move || -> Option<u64> {
        if let Err(e) = w.flush() {
            tracing::error!(error = %e, "flushing the state store");
            return None;
        }
        match w.make_durable() {
            Ok(d) => {
                b.set_state_durable(d);
                d
            }
            Err(e) => {
                tracing::error!(error = %e, "making the state store durable");
                None
            }
        }
    });
    // Everything in the snapshot was committed: raft's committed position starts at least there
    // (the state store may be behind it after a crash; raft then replays the log up to it).
    let snapshot_pos = match &disk.summary.snapshot {
        Some(s) => {
            let r = SnapshotReader::open(&vfs, &s.path).map_err(|e| other(e.to_string()))?;
            let meta: crate::SnapshotMeta =
                postcard::from_bytes(&r.header().raft).map_err(|e| other(format!("snapshot metadata: {e}")))?;
            meta.last_log_id.map(|l| crate::log_pos(&l))
        }
        None => None,
    };
    let committed = disk.checkpoint.committed.max(snapshot_pos);
    let log_store = LogStore::start(
        disk.wal,
        vfs.clone(),
        dir.to_path_buf(),
        checkpointer.clone(),
        bounds.clone(),
        committed,
        make_state_durable,
    )
    .map_err(|e| other(format!("starting the log thread: {e}")))?;
    let engine = State::load(&disk.records).map_err(|e| other(format!("loading the state: {e}")))?;
    engine.validate(&disk.records, false).map_err(|v| other(format!("the loaded state is not consistent: {v}")))?;
    let applied = Applied::from_marker(&disk.applied).map_err(other)?;
    let log = log_store.clone();
    let sm_disk = Arc::new(SmDisk {
        vfs: vfs.clone(),
        writer: disk.writer.clone(),
        snapshots: Mutex::new(disk.snapshots),
        snapshot_dir: dir.join(layout::SNAPSHOT_DIR),
        checkpointer: checkpointer.clone(),
        bounds: bounds.clone(),
        origin: opts.origin.clone(),
        on_purge_bounds: Box::new(move || log.purge_again()),
    });
    let state_machine = StateMachine::new(engine, applied, disk.records.clone(), sm_disk)
        .with_feed_retained_entries(opts.feed_retained_entries);
    let writer = disk.writer.clone();
    let (w, cp, b, log) = (writer.clone(), checkpointer.clone(), bounds.clone(), log_store.clone());
    let every = opts.durable_every;
    let writer_thread = std::thread::Builder::new()
        .name("minion-state-writer".into())
        .spawn(move || {
            w.run(every, |r| match r {
                Ok(durable) => {
                    b.set_state_durable(durable);
                    cp.update(|c| c.state_durable = durable.max(c.state_durable));
                    log.purge_again();
                }
                Err(e) => tracing::error!(error = %e, "the state store failed; this node stops applying"),
            })
        })
        .map_err(|e| other(format!("starting the state writer: {e}")))?;
    if disk.summary.snapshot_unverified {
        if let Some(s) = disk.summary.snapshot.clone() {
            let vfs = vfs.clone();
            let _ = std::thread::Builder::new().name("minion-snapshot-check".into()).spawn(move || {
                match SnapshotReader::open(&vfs, &s.path).and_then(|r| r.verify()) {
                    Ok(n) => tracing::info!(records = n, path = %s.path.display(), "snapshot checked"),
                    Err(e) => {
                        metrics::counter!("minion_storage_corruption_total").increment(1);
                        tracing::error!(error = %e, "the current snapshot is damaged: replace this node from its peers")
                    }
                }
            });
        }
    }
    let handle = StorageHandle {
        checkpointer,
        writer,
        store: disk.store,
        summary: disk.summary,
        log_store: log_store.clone(),
        writer_thread: Mutex::new(Some(writer_thread)),
    };
    Ok(Opened { log_store, state_machine, handle })
}

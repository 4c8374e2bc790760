//! Opening a data directory: layout, checkpoint, log, snapshots and state store, and the repairs
//! recovery may make. See `docs/durability.md` for the argument this implements.
//!
//! 1. The layout is checked (an old layout is refused with directions).
//! 2. The log opens with the checkpoint's `log_durable` as its floor: a torn tail above it is cut,
//!    damage at or below it is refused, and a log that ends before it has lost acknowledged
//!    entries (refused).
//! 3. The current snapshot's header is read (and, if it is small, every block checked).
//! 4. The state store is used as it is only if it opens, the checkpoint vouches for it, it has
//!    kept everything the checkpoint recorded durable, and the log still holds every entry after
//!    its applied index. Otherwise it is rebuilt: cleared and loaded from the snapshot, made
//!    durable, and only then vouched for by the checkpoint. The caller (raft) replays the log from
//!    the applied index on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::layout::{self, LayoutError};
use crate::overlay::Overlay;
use crate::records::Records;
use crate::snapshot::{SnapshotDir, SnapshotError, SnapshotFile, SnapshotReader};
use crate::state_store::{AppliedMarker, StateStore, StoreError};
use crate::vfs::{read_optional, write_atomic, SharedVfs};
use crate::wal::{OpenReport, Wal, WalError, WalOptions};
use crate::writer::Writer;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("data directory {path} cannot be recovered: {what}")]
    Unrecoverable { path: PathBuf, what: String },
}

#[derive(Debug, Clone)]
pub struct DiskOptions {
    pub wal: WalOptions,
    /// Bytes of effects queued for the state store before apply waits.
    pub writer_queue_bytes: usize,
    /// Snapshots up to this size are checked block by block when the directory opens.
    pub verify_snapshot_bytes_max: u64,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions { wal: WalOptions::default(), writer_queue_bytes: 64 << 20, verify_snapshot_bytes_max: 256 << 20 }
    }
}

/// What opening found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenSummary {
    pub wal: OpenReport,
    /// Why the state store was rebuilt from the snapshot and the log, if it was.
    pub rebuilt: Option<String>,
    pub snapshot: Option<SnapshotFile>,
    /// The snapshot is too large to check now: the caller checks it in the background.
    pub snapshot_unverified: bool,
}

/// An open data directory.
pub struct Disk {
    pub vfs: SharedVfs,
    pub dir: PathBuf,
    pub wal: Wal,
    pub checkpoint: Checkpoint,
    pub snapshots: SnapshotDir,
    pub store: Arc<dyn StateStore>,
    pub overlay: Arc<Overlay>,
    pub writer: Arc<Writer>,
    pub records: Records,
    /// What the state store holds the effects of.
    pub applied: AppliedMarker,
    pub summary: OpenSummary,
}

/// Opens the state store; `wipe` asks for an empty one (the old one could not be opened).
pub type OpenStore<'a> = dyn FnMut(bool) -> Result<Arc<dyn StateStore>, StoreError> + 'a;

impl Disk {
    pub fn open(
        vfs: SharedVfs,
        dir: &Path,
        opts: &DiskOptions,
        open_store: &mut OpenStore<'_>,
    ) -> Result<Disk, DiskError> {
        let unrecoverable = |what: String| DiskError::Unrecoverable { path: dir.to_path_buf(), what };
        layout::check(&*vfs, dir)?;
        let mut checkpoint = Checkpoint::load(&*vfs, dir)?.unwrap_or_default();
        let (wal, wal_report) = Wal::open(vfs.clone(), &dir.join(layout::WAL_DIR), opts.wal, checkpoint.log_durable)?;
        let reader = wal.reader();
        let last = reader.last_pos().map(|p| p.index);
        if let Some(d) = checkpoint.log_durable {
            if last.is_none_or(|l| l < d) {
                return Err(unrecoverable(format!(
                    "the log ends at entry {last:?} but the checkpoint records entry {d} as durable: acknowledged \
                     entries were lost (a damaged or truncated log); replace this node from its peers or restore a backup"
                )));
            }
        }
        let snapshots = SnapshotDir::open(vfs.clone(), &dir.join(layout::SNAPSHOT_DIR))?;
        let snapshot = snapshots.current()?;
        let mut summary = OpenSummary { wal: wal_report, snapshot: snapshot.clone(), ..OpenSummary::default() };
        let mut snapshot_marker = None;
        if let Some(s) = &snapshot {
            let r = SnapshotReader::open(&vfs, &s.path)?;
            snapshot_marker = Some(AppliedMarker { index: r.header().last_index, raft: r.header().raft.clone() });
            let size = vfs.open(&s.path, crate::vfs::OpenMode::Read).and_then(|f| f.len()).unwrap_or(u64::MAX);
            if size <= opts.verify_snapshot_bytes_max {
                r.verify()?;
            } else {
                summary.snapshot_unverified = true;
            }
        }
        let covers = |applied: Option<u64>| reader.first_index() <= applied.map_or(0, |i| i + 1);

        let mut why = None;
        let store = match open_store(false) {
            Ok(s) => s,
            Err(e) => {
                why = Some(format!("the state store does not open ({e})"));
                open_store(true)?
            }
        };
        let mut applied = AppliedMarker::default();
        if why.is_none() {
            match store.applied() {
                Err(e) => why = Some(format!("the state store's applied marker is unreadable ({e})")),
                Ok(m) => {
                    let m = m.unwrap_or_default();
                    if !checkpoint.state_valid {
                        if m.index.is_some() || snapshot.is_some() {
                            why = Some("the checkpoint does not vouch for the state store (a snapshot install was cut short, or it was never made durable)".into());
                        }
                    } else if m.index < checkpoint.state_durable {
                        why = Some(format!(
                            "the state store ends at entry {:?} but entry {:?} was recorded durable",
                            m.index, checkpoint.state_durable
                        ));
                    } else if !covers(m.index) {
                        why = Some(format!("the log no longer holds the entries after {:?}", m.index));
                    } else if !checkpoint.clean {
                        if let Err(e) = store.verify() {
                            why = Some(format!("after an unclean stop, reading the state store found damage ({e})"));
                        }
                    }
                    applied = m;
                }
            }
        }
        let writer_overlay = Arc::new(Overlay::default());
        if why.is_some() || !checkpoint.state_valid {
            if let Some(w) = &why {
                tracing::warn!(data_dir = %dir.display(), reason = %w, "rebuilding the state store from the snapshot and the log");
            }
            // Say the store is not to be trusted before touching it.
            if checkpoint.state_valid {
                checkpoint.state_valid = false;
                checkpoint.save(&*vfs, dir)?;
            }
            let writer = Writer::new(store.clone(), writer_overlay.clone(), None, opts.writer_queue_bytes);
            applied = match (&snapshot, &snapshot_marker) {
                (Some(s), Some(marker)) => {
                    let mut r = SnapshotReader::open(&vfs, &s.path)?;
                    let mut failure = None;
                    writer
                        .replace(
                            || match r.next_chunk() {
                                Ok(c) => Ok(c),
                                Err(e) => {
                                    failure = Some(e.to_string());
                                    Err(StoreError::Corrupt {
                                        path: s.path.display().to_string(),
                                        what: "snapshot".into(),
                                    })
                                }
                            },
                            marker.clone(),
                        )
                        .map_err(|e| match failure.take() {
                            Some(f) => unrecoverable(format!("loading the snapshot: {f}")),
                            None => DiskError::Store(e),
                        })?;
                    marker.clone()
                }
                _ => {
                    writer.replace(|| Ok(None), AppliedMarker::default())?;
                    AppliedMarker::default()
                }
            };
            if !covers(applied.index) {
                return Err(unrecoverable(format!(
                    "the state must be rebuilt but the log starts at entry {} and no snapshot covers what came \
                     before (snapshot: {:?})",
                    reader.first_index(),
                    applied.index
                )));
            }
            checkpoint.state_valid = true;
            checkpoint.state_durable = applied.index;
            checkpoint.save(&*vfs, dir)?;
            summary.rebuilt = why;
        }
        // What the store recovered may be only in the page cache (a process crash): make it
        // durable before the log is purged on its account.
        store.make_durable()?;
        // Until a clean stop says otherwise, the next start verifies the store.
        if checkpoint.clean {
            checkpoint.clean = false;
            checkpoint.save(&*vfs, dir)?;
        }
        let writer =
            Arc::new(Writer::new(store.clone(), writer_overlay.clone(), applied.index, opts.writer_queue_bytes));
        let records = Records::new(writer_overlay.clone(), store.clone());
        Ok(Disk {
            vfs,
            dir: dir.to_path_buf(),
            wal,
            checkpoint,
            snapshots,
            store,
            overlay: writer_overlay,
            writer,
            records,
            applied,
            summary,
        })
    }
}

/// raft's vote, framed, in `<data>/vote`: durable when `save_vote` returns.
pub fn save_vote(vfs: &SharedVfs, dir: &Path, vote: &[u8]) -> Result<(), DiskError> {
    let path = dir.join(layout::VOTE_FILE);
    let bytes =
        crate::frame::encode(vote).map_err(|e| DiskError::Unrecoverable { path: path.clone(), what: e.to_string() })?;
    write_atomic(&**vfs, &path, &bytes).map_err(|source| DiskError::Io { path, source })
}

pub fn read_vote(vfs: &SharedVfs, dir: &Path) -> Result<Option<Vec<u8>>, DiskError> {
    let path = dir.join(layout::VOTE_FILE);
    match read_optional(&**vfs, &path).map_err(|source| DiskError::Io { path: path.clone(), source })? {
        None => Ok(None),
        Some(b) => crate::frame::decode::<Vec<u8>>(&b)
            .map(Some)
            .map_err(|e| DiskError::Unrecoverable { path, what: format!("the vote file is damaged: {e}") }),
    }
}

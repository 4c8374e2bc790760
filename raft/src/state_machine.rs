//! The state machine adapter: applies committed entries to the engine and persists the changes
//! with the last-applied log id in one atomic batch.

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use minion_engine::{ApplyMeta, Outcome, Response, State, StateImage};
use minion_storage::{frame, Store};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use crate::{blocking, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// Stored next to the engine state: where it is in the log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// A snapshot as kept on disk: its metadata and the framed [`StateImage`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
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
    snapshots_installed: Arc<std::sync::atomic::AtomicU64>,
}

impl SharedState {
    /// Read the state. Never hold the guard across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// The last applied log index, observable.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct StateMachine {
    store: Store,
    shared: SharedState,
    snapshot_seq: u64,
    /// Change-feed entries kept behind the applied index (older ones are purged).
    feed_retained_entries: u64,
    applies: u64,
}

/// Default number of log entries the change feed keeps.
pub const FEED_RETAINED_ENTRIES: u64 = 100_000;

impl StateMachine {
    /// Load the state machine from the store (rebuilding the in-memory indexes).
    /// Refuses a data directory whose state or snapshot file fails its checksums: a damaged
    /// snapshot is found at start, not when a follower first needs it.
    pub fn open(store: Store) -> Result<StateMachine, minion_storage::StorageError> {
        let (engine, applied) = store.sm_load::<Applied>()?;
        if let Some(snap) = store.snapshot::<StoredSnapshot>()? {
            frame::body(&snap.data).map_err(|source| minion_storage::StorageError::Corrupt {
                path: store.path().join("snapshot"),
                what: "snapshot file: the state image".into(),
                source,
            })?;
        }
        let applied = applied.unwrap_or_default();
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        let shared = SharedState {
            inner: Arc::new(RwLock::new(Inner { engine, applied })),
            changed: Arc::new(Notify::new()),
            applied_index: watch::Sender::new(index),
            snapshots_installed: Arc::default(),
        };
        Ok(StateMachine { store, shared, snapshot_seq: 0, feed_retained_entries: FEED_RETAINED_ENTRIES, applies: 0 })
    }

    pub fn with_feed_retained_entries(mut self, entries: u64) -> Self {
        self.feed_retained_entries = entries.max(1);
        self
    }

    pub fn shared(&self) -> SharedState {
        self.shared.clone()
    }
}

pub struct SnapshotBuilder {
    store: Store,
    shared: SharedState,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Copies the state under the read lock, then encodes and stores it off the runtime. The
    /// stored snapshot is synced (with every state-machine write before it) before this returns,
    /// so the log up to it may be purged.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        let (image, applied) = {
            let g = self.shared.read();
            (g.engine.image(), g.applied.clone())
        };
        let snapshot_id = match applied.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.seq),
            None => format!("0-0-{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership.clone(),
            snapshot_id,
        };
        let store = self.store.clone();
        let meta2 = meta.clone();
        let data = blocking(move || {
            let data = frame::encode(&image).map_err(minion_storage::StorageError::Encode)?;
            store.put_snapshot(&StoredSnapshot { meta: meta2, data: data.clone() })?;
            // The state-machine writes the snapshot covers are durable before the log is purged.
            store.sync()?;
            Ok(data)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        metrics::histogram!("minion_raft_snapshot_build_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "snapshot built");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let g = self.shared.read();
        Ok((g.applied.last_applied, g.applied.membership.clone()))
    }

    /// Applies in log order, then writes all changes and the new last-applied id in one batch.
    /// The batch is not synced here: the entries are already durable in the log, and sled recovers
    /// a prefix of its writes, so after a crash apply resumes from the stored last-applied id.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let last_index;
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            "raft.apply",
            first_index = tracing::field::Empty,
            last_index = tracing::field::Empty,
            entries = tracing::field::Empty
        );
        let entered = span.enter();
        {
            let mut g = self.shared.write();
            let mut dirty = minion_engine::Dirty::default();
            let mut feed = Vec::new();
            let mut first = None;
            for entry in entries {
                first.get_or_insert(entry.log_id.index);
                let meta = ApplyMeta { log_index: entry.log_id.index };
                g.applied.last_applied = Some(entry.log_id);
                let resp = match entry.payload {
                    EntryPayload::Blank => Ok(Outcome::Done),
                    EntryPayload::Normal(req) => g.engine.apply(&req, meta),
                    EntryPayload::Membership(m) => {
                        g.applied.membership = StoredMembership::new(Some(entry.log_id), m);
                        Ok(Outcome::Done)
                    }
                };
                out.push(resp);
                // Per entry: the feed records are tagged with the entry that caused them.
                let entry_dirty = g.engine.take_dirty();
                if !entry_dirty.is_empty() {
                    feed.push((entry.log_id.index, minion_engine::changes::changes(&g.engine, &entry_dirty)));
                }
                dirty.merge(entry_dirty);
            }
            let persist_started = std::time::Instant::now();
            self.store
                .sm_persist(&g.engine, &dirty, &g.applied, &feed)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            metrics::histogram!("minion_raft_apply_persist_seconds").record(persist_started.elapsed().as_secs_f64());
            last_index = g.applied.last_applied.map(|l| l.index).unwrap_or(0);
            span.record("first_index", first.unwrap_or(last_index));
            span.record("last_index", last_index);
            span.record("entries", out.len());
            // Debug builds check every invariant: after each batch while the state is small, then
            // every 512th entry (a full check is linear in the number of tasks).
            #[cfg(debug_assertions)]
            if g.engine.task_count() <= 2_000 || last_index % 512 == 0 {
                if let Err(violation) = g.engine.validate() {
                    panic!("engine invariant violated after applying up to {last_index}: {violation}");
                }
            }
        }
        drop(entered);
        metrics::histogram!("minion_raft_apply_seconds").record(started.elapsed().as_secs_f64());
        self.applies += 1;
        if self.applies.is_multiple_of(1_024) && last_index > self.feed_retained_entries {
            let store = self.store.clone();
            let before = last_index - self.feed_retained_entries;
            blocking(move || store.changes_purge_before(before))
                .await
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
        }
        self.shared.applied_index.send_replace(last_index);
        self.shared.changed.notify_waiters();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder { store: self.store.clone(), shared: self.shared.clone(), seq: self.snapshot_seq }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let data = snapshot.into_inner();
        let bytes = data.len();
        let sig = Some(meta.signature());
        let image: StateImage =
            frame::decode_image(&data).map_err(|e| StorageIOError::read_snapshot(sig.clone(), &e))?;
        let applied = Applied { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        let store = self.store.clone();
        let stored = StoredSnapshot { meta: meta.clone(), data };
        let (image, applied) = blocking(move || {
            let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
            store.sm_replace(&image, &applied, index)?;
            store.put_snapshot(&stored)?;
            Ok((image, applied))
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(sig, &e))?;
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        {
            let mut g = self.shared.write();
            g.engine = State::from_image(image);
            g.applied = applied;
        }
        self.shared.applied_index.send_replace(index);
        self.shared.changed.notify_waiters();
        self.shared.snapshots_installed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("minion_raft_snapshot_installs_total").increment(1);
        metrics::histogram!("minion_raft_snapshot_install_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(snapshot = %meta.snapshot_id, bytes, index, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored: Option<StoredSnapshot> =
            self.store.snapshot().map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

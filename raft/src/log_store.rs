//! The raft log and vote, stored in the `log` and `raft` trees.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use minion_storage::Store;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError, Vote};
use tokio::sync::mpsc;

use crate::{blocking, Entry, LogId, NodeId, StorageError, TypeConfig};

/// Appends waiting for a sync, at most.
const PENDING_SYNCS_MAX: usize = 4_096;

#[derive(Clone)]
pub struct LogStore {
    store: Store,
    syncer: mpsc::Sender<LogFlushed<TypeConfig>>,
    committed: Arc<AtomicU64>,
}

impl LogStore {
    /// Starts the log's syncer task on the current tokio runtime.
    pub fn new(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(PENDING_SYNCS_MAX);
        tokio::spawn(run_syncer(store.clone(), rx));
        LogStore { store, syncer: tx, committed: Arc::new(AtomicU64::new(0)) }
    }

    /// The last committed log index raft has reported, for metrics.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }
}

/// Group commit at the log: every append whose entries were written before a sync starts is made
/// durable by that sync, and its callback fires after it, in append order. Raft can append the
/// next entries while the previous sync runs.
async fn run_syncer(store: Store, mut rx: mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        while let Ok(cb) = rx.try_recv() {
            waiting.push(cb);
        }
        let s = store.clone();
        let started = std::time::Instant::now();
        let res = blocking(move || s.sync()).await;
        metrics::histogram!("minion_storage_sync_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("minion_storage_sync_appends").record(waiting.len() as f64);
        for cb in waiting {
            let r = match &res {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            cb.log_io_completed(r);
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.store.log_range(range).map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged: Option<LogId> = self.store.purged().map_err(|e| StorageIOError::read_logs(&e))?;
        let last: Option<Entry> = self.store.log_last().map_err(|e| StorageIOError::read_logs(&e))?;
        let last_log_id = last.map(|e| e.log_id).or(purged);
        Ok(LogState { last_purged_log_id: purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// The vote is on disk before this returns.
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let store = self.store.clone();
        let vote = *vote;
        blocking(move || {
            store.put_vote(&vote)?;
            store.sync()
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.store.vote().map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.committed.store(committed.map(|c| c.index).unwrap_or(0), Ordering::Relaxed);
        self.store.put_committed(&committed).map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let c: Option<Option<LogId>> = self.store.committed().map_err(|e| StorageIOError::read(&e))?;
        Ok(c.flatten())
    }

    /// Entries are written (readable at once) and handed to the syncer; the callback fires only
    /// after a sync that started after they were written, i.e. once they are durable.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let started = std::time::Instant::now();
        let appended = self.store.log_append(entries.iter().map(|e| (e.log_id.index, e)));
        // The write into the log tree only; the fsync that makes it durable is timed by the syncer.
        metrics::histogram!("minion_raft_append_seconds").record(started.elapsed().as_secs_f64());
        if let Err(e) = appended {
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(StorageIOError::write_logs(&e).into());
        }
        if let Err(mpsc::error::SendError(cb)) = self.syncer.send(callback).await {
            let err = std::io::Error::other("the log syncer has stopped");
            let any = StorageIOError::write_logs(&err);
            cb.log_io_completed(Err(err));
            return Err(any.into());
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.store.log_truncate(log_id.index).map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash in between leaves entries that are simply unused.
        self.store.put_purged(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        self.store.log_purge(log_id.index).map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

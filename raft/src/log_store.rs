//! The raft log and vote, stored in the `log` and `raft` trees.

use std::fmt::Debug;
use std::ops::RangeBounds;

use minion_storage::Store;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError, Vote};

use crate::{blocking, Entry, LogId, NodeId, StorageError, TypeConfig};

#[derive(Clone)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    pub fn new(store: Store) -> Self {
        LogStore { store }
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
        self.store.put_committed(&committed).map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let c: Option<Option<LogId>> = self.store.committed().map_err(|e| StorageIOError::read(&e))?;
        Ok(c.flatten())
    }

    /// Entries are staged, then synced; the callback fires only once they are durable. Appends
    /// are awaited one at a time, so entries proposed during a sync are grouped into the next one.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let store = self.store.clone();
        let res = blocking(move || {
            store.log_append(entries.iter().map(|e| (e.log_id.index, e)))?;
            store.sync()
        })
        .await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
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

//! openraft's storage conformance suite against Minion's log store (its own write-ahead log) and
//! state machine (the engine over sled, snapshots as streamed files).

use minion_raft::{open, LogStore, OpenOptions, StateMachine, StorageHandle, TypeConfig};
use minion_storage::Durability;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct Builder;

/// Keeps the directory and the storage threads alive for one test.
struct Guard {
    handle: StorageHandle,
    _dir: tempfile::TempDir,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Guard> for Builder {
    async fn build(&self) -> Result<(Guard, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = OpenOptions { durability: Durability::Flush, cache_bytes: 8 << 20, ..OpenOptions::default() };
        let opened = open(dir.path(), &opts).expect("open storage");
        Ok((Guard { handle: opened.handle, _dir: dir }, opened.log_store, opened.state_machine))
    }
}

#[test]
fn openraft_storage_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder)?;
    Ok(())
}

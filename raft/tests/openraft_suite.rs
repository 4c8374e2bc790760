//! openraft's storage conformance suite against Minion's sled-backed log store and state machine.

use minion_raft::{LogStore, StateMachine, TypeConfig};
use minion_storage::{Durability, Store};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), Durability::Flush).expect("open store");
        let sm = StateMachine::open(store.clone()).expect("open state machine");
        Ok((dir, LogStore::new(store), sm))
    }
}

#[test]
fn openraft_storage_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder)?;
    Ok(())
}

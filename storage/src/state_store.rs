//! Where the state machine's records live: the seam between the record layer and sled.
//!
//! Two implementations: [`crate::sled_store::SledStore`] in production, and (for the power-loss
//! simulation) `MemStateStore`, which loses whatever its simulated disk had not made durable.
//! Either way the contract is sled's: a write is atomic (all its changes and its applied marker, or
//! none), a crash keeps a prefix of the writes, and [`StateStore::make_durable`] is the point
//! before which nothing is lost. Nothing acknowledged depends on that point: the log is kept back
//! to it, and a store that comes back behind it (or not at all) is rebuilt from the last snapshot
//! plus the log.

use std::ops::Bound;

use serde::{Deserialize, Serialize};

/// A change to one key: a new value, or `None` to delete it.
pub type Change = (Vec<u8>, Option<Vec<u8>>);
pub type Kv = (Vec<u8>, Vec<u8>);

/// The last log entry whose effects a write includes, stored atomically with them. `raft` is the
/// raft layer's own encoding (log id and membership), opaque here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedMarker {
    pub index: Option<u64>,
    pub raft: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store I/O error in {path}: {message}")]
    Io { path: String, message: String },
    #[error("state store damaged in {path}: {what}")]
    Corrupt { path: String, what: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub trait StateStore: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// State keys from `from` up to `to` (exclusive), in order, at most `limit`.
    fn range(&self, from: Bound<&[u8]>, to: &[u8], limit: usize) -> Result<Vec<Kv>>;
    /// Apply `changes`, set the applied marker and add change-feed entries, as one atomic write.
    fn write(&self, changes: &[Change], applied: &AppliedMarker, feed: &[(u64, Vec<u8>)]) -> Result<()>;
    fn applied(&self) -> Result<Option<AppliedMarker>>;
    /// Make every write so far survive power loss. Blocking; never on the commit path.
    fn make_durable(&self) -> Result<()>;
    /// Remove every record, the marker and the feed (before loading a snapshot).
    fn clear(&self) -> Result<()>;
    /// Change-feed entries with an index above `after`, at most `limit`.
    fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>>;
    /// Drop feed entries below `before`; later reads of them are answered "purged".
    fn feed_purge_before(&self, before: u64) -> Result<usize>;
    /// Feed entries below this index were purged (0: none).
    fn feed_purged_before(&self) -> Result<u64>;
    /// Read every record (after an unclean stop: damage sled would only hit on a later read
    /// shows now). Returns how many there are.
    fn verify(&self) -> Result<u64>;
    /// Bytes on disk, for metrics.
    fn size_on_disk(&self) -> u64;
}

/// The byte range of every state key (kind bytes are capital letters); other keys (marker, feed)
/// sort outside it.
pub const STATE_KEYS_FROM: &[u8] = b"A";
pub const STATE_KEYS_TO: &[u8] = b"[";

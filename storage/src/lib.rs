//! Minion's on-disk layout and durability: the only crate that names sled.
//!
//! - [`vfs`]: the file-I/O seam every durable byte goes through (and, for tests, [`sim`]: a file
//!   system that loses power).
//! - [`wal`]: the raft log, Minion's own write-ahead log.
//! - [`codec`]: the one encoding of every record kind; [`records`]: reading them back.
//! - [`state_store`]: where records live ([`sled_store`] in production); [`overlay`] and
//!   [`writer`]: apply's effects reach it off the commit path.
//! - [`snapshot`]: snapshot and backup files, streamed; [`checkpoint`]: what is known durable;
//!   [`layout`]: the directory; [`disk`]: opening it, with the repairs recovery may make.
//!
//! The argument for why nothing acknowledged is lost is in `docs/durability.md`.

pub mod block;
pub mod checkpoint;
pub mod codec;
pub mod disk;
pub mod frame;
pub mod layout;
#[cfg(any(test, feature = "sim"))]
pub mod mem_store;
pub mod overlay;
pub mod packed;
pub mod records;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod sled_store;
pub mod snapshot;
pub mod state_store;
pub mod vfs;
pub mod wal;
pub mod warmed;
pub mod writer;

pub use frame::FrameError;

/// How far a write goes before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `fdatasync` of the log before the acknowledgement: survives power loss.
    Fsync,
    /// The log is written to the operating system only: survives a process crash, not power loss.
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

/// sled's page cache unless configured otherwise: small, since finished tasks are packed into
/// blocks and the OS page cache keeps the files' hot parts anyway (docs/benchmarks.md measures
/// random reads of a retained ledger at 64 and 256 MiB).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

//! The checkpoint file: what is known durable, recorded so that a restart can tell repair from
//! loss.
//!
//! - `log_durable`: the log holds every entry through this index (committed and synced). A log
//!   that comes back shorter lost acknowledged entries: the node refuses to start (corruption is
//!   reported, never treated as "no data").
//! - `state_durable` / `state_valid`: the state store made everything through this applied index
//!   durable. A store that comes back behind it, or a checkpoint saying the store is not valid (a
//!   snapshot install was cut short), means the store is rebuilt from the last snapshot plus the
//!   log.
//! - `committed`: the last committed log position seen, for replay after a restart.
//! - `clean`: the node stopped cleanly (everything flushed). Otherwise the state store is read
//!   whole at the next start, so damage sled would only meet on a later read (a lost blob file)
//!   is found before serving.
//!
//! Written whole with [`write_atomic`]: a crash leaves the old or the new checkpoint.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::frame;
use crate::vfs::{read_optional, write_atomic, Vfs};
use crate::wal::LogPos;

pub const CHECKPOINT_FILE: &str = "checkpoint";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub log_durable: Option<u64>,
    pub state_durable: Option<u64>,
    pub state_valid: bool,
    pub committed: Option<LogPos>,
    pub clean: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("checkpoint file {path} is damaged: {source}")]
    Corrupt { path: PathBuf, source: frame::FrameError },
}

impl Checkpoint {
    pub fn load(vfs: &dyn Vfs, data_dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = data_dir.join(CHECKPOINT_FILE);
        match read_optional(vfs, &path).map_err(|source| CheckpointError::Io { path: path.clone(), source })? {
            None => Ok(None),
            Some(b) => frame::decode(&b).map(Some).map_err(|source| CheckpointError::Corrupt { path, source }),
        }
    }

    /// Durable when it returns.
    pub fn save(&self, vfs: &dyn Vfs, data_dir: &Path) -> Result<(), CheckpointError> {
        let path = data_dir.join(CHECKPOINT_FILE);
        let bytes = frame::encode(self).map_err(|source| CheckpointError::Corrupt { path: path.clone(), source })?;
        write_atomic(vfs, &path, &bytes).map_err(|source| CheckpointError::Io { path, source })
    }
}

//! The data directory's layout, and refusing one this build cannot read.
//!
//! ```text
//! <data>/LAYOUT       "minion data layout 3"
//! <data>/cluster      node and cluster ids
//! <data>/checkpoint   what is known durable (see checkpoint.rs)
//! <data>/vote         raft's vote
//! <data>/wal/         the write-ahead log (segments)
//! <data>/snapshots/   the current snapshot
//! <data>/state/       sled: the records, the applied marker, the change feed
//! ```
//!
//! Layout 3 differs from 2 only inside the state store: records may be packed into blocks
//! (`packed.rs`). A layout-2 directory reads as it is, so it is upgraded in place: the `LAYOUT`
//! file is rewritten (durably, before anything else is written) and its records are packed as
//! writes come. A release that reads layout 2 refuses the upgraded directory instead of missing
//! the packed records.
//!
//! A directory written by releases before the record store (a `db/` directory, no `LAYOUT`) is
//! refused with directions: export a backup with the old release, import it into a new cluster.

use std::path::{Path, PathBuf};

use crate::vfs::{read_optional, write_atomic, Vfs};

pub const LAYOUT_FILE: &str = "LAYOUT";
pub const LAYOUT: &str = "minion data layout 3\n";
/// The layout this release upgrades in place.
pub const LAYOUT_UPGRADED: &str = "minion data layout 2\n";
pub const WAL_DIR: &str = "wal";
pub const SNAPSHOT_DIR: &str = "snapshots";
pub const STATE_DIR: &str = "state";
pub const VOTE_FILE: &str = "vote";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "data directory {0} was written by a Minion release before 0.2 (it has a db/ directory and no LAYOUT \
         file); this release cannot read it. Move it: run the old release on it and take a backup \
         (`minion snapshot export --out backup.minion`), start this release on an empty data directory, and \
         restore the backup into it (`minion snapshot import backup.minion`)"
    )]
    OldLayout(PathBuf),
    #[error("data directory {path} has layout {found:?}; this release reads {expected:?}")]
    Unknown { path: PathBuf, found: String, expected: String },
}

/// Check the layout of `data_dir`, writing it on a new directory. Durable on return.
pub fn check(vfs: &dyn Vfs, data_dir: &Path) -> Result<(), LayoutError> {
    let io = |source| LayoutError::Io { path: data_dir.to_path_buf(), source };
    let path = data_dir.join(LAYOUT_FILE);
    match read_optional(vfs, &path).map_err(io)? {
        Some(b) if b == LAYOUT.as_bytes() => Ok(()),
        Some(b) if b == LAYOUT_UPGRADED.as_bytes() => {
            tracing::info!(path = %data_dir.display(), "upgrading the data layout from 2 to 3 in place");
            write_atomic(vfs, &path, LAYOUT.as_bytes()).map_err(io)
        }
        Some(b) => Err(LayoutError::Unknown {
            path: data_dir.to_path_buf(),
            found: String::from_utf8_lossy(&b).trim().to_string(),
            expected: LAYOUT.trim().to_string(),
        }),
        None if vfs.exists(&data_dir.join("db")) => Err(LayoutError::OldLayout(data_dir.to_path_buf())),
        None => {
            vfs.create_dir_all(data_dir).map_err(io)?;
            write_atomic(vfs, &path, LAYOUT.as_bytes()).map_err(io)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::RealFs;

    #[test]
    fn layout_2_is_upgraded_in_place_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = RealFs::shared();
        let file = dir.path().join(LAYOUT_FILE);
        std::fs::write(&file, LAYOUT_UPGRADED).unwrap();
        check(&*vfs, dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), LAYOUT);
        check(&*vfs, dir.path()).unwrap();
        std::fs::write(&file, "minion data layout 4\n").unwrap();
        let e = check(&*vfs, dir.path()).unwrap_err();
        assert!(matches!(e, LayoutError::Unknown { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "minion data layout 4\n", "left as it was");
    }
}

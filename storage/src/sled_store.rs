//! The state store on sled 0.34: one tree holding the records (keys `A`..`Z` by kind), the applied
//! marker and the change feed, so that one `apply_batch` writes all three atomically.
//!
//! sled's own flush is `sync_file_range` on Linux, which flushes neither the disk cache nor file
//! sizes, and sled never syncs the files it writes large items to (`blobs/`) or its directories.
//! [`StateStore::make_durable`] closes those gaps: sled flush, `fdatasync` of the data file,
//! `fsync` of every blob written since the last call and of sled's page-table snapshot files, then
//! of the directories. Only after it returns does the checkpoint record the applied index as the
//! store's durable point.

use std::collections::HashSet;
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use crate::state_store::{AppliedMarker, Change, Kv, Result, StateStore, StoreError, STATE_KEYS_FROM, STATE_KEYS_TO};

const TREE: &str = "s";
const KEY_APPLIED: &[u8] = b"\x00applied";
const KEY_FEED_PURGED: &[u8] = b"\x00feed_purged_before";
const FEED_PREFIX: u8 = 1;

fn feed_key(index: u64) -> [u8; 9] {
    let mut k = [FEED_PREFIX; 9];
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    tree: RwLock<sled::Tree>,
    data_file: File,
    /// Blob and snapshot files already synced (sled never rewrites one in place).
    synced: Mutex<HashSet<String>>,
}

fn err(path: &Path, e: sled::Error) -> StoreError {
    let path = path.display().to_string();
    match e {
        sled::Error::Corruption { at, .. } => {
            StoreError::Corrupt { path, what: format!("sled reports corruption at {at:?}") }
        }
        other => StoreError::Io { path, message: other.to_string() },
    }
}

/// sled panics on some damage (a page whose blob file is gone: "cannot find pid ... in
/// view_for_key"). Such a panic is damage, reported as an error, never a crash of the node.
fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(StoreError::Corrupt {
                path: path.display().to_string(),
                what: format!("sled failed while {what}: {msg}"),
            })
        }
    }
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io { path: path.display().to_string(), message: e.to_string() }
}

impl SledStore {
    /// Open (or create) the store in `path`, with sled's page cache bounded at `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<SledStore> {
        guarded(path, "opening", || SledStore::open_unguarded(path, cache_bytes))
    }

    fn open_unguarded(path: &Path, cache_bytes: u64) -> Result<SledStore> {
        std::fs::create_dir_all(path).map_err(|e| io(path, e))?;
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|e| err(path, e))?;
        let tree = db.open_tree(TREE).map_err(|e| err(path, e))?;
        let data_path = path.join("db");
        let data_file = File::open(&data_path).map_err(|e| io(&data_path, e))?;
        let store = SledStore {
            path: path.to_path_buf(),
            db,
            tree: RwLock::new(tree),
            data_file,
            synced: Mutex::new(HashSet::new()),
        };
        Ok(store)
    }

    fn tree(&self) -> sled::Tree {
        self.tree.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn e(&self, e: sled::Error) -> StoreError {
        err(&self.path, e)
    }

    /// `fsync` every file in `dir` whose name passes `want` and was not synced before; then the
    /// directory if anything was new.
    fn sync_new_files(&self, dir: &Path, want: impl Fn(&str) -> bool) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(dir, e)),
        };
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        let mut any = false;
        let mut present = HashSet::new();
        for entry in entries {
            let entry = entry.map_err(|e| io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !want(&name) {
                continue;
            }
            let full = dir.join(&name);
            let key = full.display().to_string();
            present.insert(key.clone());
            if synced.contains(&key) {
                continue;
            }
            match File::open(&full) {
                Ok(f) => f.sync_all().map_err(|e| io(&full, e))?,
                // sled removed it meanwhile (a rewritten blob): nothing to keep.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&full, e)),
            }
            synced.insert(key);
            any = true;
        }
        let prefix = dir.display().to_string();
        synced.retain(|k| !k.starts_with(&prefix) || present.contains(k));
        if any {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))?;
        }
        Ok(())
    }
}

impl StateStore for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        guarded(&self.path, "reading", || Ok(self.tree().get(key).map_err(|e| self.e(e))?.map(|v| v.to_vec())))
    }

    fn range(&self, from: Bound<&[u8]>, to: &[u8], limit: usize) -> Result<Vec<Kv>> {
        guarded(&self.path, "scanning", || self.range_unguarded(from, to, limit))
    }

    fn write(&self, changes: &[Change], applied: &AppliedMarker, feed: &[(u64, Vec<u8>)]) -> Result<()> {
        guarded(&self.path, "writing", || self.write_unguarded(changes, applied, feed))
    }

    fn applied(&self) -> Result<Option<AppliedMarker>> {
        guarded(&self.path, "reading the applied marker", || self.applied_unguarded())
    }

    fn make_durable(&self) -> Result<()> {
        guarded(&self.path, "flushing", || self.make_durable_unguarded())
    }

    fn clear(&self) -> Result<()> {
        guarded(&self.path, "clearing", || self.clear_unguarded())
    }

    fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        guarded(&self.path, "reading the change feed", || self.feed_after_unguarded(after, limit))
    }

    fn feed_purge_before(&self, before: u64) -> Result<usize> {
        guarded(&self.path, "purging the change feed", || self.feed_purge_before_unguarded(before))
    }

    fn feed_purged_before(&self) -> Result<u64> {
        guarded(&self.path, "reading the change feed", || self.feed_purged_before_unguarded())
    }

    /// Read every key and value (a store that lost a blob fails here, not later).
    fn verify(&self) -> Result<u64> {
        guarded(&self.path, "verifying", || {
            let mut n = 0u64;
            for item in self.tree().iter() {
                let (k, v) = item.map_err(|e| self.e(e))?;
                std::hint::black_box((k.len(), v.len()));
                n += 1;
            }
            Ok(n)
        })
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl SledStore {
    fn range_unguarded(&self, from: Bound<&[u8]>, to: &[u8], limit: usize) -> Result<Vec<Kv>> {
        let mut out = Vec::new();
        let from: Bound<Vec<u8>> = match from {
            Bound::Included(b) => Bound::Included(b.to_vec()),
            Bound::Excluded(b) => Bound::Excluded(b.to_vec()),
            Bound::Unbounded => Bound::Included(STATE_KEYS_FROM.to_vec()),
        };
        for item in self.tree().range::<Vec<u8>, _>((from, Bound::Excluded(to.to_vec()))) {
            if out.len() == limit {
                break;
            }
            let (k, v) = item.map_err(|e| self.e(e))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn write_unguarded(&self, changes: &[Change], applied: &AppliedMarker, feed: &[(u64, Vec<u8>)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in changes {
            match v {
                Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                None => batch.remove(k.as_slice()),
            }
        }
        for (index, v) in feed {
            batch.insert(&feed_key(*index), v.as_slice());
        }
        let marker = crate::frame::encode(applied).map_err(|e| StoreError::Corrupt {
            path: self.path.display().to_string(),
            what: format!("encoding the applied marker: {e}"),
        })?;
        batch.insert(KEY_APPLIED, marker);
        self.tree().apply_batch(batch).map_err(|e| self.e(e))
    }

    fn applied_unguarded(&self) -> Result<Option<AppliedMarker>> {
        match self.tree().get(KEY_APPLIED).map_err(|e| self.e(e))? {
            None => Ok(None),
            Some(v) => crate::frame::decode(&v).map(Some).map_err(|e| StoreError::Corrupt {
                path: self.path.display().to_string(),
                what: format!("the applied marker: {e}"),
            }),
        }
    }

    fn make_durable_unguarded(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.e(e))?;
        self.data_file.sync_data().map_err(|e| io(&self.path.join("db"), e))?;
        self.sync_new_files(&self.path.join("blobs"), |_| true)?;
        self.sync_new_files(&self.path, |n| n.starts_with("snap.") || n == "conf")
    }

    fn clear_unguarded(&self) -> Result<()> {
        let mut g = self.tree.write().unwrap_or_else(|p| p.into_inner());
        self.db.drop_tree(TREE).map_err(|e| self.e(e))?;
        *g = self.db.open_tree(TREE).map_err(|e| self.e(e))?;
        Ok(())
    }

    fn feed_after_unguarded(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        let start = feed_key(after.saturating_add(1));
        let end = [FEED_PREFIX + 1];
        for item in self.tree().range(start.as_slice()..end.as_slice()) {
            if out.len() == limit {
                break;
            }
            let (k, v) = item.map_err(|e| self.e(e))?;
            let mut idx = [0u8; 8];
            idx.copy_from_slice(&k[1..9]);
            out.push((u64::from_be_bytes(idx), v.to_vec()));
        }
        Ok(out)
    }

    fn feed_purge_before_unguarded(&self, before: u64) -> Result<usize> {
        let tree = self.tree();
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for k in tree.range(feed_key(0).as_slice()..feed_key(before).as_slice()).keys() {
            batch.remove(k.map_err(|e| self.e(e))?);
            n += 1;
        }
        if before > self.feed_purged_before_unguarded()? {
            batch.insert(KEY_FEED_PURGED, &before.to_be_bytes());
        }
        tree.apply_batch(batch).map_err(|e| self.e(e))?;
        Ok(n)
    }

    fn feed_purged_before_unguarded(&self) -> Result<u64> {
        match self.tree().get(KEY_FEED_PURGED).map_err(|e| self.e(e))? {
            Some(v) if v.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v);
                Ok(u64::from_be_bytes(b))
            }
            Some(_) => {
                Err(StoreError::Corrupt { path: self.path.display().to_string(), what: "feed watermark".into() })
            }
            None => Ok(0),
        }
    }
}

/// Keep `STATE_KEYS_*` honest: the marker and feed keys sort before the first state key.
const _: () =
    assert!(KEY_APPLIED[0] < STATE_KEYS_FROM[0] && FEED_PREFIX < STATE_KEYS_FROM[0] && STATE_KEYS_TO[0] > b'Z');

//! `MemStateStore`: the state store of the power-loss simulation. It keeps its records in memory
//! and remembers which writes came after the last [`StateStore::make_durable`]; a power loss keeps
//! a random prefix of those (sled's contract), or, to stand for a store that does not come back
//! at all, nothing.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::state_store::{AppliedMarker, Change, Kv, Result, StateStore, StoreError};

#[derive(Debug, Clone, Default)]
struct Disk {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    applied: Option<AppliedMarker>,
    feed: BTreeMap<u64, Vec<u8>>,
    feed_purged_before: u64,
}

#[derive(Debug, Clone)]
enum Write {
    Batch { changes: Vec<Change>, applied: AppliedMarker, feed: Vec<(u64, Vec<u8>)> },
    Clear,
    FeedPurge(u64),
}

fn apply(d: &mut Disk, w: &Write) {
    match w {
        Write::Batch { changes, applied, feed } => {
            for (k, v) in changes {
                match v {
                    Some(v) => d.records.insert(k.clone(), v.clone()),
                    None => d.records.remove(k),
                };
            }
            d.feed.extend(feed.iter().cloned());
            d.applied = Some(applied.clone());
        }
        Write::Clear => *d = Disk::default(),
        Write::FeedPurge(before) => {
            d.feed = d.feed.split_off(before);
            d.feed_purged_before = d.feed_purged_before.max(*before);
        }
    }
}

/// Called on every `get` (a test watching when the store is read).
#[derive(Clone, Default)]
struct OnGet(Option<Arc<dyn Fn(&[u8]) + Send + Sync>>);

impl std::fmt::Debug for OnGet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "OnGet(set)" } else { "OnGet(none)" })
    }
}

#[derive(Debug, Default)]
struct Inner {
    on_get: OnGet,
    current: Disk,
    durable: Disk,
    since: Vec<Write>,
    /// The power is out: every call fails.
    dead: bool,
    fail_durable: bool,
}

/// Cheap to clone; clones share one store.
#[derive(Debug, Clone, Default)]
pub struct MemStateStore {
    inner: Arc<Mutex<Inner>>,
}

fn dead() -> StoreError {
    StoreError::Io { path: "mem".into(), message: "simulated power loss".into() }
}

impl MemStateStore {
    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.dead {
            return Err(dead());
        }
        Ok(g)
    }

    /// The power goes out: every later call fails.
    pub fn crash(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).dead = true;
    }

    /// Call `f` with the key of every `get` from now on.
    pub fn on_get(&self, f: Arc<dyn Fn(&[u8]) + Send + Sync>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).on_get = OnGet(Some(f));
    }

    /// Make `make_durable` fail (a failing disk).
    pub fn fail_durable(&self, fail: bool) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).fail_durable = fail;
    }

    /// The store a reboot finds: the durable state plus `keep` of the writes since (`None`: the
    /// store is lost entirely, as if it could not be opened).
    pub fn after_power_loss(&self, keep: Option<usize>) -> MemStateStore {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut disk = g.durable.clone();
        match keep {
            Some(n) => {
                for w in g.since.iter().take(n) {
                    apply(&mut disk, w);
                }
            }
            None => disk = Disk::default(),
        }
        MemStateStore {
            inner: Arc::new(Mutex::new(Inner { current: disk.clone(), durable: disk, ..Inner::default() })),
        }
    }

    /// Writes since the last durable point.
    pub fn writes_since_durable(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).since.len()
    }

    fn push(&self, w: Write) -> Result<()> {
        let mut g = self.lock()?;
        apply(&mut g.current, &w);
        g.since.push(w);
        Ok(())
    }
}

impl StateStore for MemStateStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (v, on_get) = {
            let g = self.lock()?;
            (g.current.records.get(key).cloned(), g.on_get.clone())
        };
        if let Some(f) = on_get.0 {
            f(key);
        }
        Ok(v)
    }

    fn range(&self, from: Bound<&[u8]>, to: &[u8], limit: usize) -> Result<Vec<Kv>> {
        let g = self.lock()?;
        let from: Bound<Vec<u8>> = match from {
            Bound::Included(b) => Bound::Included(b.to_vec()),
            Bound::Excluded(b) => Bound::Excluded(b.to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        Ok(g.current
            .records
            .range::<Vec<u8>, _>((from, Bound::Excluded(to.to_vec())))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&self, changes: &[Change], applied: &AppliedMarker, feed: &[(u64, Vec<u8>)]) -> Result<()> {
        self.push(Write::Batch { changes: changes.to_vec(), applied: applied.clone(), feed: feed.to_vec() })
    }

    fn applied(&self) -> Result<Option<AppliedMarker>> {
        Ok(self.lock()?.current.applied.clone())
    }

    fn make_durable(&self) -> Result<()> {
        let mut g = self.lock()?;
        if g.fail_durable {
            return Err(StoreError::Io { path: "mem".into(), message: "simulated EIO".into() });
        }
        // The durable state catches up by the writes since (no copy of the whole store).
        let since = std::mem::take(&mut g.since);
        for w in &since {
            apply(&mut g.durable, w);
        }
        Ok(())
    }

    fn clear(&self) -> Result<()> {
        self.push(Write::Clear)
    }

    fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let g = self.lock()?;
        Ok(g.current.feed.range(after.saturating_add(1)..).take(limit).map(|(i, v)| (*i, v.clone())).collect())
    }

    fn feed_purge_before(&self, before: u64) -> Result<usize> {
        let n = self.lock()?.current.feed.range(..before).count();
        self.push(Write::FeedPurge(before))?;
        Ok(n)
    }

    fn feed_purged_before(&self) -> Result<u64> {
        Ok(self.lock()?.current.feed_purged_before)
    }

    fn verify(&self) -> Result<u64> {
        Ok(self.lock()?.current.records.len() as u64)
    }

    fn size_on_disk(&self) -> u64 {
        0
    }
}

//! The write overlay: records apply has produced that the writer has not yet put into the state
//! store. Apply adds to it at once (so the next apply and every reader see its effects), the
//! writer removes entries once they are in the store. Readers look here first, then in the store:
//! an entry missing here was either written already (the store has it) or produced later.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::state_store::Change;

#[derive(Default)]
struct Entries {
    /// key → (sequence of the write that produced it, value or deletion)
    map: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    /// sequence → keys written by it (for pruning without a full scan)
    by_seq: BTreeMap<u64, Vec<Vec<u8>>>,
}

#[derive(Default)]
pub struct Overlay {
    entries: RwLock<Entries>,
    bytes: AtomicUsize,
}

fn size(k: &[u8], v: &Option<Vec<u8>>) -> usize {
    64 + k.len() + v.as_ref().map_or(0, Vec::len)
}

impl Overlay {
    fn read(&self) -> RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Add the changes of write `seq` (sequences only grow).
    pub fn put(&self, seq: u64, changes: &[Change]) {
        let mut g = self.write();
        let mut added = 0usize;
        let mut removed = 0usize;
        for (k, v) in changes {
            added += size(k, v);
            if let Some((_, old)) = g.map.insert(k.clone(), (seq, v.clone())) {
                removed += size(k, &old);
            }
        }
        g.by_seq.entry(seq).or_default().extend(changes.iter().map(|(k, _)| k.clone()));
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.bytes.fetch_sub(removed.min(self.bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
    }

    /// `Some(None)`: deleted and not yet in the store; `None`: not here.
    pub fn get(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.read().map.get(key).map(|(_, v)| v.clone())
    }

    /// Entries with keys from `from` up to `to` (exclusive), in order.
    pub fn range(&self, from: Bound<&[u8]>, to: &[u8]) -> Vec<Change> {
        let g = self.read();
        if g.map.is_empty() {
            return Vec::new();
        }
        let from: Bound<Vec<u8>> = match from {
            Bound::Included(b) => Bound::Included(b.to_vec()),
            Bound::Excluded(b) => Bound::Excluded(b.to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        g.map
            .range::<Vec<u8>, _>((from, Bound::Excluded(to.to_vec())))
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect()
    }

    /// Forget what writes up to `seq` produced: it is in the store now (unless overwritten by a
    /// later write, which stays).
    pub fn prune(&self, seq: u64) {
        let mut g = self.write();
        let later = g.by_seq.split_off(&(seq + 1));
        let done = std::mem::replace(&mut g.by_seq, later);
        let mut removed = 0usize;
        for keys in done.into_values() {
            for k in keys {
                if g.map.get(&k).is_some_and(|(s, _)| *s <= seq) {
                    if let Some((_, v)) = g.map.remove(&k) {
                        removed += size(&k, &v);
                    }
                }
            }
        }
        let cur = self.bytes.load(Ordering::Relaxed);
        self.bytes.store(cur.saturating_sub(removed), Ordering::Relaxed);
    }

    /// Forget everything (a snapshot replaced the state).
    pub fn clear(&self) {
        let mut g = self.write();
        g.map.clear();
        g.by_seq.clear();
        self.bytes.store(0, Ordering::Relaxed);
    }

    /// Approximate bytes held (for backpressure and metrics).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.read().map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_later_overwrites() {
        let o = Overlay::default();
        o.put(1, &[(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), Some(b"1".to_vec()))]);
        o.put(2, &[(b"a".to_vec(), None)]);
        o.prune(1);
        assert_eq!(o.get(b"a"), Some(None), "the deletion of write 2 is not in the store yet");
        assert_eq!(o.get(b"b"), None);
        o.prune(2);
        assert!(o.is_empty());
        assert_eq!(o.bytes(), 0);
    }
}

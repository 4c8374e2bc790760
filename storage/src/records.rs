//! Reading records: the write overlay first, then the state store, decoded by the codec. This is
//! the [`Cold`] apply reads through, and what API reads of finished tasks, payloads and progress
//! use. Reads take no lock on the engine's state.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use minion_engine::{Cold, ColdError, Key, Kind, Record, Touched};

use crate::codec;
use crate::overlay::Overlay;
use crate::state_store::StateStore;

#[derive(Clone)]
pub struct Records {
    overlay: Arc<Overlay>,
    store: Arc<dyn StateStore>,
}

fn cold(e: impl std::fmt::Display) -> ColdError {
    ColdError(e.to_string())
}

impl Records {
    pub fn new(overlay: Arc<Overlay>, store: Arc<dyn StateStore>) -> Records {
        Records { overlay, store }
    }

    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    pub fn overlay(&self) -> &Arc<Overlay> {
        &self.overlay
    }

    /// Change-feed entries after `after` (whole entries) until at least `records_max` touched
    /// things, decoded.
    pub fn feed_after(&self, after: u64, records_max: usize) -> Result<Vec<(u64, Vec<Touched>)>, ColdError> {
        let mut out = Vec::new();
        let mut n = 0;
        let mut cursor = after;
        loop {
            let page = self.store.feed_after(cursor, 256).map_err(cold)?;
            let len = page.len();
            for (index, bytes) in page {
                let touched: Vec<Touched> =
                    crate::frame::decode(&bytes).map_err(|e| cold(format!("change feed entry {index}: {e}")))?;
                n += touched.len();
                cursor = index;
                out.push((index, touched));
                if n >= records_max {
                    return Ok(out);
                }
            }
            if len < 256 {
                return Ok(out);
            }
        }
    }

    pub fn feed_purged_before(&self) -> Result<u64, ColdError> {
        self.store.feed_purged_before().map_err(cold)
    }

    /// A page of the change feed and the purge watermark, read in that order: a purge that
    /// removes entries after `after` before or while they are read moves the watermark past
    /// `after + 1`, so the reader sees a gap (and backfills) instead of silently missing entries.
    pub fn feed_page(&self, after: u64, records_max: usize) -> Result<FeedPage, ColdError> {
        let entries = self.feed_after(after, records_max)?;
        let purged_before = self.feed_purged_before()?;
        Ok(FeedPage { entries, purged_before })
    }
}

pub struct FeedPage {
    pub entries: Vec<(u64, Vec<Touched>)>,
    /// Entries below this were purged when the page had been read.
    pub purged_before: u64,
}

impl FeedPage {
    /// Entries after `after` that were purged before they could be read: `after + 1 ..` this.
    pub fn gap_after(&self, after: u64) -> Option<u64> {
        (after.saturating_add(1) < self.purged_before).then_some(self.purged_before)
    }
}

impl Records {
    /// The encoded value under an encoded key: the overlay's, else the store's.
    pub fn get_raw(&self, k: &[u8]) -> Result<Option<Vec<u8>>, ColdError> {
        match self.overlay.get(k) {
            Some(v) => Ok(v),
            None => self.store.get(k).map_err(cold),
        }
    }
}

/// Decode what [`Records::get_raw`] (or a read-ahead of it) returned for `key`.
pub fn decode_value(key: &Key, k: &[u8], v: Option<Vec<u8>>) -> Result<Option<Record>, ColdError> {
    v.map(|v| codec::decode(k, &v).map_err(|e| cold(format!("record {key:?}: {e}")))).transpose()
}

impl Cold for Records {
    fn get(&self, key: &Key) -> Result<Option<Record>, ColdError> {
        let k = codec::encode_key(key);
        decode_value(key, &k, self.get_raw(&k)?)
    }

    fn scan(&self, kind: Kind, after: Option<&Key>, limit: usize) -> Result<Vec<Record>, ColdError> {
        let (lo, hi) = codec::kind_range(kind);
        let after_bytes = after.map(codec::encode_key);
        let lo = [lo];
        let from = match &after_bytes {
            Some(a) => Bound::Excluded(a.as_slice()),
            None => Bound::Included(&lo[..]),
        };
        let to = [hi];
        // The overlay first: see the module documentation.
        let mine = self.overlay.range(from, &to);
        let decode =
            |(k, v): (Vec<u8>, Vec<u8>)| codec::decode(&k, &v).map_err(|e| cold(format!("{kind:?} record: {e}")));
        if mine.is_empty() {
            return self.store.range(from, &to, limit).map_err(cold)?.into_iter().map(decode).collect();
        }
        let below = self.store.range(from, &to, limit + mine.len()).map_err(cold)?;
        let complete = below.len() < limit + mine.len();
        let last_below = below.last().map(|(k, _)| k.clone());
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = below.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for (k, v) in mine {
            if complete || last_below.as_ref().is_some_and(|l| &k <= l) {
                merged.insert(k, v);
            }
        }
        merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).take(limit).map(decode).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::mem_store::MemStateStore;
    use crate::state_store::{self, AppliedMarker, Change, Kv};

    /// A store whose feed is purged (by retention, on another thread) just as a reader starts
    /// reading it.
    struct PurgedWhileRead {
        inner: MemStateStore,
        before: u64,
        purged: AtomicBool,
    }

    impl StateStore for PurgedWhileRead {
        fn get(&self, key: &[u8]) -> state_store::Result<Option<Vec<u8>>> {
            self.inner.get(key)
        }
        fn range(&self, from: Bound<&[u8]>, to: &[u8], limit: usize) -> state_store::Result<Vec<Kv>> {
            self.inner.range(from, to, limit)
        }
        fn write(&self, c: &[Change], a: &AppliedMarker, f: &[(u64, Vec<u8>)]) -> state_store::Result<()> {
            self.inner.write(c, a, f)
        }
        fn applied(&self) -> state_store::Result<Option<AppliedMarker>> {
            self.inner.applied()
        }
        fn make_durable(&self) -> state_store::Result<()> {
            self.inner.make_durable()
        }
        fn clear(&self) -> state_store::Result<()> {
            self.inner.clear()
        }
        fn feed_after(&self, after: u64, limit: usize) -> state_store::Result<Vec<(u64, Vec<u8>)>> {
            if !self.purged.swap(true, Ordering::SeqCst) {
                self.inner.feed_purge_before(self.before)?;
            }
            self.inner.feed_after(after, limit)
        }
        fn feed_purge_before(&self, before: u64) -> state_store::Result<usize> {
            self.inner.feed_purge_before(before)
        }
        fn feed_purged_before(&self) -> state_store::Result<u64> {
            self.inner.feed_purged_before()
        }
        fn verify(&self) -> state_store::Result<u64> {
            self.inner.verify()
        }
        fn size_on_disk(&self) -> u64 {
            self.inner.size_on_disk()
        }
    }

    /// Defect: the feed's watermark was read before its entries; a purge in between returned a
    /// page missing entries with no sign of it. Read after, the watermark shows the gap.
    #[test]
    fn a_purge_while_a_page_is_read_shows_as_a_gap() {
        let store = PurgedWhileRead { inner: MemStateStore::default(), before: 4, purged: AtomicBool::new(false) };
        let none: Vec<Touched> = Vec::new();
        let feed: Vec<(u64, Vec<u8>)> = (1..=6).map(|i| (i, crate::frame::encode(&none).expect("encode"))).collect();
        store.write(&[], &AppliedMarker::default(), &feed).expect("write");
        let records = Records::new(Arc::default(), Arc::new(store));
        let page = records.feed_page(0, 100).expect("page");
        let indexes: Vec<u64> = page.entries.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [4, 5, 6], "entries 1..=3 went while the page was read");
        assert_eq!(page.gap_after(0), Some(4), "and the page says so");
        assert_eq!(page.gap_after(3), None, "a reader already past them lost nothing");
    }
}

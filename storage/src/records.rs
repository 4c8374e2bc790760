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

//! The read seam between the engine and the records on disk, and an in-memory store of records
//! for tests, fuzzing and the model.
//!
//! Apply reads through [`Cold`] what RAM does not hold (an idempotency key behind a bloom-filter
//! "maybe", a finished task being retried, the next due entries of the expiry indexes). The
//! storage layer implements it over its write overlay and sled; every replica sees the same
//! records at the same log position, so apply stays deterministic.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::record::{Effect, Key, Kind, Record};

/// Storage failed underneath apply: not an answer, a stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reading records: {0}")]
pub struct ColdError(pub String);

pub trait Cold {
    fn get(&self, key: &Key) -> Result<Option<Record>, ColdError>;
    /// Records of `kind` in key order, after `after` (exclusive) or from the start, at most `limit`.
    fn scan(&self, kind: Kind, after: Option<&Key>, limit: usize) -> Result<Vec<Record>, ColdError>;
}

/// Records in a map. Also the reference for what storage must return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStore {
    map: BTreeMap<Key, Record>,
}

impl MemStore {
    pub fn apply(&mut self, effects: impl IntoIterator<Item = Effect>) {
        for e in effects {
            match e {
                Effect::Put(r) => {
                    self.map.insert(r.key(), r);
                }
                Effect::Delete(k) => {
                    self.map.remove(&k);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.map.values()
    }
}

impl Cold for MemStore {
    fn get(&self, key: &Key) -> Result<Option<Record>, ColdError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(&self, kind: Kind, after: Option<&Key>, limit: usize) -> Result<Vec<Record>, ColdError> {
        let start = match after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Included(Key::first_of(kind)),
        };
        Ok(self
            .map
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.kind() == kind)
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }
}

/// Records written during one apply, readable before they reach the store underneath.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    map: BTreeMap<Key, Option<Record>>,
}

impl Pending {
    pub(crate) fn put(&mut self, r: Record) {
        self.map.insert(r.key(), Some(r));
    }

    pub(crate) fn delete(&mut self, k: Key) {
        self.map.insert(k, None);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `Some(None)`: deleted in this apply; `None`: not touched.
    pub(crate) fn get(&self, key: &Key) -> Option<Option<&Record>> {
        self.map.get(key).map(|r| r.as_ref())
    }

    pub(crate) fn take(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.map)
            .into_iter()
            .map(|(k, r)| match r {
                Some(r) => Effect::Put(r),
                None => Effect::Delete(k),
            })
            .collect()
    }

    /// `cold.get` as seen through this apply's own writes.
    pub(crate) fn read(&self, cold: &dyn Cold, key: &Key) -> Result<Option<Record>, ColdError> {
        match self.get(key) {
            Some(r) => Ok(r.cloned()),
            None => cold.get(key),
        }
    }

    /// `cold.scan` as seen through this apply's own writes.
    pub(crate) fn scan(
        &self,
        cold: &dyn Cold,
        kind: Kind,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Record>, ColdError> {
        let start = match after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Included(Key::first_of(kind)),
        };
        let mine: Vec<(&Key, &Option<Record>)> =
            self.map.range((start, Bound::Unbounded)).take_while(|(k, _)| k.kind() == kind).collect();
        if mine.is_empty() {
            return cold.scan(kind, after, limit);
        }
        // Enough from below that deletions here cannot leave the page short.
        let below = cold.scan(kind, after, limit + mine.len())?;
        let mut merged: BTreeMap<Key, Option<Record>> = below.into_iter().map(|r| (r.key(), Some(r))).collect();
        let last_below = merged.keys().next_back().cloned();
        let complete = merged.len() < limit + mine.len();
        for (k, r) in mine {
            // Past the last key read from below only when below had no more to give.
            if complete || last_below.as_ref().is_some_and(|l| k <= l) {
                merged.insert(k.clone(), r.clone());
            }
        }
        Ok(merged.into_values().flatten().take(limit).collect())
    }
}

/// A store seen through the writes of the apply in progress.
pub(crate) struct Through<'a> {
    pub pending: &'a Pending,
    pub cold: &'a dyn Cold,
}

impl Cold for Through<'_> {
    fn get(&self, key: &Key) -> Result<Option<Record>, ColdError> {
        self.pending.read(self.cold, key)
    }
    fn scan(&self, kind: Kind, after: Option<&Key>, limit: usize) -> Result<Vec<Record>, ColdError> {
        self.pending.scan(self.cold, kind, after, limit)
    }
}

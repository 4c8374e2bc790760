//! Records read ahead of an apply. The state machine reads what the engine names
//! (`State::cold_keys`) with no lock held, then applies under the engine's write lock reading
//! through this: a record read ahead comes from memory, anything else from the overlay and the
//! store as usual.
//!
//! A read-ahead value is only valid until the record is written: the state machine calls
//! [`Warmed::forget`] with every entry's changes before the next entry applies, so a record an
//! earlier entry of the same apply changed is read where that change went (the overlay, or the
//! store once the writer has moved it there), never from here.

use std::collections::HashMap;

use minion_engine::{Cold, ColdError, Key, Kind, Record};

use crate::codec;
use crate::records::{decode_value, Records};
use crate::state_store::Change;

pub struct Warmed<'a> {
    records: &'a Records,
    /// encoded key → encoded value (`None`: no such record) as of the read-ahead.
    ahead: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Warmed<'a> {
    /// Read `keys` now. Call with no lock held on the engine.
    pub fn read(records: &'a Records, keys: impl IntoIterator<Item = Key>) -> Result<Warmed<'a>, ColdError> {
        let mut ahead = HashMap::new();
        for key in keys {
            let k = codec::encode_key(&key);
            if !ahead.contains_key(&k) {
                let v = records.get_raw(&k)?;
                ahead.insert(k, v);
            }
        }
        Ok(Warmed { records, ahead })
    }

    /// These keys were just written: what was read ahead for them is stale.
    pub fn forget(&mut self, changes: &[Change]) {
        if self.ahead.is_empty() {
            return;
        }
        for (k, _) in changes {
            self.ahead.remove(k);
        }
    }

    /// Records read ahead and still valid.
    pub fn len(&self) -> usize {
        self.ahead.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ahead.is_empty()
    }
}

impl Cold for Warmed<'_> {
    fn get(&self, key: &Key) -> Result<Option<Record>, ColdError> {
        let k = codec::encode_key(key);
        let v = match self.ahead.get(&k) {
            Some(v) => v.clone(),
            None => self.records.get_raw(&k)?,
        };
        decode_value(key, &k, v)
    }

    fn scan(&self, kind: Kind, after: Option<&Key>, limit: usize) -> Result<Vec<Record>, ColdError> {
        self.records.scan(kind, after, limit)
    }
}

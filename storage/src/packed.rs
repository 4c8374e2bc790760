//! Packing records into blocks, so that the state store's RAM grows with blocks, not records.
//!
//! sled 0.34 keeps about 232 bytes of RAM per page for the life of the process (its page table)
//! and splits a leaf at 17 keys, so its memory grows with the number of items, whatever their
//! size: five small items per finished task cost ~119 MiB per million tasks. [`Packed`] wraps a
//! store and keeps the records of some kinds (finished tasks, payloads, indexes) in blocks of
//! many records each ([`crate::block`]), so a retained task costs a fraction of an item.
//!
//! Keys and values above this layer are unchanged: the record layer reads and writes single keys.
//! Underneath, a record lives either as a *single* item under its own key, or as an entry of a
//! *block*, stored under `BLOCK_PREFIX` + an upper bound of its keys. Invariants:
//!
//! - blocks of one kind cover disjoint ranges `[first entry, bound]`, in order of their bound;
//! - a single shadows a block entry with the same key (a put never rewrites a block; a delete
//!   removes the key from both);
//! - every physical write is one atomic write of the store underneath: a put or delete of records
//!   together with the blocks it rewrites, or a packing step that moves singles into blocks (the
//!   same records before and after, with the applied marker unchanged).
//!
//! A write whose new records of one kind form a run (at least `min_run` in key order with nothing
//! stored between them, as a burst of submissions or completions makes) writes the run straight
//! into new blocks. Other records are written as singles, and packing moves them later: on the
//! writer's thread after a write, once a kind has had `trigger` singles written, a step takes the
//! first `step` singles of the kind in key order and moves each into the block whose range covers
//! it, or, between blocks, into new blocks of about `target` bytes.
//! A directory without blocks (the layout before this one) reads as it is and is packed as writes
//! come. Reads take a shared lock and each physical write an exclusive one (not held while the
//! write is planned), so a reader never sees a record between its single and its block.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, RwLock};

use crate::block;
use crate::state_store::{AppliedMarker, Change, Kv, Result, StateStore, StoreError, STATE_KEYS_FROM, STATE_KEYS_TO};

/// Blocks live under this first byte: after the applied marker (0) and the feed (1), before every
/// state key (capital letters).
pub const BLOCK_PREFIX: u8 = 2;

/// Which kinds are packed and how.
#[derive(Debug, Clone)]
pub struct PackConfig {
    /// (kind byte, block size to aim for, in bytes).
    pub kinds: Vec<(u8, usize)>,
    /// Pack a kind after this many of its records were written as singles.
    pub trigger: usize,
    /// Singles one packing step moves (one physical write).
    pub step: usize,
    /// Packing steps after one write at most (a backlog, e.g. after an upgrade, drains over writes).
    pub steps_per_write: usize,
    /// A write's run of at least this many new records of one kind, with nothing stored between
    /// them, goes straight into new blocks instead of singles.
    pub min_run: usize,
}

impl PackConfig {
    /// What Minion packs: everything a finished task leaves behind except its idempotency key.
    pub fn minion() -> PackConfig {
        let kinds = [b'T', b'P', b'G', b'E', b'X', b'F', b'U', b'D'];
        PackConfig {
            kinds: kinds.iter().map(|&k| (k, if k == b'D' { 1024 } else { 8192 })).collect(),
            trigger: 4096,
            step: 1024,
            steps_per_write: 8,
            min_run: 16,
        }
    }

    fn target(&self, kind: u8) -> Option<usize> {
        self.kinds.iter().find(|(k, _)| *k == kind).map(|(_, t)| *t)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Due {
    puts: usize,
    /// The last step found a full `step` of singles: more may be waiting.
    backlog: bool,
}

pub struct Packed<S> {
    inner: S,
    cfg: PackConfig,
    /// Held by every read, and exclusively around each physical write: a reader sees a write
    /// whole or not at all, but is not kept waiting while a write is planned.
    switch: RwLock<()>,
    /// Serialises writers (planning reads the store and must not race another write).
    writing: Mutex<()>,
    due: Mutex<BTreeMap<u8, Due>>,
}

fn bkey(k: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(k.len() + 1);
    b.push(BLOCK_PREFIX);
    b.extend_from_slice(k);
    b
}

fn corrupt(phys: &[u8], e: block::BlockError) -> StoreError {
    StoreError::Corrupt { path: "state store".into(), what: format!("block {:?}: {e}", String::from_utf8_lossy(phys)) }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A block read for rewriting: its entries, owned, and whether they changed.
struct Loaded {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    changed: bool,
}

impl<S: StateStore> Packed<S> {
    /// Wrap `inner`. Every kind starts due, so that singles left by an earlier run (or an older
    /// layout) are packed by the first writes.
    pub fn new(inner: S, cfg: PackConfig) -> Packed<S> {
        let due = cfg.kinds.iter().map(|(k, _)| (*k, Due { puts: 0, backlog: true })).collect();
        Packed { inner, cfg, switch: RwLock::new(()), writing: Mutex::new(()), due: Mutex::new(due) }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn packs(&self, k: &[u8]) -> bool {
        k.first().is_some_and(|b| self.cfg.target(*b).is_some())
    }

    /// The first block whose bound is at or after `k`, within `k`'s kind: the only block that can
    /// hold `k`.
    fn covering(&self, k: &[u8]) -> Result<Option<Kv>> {
        let kind = k[0];
        let end = [BLOCK_PREFIX, kind + 1];
        Ok(self.inner.range(Bound::Included(&bkey(k)), &end, 1)?.pop())
    }

    fn get_unlocked(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.inner.get(key)? {
            return Ok(Some(v));
        }
        if !self.packs(key) {
            return Ok(None);
        }
        let Some((phys, bytes)) = self.covering(key)? else { return Ok(None) };
        let entries = block::decode(&bytes).map_err(|e| corrupt(&phys, e))?;
        Ok(entries.binary_search_by(|(k, _)| (*k).cmp(key)).ok().map(|i| entries[i].1.to_vec()))
    }

    /// Block entries in `(from, to)`, at most `limit`, in key order.
    fn block_entries(&self, from: Bound<&[u8]>, to: &[u8], limit: usize) -> Result<Vec<Kv>> {
        let start = match from {
            Bound::Included(f) | Bound::Excluded(f) => bkey(f),
            Bound::Unbounded => bkey(STATE_KEYS_FROM),
        };
        // The block holding keys just below `to` may have a bound past it: scan on until a block
        // starts at or after `to`.
        let end = [BLOCK_PREFIX + 1];
        let inside = |k: &[u8]| {
            k < to
                && match from {
                    Bound::Included(f) => k >= f,
                    Bound::Excluded(f) => k > f,
                    Bound::Unbounded => true,
                }
        };
        let mut out = Vec::new();
        let mut cursor = Bound::Included(start);
        while out.len() < limit {
            let page = self.inner.range(cursor.as_ref().map(|c| c.as_slice()), &end, 16)?;
            let n = page.len();
            for (phys, bytes) in page {
                let entries = block::decode(&bytes).map_err(|e| corrupt(&phys, e))?;
                if entries.first().is_some_and(|(k, _)| *k >= to) {
                    return Ok(out);
                }
                for (k, v) in entries {
                    if out.len() == limit {
                        return Ok(out);
                    }
                    if inside(k) {
                        out.push((k.to_vec(), v.to_vec()));
                    }
                }
                cursor = Bound::Excluded(phys);
            }
            if n < 16 {
                break;
            }
        }
        Ok(out)
    }

    fn range_unlocked(&self, from: Bound<&[u8]>, to: &[u8], limit: usize) -> Result<Vec<Kv>> {
        let from_singles = match from {
            Bound::Unbounded => Bound::Included(STATE_KEYS_FROM),
            b => b,
        };
        let singles = self.inner.range(from_singles, to, limit)?;
        let blocks = self.block_entries(from, to, limit)?;
        if blocks.is_empty() {
            return Ok(singles);
        }
        // Merge; a single shadows a block entry under the same key.
        let mut out = Vec::with_capacity(limit.min(singles.len() + blocks.len()));
        let (mut a, mut b) = (singles.into_iter().peekable(), blocks.into_iter().peekable());
        while out.len() < limit {
            let order = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.0.cmp(&y.0),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => break,
            };
            match order {
                Ordering::Less => out.extend(a.next()),
                Ordering::Greater => out.extend(b.next()),
                Ordering::Equal => {
                    b.next();
                    out.extend(a.next());
                }
            }
        }
        Ok(out)
    }

    fn load<'a>(
        &self,
        cache: &'a mut BTreeMap<Vec<u8>, Loaded>,
        phys: Vec<u8>,
        bytes: &[u8],
    ) -> Result<&'a mut Loaded> {
        if !cache.contains_key(&phys) {
            let entries = block::decode_owned(bytes).map_err(|e| corrupt(&phys, e))?.into_iter().collect();
            cache.insert(phys.clone(), Loaded { entries, changed: false });
        }
        Ok(cache.get_mut(&phys).expect("inserted above"))
    }

    /// The physical writes for blocks read and changed: empty ones removed, oversize ones split.
    fn block_changes(&self, cache: BTreeMap<Vec<u8>, Loaded>, out: &mut Vec<Change>) {
        for (phys, b) in cache {
            if !b.changed {
                continue;
            }
            if b.entries.is_empty() {
                out.push((phys, None));
                continue;
            }
            let target = self.cfg.target(phys[1]).unwrap_or(8192);
            let bytes: usize = b.entries.iter().map(|(k, v)| block::entry_bytes(k, v)).sum();
            let entries: Vec<Kv> = b.entries.into_iter().collect();
            if bytes <= 2 * target {
                out.push((phys, Some(block::encode(&entries))));
                continue;
            }
            // Split; the last part keeps the old bound, so the ranges stay as they were.
            let parts = chunks(entries, target);
            let last = parts.len() - 1;
            for (i, part) in parts.into_iter().enumerate() {
                let key = if i == last { phys.clone() } else { bkey(&part.last().expect("non-empty").0) };
                out.push((key, Some(block::encode(&part))));
            }
        }
    }

    /// Move up to `step` singles of `kind` into blocks, as one write. Returns how many it found.
    fn pack_step(&self, kind: u8, applied: &AppliedMarker) -> Result<usize> {
        let target = self.cfg.target(kind).expect("a packed kind");
        let singles = self.inner.range(Bound::Included(&[kind]), &[kind + 1], self.cfg.step)?;
        if singles.is_empty() {
            return Ok(0);
        }
        let found = singles.len();
        let mut changes: Vec<Change> = Vec::with_capacity(found + found / 8 + 4);
        let mut cache: BTreeMap<Vec<u8>, Loaded> = BTreeMap::new();
        // The covering block of the previous single (its bound and first key), while it still covers.
        let mut cover: Option<(Vec<u8>, Vec<u8>)> = None;
        let mut run: Vec<Kv> = Vec::new();
        let mut run_end: Option<Vec<u8>> = None;
        let flush_run = |run: &mut Vec<Kv>, changes: &mut Vec<Change>| {
            for part in chunks(std::mem::take(run), target) {
                let key = bkey(&part.last().expect("non-empty").0);
                changes.push((key, Some(block::encode(&part))));
            }
        };
        for (k, v) in singles {
            changes.push((k.clone(), None));
            // Still inside the current run's gap?
            if !run.is_empty() && run_end.as_ref().is_none_or(|end| k < *end) {
                run.push((k, v));
                continue;
            }
            flush_run(&mut run, &mut changes);
            if cover.as_ref().is_none_or(|(bound, _)| bkey(&k) > *bound) {
                cover = match self.covering(&k)? {
                    Some((phys, bytes)) => {
                        // Decoded once, kept for a merge.
                        let loaded = self.load(&mut cache, phys.clone(), &bytes)?;
                        let first = loaded.entries.keys().next().cloned().unwrap_or_default();
                        Some((phys, first))
                    }
                    None => None,
                };
            }
            match &cover {
                Some((phys, first)) if k >= *first => {
                    let b = cache.get_mut(phys).expect("loaded with its cover");
                    b.entries.insert(k, v);
                    b.changed = true;
                }
                other => {
                    run_end = other.as_ref().map(|(_, first)| first.clone());
                    run.push((k, v));
                }
            }
        }
        flush_run(&mut run, &mut changes);
        self.block_changes(cache, &mut changes);
        self.switched_write(&changes, applied, &[])?;
        Ok(found)
    }

    fn switched_write(&self, changes: &[Change], applied: &AppliedMarker, feed: &[(u64, Vec<u8>)]) -> Result<()> {
        let _w = self.switch.write().unwrap_or_else(|p| p.into_inner());
        self.inner.write(changes, applied, feed)
    }

    /// Is nothing stored in `[a, b]` (one kind): no single, no block that reaches into it?
    fn free(&self, a: &[u8], b: &[u8]) -> Result<bool> {
        let mut after_b = b.to_vec();
        after_b.push(0);
        if !self.inner.range(Bound::Included(a), &after_b, 1)?.is_empty() {
            return Ok(false);
        }
        Ok(match self.covering(a)? {
            None => true,
            Some((phys, bytes)) => {
                let entries = block::decode(&bytes).map_err(|e| corrupt(&phys, e))?;
                entries.first().is_none_or(|(first, _)| *first > b)
            }
        })
    }

    /// Keep `run` for writing straight into blocks if it is long enough and its range is free.
    fn keep_run<'a>(
        &self,
        run: Vec<(&'a [u8], &'a Vec<u8>)>,
        runs: &mut Vec<Vec<(&'a [u8], &'a Vec<u8>)>>,
    ) -> Result<()> {
        if run.len() >= self.cfg.min_run && self.free(run[0].0, run[run.len() - 1].0)? {
            runs.push(run);
        }
        Ok(())
    }

    /// The physical writes for a logical one, when they differ from it (`None`: write it as it
    /// is): deletes reach into blocks, and runs of new records into a free range become blocks.
    fn plan_write(&self, changes: &[Change]) -> Result<Option<Vec<Change>>> {
        // The last change of each packed key, in key order.
        let mut last: BTreeMap<&[u8], Option<&Vec<u8>>> = BTreeMap::new();
        for (k, v) in changes {
            if self.packs(k) {
                last.insert(k.as_slice(), v.as_ref());
            }
        }
        if last.is_empty() {
            return Ok(None);
        }
        let mut cache: BTreeMap<Vec<u8>, Loaded> = BTreeMap::new();
        let mut runs: Vec<Vec<(&[u8], &Vec<u8>)>> = Vec::new();
        let mut run: Vec<(&[u8], &Vec<u8>)> = Vec::new();
        for (&k, &v) in &last {
            match v {
                Some(v) => {
                    if run.last().is_some_and(|(p, _)| p[0] != k[0]) {
                        self.keep_run(std::mem::take(&mut run), &mut runs)?;
                    }
                    run.push((k, v));
                }
                None => {
                    self.keep_run(std::mem::take(&mut run), &mut runs)?;
                    if let Some((phys, bytes)) = self.covering(k)? {
                        let b = self.load(&mut cache, phys, &bytes)?;
                        if b.entries.remove(k).is_some() {
                            b.changed = true;
                        }
                    }
                }
            }
        }
        self.keep_run(std::mem::take(&mut run), &mut runs)?;
        let direct: std::collections::HashSet<&[u8]> = runs.iter().flatten().map(|(k, _)| *k).collect();
        {
            let mut due = lock(&self.due);
            for (&k, v) in &last {
                if v.is_some() && !direct.contains(k) {
                    if let Some(d) = due.get_mut(&k[0]) {
                        d.puts += 1;
                    }
                }
            }
        }
        if runs.is_empty() && !cache.values().any(|b| b.changed) {
            return Ok(None);
        }
        let mut all: Vec<Change> = changes.iter().filter(|(k, _)| !direct.contains(k.as_slice())).cloned().collect();
        for r in runs {
            let target = self.cfg.target(r[0].0[0]).expect("a packed kind");
            for part in chunks(r, target) {
                all.push((bkey(part[part.len() - 1].0), Some(block::encode(&part))));
            }
        }
        self.block_changes(cache, &mut all);
        Ok(Some(all))
    }

    /// Packing steps for the kinds that are due, one kind after another, at most `steps_per_write`.
    fn pack_due(&self, applied: &AppliedMarker) -> Result<()> {
        let mut due = lock(&self.due);
        let mut steps = 0;
        loop {
            let mut any = false;
            for (kind, d) in due.iter_mut() {
                if steps == self.cfg.steps_per_write {
                    return Ok(());
                }
                if d.puts >= self.cfg.trigger || d.backlog {
                    let found = self.pack_step(*kind, applied)?;
                    steps += 1;
                    any = true;
                    d.puts = 0;
                    d.backlog = found == self.cfg.step;
                }
            }
            if !any {
                return Ok(());
            }
        }
    }

    /// Count blocks and their entries (for tests and `verify`).
    pub fn block_stats(&self) -> Result<(u64, u64)> {
        let _r = self.switch.read().unwrap_or_else(|p| p.into_inner());
        let (mut blocks, mut entries) = (0u64, 0u64);
        let end = [BLOCK_PREFIX + 1];
        let mut cursor: Bound<Vec<u8>> = Bound::Included(vec![BLOCK_PREFIX]);
        loop {
            let page = self.inner.range(cursor.as_ref().map(|c| c.as_slice()), &end, 256)?;
            let n = page.len();
            for (phys, bytes) in page {
                entries += block::decode(&bytes).map_err(|e| corrupt(&phys, e))?.len() as u64;
                blocks += 1;
                cursor = Bound::Excluded(phys);
            }
            if n < 256 {
                return Ok((blocks, entries));
            }
        }
    }
}

#[cfg(test)]
#[path = "packed_tests.rs"]
mod tests;

/// Split sorted entries into parts of about `target` bytes each (at least one entry per part).
fn chunks<K: AsRef<[u8]>, V: AsRef<[u8]>>(entries: Vec<(K, V)>, target: usize) -> Vec<Vec<(K, V)>> {
    let mut parts = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for (k, v) in entries {
        let n = block::entry_bytes(k.as_ref(), v.as_ref());
        if !cur.is_empty() && bytes + n > target {
            parts.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += n;
        cur.push((k, v));
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

impl<S: StateStore> StateStore for Packed<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _r = self.switch.read().unwrap_or_else(|p| p.into_inner());
        self.get_unlocked(key)
    }

    fn range(&self, from: Bound<&[u8]>, to: &[u8], limit: usize) -> Result<Vec<Kv>> {
        let _r = self.switch.read().unwrap_or_else(|p| p.into_inner());
        self.range_unlocked(from, to.min(STATE_KEYS_TO), limit)
    }

    fn write(&self, changes: &[Change], applied: &AppliedMarker, feed: &[(u64, Vec<u8>)]) -> Result<()> {
        let _one = lock(&self.writing);
        match self.plan_write(changes)? {
            Some(all) => self.switched_write(&all, applied, feed)?,
            None => self.switched_write(changes, applied, feed)?,
        }
        self.pack_due(applied)
    }

    fn applied(&self) -> Result<Option<AppliedMarker>> {
        self.inner.applied()
    }

    fn make_durable(&self) -> Result<()> {
        self.inner.make_durable()
    }

    fn clear(&self) -> Result<()> {
        let _one = lock(&self.writing);
        let _w = self.switch.write().unwrap_or_else(|p| p.into_inner());
        self.inner.clear()?;
        for d in lock(&self.due).values_mut() {
            *d = Due::default();
        }
        Ok(())
    }

    fn feed_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.inner.feed_after(after, limit)
    }

    fn feed_purge_before(&self, before: u64) -> Result<usize> {
        self.inner.feed_purge_before(before)
    }

    fn feed_purged_before(&self) -> Result<u64> {
        self.inner.feed_purged_before()
    }

    /// Every item underneath, then every block's structure and checksum.
    fn verify(&self) -> Result<u64> {
        let items = self.inner.verify()?;
        let (blocks, entries) = self.block_stats()?;
        Ok(items - blocks + entries)
    }

    fn size_on_disk(&self) -> u64 {
        self.inner.size_on_disk()
    }
}

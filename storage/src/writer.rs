//! The state writer: puts apply's records into the state store off the commit path.
//!
//! Apply hands each batch of effects to [`Writer::submit`], which makes them readable at once (the
//! overlay) and queues them; the writer thread ([`Writer::run`]) merges whatever is queued into one
//! atomic store write with the applied marker of its last entry, then drops those entries from the
//! overlay. Every `durable_every` it makes the store durable and reports the applied index that is
//! now safe, which the checkpoint records and the log is kept back to. The queue is bounded in
//! bytes: apply waits when the store falls that far behind.
//!
//! Snapshots read the store while writes go on. [`Writer::begin_snapshot`] marks a batch boundary
//! (the store then holds the state exactly as of one applied index); from then on, before the
//! writer changes a key the snapshot has not read yet, it keeps the key's value as of that index.
//! [`SnapshotView::next_chunk`] reads the store and puts those values back, so the snapshot is the
//! state at its index, built without pausing writes.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::overlay::Overlay;
use crate::state_store::{AppliedMarker, Change, Kv, StateStore, StoreError, STATE_KEYS_FROM, STATE_KEYS_TO};

/// One apply's output, for the store.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The last log index it covers (writes' sequence: never decreases).
    pub seq: u64,
    pub applied: AppliedMarker,
    pub changes: Vec<Change>,
    /// Change-feed entries: (log index, encoded touched list).
    pub feed: Vec<(u64, Vec<u8>)>,
}

impl Batch {
    fn bytes(&self) -> usize {
        self.changes.iter().map(|(k, v)| 32 + k.len() + v.as_ref().map_or(0, Vec::len)).sum::<usize>()
            + self.feed.iter().map(|(_, v)| 16 + v.len()).sum::<usize>()
    }
}

#[derive(Default)]
struct Queue {
    batches: VecDeque<Batch>,
    bytes: usize,
    stop: bool,
    /// The applied index of the last batch submitted.
    submitted: Option<u64>,
}

/// Where the writer is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The last applied index written to the store.
    pub written: Option<u64>,
    /// The last applied index the store has made durable.
    pub durable: Option<u64>,
}

struct Track {
    /// The snapshot has read every key up to here.
    cursor: Option<Vec<u8>>,
    /// Values as of the snapshot's index of keys changed since and not read yet.
    undo: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    bytes: usize,
}

/// The snapshot in progress, if any, and a signal when its reader moves on (or ends).
#[derive(Default)]
struct Tracking {
    track: Mutex<Option<Track>>,
    moved: Condvar,
    /// Bytes of kept values at most (see [`SNAPSHOT_UNDO_BYTES_MAX`]).
    undo_bytes_max: AtomicUsize,
    /// Store writes that waited for a snapshot's reader.
    waits: AtomicU64,
}

impl Tracking {
    /// Wait (50 ms at most, then the caller checks for a failed writer) for the snapshot's reader
    /// to move on or end.
    fn wait_moved<'a>(&self, t: MutexGuard<'a, Option<Track>>) -> MutexGuard<'a, Option<Track>> {
        match self.moved.wait_timeout(t, Duration::from_millis(50)) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        }
    }
}

/// Bytes of old values kept for a snapshot in progress, at most. At the cap, the state writer
/// waits for the snapshot's reader to move past the keys it holds (apply goes on into the
/// overlay until the state queue is full); a snapshot never fails because the store is busy.
pub const SNAPSHOT_UNDO_BYTES_MAX: usize = 256 << 20;

/// Bytes of changes in one store write, about (whole batches; one larger batch is written
/// alone). Bounds how long one write holds the writing lock (a snapshot's start waits on it)
/// and what one sled batch builds in memory, instead of everything queued (64 MiB by default).
pub const WRITE_BYTES_MAX: usize = 4 << 20;

pub struct Writer {
    store: Arc<dyn StateStore>,
    overlay: Arc<Overlay>,
    queue: Mutex<Queue>,
    /// Signalled when batches arrive (the writer waits on it).
    arrived: Condvar,
    /// Signalled when batches are written (producers and flushers wait on it).
    written_cv: Condvar,
    progress: Mutex<Progress>,
    /// Held while the store is written: a snapshot begins between writes.
    writing: Mutex<()>,
    tracking: Arc<Tracking>,
    failed: Mutex<Option<String>>,
    queue_bytes_max: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Writer {
    pub fn new(
        store: Arc<dyn StateStore>,
        overlay: Arc<Overlay>,
        written: Option<u64>,
        queue_bytes_max: usize,
    ) -> Writer {
        Writer {
            store,
            overlay,
            queue: Mutex::default(),
            arrived: Condvar::new(),
            written_cv: Condvar::new(),
            progress: Mutex::new(Progress { written, durable: written }),
            writing: Mutex::new(()),
            tracking: Arc::new(Tracking {
                undo_bytes_max: AtomicUsize::new(SNAPSHOT_UNDO_BYTES_MAX),
                ..Tracking::default()
            }),
            failed: Mutex::new(None),
            queue_bytes_max,
        }
    }

    pub fn progress(&self) -> Progress {
        *lock(&self.progress)
    }

    /// Store writes that waited for a snapshot's reader (at the cap on kept values).
    pub fn snapshot_waits(&self) -> u64 {
        self.tracking.waits.load(Ordering::Relaxed)
    }

    /// Change the cap on old values kept for a snapshot in progress (tests use a small one).
    pub fn set_snapshot_undo_max(&self, bytes: usize) {
        self.tracking.undo_bytes_max.store(bytes, Ordering::Relaxed);
    }

    fn check(&self) -> Result<(), StoreError> {
        match &*lock(&self.failed) {
            Some(m) => Err(StoreError::Io { path: "state writer".into(), message: m.clone() }),
            None => Ok(()),
        }
    }

    /// Wait while more than the queue's byte cap is waiting for the store (back-pressure). The
    /// state machine calls this before it takes the engine's lock, so readers never wait on it;
    /// [`Writer::submit`] itself never blocks.
    pub fn wait_for_room(&self) -> Result<(), StoreError> {
        self.check()?;
        let mut q = lock(&self.queue);
        while q.bytes > self.queue_bytes_max && !q.stop {
            q = match self.written_cv.wait_timeout(q, Duration::from_millis(100)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
            self.check()?;
        }
        Ok(())
    }

    /// Make a batch readable (overlay) and queue it. Never waits: see [`Writer::wait_for_room`].
    pub fn submit(&self, batch: Batch) -> Result<(), StoreError> {
        self.check()?;
        self.overlay.put(batch.seq, &batch.changes);
        let mut q = lock(&self.queue);
        q.bytes += batch.bytes();
        q.submitted = batch.applied.index.max(q.submitted);
        q.batches.push_back(batch);
        drop(q);
        self.arrived.notify_one();
        Ok(())
    }

    /// Write everything queued, in store writes of about [`WRITE_BYTES_MAX`] each (whole
    /// batches: each write carries the applied marker of its last batch). Returns the index
    /// written, if anything was.
    pub fn write_pending(&self) -> Result<Option<u64>, StoreError> {
        self.check()?;
        let batches: Vec<Batch> = {
            let mut q = lock(&self.queue);
            q.bytes = 0;
            q.batches.drain(..).collect()
        };
        let mut written = None;
        let mut group = Vec::new();
        let mut bytes = 0;
        for b in batches {
            bytes += b.bytes();
            group.push(b);
            if bytes >= WRITE_BYTES_MAX {
                written = self.write_group(std::mem::take(&mut group))?;
                bytes = 0;
            }
        }
        if !group.is_empty() {
            written = self.write_group(group)?;
        }
        Ok(written)
    }

    fn write_group(&self, batches: Vec<Batch>) -> Result<Option<u64>, StoreError> {
        let Some(last) = batches.last() else { return Ok(None) };
        let seq = last.seq;
        let applied = last.applied.clone();
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut feed = Vec::new();
        for b in batches {
            merged.extend(b.changes);
            feed.extend(b.feed);
        }
        let changes: Vec<Change> = merged.into_iter().collect();
        let _w = lock(&self.writing);
        self.keep_for_snapshot(&changes)?;
        if let Err(e) = self.store.write(&changes, &applied, &feed) {
            *lock(&self.failed) = Some(e.to_string());
            return Err(e);
        }
        lock(&self.progress).written = applied.index;
        self.overlay.prune(seq);
        self.written_cv.notify_all();
        Ok(applied.index)
    }

    /// Before changing keys a snapshot has not read yet, keep their values as of its index.
    /// At the cap, wait (holding `writing`: the store does not change) until the snapshot's
    /// reader has moved past some of the keys kept, or has ended.
    fn keep_for_snapshot(&self, changes: &[Change]) -> Result<(), StoreError> {
        let max = self.tracking.undo_bytes_max.load(Ordering::Relaxed);
        let mut t = lock(&self.tracking.track);
        let mut waited = false;
        for (k, _) in changes {
            loop {
                let Some(track) = t.as_mut() else { return Ok(()) };
                if track.cursor.as_ref().is_some_and(|c| k <= c) || track.undo.contains_key(k) {
                    break;
                }
                let before = self.store.get(k)?;
                let size = 64 + k.len() + before.as_ref().map_or(0, Vec::len);
                if track.bytes + size > max && !track.undo.is_empty() {
                    if !waited {
                        waited = true;
                        self.tracking.waits.fetch_add(1, Ordering::Relaxed);
                    }
                    t = self.tracking.wait_moved(t);
                    self.check()?;
                    continue;
                }
                track.bytes += size;
                track.undo.insert(k.clone(), before);
                break;
            }
        }
        Ok(())
    }

    /// Make what is written durable; returns the applied index that now survives power loss.
    pub fn make_durable(&self) -> Result<Option<u64>, StoreError> {
        self.check()?;
        let written = lock(&self.progress).written;
        if let Err(e) = self.store.make_durable() {
            *lock(&self.failed) = Some(e.to_string());
            return Err(e);
        }
        lock(&self.progress).durable = written;
        Ok(written)
    }

    /// Wait until everything submitted so far is in the store.
    pub fn flush(&self) -> Result<(), StoreError> {
        let target = lock(&self.queue).submitted;
        loop {
            self.check()?;
            if self.progress().written >= target {
                return Ok(());
            }
            let q = lock(&self.queue);
            drop(self.written_cv.wait_timeout(q, Duration::from_millis(20)));
        }
    }

    /// The writer thread: write what arrives, make it durable every `durable_every`, report each
    /// durable point to `on_durable`. Returns on [`Writer::stop`] (after a last write and durable
    /// point) or on a store error (after which every call fails: the node must stop).
    pub fn run(&self, durable_every: Duration, mut on_durable: impl FnMut(Result<Option<u64>, StoreError>)) {
        let mut last_durable = Instant::now();
        loop {
            let stop = {
                let q = lock(&self.queue);
                let q = if q.batches.is_empty() && !q.stop {
                    self.arrived.wait_timeout(q, durable_every).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0)
                } else {
                    q
                };
                q.stop
            };
            if let Err(e) = self.write_pending() {
                on_durable(Err(e));
                return;
            }
            let p = self.progress();
            if (stop || last_durable.elapsed() >= durable_every) && p.written != p.durable {
                let r = self.make_durable();
                let failed = r.is_err();
                on_durable(r);
                last_durable = Instant::now();
                if failed {
                    return;
                }
            }
            if stop {
                return;
            }
        }
    }

    pub fn stop(&self) {
        lock(&self.queue).stop = true;
        self.arrived.notify_all();
    }

    /// Start reading a snapshot of the store as of the last written index. One is read at a time:
    /// a second caller (raft building a snapshot while an operator's backup or a state digest
    /// reads one) waits until the first view is finished or dropped, without holding up writes.
    pub fn begin_snapshot(&self) -> Result<SnapshotView, StoreError> {
        loop {
            self.wait_for_no_snapshot()?;
            let _w = lock(&self.writing);
            self.check()?;
            let mut t = lock(&self.tracking.track);
            if t.is_some() {
                continue; // another caller began one between the wait and the writing lock
            }
            let applied = self.store.applied()?.unwrap_or_default();
            *t = Some(Track { cursor: None, undo: BTreeMap::new(), bytes: 0 });
            return Ok(SnapshotView {
                store: self.store.clone(),
                tracking: self.tracking.clone(),
                applied,
                done: false,
            });
        }
    }

    /// Wait (without the writing lock) until no snapshot view is being read.
    fn wait_for_no_snapshot(&self) -> Result<(), StoreError> {
        let mut t = lock(&self.tracking.track);
        while t.is_some() {
            t = self.tracking.wait_moved(t);
            self.check()?;
        }
        Ok(())
    }

    /// Replace the store's content with `records` (a snapshot being installed): waits for queued
    /// writes, clears the store and the overlay, loads, sets the marker, makes it durable.
    pub fn replace(
        &self,
        mut chunks: impl FnMut() -> Result<Option<Vec<Kv>>, StoreError>,
        applied: AppliedMarker,
    ) -> Result<(), StoreError> {
        self.flush()?;
        let _w = lock(&self.writing);
        self.store.clear()?;
        self.overlay.clear();
        let loading = AppliedMarker { index: None, raft: Vec::new() };
        while let Some(chunk) = chunks()? {
            let changes: Vec<Change> = chunk.into_iter().map(|(k, v)| (k, Some(v))).collect();
            self.store.write(&changes, &loading, &[])?;
        }
        self.store.write(&[], &applied, &[])?;
        if let Some(i) = applied.index {
            self.store.feed_purge_before(i + 1)?;
        }
        self.store.make_durable()?;
        *lock(&self.progress) = Progress { written: applied.index, durable: applied.index };
        lock(&self.queue).submitted = applied.index;
        Ok(())
    }
}

/// A consistent read of the store as of one applied index, in key order, in chunks.
pub struct SnapshotView {
    store: Arc<dyn StateStore>,
    tracking: Arc<Tracking>,
    applied: AppliedMarker,
    done: bool,
}

impl SnapshotView {
    /// The applied marker the snapshot is exactly as of.
    pub fn applied(&self) -> &AppliedMarker {
        &self.applied
    }

    /// The next records (at most `limit` read from the store, plus keys that changed since);
    /// `None` at the end.
    pub fn next_chunk(&mut self, limit: usize) -> Result<Option<Vec<Kv>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let cursor = lock(&self.tracking.track).as_ref().and_then(|t| t.cursor.clone());
        let from = match &cursor {
            Some(c) => Bound::Excluded(c.as_slice()),
            None => Bound::Included(STATE_KEYS_FROM),
        };
        let chunk = self.store.range(from, STATE_KEYS_TO, limit)?;
        let last_chunk = chunk.len() < limit;
        let mut t = lock(&self.tracking.track);
        let Some(track) = t.as_mut() else {
            return Err(StoreError::Io { path: "snapshot".into(), message: "snapshot tracking was dropped".into() });
        };
        let hi = if last_chunk { None } else { chunk.last().map(|(k, _)| k.clone()) };
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = chunk.into_iter().map(|(k, v)| (k, Some(v))).collect();
        // The kept keys this chunk covers: (cursor, hi] — a range, not a pass over all of them.
        let lo = cursor.clone().map_or(Bound::Unbounded, Bound::Excluded);
        let up = hi.clone().map_or(Bound::Unbounded, Bound::Included);
        let upto: Vec<Vec<u8>> = track.undo.range((lo, up)).map(|(k, _)| k.clone()).collect();
        for k in upto {
            if let Some(v) = track.undo.remove(&k) {
                track.bytes = track.bytes.saturating_sub(64 + k.len() + v.as_ref().map_or(0, Vec::len));
                merged.insert(k, v);
            }
        }
        match hi {
            Some(h) => track.cursor = Some(h),
            None => {
                self.done = true;
                *t = None;
            }
        }
        drop(t);
        self.tracking.moved.notify_all();
        Ok(Some(merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()))
    }
}

impl Drop for SnapshotView {
    fn drop(&mut self) {
        if !self.done {
            *lock(&self.tracking.track) = None;
            self.tracking.moved.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::mem_store::MemStateStore;

    fn key(i: u64) -> Vec<u8> {
        format!("T{i:06}").into_bytes()
    }

    fn marker(i: u64) -> AppliedMarker {
        AppliedMarker { index: Some(i), raft: vec![] }
    }

    /// A snapshot read while the writer keeps changing the store equals the state at the index it
    /// began at: keys changed, deleted and created after that index come out as they were. With a
    /// small cap on the old values kept, the writer waits for the reader instead of failing it.
    #[test]
    fn snapshots_are_exact_while_writes_go_on() {
        let mut waits = 0;
        for (seed, cap) in (0..20u64).flat_map(|s| [(s, None), (s, Some(1_500))]) {
            let store = Arc::new(MemStateStore::default());
            let overlay = Arc::new(Overlay::default());
            let writer = Arc::new(Writer::new(store.clone(), overlay, None, 1 << 20));
            if let Some(cap) = cap {
                writer.set_snapshot_undo_max(cap);
            }
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut rand = move |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            let batch = |seq: u64, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, rand: &mut dyn FnMut(u64) -> u64| {
                let mut changes = Vec::new();
                for _ in 0..20 {
                    let k = key(rand(3_000));
                    if rand(3) == 0 {
                        model.remove(&k);
                        changes.push((k, None));
                    } else {
                        let v = format!("{seq}-{}", rand(1_000)).into_bytes();
                        model.insert(k.clone(), v.clone());
                        changes.push((k, Some(v)));
                    }
                }
                Batch { seq, applied: marker(seq), changes, feed: vec![] }
            };
            for seq in 0..50 {
                writer.submit(batch(seq, &mut model, &mut rand)).expect("submit");
                writer.write_pending().expect("write");
            }
            let at_snapshot = model.clone();
            let mut view = writer.begin_snapshot().expect("begin");
            assert_eq!(view.applied().index, Some(49));
            let w = writer.clone();
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let d = done.clone();
            let bg = std::thread::spawn(move || {
                while !d.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = w.write_pending();
                    std::thread::yield_now();
                }
            });
            let mut got = BTreeMap::new();
            let mut seq = 50;
            loop {
                writer.submit(batch(seq, &mut model, &mut rand)).expect("submit");
                seq += 1;
                match view.next_chunk(7).expect("chunk") {
                    Some(c) => got.extend(c),
                    None => break,
                }
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            bg.join().expect("writer thread");
            assert_eq!(got, at_snapshot, "seed {seed} cap {cap:?}: the snapshot differs from the state at its index");
            if cap.is_some() {
                waits += writer.snapshot_waits();
            }
        }
        assert!(waits > 0, "with a 1,500-byte cap the writer must have waited for the reader");
    }

    /// A second snapshot (an operator's backup or a digest while raft builds one) waits for the
    /// first instead of failing — a failure here stopped raft on a node — and, when it begins, it
    /// is exact as of the index written by then.
    #[test]
    fn a_second_snapshot_waits_for_the_first() {
        let store = Arc::new(MemStateStore::default());
        let writer = Arc::new(Writer::new(store, Arc::new(Overlay::default()), None, 1 << 20));
        let put = |seq: u64, v: &str| {
            let b = Batch { seq, applied: marker(seq), changes: vec![(key(seq % 4), Some(v.into()))], feed: vec![] };
            writer.submit(b).expect("submit");
            writer.write_pending().expect("write");
        };
        for seq in 0..8 {
            put(seq, "before");
        }
        let mut first = writer.begin_snapshot().expect("first");
        let (tx, rx) = std::sync::mpsc::channel();
        let w = writer.clone();
        let second = std::thread::spawn(move || {
            let r = w.begin_snapshot().map(|mut view| {
                let mut got = BTreeMap::new();
                while let Some(c) = view.next_chunk(3).expect("chunk") {
                    got.extend(c);
                }
                (view.applied().index, got)
            });
            tx.send(()).expect("send");
            r
        });
        for seq in 8..12 {
            put(seq, "after");
        }
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the second snapshot must wait while the first is read (not fail, not run beside it)"
        );
        let mut got = BTreeMap::new();
        while let Some(c) = first.next_chunk(3).expect("chunk") {
            got.extend(c);
        }
        assert_eq!(first.applied().index, Some(7));
        assert!(got.values().all(|v| v == b"before"), "the first is as of index 7: {got:?}");
        let (index, got) = second.join().expect("thread").expect("the second snapshot begins once the first is done");
        assert_eq!(index, Some(11));
        assert_eq!(got.len(), 4);
        assert!(got.values().all(|v| v == b"after"), "the second is as of index 11: {got:?}");
    }

    #[test]
    fn a_failed_store_write_stops_the_writer() {
        let store = Arc::new(MemStateStore::default());
        let writer = Writer::new(store.clone(), Arc::new(Overlay::default()), None, 1 << 20);
        writer
            .submit(Batch { seq: 1, applied: marker(1), changes: vec![(key(1), Some(b"v".to_vec()))], feed: vec![] })
            .expect("submit");
        store.crash();
        assert!(writer.write_pending().is_err());
        assert!(writer.submit(Batch::default()).is_err(), "every later call fails");
    }
}

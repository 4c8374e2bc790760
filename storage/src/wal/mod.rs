//! Minion's write-ahead log for raft entries: segmented, append-only, CRC-framed.
//!
//! Durability contract (every step through the [`Vfs`] seam):
//! - [`Wal::append`] writes records to the active segment; they are readable at once and durable
//!   after the next [`Wal::sync`] (one `fdatasync` for everything appended since the last one).
//! - A new segment is created only after the active one is synced; its header is synced and its
//!   directory entry made durable (directory `fsync`) before any record goes into it. So damage can
//!   only be at the tail of the last segment.
//! - [`Wal::truncate`] (raft overwriting a conflicting tail) removes whole later segments newest
//!   first, syncs the directory, then cuts the segment holding the first removed entry and syncs
//!   it. Durable when it returns.
//! - [`Wal::purge`] removes whole segments oldest first, then syncs the directory; a purge past the
//!   end of the log starts a `RESET` segment (synced, with its directory entry) before removing the
//!   old ones. The first remaining segment's header names the last purged position.
//! - [`Wal::open`] removes a last segment whose creation never completed, then scans; the first
//!   record of the last segment that does not check out (torn or damaged) ends the log and the file
//!   is cut there, unless it holds an entry at or below `durable_floor` (the checkpoint's record of
//!   what was synced; `None`: nothing known): that is corruption and the log refuses to open, naming file and offset.

mod segment;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use segment::{Header, HEADER_BYTES};
use serde::{Deserialize, Serialize};

use crate::vfs::{OpenMode, SharedVfs, VFile};

/// A raft log position: the entry's index and the leader (term, node id) that created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogPos {
    pub index: u64,
    pub term: u64,
    pub node: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("write-ahead log corruption in {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("write-ahead log misuse: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, WalError>;

#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// `fdatasync` in [`Wal::sync`] (the `fsync` durability tier); without it a sync only hands the
    /// data to the operating system (the `flush` tier: survives a process crash, not power loss).
    pub fsync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_bytes: 64 << 20, fsync: true }
    }
}

/// What opening the log found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub segments: usize,
    /// Bytes cut from the tail of the last segment (a torn write).
    pub torn_bytes: u64,
    /// Why the tail was cut.
    pub torn_reason: Option<String>,
    /// Segment files removed: an unfinished creation, or obsolete before a reset.
    pub removed_files: Vec<String>,
}

struct Segment {
    path: PathBuf,
    header: Header,
    file: Arc<dyn VFile>,
    /// (offset, length) of each record; entry `first_index + i` is `records[i]`.
    records: Vec<(u64, u32)>,
    /// The position of the last record, if any.
    last: Option<LogPos>,
    /// Offset just past the last record.
    end: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.header.first_index + self.records.len() as u64
    }
    /// The position of the last entry in or before this segment.
    fn last_pos(&self) -> Option<LogPos> {
        self.last.or(self.header.prev)
    }
}

#[derive(Default)]
struct Segments {
    list: Vec<Segment>,
}

impl Segments {
    fn active(&self) -> Result<&Segment> {
        self.list.last().ok_or_else(|| WalError::Invalid("the log has no segment".into()))
    }
    /// Segments are in creation order, which after open (obsolete ones dropped) is also the order
    /// of their first indexes.
    fn locate(&self, index: u64) -> Option<(&Segment, (u64, u32))> {
        let i = self.list.partition_point(|s| s.header.first_index <= index);
        let s = self.list.get(i.checked_sub(1)?)?;
        let rec = *s.records.get((index - s.header.first_index) as usize)?;
        Some((s, rec))
    }
}

/// The writing side. One owner; [`WalReader`]s read concurrently.
pub struct Wal {
    vfs: SharedVfs,
    dir: PathBuf,
    opts: WalOptions,
    shared: Arc<RwLock<Segments>>,
    buf: Vec<u8>,
    unsynced: bool,
    /// The sequence number the next segment gets.
    next_seq: u64,
}

/// Reads entries while the owner appends. Cheap to clone.
#[derive(Clone)]
pub struct WalReader {
    shared: Arc<RwLock<Segments>>,
}

/// Check and decode one record as stored in a segment (for fuzzing the decoder).
pub fn decode_record(bytes: &[u8]) -> std::result::Result<(LogPos, Vec<u8>), String> {
    segment::decode_record(bytes).map(|r| (r.pos, r.payload))
}

/// One record as a segment stores it.
pub fn encode_record(pos: LogPos, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    segment::encode_record(&mut out, pos, payload);
    out
}

/// The file name of the segment whose first record is `seq` (zero-padded so names sort by `seq`).
pub fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_suffix(".wal")?.parse().ok()
}

impl Wal {
    /// Open (or create) the log in `dir`. See the module documentation for what is repaired and
    /// what is refused.
    pub fn open(vfs: SharedVfs, dir: &Path, opts: WalOptions, durable_floor: Option<u64>) -> Result<(Wal, OpenReport)> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WalError::Io { path, source }
        };
        let mut report = OpenReport::default();
        if !vfs.exists(dir) {
            vfs.create_dir_all(dir).map_err(io(dir))?;
            vfs.sync_dir(crate::vfs::parent(dir)).map_err(io(dir))?;
        }
        // (sequence number, file name), in creation order.
        let mut names: Vec<(u64, String)> = Vec::new();
        for name in vfs.read_dir(dir).map_err(io(dir))? {
            if let Some(first) = parse_segment_name(&name) {
                names.push((first, name));
            } else if name.ends_with(".tmp") {
                vfs.remove_file(&dir.join(&name)).map_err(io(dir))?;
            }
        }
        names.sort();
        // Names (and so files) never repeat a sequence number, even after a removal.
        let max_seq_seen = names.last().map(|(n, _)| n + 1).unwrap_or(0);
        let mut list: Vec<Segment> = Vec::new();
        let count = names.len();
        for (i, (first, name)) in names.into_iter().enumerate() {
            let path = dir.join(&name);
            let file: Arc<dyn VFile> = Arc::from(vfs.open(&path, OpenMode::ReadWrite).map_err(io(&path))?);
            let mut hb = vec![0u8; HEADER_BYTES as usize];
            let len = file.len().map_err(io(&path))?;
            let header = if len >= HEADER_BYTES {
                file.read_exact_at(&mut hb, 0).map_err(io(&path))?;
                Header::decode(&hb)
            } else {
                Err(format!("file is {len} bytes, shorter than a segment header"))
            };
            let header = match header {
                Ok(h) if h.seq == first => h,
                Ok(h) => {
                    return Err(WalError::Corrupt {
                        path,
                        what: format!("header says segment {}, the name says {first}", h.seq),
                    })
                }
                // A last segment whose header never became durable held no synced entry.
                Err(_) if i + 1 == count => {
                    drop(file);
                    vfs.remove_file(&path).map_err(io(&path))?;
                    vfs.sync_dir(dir).map_err(io(dir))?;
                    report.removed_files.push(name);
                    continue;
                }
                Err(what) => return Err(WalError::Corrupt { path, what }),
            };
            list.push(Segment { path, header, file, records: Vec::new(), last: None, end: HEADER_BYTES });
        }
        // A reset segment makes every older one obsolete (a crash interrupted their removal).
        if let Some(r) = list.iter().rposition(|s| s.header.is_reset()) {
            for old in list.drain(..r) {
                vfs.remove_file(&old.path).map_err(io(&old.path))?;
                report
                    .removed_files
                    .push(old.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            }
            if r > 0 {
                vfs.sync_dir(dir).map_err(io(dir))?;
            }
        }
        let n = list.len();
        for i in 0..n {
            let last_segment = i + 1 == n;
            let s = &mut list[i];
            let scan = segment::scan(&*s.file, s.header.first_index).map_err(io(&s.path))?;
            s.records = scan.records.iter().map(|(o, l, _)| (*o, *l)).collect();
            s.last = scan.records.last().map(|r| r.2);
            s.end = scan.valid_end;
            if let Some(reason) = scan.stopped {
                let at_index = s.next_index();
                if !last_segment {
                    return Err(WalError::Corrupt {
                        path: s.path.clone(),
                        what: format!(
                            "{reason} (entry {at_index}), in a segment that was synced whole before the next one began"
                        ),
                    });
                }
                if durable_floor.is_some_and(|floor| at_index <= floor) {
                    return Err(WalError::Corrupt {
                        path: s.path.clone(),
                        what: format!(
                            "{reason}: entry {at_index} is damaged, but the checkpoint records the log durable \
                             through entry {}",
                            durable_floor.unwrap_or_default()
                        ),
                    });
                }
                let torn = scan.file_len - scan.valid_end;
                tracing::warn!(
                    file = %s.path.display(),
                    offset = scan.valid_end,
                    bytes = torn,
                    first_lost_index = at_index,
                    %reason,
                    "write-ahead log: cutting a torn tail (writes that were never synced)"
                );
                s.file.set_len(scan.valid_end).map_err(io(&s.path))?;
                s.file.sync_data().map_err(io(&s.path))?;
                report.torn_bytes = torn;
                report.torn_reason = Some(reason);
            }
        }
        for w in list.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if b.header.first_index != a.next_index() || b.header.prev != a.last_pos() {
                return Err(WalError::Corrupt {
                    path: b.path.clone(),
                    what: format!(
                        "segment starts at entry {} after {:?}, but the previous segment ends before entry {} at {:?}",
                        b.header.first_index,
                        b.header.prev,
                        a.next_index(),
                        a.last_pos()
                    ),
                });
            }
        }
        // What survived in the last segment may be only in the page cache (a process crash):
        // make it durable before anyone counts on it.
        if let Some(s) = list.last() {
            s.file.sync_data().map_err(io(&s.path))?;
        }
        let next_seq = list.last().map(|s| s.header.seq + 1).unwrap_or(0).max(max_seq_seen);
        let mut wal = Wal {
            vfs,
            dir: dir.to_path_buf(),
            opts,
            shared: Arc::new(RwLock::new(Segments { list })),
            buf: Vec::new(),
            unsynced: false,
            next_seq,
        };
        if wal.read_segments().list.is_empty() {
            wal.create_segment(Header { seq: 0, first_index: 0, prev: None, flags: 0 })?;
        }
        report.segments = wal.read_segments().list.len();
        Ok((wal, report))
    }

    fn read_segments(&self) -> RwLockReadGuard<'_, Segments> {
        self.shared.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_segments(&self) -> RwLockWriteGuard<'_, Segments> {
        self.shared.write().unwrap_or_else(|p| p.into_inner())
    }

    fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError {
        let path = path.to_path_buf();
        move |source| WalError::Io { path, source }
    }

    /// Create a segment: header written and synced, directory entry durable, then in the list.
    fn create_segment(&mut self, mut header: Header) -> Result<()> {
        header.seq = self.next_seq;
        self.next_seq += 1;
        let path = self.dir.join(segment_name(header.seq));
        let file: Arc<dyn VFile> = Arc::from(self.vfs.open(&path, OpenMode::CreateNew).map_err(Self::io_err(&path))?);
        file.write_all_at(&header.encode(), 0).map_err(Self::io_err(&path))?;
        file.sync_data().map_err(Self::io_err(&path))?;
        self.vfs.sync_dir(&self.dir).map_err(Self::io_err(&self.dir))?;
        self.write_segments().list.push(Segment {
            path,
            header,
            file,
            records: Vec::new(),
            last: None,
            end: HEADER_BYTES,
        });
        Ok(())
    }

    pub fn reader(&self) -> WalReader {
        WalReader { shared: self.shared.clone() }
    }

    /// The index the next appended entry must have.
    pub fn next_index(&self) -> u64 {
        self.read_segments().list.last().map(|s| s.next_index()).unwrap_or(0)
    }

    /// Append entries (contiguous, starting at [`Wal::next_index`]). Readable on return, durable
    /// after [`Wal::sync`].
    pub fn append(&mut self, entries: &[(LogPos, &[u8])]) -> Result<()> {
        // A log that holds no entry (never did, or all were purged) starts again wherever the
        // next append does.
        if let Some((first, _)) = entries.first() {
            let empty = self.read_segments().list.iter().all(|s| s.records.is_empty());
            if empty && first.index != self.next_index() {
                self.restart(first.index, None)?;
            }
        }
        let mut expect = self.next_index();
        for (pos, _) in entries {
            if pos.index != expect {
                return Err(WalError::Invalid(format!("append of entry {} where entry {expect} is next", pos.index)));
            }
            expect += 1;
        }
        let mut pending: Vec<(u64, u32, LogPos)> = Vec::new();
        self.buf.clear();
        for (pos, payload) in entries {
            let (active_end, active_records) = {
                let g = self.read_segments();
                let a = g.active()?;
                (a.end, a.records.len())
            };
            let rec_len = (segment::RECORD_HEADER_BYTES + 24 + payload.len()) as u64;
            let full = active_end + self.buf.len() as u64 + rec_len > self.opts.segment_bytes;
            if full && (active_records > 0 || !pending.is_empty()) {
                self.write_pending(&mut pending)?;
                self.roll()?;
            }
            let offset = {
                let g = self.read_segments();
                g.active()?.end + self.buf.len() as u64
            };
            let n = segment::encode_record(&mut self.buf, *pos, payload);
            pending.push((offset, n as u32, *pos));
        }
        self.write_pending(&mut pending)
    }

    /// Write the buffered records to the active segment and index them.
    fn write_pending(&mut self, pending: &mut Vec<(u64, u32, LogPos)>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let (file, path, at) = {
            let g = self.read_segments();
            let a = g.active()?;
            (a.file.clone(), a.path.clone(), a.end)
        };
        file.write_all_at(&self.buf, at).map_err(Self::io_err(&path))?;
        self.unsynced = true;
        let written = self.buf.len() as u64;
        self.buf.clear();
        let mut g = self.shared.write().unwrap_or_else(|p| p.into_inner());
        let a = g.list.last_mut().ok_or_else(|| WalError::Invalid("no active segment".into()))?;
        for (offset, len, pos) in pending.drain(..) {
            a.records.push((offset, len));
            a.last = Some(pos);
        }
        a.end = at + written;
        Ok(())
    }

    /// Close the active segment (synced) and start the next.
    fn roll(&mut self) -> Result<()> {
        self.sync()?;
        let (first_index, prev) = {
            let g = self.read_segments();
            let a = g.active()?;
            (a.next_index(), a.last_pos())
        };
        self.create_segment(Header { seq: 0, first_index, prev, flags: 0 })
    }

    /// Make everything appended so far durable: one `fdatasync` of the active segment (earlier
    /// segments were synced when they were closed).
    pub fn sync(&mut self) -> Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        let (file, path) = {
            let g = self.read_segments();
            let a = g.active()?;
            (a.file.clone(), a.path.clone())
        };
        if self.opts.fsync {
            file.sync_data().map_err(Self::io_err(&path))?;
        }
        self.unsynced = false;
        Ok(())
    }

    /// Remove entries with index ≥ `from`. Durable when it returns.
    pub fn truncate(&mut self, from: u64) -> Result<()> {
        if from >= self.next_index() {
            return Ok(());
        }
        // Whole later segments go first, newest first, so that a crash leaves no gap.
        let doomed: Vec<PathBuf> = {
            let g = self.read_segments();
            g.list.iter().skip(1).filter(|s| s.header.first_index >= from).map(|s| s.path.clone()).rev().collect()
        };
        if !doomed.is_empty() {
            for p in &doomed {
                self.vfs.remove_file(p).map_err(Self::io_err(p))?;
            }
            self.vfs.sync_dir(&self.dir).map_err(Self::io_err(&self.dir))?;
            let mut g = self.write_segments();
            let keep = g.list.len() - doomed.len();
            g.list.truncate(keep);
        }
        let (file, path, cut, first) = {
            let g = self.read_segments();
            let a = g.active()?;
            let first = a.header.first_index;
            let cut = match from.checked_sub(first).and_then(|i| a.records.get(i as usize)) {
                Some((offset, _)) => *offset,
                None if from <= first => HEADER_BYTES,
                None => return Ok(()),
            };
            (a.file.clone(), a.path.clone(), cut, first)
        };
        file.set_len(cut).map_err(Self::io_err(&path))?;
        file.sync_data().map_err(Self::io_err(&path))?;
        self.unsynced = false;
        let last = if from > first { self.reader().read(from - 1)?.map(|(pos, _)| pos) } else { None };
        let mut g = self.write_segments();
        let a = g.list.last_mut().ok_or_else(|| WalError::Invalid("no active segment".into()))?;
        a.records.truncate(from.saturating_sub(first) as usize);
        a.last = last;
        a.end = cut;
        Ok(())
    }

    /// Start the log again at `first_index` (after `prev`, if known): a new segment marked as a
    /// reset is created durably, then every older segment is removed and the directory synced.
    /// A crash in between leaves the reset segment beside older ones, which open then drops.
    fn restart(&mut self, first_index: u64, prev: Option<LogPos>) -> Result<()> {
        self.sync()?;
        let old: Vec<PathBuf> = self.read_segments().list.iter().map(|s| s.path.clone()).collect();
        self.create_segment(Header { seq: 0, first_index, prev, flags: segment::FLAG_RESET })?;
        for p in &old {
            self.vfs.remove_file(p).map_err(Self::io_err(p))?;
        }
        self.vfs.sync_dir(&self.dir).map_err(Self::io_err(&self.dir))?;
        let mut g = self.write_segments();
        let n = g.list.len();
        g.list.drain(..n - 1);
        Ok(())
    }

    /// Remove whole segments all of whose entries are at or before `upto` (never the active
    /// one). If `upto` is past the last entry, the log restarts after it. Durable on return.
    pub fn purge(&mut self, upto: LogPos) -> Result<()> {
        let last = self.reader().last_pos();
        if last.is_none_or(|l| upto.index > l.index) {
            return self.restart(upto.index + 1, Some(upto));
        }
        let doomed: Vec<PathBuf> = {
            let g = self.read_segments();
            let n = g.list.len();
            g.list[..n - 1]
                .iter()
                .take_while(|s| s.last_pos().is_some_and(|l| l.index <= upto.index))
                .map(|s| s.path.clone())
                .collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        for p in &doomed {
            self.vfs.remove_file(p).map_err(Self::io_err(p))?;
        }
        self.vfs.sync_dir(&self.dir).map_err(Self::io_err(&self.dir))?;
        self.write_segments().list.drain(..doomed.len());
        Ok(())
    }

    /// Bytes in all segments (for the snapshot policy and metrics).
    pub fn bytes(&self) -> u64 {
        self.read_segments().list.iter().map(|s| s.end).sum()
    }

    /// (seq, first index, records, last index) of each segment, for tests.
    #[cfg(test)]
    pub(crate) fn debug_segments(&self) -> Vec<(u64, u64, usize, Option<u64>)> {
        self.read_segments()
            .list
            .iter()
            .map(|s| (s.header.seq, s.header.first_index, s.records.len(), s.last.map(|l| l.index)))
            .collect()
    }

    pub fn segment_count(&self) -> usize {
        self.read_segments().list.len()
    }
}

impl WalReader {
    fn segments(&self) -> RwLockReadGuard<'_, Segments> {
        self.shared.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The position just before the first entry still in the log (what was purged).
    pub fn purged(&self) -> Option<LogPos> {
        self.segments().list.first().and_then(|s| s.header.prev)
    }

    /// The first entry's index still in the log (entries before it were purged).
    pub fn first_index(&self) -> u64 {
        self.segments().list.first().map(|s| s.header.first_index).unwrap_or(0)
    }

    /// The last entry's position (or the last purged one when no entry is left).
    pub fn last_pos(&self) -> Option<LogPos> {
        self.segments().list.last().and_then(|s| s.last_pos())
    }

    /// One entry, checked again on the way in (a flipped bit since it was written is an error).
    pub fn read(&self, index: u64) -> Result<Option<(LogPos, Vec<u8>)>> {
        let Some((file, path, (offset, len))) = ({
            let g = self.segments();
            g.locate(index).map(|(s, rec)| (s.file.clone(), s.path.clone(), rec))
        }) else {
            return Ok(None);
        };
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset).map_err(|source| WalError::Io { path: path.clone(), source })?;
        let r = segment::decode_record(&buf).map_err(|e| WalError::Corrupt {
            path: path.clone(),
            what: format!("entry {index} at offset {offset}: {e}"),
        })?;
        if r.pos.index != index {
            return Err(WalError::Corrupt {
                path,
                what: format!("offset {offset} holds entry {}, not {index}", r.pos.index),
            });
        }
        Ok(Some((r.pos, r.payload)))
    }

    /// Entries `start..end` that are in the log, in order (a prefix of the range when it runs
    /// past the end). Reads each segment's part with one `pread`.
    pub fn read_range(&self, start: u64, end: u64) -> Result<Vec<(LogPos, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut index = start;
        while index < end {
            let plan = {
                let g = self.segments();
                let Some((s, (offset, _))) = g.locate(index) else { break };
                let stop = end.min(s.next_index());
                let (last_off, last_len) = s.records[(stop - 1 - s.header.first_index) as usize];
                (s.file.clone(), s.path.clone(), offset, last_off + last_len as u64, stop)
            };
            let (file, path, from, to, stop) = plan;
            let mut buf = vec![0u8; (to - from) as usize];
            file.read_exact_at(&mut buf, from).map_err(|source| WalError::Io { path: path.clone(), source })?;
            let mut at = 0usize;
            while index < stop {
                let len = segment::RECORD_HEADER_BYTES
                    + u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
                if at + len > buf.len() {
                    return Err(WalError::Corrupt {
                        path,
                        what: format!("entry {index}: record runs past its segment's index"),
                    });
                }
                let r = segment::decode_record(&buf[at..at + len])
                    .map_err(|e| WalError::Corrupt { path: path.clone(), what: format!("entry {index}: {e}") })?;
                if r.pos.index != index {
                    return Err(WalError::Corrupt {
                        path,
                        what: format!("found entry {} where {index} belongs", r.pos.index),
                    });
                }
                out.push((r.pos, r.payload));
                at += len;
                index += 1;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

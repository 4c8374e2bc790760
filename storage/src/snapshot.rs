//! Snapshot files: the state as of one applied index, as a stream of records in checked blocks,
//! written and read in bounded chunks (never whole in memory). The same format is a backup file.
//!
//! ```text
//! "MINSNAP2" | block... ;  block = kind u8 | body_len u32 LE | crc32 u32 LE | body
//! H  header (postcard SnapshotHeader)      once, first
//! R  records (postcard Vec<(key, value)>)  any number, keys ascending
//! E  end (postcard EndBlock)               once, last: a file without it is incomplete
//! ```
//!
//! The CRC covers kind, length and body. Records are the codec's bytes, so every value inside
//! carries its own frame too.
//!
//! [`SnapshotDir`] keeps them: one is built in `build-N.tmp` and one received in `recv-N.tmp` (never
//! the same file), each synced, renamed to `snap-<index>-<N>.snap` and the directory synced before
//! older ones are removed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::frame::FrameError;
use crate::state_store::Kv;
use crate::vfs::{OpenMode, SharedVfs, VFile};

const MAGIC: &[u8; 8] = b"MINSNAP2";
pub const FORMAT: u32 = 2;
const BLOCK_HEADER: usize = 9;
/// The largest block accepted on read.
pub const BLOCK_BYTES_MAX: usize = 256 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub format: u32,
    /// The applied index the state is exactly as of.
    pub last_index: Option<u64>,
    /// The raft layer's metadata (snapshot id, log id, membership), opaque here.
    pub raft: Vec<u8>,
    pub taken_ms: u64,
    /// Who wrote it (cluster, node), for backups.
    pub origin: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct EndBlock {
    records: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("snapshot {path} is corrupt (damaged or incomplete): {what}")]
    Corrupt { path: PathBuf, what: String },
}

pub type Result<T> = std::result::Result<T, SnapshotError>;

fn encode_block(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK_HEADER + body.len());
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(body);
    let mut h = crc32fast::Hasher::new();
    h.update(&out[..5]);
    h.update(body);
    let crc = h.finalize();
    out[5..9].copy_from_slice(&crc.to_le_bytes());
    out
}

fn postcard_err(e: postcard::Error) -> FrameError {
    FrameError::Encode(e.to_string())
}

/// Writes a snapshot (or backup) file front to back.
pub struct SnapshotWriter {
    path: PathBuf,
    file: Box<dyn VFile>,
    at: u64,
    records: u64,
}

impl SnapshotWriter {
    pub fn create(vfs: &SharedVfs, path: &Path, header: &SnapshotHeader) -> Result<SnapshotWriter> {
        let io = |source| SnapshotError::Io { path: path.to_path_buf(), source };
        let file = vfs.open(path, OpenMode::Truncate).map_err(io)?;
        let mut w = SnapshotWriter { path: path.to_path_buf(), file, at: 0, records: 0 };
        w.raw(MAGIC)?;
        let body = postcard::to_allocvec(header).map_err(|e| w.corrupt(postcard_err(e).to_string()))?;
        w.raw(&encode_block(b'H', &body))?;
        Ok(w)
    }

    fn corrupt(&self, what: String) -> SnapshotError {
        SnapshotError::Corrupt { path: self.path.clone(), what }
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, self.at)
            .map_err(|source| SnapshotError::Io { path: self.path.clone(), source })?;
        self.at += bytes.len() as u64;
        Ok(())
    }

    /// Append records (keys ascending, continuing the previous chunk).
    pub fn write_chunk(&mut self, records: &[Kv]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let body = postcard::to_allocvec(records).map_err(|e| self.corrupt(postcard_err(e).to_string()))?;
        self.raw(&encode_block(b'R', &body))?;
        self.records += records.len() as u64;
        Ok(())
    }

    /// Write the end block and sync the file. Returns (records, bytes).
    pub fn finish(mut self) -> Result<(u64, u64)> {
        let body = postcard::to_allocvec(&EndBlock { records: self.records })
            .map_err(|e| self.corrupt(postcard_err(e).to_string()))?;
        self.raw(&encode_block(b'E', &body))?;
        self.file.sync_data().map_err(|source| SnapshotError::Io { path: self.path.clone(), source })?;
        Ok((self.records, self.at))
    }

    pub fn bytes(&self) -> u64 {
        self.at
    }
}

/// Reads a snapshot (or backup) file front to back, checking every block.
pub struct SnapshotReader {
    path: PathBuf,
    file: Box<dyn VFile>,
    len: u64,
    at: u64,
    header: SnapshotHeader,
    records: u64,
    ended: bool,
}

impl SnapshotReader {
    pub fn open(vfs: &SharedVfs, path: &Path) -> Result<SnapshotReader> {
        let file =
            vfs.open(path, OpenMode::Read).map_err(|source| SnapshotError::Io { path: path.to_path_buf(), source })?;
        SnapshotReader::from_file(path, file)
    }

    /// Read from an already open file (e.g. one received from a peer).
    pub fn from_file(path: &Path, file: Box<dyn VFile>) -> Result<SnapshotReader> {
        let len = file.len().map_err(|source| SnapshotError::Io { path: path.to_path_buf(), source })?;
        let mut r = SnapshotReader {
            path: path.to_path_buf(),
            file,
            len,
            at: 0,
            header: SnapshotHeader::default(),
            records: 0,
            ended: false,
        };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(r.corrupt("not a Minion snapshot or backup (bad magic)".into()));
        }
        let (kind, body) = r.block()?;
        if kind != b'H' {
            return Err(r.corrupt("the first block is not a header".into()));
        }
        r.header = postcard::from_bytes(&body).map_err(|e| r.corrupt(format!("header: {e}")))?;
        if r.header.format != FORMAT {
            return Err(r.corrupt(format!("format {}; this build reads format {FORMAT}", r.header.format)));
        }
        Ok(r)
    }

    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    fn corrupt(&self, what: String) -> SnapshotError {
        SnapshotError::Corrupt { path: self.path.clone(), what }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        if self.at + buf.len() as u64 > self.len {
            return Err(self.corrupt(format!("cut off at byte {} of {}", self.len, self.at + buf.len() as u64)));
        }
        self.file
            .read_exact_at(buf, self.at)
            .map_err(|source| SnapshotError::Io { path: self.path.clone(), source })?;
        self.at += buf.len() as u64;
        Ok(())
    }

    fn block(&mut self) -> Result<(u8, Vec<u8>)> {
        let at = self.at;
        let mut h = [0u8; BLOCK_HEADER];
        self.read_exact(&mut h)?;
        let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
        if len > BLOCK_BYTES_MAX {
            return Err(self.corrupt(format!("block at byte {at} claims {len} bytes")));
        }
        let mut body = vec![0u8; len];
        self.read_exact(&mut body)?;
        let mut c = crc32fast::Hasher::new();
        c.update(&h[..5]);
        c.update(&body);
        if c.finalize() != u32::from_le_bytes([h[5], h[6], h[7], h[8]]) {
            return Err(self.corrupt(format!("checksum mismatch in the block at byte {at}")));
        }
        Ok((h[0], body))
    }

    /// The next chunk of records; `None` after the end block (which must be the last thing in the
    /// file and count every record).
    pub fn next_chunk(&mut self) -> Result<Option<Vec<Kv>>> {
        if self.ended {
            return Ok(None);
        }
        let (kind, body) = self.block()?;
        match kind {
            b'R' => {
                let chunk: Vec<Kv> = postcard::from_bytes(&body).map_err(|e| self.corrupt(format!("records: {e}")))?;
                self.records += chunk.len() as u64;
                Ok(Some(chunk))
            }
            b'E' => {
                let end: EndBlock = postcard::from_bytes(&body).map_err(|e| self.corrupt(format!("end block: {e}")))?;
                if end.records != self.records {
                    return Err(
                        self.corrupt(format!("{} records read, the end block says {}", self.records, end.records))
                    );
                }
                if self.at != self.len {
                    return Err(self.corrupt(format!("{} bytes after the end block", self.len - self.at)));
                }
                self.ended = true;
                Ok(None)
            }
            other => Err(self.corrupt(format!("unknown block kind {other}"))),
        }
    }

    /// Read and check every block to the end. Returns the record count.
    pub fn verify(mut self) -> Result<u64> {
        while self.next_chunk()?.is_some() {}
        Ok(self.records)
    }
}

/// The snapshots directory.
pub struct SnapshotDir {
    vfs: SharedVfs,
    dir: PathBuf,
    next: u64,
}

/// A published snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub index: Option<u64>,
}

fn parse_name(name: &str) -> Option<(Option<u64>, u64)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let (idx, n) = rest.split_once('-')?;
    let idx: u64 = idx.parse().ok()?;
    Some((idx.checked_sub(1), n.parse().ok()?))
}

impl SnapshotDir {
    /// Open the directory: temporary files of unfinished builds and receptions are removed.
    pub fn open(vfs: SharedVfs, dir: &Path) -> Result<SnapshotDir> {
        let io = |source| SnapshotError::Io { path: dir.to_path_buf(), source };
        if !vfs.exists(dir) {
            vfs.create_dir_all(dir).map_err(io)?;
            vfs.sync_dir(crate::vfs::parent(dir)).map_err(io)?;
        }
        let mut next = 0;
        let mut removed = false;
        for name in vfs.read_dir(dir).map_err(io)? {
            if name.ends_with(".tmp") {
                vfs.remove_file(&dir.join(&name)).map_err(io)?;
                removed = true;
            } else if let Some((_, n)) = parse_name(&name) {
                next = next.max(n + 1);
            }
        }
        if removed {
            vfs.sync_dir(dir).map_err(io)?;
        }
        Ok(SnapshotDir { vfs, dir: dir.to_path_buf(), next })
    }

    pub fn vfs(&self) -> &SharedVfs {
        &self.vfs
    }

    /// A new temporary file name for a snapshot being built (`build`) or received (`recv`).
    pub fn temp_path(&mut self, what: &str) -> PathBuf {
        self.next += 1;
        self.dir.join(format!("{what}-{}.tmp", self.next))
    }

    /// The newest published snapshot.
    pub fn current(&self) -> Result<Option<SnapshotFile>> {
        let names =
            self.vfs.read_dir(&self.dir).map_err(|source| SnapshotError::Io { path: self.dir.clone(), source })?;
        Ok(names
            .iter()
            .filter_map(|n| parse_name(n).map(|(idx, seq)| (idx, seq, n)))
            .max_by_key(|(idx, seq, _)| (*idx, *seq))
            .map(|(index, _, n)| SnapshotFile { path: self.dir.join(n), index }))
    }

    /// Publish a synced temporary file as the current snapshot: rename, sync the directory, then
    /// remove the older ones (and sync again).
    /// A snapshot older than the current one is not published: it is discarded and the current
    /// one returned.
    pub fn publish(&mut self, tmp: &Path, index: Option<u64>) -> Result<SnapshotFile> {
        let io = |source| SnapshotError::Io { path: self.dir.clone(), source };
        if let Some(cur) = self.current()? {
            if cur.index > index {
                self.discard(tmp);
                return Ok(cur);
            }
        }
        self.next += 1;
        let name = format!("snap-{:020}-{:010}.snap", index.map_or(0, |i| i + 1), self.next);
        let path = self.dir.join(&name);
        crate::vfs::publish(self.vfs.as_ref(), tmp, &path).map_err(io)?;
        let mut removed = false;
        for n in self.vfs.read_dir(&self.dir).map_err(io)? {
            if n != name && parse_name(&n).is_some() {
                self.vfs.remove_file(&self.dir.join(&n)).map_err(io)?;
                removed = true;
            }
        }
        if removed {
            self.vfs.sync_dir(&self.dir).map_err(io)?;
        }
        Ok(SnapshotFile { path, index })
    }

    /// Remove a temporary file (a failed build or reception).
    pub fn discard(&self, tmp: &Path) {
        let _ = self.vfs.remove_file(tmp);
    }
}

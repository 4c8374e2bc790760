//! The file-I/O seam: every byte Minion's durability depends on (the write-ahead log, snapshots,
//! the checkpoint, the cluster identity) is written, synced, renamed and removed through [`Vfs`].
//!
//! Production uses [`RealFs`] (std::fs: `pwrite`, `fdatasync`, `rename`, directory `fsync`). The
//! power-loss tests use `SimFs` (module `sim`), which keeps every write in memory, remembers which
//! ones a completed sync covers, and at a chosen point loses power: it drops what no sync covered
//! (optionally keeping a random prefix of it and tearing its last write), so that recovery can be
//! checked against thousands of seeded crash points.
//!
//! sled's own files are outside this seam on purpose: nothing acknowledged depends on them (see
//! `docs/durability.md`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// A new file; fails if the name exists.
    CreateNew,
    /// Create or truncate to zero.
    Truncate,
}

/// An open file. Positional I/O only, so one handle can serve concurrent readers.
pub trait VFile: Send + Sync {
    /// Read up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write all of `buf` at `offset` (extending the file if needed). Not durable until
    /// [`VFile::sync_data`].
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make the file's data and size durable (`fdatasync`). Its name is durable only after a
    /// [`Vfs::sync_dir`] of its directory.
    fn sync_data(&self) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    /// Cut (or extend with zeros) the file to `len` bytes; durable after [`VFile::sync_data`].
    fn set_len(&self, len: u64) -> io::Result<()>;

    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Read exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file ends before the requested range"));
            }
            done += n;
        }
        Ok(())
    }

    /// The whole file.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.len()?).map_err(|_| io::Error::other("file too large"))?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
}

/// The file system as Minion's durability path sees it.
pub trait Vfs: Send + Sync {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VFile>>;
    /// Create the directory and its parents. Durable after a [`Vfs::sync_dir`] of the parent.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Rename within one directory; durable after a [`Vfs::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Names in the directory (files and directories), sorted.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Make the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
}

pub type SharedVfs = Arc<dyn Vfs>;

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl RealFs {
    pub fn shared() -> SharedVfs {
        Arc::new(RealFs)
    }
}

struct RealFile(std::fs::File);

impl VFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Vfs for RealFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VFile>> {
        let mut o = std::fs::OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::Truncate => o.read(true).write(true).create(true).truncate(true),
        };
        Ok(Box::new(RealFile(o.open(path)?)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(path)? {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Replace `path` with `bytes` so that after a crash it holds either the old or the new content,
/// never a mix: write `path.tmp`, sync it, rename over `path`, sync the directory. The one way
/// Minion writes a small file.
pub fn write_atomic(vfs: &dyn Vfs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let f = vfs.open(&tmp, OpenMode::Truncate)?;
    f.write_all_at(bytes, 0)?;
    f.sync_data()?;
    drop(f);
    publish(vfs, &tmp, path)
}

/// Give a complete, synced file `from` the name `to` durably: rename, then sync the directory (a
/// rename not yet in the directory's metadata on disk can be undone by a power loss).
pub fn publish(vfs: &dyn Vfs, from: &Path, to: &Path) -> io::Result<()> {
    vfs.rename(from, to)?;
    vfs.sync_dir(parent(to))
}

/// Read a whole file, `None` when it does not exist.
pub fn read_optional(vfs: &dyn Vfs, path: &Path) -> io::Result<Option<Vec<u8>>> {
    match vfs.open(path, OpenMode::Read) {
        Ok(f) => f.read_all().map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

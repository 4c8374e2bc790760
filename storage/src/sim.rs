//! `SimFs`: an in-memory [`Vfs`] that knows what a power loss would take.
//!
//! Every file keeps its durable bytes (as of its last completed `sync_data`) and the writes since;
//! every directory keeps its durable entries (as of its last `sync_dir`) and the creations,
//! renames and removals since. The simulation can stop at a chosen operation ("the power goes
//! out": that operation and every later one fail) and then produce the disk a reboot would find:
//!
//! - [`Loss::Unsynced`]: every write and directory change no sync covered is gone;
//! - [`Loss::Prefix`]: a random prefix of them survived (disks persist some unsynced data);
//! - [`Loss::Torn`]: a random prefix survived and the next write was torn at a random byte.
//!
//! An inode whose every name is gone after the crash is gone. Directories are created durable by
//! [`SimFs::with_dirs`] or through `create_dir_all` (then durable once their parent is synced).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::vfs::{OpenMode, VFile, Vfs};

/// What a power loss keeps of the data no sync covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    Unsynced,
    Prefix,
    Torn,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(String, Entry),
    Unlink(String),
    Rename(String, String),
}

#[derive(Debug, Clone, Default)]
struct Dir {
    entries: BTreeMap<String, Entry>,
    durable: BTreeMap<String, Entry>,
    pending: Vec<DirOp>,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    dirs: BTreeMap<PathBuf, Dir>,
    /// Mutating operations performed so far.
    ops: u64,
    /// The power goes out when `ops` reaches this.
    crash_at: Option<u64>,
    crashed: bool,
    /// Bytes of file data beyond which writes fail with "no space left on device".
    space_bytes: Option<u64>,
    /// Syncs fail with EIO from now on.
    fail_syncs: bool,
}

/// See the module documentation. Cheap to clone; clones share one disk.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn power_loss_error() -> io::Error {
    io::Error::other("simulated power loss")
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let parent = path.parent().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
        .to_string_lossy()
        .into_owned();
    Ok((parent.to_path_buf(), name))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: not found", path.display()))
}

impl State {
    /// Count a mutating operation; fails once the power is out.
    fn step(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(power_loss_error());
        }
        if self.crash_at.is_some_and(|at| self.ops >= at) {
            self.crashed = true;
            return Err(power_loss_error());
        }
        self.ops += 1;
        Ok(())
    }

    fn dir(&self, path: &Path) -> io::Result<&Dir> {
        self.dirs.get(path).ok_or_else(|| not_found(path))
    }

    fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(path).ok_or_else(|| not_found(path))
    }

    fn lookup(&self, path: &Path) -> io::Result<Option<Entry>> {
        let (parent, name) = split(path)?;
        Ok(self.dir(&parent)?.entries.get(&name).copied())
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.data.len() as u64).sum()
    }
}

impl SimFs {
    /// An empty disk with these directories (and their parents) existing durably.
    pub fn with_dirs(dirs: &[&str]) -> SimFs {
        let fs = SimFs::default();
        {
            let mut s = fs.lock();
            s.dirs.insert(PathBuf::from("/"), Dir::default());
            for d in dirs {
                let mut path = PathBuf::from("/");
                for comp in Path::new(d).components().skip(1) {
                    let name = comp.as_os_str().to_string_lossy().into_owned();
                    let child = path.join(&name);
                    if let Some(p) = s.dirs.get_mut(&path) {
                        p.entries.insert(name.clone(), Entry::Dir);
                        p.durable.insert(name, Entry::Dir);
                    }
                    s.dirs.entry(child.clone()).or_default();
                    path = child;
                }
            }
        }
        fs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutating operations so far (writes, syncs, creations, renames, removals, truncations).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Lose power when the operation count reaches `op`: that operation and all later ones fail.
    pub fn crash_at(&self, op: u64) {
        self.lock().crash_at = Some(op);
    }

    /// Lose power now.
    pub fn crash_now(&self) {
        self.lock().crashed = true;
    }

    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Limit file data to `bytes` in total: writes beyond fail with ENOSPC (`None`: unlimited).
    pub fn set_space(&self, bytes: Option<u64>) {
        self.lock().space_bytes = bytes;
    }

    /// Make every later sync fail with EIO (or stop doing so).
    pub fn fail_syncs(&self, fail: bool) {
        self.lock().fail_syncs = fail;
    }

    /// The disk after the power loss, as a reboot finds it: durable data plus what `loss` keeps
    /// of the rest, chosen with `rand` (a source of random numbers, e.g. a seeded generator).
    pub fn after_power_loss(&self, loss: Loss, rand: &mut dyn FnMut(u64) -> u64) -> SimFs {
        let s = self.lock();
        let pick = |rand: &mut dyn FnMut(u64) -> u64, n: usize| -> usize {
            match loss {
                Loss::Unsynced => 0,
                Loss::Prefix | Loss::Torn => rand(n as u64 + 1) as usize,
            }
        };
        // Directories: durable entries plus a prefix of the changes since.
        let mut dirs: BTreeMap<PathBuf, BTreeMap<String, Entry>> = BTreeMap::new();
        for (path, d) in &s.dirs {
            let mut entries = d.durable.clone();
            for op in d.pending.iter().take(pick(rand, d.pending.len())) {
                match op {
                    DirOp::Link(name, e) => {
                        entries.insert(name.clone(), *e);
                    }
                    DirOp::Unlink(name) => {
                        entries.remove(name);
                    }
                    DirOp::Rename(from, to) => {
                        if let Some(e) = entries.remove(from) {
                            entries.insert(to.clone(), e);
                        }
                    }
                }
            }
            dirs.insert(path.clone(), entries);
        }
        // Keep only what is reachable from the root.
        let mut reachable: BTreeMap<PathBuf, Dir> = BTreeMap::new();
        let mut live_inodes = std::collections::BTreeSet::new();
        let mut stack = vec![PathBuf::from("/")];
        while let Some(path) = stack.pop() {
            let Some(entries) = dirs.get(&path) else { continue };
            for (name, e) in entries {
                match e {
                    Entry::Dir => stack.push(path.join(name)),
                    Entry::File(ino) => {
                        live_inodes.insert(*ino);
                    }
                }
            }
            reachable.insert(path, Dir { entries: entries.clone(), durable: entries.clone(), pending: Vec::new() });
        }
        let mut inodes = HashMap::new();
        for ino in live_inodes {
            let Some(i) = s.inodes.get(&ino) else { continue };
            let mut data = i.durable.clone();
            let keep = pick(rand, i.pending.len());
            for p in &i.pending[..keep] {
                apply(&mut data, p);
            }
            if loss == Loss::Torn {
                if let Some(Pending::Write { offset, bytes }) = i.pending.get(keep) {
                    let cut = rand(bytes.len() as u64 + 1) as usize;
                    apply(&mut data, &Pending::Write { offset: *offset, bytes: bytes[..cut].to_vec() });
                }
            }
            inodes.insert(ino, Inode { durable: data.clone(), data, pending: Vec::new() });
        }
        SimFs {
            state: Arc::new(Mutex::new(State {
                inodes,
                next_inode: s.next_inode,
                dirs: reachable,
                ..State::default()
            })),
        }
    }

    /// The current (not necessarily durable) content of a file, for tests.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        match s.lookup(path).ok().flatten()? {
            Entry::File(ino) => s.inodes.get(&ino).map(|i| i.data.clone()),
            Entry::Dir => None,
        }
    }

    /// Overwrite bytes of a file in place, durably (simulated bit rot or a damaged sector).
    pub fn corrupt(&self, path: &Path, offset: u64, bytes: &[u8]) -> bool {
        let mut s = self.lock();
        let Ok(Some(Entry::File(ino))) = s.lookup(path) else { return false };
        let Some(i) = s.inodes.get_mut(&ino) else { return false };
        let w = Pending::Write { offset, bytes: bytes.to_vec() };
        apply(&mut i.data, &w);
        apply(&mut i.durable, &w);
        true
    }
}

fn apply(data: &mut Vec<u8>, p: &Pending) {
    match p {
        Pending::Write { offset, bytes } => {
            let start = *offset as usize;
            let end = start + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[start..end].copy_from_slice(bytes);
        }
        Pending::SetLen(len) => data.resize(*len as usize, 0),
    }
}

struct SimFile {
    fs: SimFs,
    ino: u64,
    writable: bool,
}

impl VFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let s = self.fs.lock();
        let i = s.inodes.get(&self.ino).ok_or_else(|| io::Error::other("stale inode"))?;
        let start = (offset as usize).min(i.data.len());
        let n = buf.len().min(i.data.len() - start);
        buf[..n].copy_from_slice(&i.data[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "read-only handle"));
        }
        let mut s = self.fs.lock();
        s.step()?;
        let used = s.used_bytes();
        let cur = s.inodes.get(&self.ino).map(|i| i.data.len() as u64).unwrap_or(0);
        let grow = (offset + buf.len() as u64).saturating_sub(cur);
        if s.space_bytes.is_some_and(|max| used + grow > max) {
            return Err(io::Error::from_raw_os_error(28));
        }
        let i = s.inodes.get_mut(&self.ino).ok_or_else(|| io::Error::other("stale inode"))?;
        let p = Pending::Write { offset, bytes: buf.to_vec() };
        apply(&mut i.data, &p);
        i.pending.push(p);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.step()?;
        if s.fail_syncs {
            return Err(io::Error::from_raw_os_error(5));
        }
        let i = s.inodes.get_mut(&self.ino).ok_or_else(|| io::Error::other("stale inode"))?;
        for p in std::mem::take(&mut i.pending) {
            apply(&mut i.durable, &p);
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.fs.lock();
        Ok(s.inodes.get(&self.ino).map(|i| i.data.len() as u64).unwrap_or(0))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.step()?;
        let i = s.inodes.get_mut(&self.ino).ok_or_else(|| io::Error::other("stale inode"))?;
        let p = Pending::SetLen(len);
        apply(&mut i.data, &p);
        i.pending.push(p);
        Ok(())
    }
}

impl Vfs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VFile>> {
        let mut s = self.lock();
        let existing = s.lookup(path)?;
        let ino = match (mode, existing) {
            (_, Some(Entry::Dir)) => {
                return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{}", path.display())))
            }
            (OpenMode::Read | OpenMode::ReadWrite, Some(Entry::File(ino))) => ino,
            (OpenMode::Read | OpenMode::ReadWrite, None) => return Err(not_found(path)),
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{}", path.display())))
            }
            (OpenMode::Truncate, Some(Entry::File(ino))) => {
                s.step()?;
                let i = s.inodes.get_mut(&ino).ok_or_else(|| io::Error::other("stale inode"))?;
                let p = Pending::SetLen(0);
                apply(&mut i.data, &p);
                i.pending.push(p);
                ino
            }
            (OpenMode::CreateNew | OpenMode::Truncate, None) => {
                s.step()?;
                let (parent, name) = split(path)?;
                s.dir(&parent)?;
                let ino = s.next_inode;
                s.next_inode += 1;
                s.inodes.insert(ino, Inode::default());
                let d = s.dir_mut(&parent)?;
                d.entries.insert(name.clone(), Entry::File(ino));
                d.pending.push(DirOp::Link(name, Entry::File(ino)));
                ino
            }
        };
        Ok(Box::new(SimFile { fs: self.clone(), ino, writable: mode != OpenMode::Read }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let mut cur = PathBuf::from("/");
        for comp in path.components().skip(1) {
            let name = comp.as_os_str().to_string_lossy().into_owned();
            let child = cur.join(&name);
            if !s.dirs.contains_key(&child) {
                s.step()?;
                let d = s.dir_mut(&cur)?;
                d.entries.insert(name.clone(), Entry::Dir);
                d.pending.push(DirOp::Link(name, Entry::Dir));
                s.dirs.insert(child.clone(), Dir::default());
            }
            cur = child;
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let (pf, nf) = split(from)?;
        let (pt, nt) = split(to)?;
        if pf != pt {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "rename across directories"));
        }
        s.step()?;
        let d = s.dir_mut(&pf)?;
        let e = d.entries.remove(&nf).ok_or_else(|| not_found(from))?;
        d.entries.insert(nt.clone(), e);
        d.pending.push(DirOp::Rename(nf, nt));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let (parent, name) = split(path)?;
        if !matches!(s.dir(&parent)?.entries.get(&name), Some(Entry::File(_))) {
            return Err(not_found(path));
        }
        s.step()?;
        let d = s.dir_mut(&parent)?;
        d.entries.remove(&name);
        d.pending.push(DirOp::Unlink(name));
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        Ok(s.dir(path)?.entries.keys().cloned().collect())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.step()?;
        if s.fail_syncs {
            return Err(io::Error::from_raw_os_error(5));
        }
        let d = s.dir_mut(path)?;
        d.durable = d.entries.clone();
        d.pending.clear();
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let s = self.lock();
        matches!(s.lookup(path), Ok(Some(_))) || s.dirs.contains_key(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::write_atomic;

    fn never(_: u64) -> u64 {
        0
    }

    #[test]
    fn unsynced_data_and_names_are_lost() {
        let fs = SimFs::with_dirs(&["/d"]);
        let f = fs.open(Path::new("/d/a"), OpenMode::CreateNew).expect("create");
        f.write_all_at(b"hello", 0).expect("write");
        f.sync_data().expect("sync");
        // The data is durable but the name is not.
        let after = fs.after_power_loss(Loss::Unsynced, &mut never);
        assert!(!after.exists(Path::new("/d/a")));
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        f.write_all_at(b" world", 5).expect("write");
        let after = fs.after_power_loss(Loss::Unsynced, &mut never);
        assert_eq!(after.contents(Path::new("/d/a")).as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn write_atomic_leaves_old_or_new_never_a_mix() {
        let fs = SimFs::with_dirs(&["/d"]);
        let p = Path::new("/d/f");
        write_atomic(&fs, p, b"old").expect("first");
        let base = fs.ops();
        for crash in base..base + 6 {
            let fs2 = SimFs::with_dirs(&["/d"]);
            write_atomic(&fs2, p, b"old").expect("first");
            fs2.crash_at(crash);
            let _ = write_atomic(&fs2, p, b"new content");
            for loss in [Loss::Unsynced, Loss::Prefix, Loss::Torn] {
                for seed in 0..8u64 {
                    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let mut rand = |n: u64| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        (x >> 33) % n
                    };
                    let after = fs2.after_power_loss(loss, &mut rand);
                    let got = after.contents(p).expect("file exists");
                    assert!(got == b"old" || got == b"new content", "crash at {crash}: {got:?}");
                }
            }
        }
    }

    #[test]
    fn crash_point_stops_every_later_operation() {
        let fs = SimFs::with_dirs(&["/d"]);
        fs.crash_at(1);
        let f = fs.open(Path::new("/d/a"), OpenMode::CreateNew).expect("op 0 happens");
        assert!(f.write_all_at(b"x", 0).is_err());
        assert!(f.sync_data().is_err());
        assert!(fs.crashed());
    }

    #[test]
    fn full_disk_and_failing_syncs_are_errors() {
        let fs = SimFs::with_dirs(&["/d"]);
        fs.set_space(Some(4));
        let f = fs.open(Path::new("/d/a"), OpenMode::CreateNew).expect("create");
        f.write_all_at(b"1234", 0).expect("fits");
        let e = f.write_all_at(b"5", 4).expect_err("full");
        assert_eq!(e.raw_os_error(), Some(28));
        fs.fail_syncs(true);
        assert_eq!(f.sync_data().expect_err("eio").raw_os_error(), Some(5));
    }
}

/// A small seeded random source (xorshift64) for simulations and seeded tests: the same seed and
/// salt give the same sequence, so a failing run replays from its seed.
pub struct Dice(u64);

impl Dice {
    /// `salt` keeps the sequences of different simulations apart for the same seed.
    pub fn new(seed: u64, salt: u64) -> Dice {
        Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            self.0 % n
        }
    }

    /// True `per_thousand` times in a thousand.
    pub fn chance(&mut self, per_thousand: u64) -> bool {
        self.below(1_000) < per_thousand
    }
}

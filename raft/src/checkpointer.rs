//! The one owner of the checkpoint file: the log thread, the state writer and the node update it
//! in memory; [`Checkpointer::save`] writes it (atomically, durable on return) when it changed.
//! Saves are serialized, so a periodic save never writes an older view over an install's.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use minion_storage::checkpoint::{Checkpoint, CheckpointError};
use minion_storage::vfs::SharedVfs;

struct Inner {
    current: Checkpoint,
    saved: Checkpoint,
}

pub struct Checkpointer {
    vfs: SharedVfs,
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// Held across a save's disk writes (which can stall for as long as the disk does); `inner`
    /// never is, so updates — one comes from raft's core loop on every commit — never wait for a
    /// disk.
    saving: Mutex<()>,
}

impl Checkpointer {
    pub fn new(vfs: SharedVfs, dir: PathBuf, on_disk: Checkpoint) -> Checkpointer {
        Checkpointer {
            vfs,
            dir,
            inner: Mutex::new(Inner { current: on_disk.clone(), saved: on_disk }),
            saving: Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::poison::or_stop(self.inner.lock(), "checkpointer")
    }

    pub fn get(&self) -> Checkpoint {
        self.lock().current.clone()
    }

    /// Change it in memory; written by the next [`Checkpointer::save`].
    pub fn update(&self, f: impl FnOnce(&mut Checkpoint)) {
        f(&mut self.lock().current)
    }

    /// Write it if it changed. Durable on return. Blocking.
    pub fn save(&self) -> Result<(), CheckpointError> {
        let _one_at_a_time = crate::poison::or_stop(self.saving.lock(), "checkpoint save");
        let view = {
            let g = self.lock();
            if g.current == g.saved {
                return Ok(());
            }
            g.current.clone()
        };
        self.write(view)
    }

    /// Change it and write it at once. Durable on return. Blocking.
    pub fn update_and_save(&self, f: impl FnOnce(&mut Checkpoint)) -> Result<(), CheckpointError> {
        let _one_at_a_time = crate::poison::or_stop(self.saving.lock(), "checkpoint save");
        let view = {
            let mut g = self.lock();
            f(&mut g.current);
            g.current.clone()
        };
        self.write(view)
    }

    /// Write `view` (taken after every earlier save's, so never older than what is on disk) with
    /// no lock held that updates need.
    fn write(&self, view: Checkpoint) -> Result<(), CheckpointError> {
        view.save(&*self.vfs, &self.dir)?;
        self.lock().saved = view;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::Path;
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use minion_storage::vfs::{OpenMode, RealFs, VFile, Vfs};

    use super::*;

    /// The real file system, except that opening a file for writing waits until released: a
    /// disk that stalls.
    #[derive(Default)]
    struct Stalling {
        released: Mutex<bool>,
        wake: Condvar,
    }

    impl Vfs for Stalling {
        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VFile>> {
            if !matches!(mode, OpenMode::Read) {
                let mut r = self.released.lock().expect("lock");
                while !*r {
                    r = self.wake.wait(r).expect("wait");
                }
            }
            RealFs.open(path, mode)
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            RealFs.create_dir_all(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            RealFs.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            RealFs.remove_file(path)
        }
        fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
            RealFs.read_dir(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            RealFs.sync_dir(path)
        }
        fn exists(&self, path: &Path) -> bool {
            RealFs.exists(path)
        }
    }

    /// Defect: a save held the lock that updates take across its disk writes, and raft's core
    /// loop updates the checkpoint on every commit, so a stalled disk stalled raft (no heartbeats:
    /// an election). Updates must not wait for a save's disk.
    #[test]
    fn an_update_does_not_wait_for_a_stalled_save() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = Arc::new(Stalling::default());
        let cp = Arc::new(Checkpointer::new(disk.clone(), dir.path().to_path_buf(), Checkpoint::default()));
        cp.update(|c| c.log_durable = Some(5));
        let saver = {
            let cp = cp.clone();
            std::thread::spawn(move || cp.save())
        };
        std::thread::sleep(Duration::from_millis(100)); // the save is now stuck in `open`
        let (tx, rx) = std::sync::mpsc::channel();
        let updater = {
            let cp = cp.clone();
            std::thread::spawn(move || {
                cp.update(|c| c.log_durable = Some(6));
                let _ = tx.send(cp.get().log_durable);
            })
        };
        let seen = rx.recv_timeout(Duration::from_secs(5));
        *disk.released.lock().expect("lock") = true;
        disk.wake.notify_all();
        saver.join().expect("saver").expect("save");
        updater.join().expect("updater");
        assert_eq!(seen, Ok(Some(6)), "the update waited for the stalled disk");
        // The later view is written by the next save, never lost behind the stalled one.
        cp.save().expect("save");
        let on_disk = Checkpoint::load(&RealFs, dir.path()).expect("load");
        assert_eq!(on_disk.and_then(|c| c.log_durable), Some(6));
    }
}

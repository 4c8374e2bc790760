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
}

impl Checkpointer {
    pub fn new(vfs: SharedVfs, dir: PathBuf, on_disk: Checkpoint) -> Checkpointer {
        Checkpointer { vfs, dir, inner: Mutex::new(Inner { current: on_disk.clone(), saved: on_disk }) }
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
        let mut g = self.lock();
        if g.current == g.saved {
            return Ok(());
        }
        g.current.save(&*self.vfs, &self.dir)?;
        g.saved = g.current.clone();
        Ok(())
    }

    /// Change it and write it at once. Durable on return. Blocking.
    pub fn update_and_save(&self, f: impl FnOnce(&mut Checkpoint)) -> Result<(), CheckpointError> {
        let mut g = self.lock();
        f(&mut g.current);
        g.current.save(&*self.vfs, &self.dir)?;
        g.saved = g.current.clone();
        Ok(())
    }
}

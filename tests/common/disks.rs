//! File systems of a test's own: a loop-mounted ext4 that can be frozen (`fsfreeze`: every write
//! and sync on it blocks, a stalled disk), and a small tmpfs that can be filled (a full disk).
//! Both need root; both are unmounted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> bool {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&uid.stdout).trim() == "0"
}

pub fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(st.success(), "{args:?}: {st}");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// An ext4 file system on a loop device.
pub struct LoopFs(pub PathBuf);

impl LoopFs {
    pub fn mount(image: &Path, at: &Path) -> LoopFs {
        std::fs::create_dir_all(at).expect("mount point");
        sh(&["truncate", "-s", "512M", path(image)]);
        sh(&["mkfs.ext4", "-q", "-F", path(image)]);
        sh(&["mount", "-o", "loop", path(image), path(at)]);
        LoopFs(at.to_path_buf())
    }

    /// Freeze it until the value returned is dropped.
    pub fn freeze(&self) -> Frozen {
        sh(&["fsfreeze", "-f", path(&self.0)]);
        Frozen(self.0.clone())
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).status();
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `fsfreeze -f` on a file system until dropped.
pub struct Frozen(PathBuf);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).status();
    }
}

/// A tmpfs of a fixed size.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        sh(&["mount", "-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs", path(at)]);
        Tmpfs(at.to_path_buf())
    }

    pub fn free(&self) -> u64 {
        let out = Command::new("stat").args(["-f", "-c", "%a %S"]).arg(&self.0).output().expect("stat -f");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(|n| n.parse::<u64>().expect("number"));
        it.next().expect("blocks") * it.next().expect("block size")
    }

    /// Take all but `leave` bytes of the free space with a file.
    pub fn fill(&self, name: &str, leave: u64) -> PathBuf {
        let f = self.0.join(name);
        let take = self.free().saturating_sub(leave).max(4096);
        sh(&["fallocate", "-l", &take.to_string(), path(&f)]);
        f
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

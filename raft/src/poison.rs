//! A lock poisoned by a panic guards state the panic may have left half-changed (an entry half
//! applied, a snapshot directory half published). Serving reads or applying further entries on it
//! could make this replica differ from the others, so the process stops instead; the next start
//! rebuilds the state from the last durable point and the log.

use std::sync::LockResult;

/// The exit status of a node stopped this way (as for raft's fatal errors).
pub const EXIT_POISONED: i32 = 70;

/// The guard, or stop the process if a panic poisoned the lock.
pub fn or_stop<G>(r: LockResult<G>, what: &str) -> G {
    match r {
        Ok(g) => g,
        Err(_) => {
            tracing::error!(
                lock = what,
                "a panic left this lock poisoned and its state possibly half-changed; stopping the node \
                 (the next start rebuilds the state from the log)"
            );
            std::process::exit(EXIT_POISONED)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use super::*;

    /// Runs itself as a child process (the child poisons a lock and takes it again).
    #[test]
    fn a_poisoned_lock_stops_the_process() {
        if std::env::var_os("MINION_POISON_CHILD").is_some() {
            let lock = Arc::new(RwLock::new(0u32));
            let l = lock.clone();
            let _ = std::thread::spawn(move || {
                let _g = l.write().expect("first writer");
                panic!("a panic while holding the lock");
            })
            .join();
            let _g = or_stop(lock.read(), "test");
            std::process::exit(0); // reused the poisoned state: the parent sees 0 and fails
        }
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "poison::tests::a_poisoned_lock_stops_the_process", "--test-threads", "1"])
            .env("MINION_POISON_CHILD", "1")
            .output()
            .expect("run the child");
        assert_eq!(out.status.code(), Some(EXIT_POISONED), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

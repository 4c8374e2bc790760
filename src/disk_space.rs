//! A reserve of free disk space (measured here; `api::disk` refuses the requests): when the file
//! system holding the data directory has less free than `disk_reserve_mb`, the node refuses new
//! work (`507 disk_full`) before it reaches the log, and takes it again once space returns, by
//! itself. Reads, finishing work and entries the leader replicates go on into the reserve
//! (Elasticsearch's flood-stage watermark and etcd's space quota work alike). Only a disk that
//! fills past the reserve makes a write fail, and a failed write stops the node (it restarts from
//! what was synced; docs/reliability.md#full-disks). Ingest adapters submit without HTTP and are
//! not held back by the reserve.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const MIB: u64 = 1 << 20;

#[derive(Default)]
pub struct DiskSpace {
    low: AtomicBool,
    free: AtomicU64,
}

impl DiskSpace {
    pub fn low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// Record a reading: low below the reserve, and low until a tenth of it above (so that a
    /// disk hovering at the line does not flap).
    pub fn observe(&self, free: u64, reserve: u64) {
        self.free.store(free, Ordering::Relaxed);
        let was = self.low();
        let low = if was { free < reserve.saturating_add(reserve / 10) } else { free < reserve };
        if low != was {
            self.low.store(low, Ordering::Relaxed);
            if low {
                tracing::warn!(
                    free_mib = free / MIB,
                    reserve_mib = reserve / MIB,
                    "disk space below the reserve: refusing writes"
                );
            } else {
                tracing::info!(free_mib = free / MIB, "disk space back above the reserve: taking writes");
            }
        }
        metrics::gauge!("minion_disk_free_bytes").set(free as f64);
        metrics::gauge!("minion_disk_low").set(if low { 1.0 } else { 0.0 });
    }

    /// Measure the data directory's file system every `every` (a reserve of 0 turns it off).
    pub async fn run(self: Arc<Self>, dir: PathBuf, reserve_mb: u64, every: Duration) {
        if reserve_mb == 0 {
            return;
        }
        let reserve = reserve_mb.saturating_mul(MIB);
        loop {
            let d = dir.clone();
            match tokio::task::spawn_blocking(move || fs2::available_space(&d)).await {
                Ok(Ok(free)) => self.observe(free, reserve),
                Ok(Err(e)) => tracing::warn!(error = %e, dir = %dir.display(), "cannot measure free disk space"),
                Err(_) => return,
            }
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_below_the_reserve_and_until_a_tenth_above_it() {
        let d = DiskSpace::default();
        let r = 100 * MIB;
        d.observe(150 * MIB, r);
        assert!(!d.low());
        d.observe(99 * MIB, r);
        assert!(d.low());
        d.observe(105 * MIB, r);
        assert!(d.low(), "still within the hysteresis");
        d.observe(110 * MIB, r);
        assert!(!d.low());
        assert_eq!(d.free_bytes(), 110 * MIB);
    }
}

//! Adapter status as the adapters report it (`PUT /v1/adapters/{name}` every second): ingest
//! adapters embedded in a node or running as `minion ingest ...` elsewhere. The leader keeps the
//! latest report of each in memory; a report older than [`STALE_AFTER`] marks the adapter as not
//! running.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A report older than this means the adapter stopped (or cannot reach the cluster).
pub const STALE_AFTER: Duration = Duration::from_secs(10);
const ADAPTERS_MAX: usize = 1_000;
const REPORT_BYTES_MAX: usize = 16 << 10;

#[derive(Clone, Default)]
pub struct Adapters {
    inner: Arc<Mutex<BTreeMap<String, (Instant, Value)>>>,
}

impl Adapters {
    pub fn report(&self, name: &str, status: Value) -> Result<(), String> {
        minion_engine::config::validate_queue_name(name).map_err(|r| format!("adapter name: {}", r.message))?;
        if !status.is_object() {
            return Err("the status must be a JSON object".into());
        }
        if status.to_string().len() > REPORT_BYTES_MAX {
            return Err(format!("the status is over {REPORT_BYTES_MAX} bytes"));
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Forget adapters silent for an hour before refusing new names.
        g.retain(|_, (at, _)| at.elapsed() < Duration::from_secs(3_600));
        if g.len() >= ADAPTERS_MAX && !g.contains_key(name) {
            return Err(format!("at most {ADAPTERS_MAX} adapters report at once"));
        }
        g.insert(name.to_string(), (Instant::now(), status));
        Ok(())
    }

    /// Every adapter's last report, with its name, age, and `running` false once stale.
    pub fn list(&self) -> Vec<Value> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.iter()
            .map(|(name, (at, status))| {
                let mut v = status.clone();
                let stale = at.elapsed() > STALE_AFTER;
                if let Some(o) = v.as_object_mut() {
                    o.insert("name".into(), json!(name));
                    o.insert("reported_ms_ago".into(), json!(at.elapsed().as_millis() as u64));
                    if stale {
                        o.insert("running".into(), json!(false));
                    }
                }
                v
            })
            .collect()
    }
}

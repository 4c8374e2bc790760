//! Replicated configuration: engine-wide defaults and per-queue overrides.
//!
//! Both live in the state machine (set through commands), so every replica applies the same rules.

use serde::{Deserialize, Serialize};

use crate::command::Rejection;
use crate::dispatch::Strategy;

pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// Hard bounds the engine enforces whatever the configuration says.
pub mod limits {
    pub const QUEUE_NAME_BYTES_MAX: usize = 128;
    pub const KIND_BYTES_MAX: usize = 128;
    pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 512;
    pub const CAPABILITIES_MAX: usize = 32;
    pub const CAPABILITY_BYTES_MAX: usize = 64;
    pub const AGENT_ID_BYTES_MAX: usize = 128;
    pub const ATTEMPTS_MAX: u32 = 1_000;
    pub const LEASE_MS_MIN: u64 = 100;
    pub const LEASE_MS_MAX: u64 = 7 * super::DAY_MS;
    pub const CLAIM_TASKS_MAX: u32 = 1_000;
    pub const SUBMIT_BATCH_MAX: usize = 10_000;
    /// Tasks completed or failed by one acknowledgement request (as many as one claim leases).
    pub const ACK_BATCH_MAX: usize = 1_000;
    pub const PROGRESS_MESSAGE_BYTES_MAX: usize = 4_096;
    pub const ERROR_BYTES_MAX: usize = 16_384;
    /// Progress events kept per task; older ones are dropped and counted.
    pub const PROGRESS_EVENTS_MAX: usize = 1_000;
    /// Ready tasks a claim inspects per queue looking for a capability match.
    /// Finished tasks and dedup keys removed per applied entry; the rest go on the next one.
    pub const SWEEP_PER_ENTRY_MAX: usize = 10_000;
    pub const TTL_MS_MAX: u64 = 365 * super::DAY_MS;
    pub const AGENT_CONCURRENCY_MAX: u32 = 100_000;
    pub const AGENT_LABELS_MAX: usize = 64;
    pub const AGENT_LABEL_BYTES_MAX: usize = 256;
}

/// Per-queue settings. Any field left `None` falls back to [`EngineConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub max_attempts: Option<u32>,
    pub lease_ms: Option<u64>,
    pub dedup_ttl_ms: Option<u64>,
    pub retry_base_ms: Option<u64>,
    pub retry_max_ms: Option<u64>,
    pub retention_ms: Option<u64>,
    pub payload_bytes_max: Option<u64>,
    /// Release a leased task when its holder reports no progress for this long.
    pub stall_timeout_ms: Option<u64>,
    /// How the leader picks among agents waiting for this queue's tasks.
    pub strategy: Option<Strategy>,
}

/// Engine-wide defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub max_attempts: u32,
    pub lease_ms: u64,
    pub dedup_ttl_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How long succeeded, dead and cancelled tasks stay in the ledger.
    pub retention_ms: u64,
    pub payload_bytes_max: u64,
    /// The dispatch strategy of queues that set none.
    pub strategy: Strategy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_attempts: 3,
            lease_ms: 30_000,
            dedup_ttl_ms: DAY_MS,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            retention_ms: 7 * DAY_MS,
            payload_bytes_max: 1 << 20,
            strategy: Strategy::RoundRobin,
        }
    }
}

fn check_range(field: &str, v: u64, min: u64, max: u64) -> Result<(), Rejection> {
    if v < min || v > max {
        return Err(Rejection::invalid(format!("{field} must be between {min} and {max}, got {v}")));
    }
    Ok(())
}

impl EngineConfig {
    pub fn validate(&self) -> Result<(), Rejection> {
        check_range("max_attempts", self.max_attempts as u64, 1, limits::ATTEMPTS_MAX as u64)?;
        check_range("lease_ms", self.lease_ms, limits::LEASE_MS_MIN, limits::LEASE_MS_MAX)?;
        check_range("dedup_ttl_ms", self.dedup_ttl_ms, 1, limits::TTL_MS_MAX)?;
        check_range("retry_base_ms", self.retry_base_ms, 0, limits::TTL_MS_MAX)?;
        check_range("retry_max_ms", self.retry_max_ms, self.retry_base_ms, limits::TTL_MS_MAX)?;
        check_range("retention_ms", self.retention_ms, 0, 10 * limits::TTL_MS_MAX)?;
        check_range("payload_bytes_max", self.payload_bytes_max, 2, 64 << 20)?;
        Ok(())
    }

    /// The effective settings of a queue: its overrides over these defaults.
    pub fn resolve(&self, q: Option<&QueueConfig>) -> EngineConfig {
        let Some(q) = q else { return self.clone() };
        EngineConfig {
            max_attempts: q.max_attempts.unwrap_or(self.max_attempts),
            lease_ms: q.lease_ms.unwrap_or(self.lease_ms),
            dedup_ttl_ms: q.dedup_ttl_ms.unwrap_or(self.dedup_ttl_ms),
            retry_base_ms: q.retry_base_ms.unwrap_or(self.retry_base_ms),
            retry_max_ms: q.retry_max_ms.unwrap_or(self.retry_max_ms),
            retention_ms: q.retention_ms.unwrap_or(self.retention_ms),
            payload_bytes_max: q.payload_bytes_max.unwrap_or(self.payload_bytes_max),
            strategy: q.strategy.unwrap_or(self.strategy),
        }
    }
}

/// Queue names: 1–128 bytes of `[A-Za-z0-9_.:-]`, so they are safe in URLs, metrics labels and keys.
/// An agent id: 1 to [`limits::AGENT_ID_BYTES_MAX`] bytes.
pub fn validate_agent_id(id: &str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > limits::AGENT_ID_BYTES_MAX {
        return Err(Rejection::invalid(format!("agent_id must be 1 to {} bytes", limits::AGENT_ID_BYTES_MAX)));
    }
    Ok(())
}

pub fn validate_queue_name(name: &str) -> Result<(), Rejection> {
    if name.is_empty() || name.len() > limits::QUEUE_NAME_BYTES_MAX {
        return Err(Rejection::invalid(format!("queue name must be 1 to {} bytes", limits::QUEUE_NAME_BYTES_MAX)));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')) {
        return Err(Rejection::invalid(format!(
            "queue name {name:?} may only contain letters, digits, '_', '-', '.', ':'"
        )));
    }
    Ok(())
}

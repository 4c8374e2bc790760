//! Agents: the registry record, its status and the statistics dispatch strategies read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::task::TimeMs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Receives work.
    Active,
    /// Receives nothing new; keeps its in-flight tasks.
    Draining,
    /// Missed its heartbeats or was deregistered; its leases were released.
    Dead,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Draining => "draining",
            AgentStatus::Dead => "dead",
        }
    }
}

/// Outcome counts and completion latency for one capability (or `*` for tasks requiring none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeStats {
    pub completed: u64,
    pub failed: u64,
    /// Exponentially weighted moving average of lease-to-completion time (α = 1/8), in ms.
    pub latency_ewma_ms: u64,
}

/// The weight of a new sample in the latency EWMA is 1/`EWMA_DIVISOR`; integer arithmetic keeps
/// every replica's figure identical.
pub const EWMA_DIVISOR: u64 = 8;

impl OutcomeStats {
    pub fn record(&mut self, success: bool, latency_ms: u64) {
        if success {
            self.latency_ewma_ms = if self.completed == 0 {
                latency_ms
            } else {
                (self.latency_ewma_ms * (EWMA_DIVISOR - 1) + latency_ms) / EWMA_DIVISOR
            };
            self.completed += 1;
        } else {
            self.failed += 1;
        }
    }

    /// Laplace-smoothed success rate in parts per million: (completed + 1) / (attempts + 2).
    pub fn success_ppm(&self) -> u64 {
        (self.completed + 1) * 1_000_000 / (self.completed + self.failed + 2)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStats {
    pub in_flight: u32,
    pub overall: OutcomeStats,
    pub by_capability: BTreeMap<String, OutcomeStats>,
}

/// The bucket that tasks requiring no capability count under.
pub const ANY_CAPABILITY: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub labels: BTreeMap<String, String>,
    pub status: AgentStatus,
    /// Changes on every registration; leases of an earlier incarnation were released.
    pub incarnation: u64,
    pub registered_ms: TimeMs,
    pub updated_ms: TimeMs,
    pub stats: AgentStats,
}

impl Agent {
    pub fn has_capabilities(&self, required: &[String]) -> bool {
        required.iter().all(|c| self.capabilities.contains(c))
    }

    /// Free lease slots.
    pub fn free_slots(&self) -> u32 {
        self.max_concurrency.saturating_sub(self.stats.in_flight)
    }
}

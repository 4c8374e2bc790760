//! Leader-side autoscaling: evaluate each configured pool on an interval and keep its decisions.
//!
//! A pool is a set of queues and capabilities (from the server's config). Its workers are the live
//! agents labelled `pool=<name>` (the process pool and `minion worker --label pool=<name>` set it)
//! and, when the pool names capabilities, unlabelled agents that have all of them.
//! Every evaluation's decision — desired and previous count, the rule that fired, the inputs — is
//! kept (the last `DECISIONS_KEPT` per pool), served by `GET /v1/autoscaler` and exported as metrics.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minion_engine::autoscale::{Autoscaler, Decision, Policy, Preset, Signals};
use minion_engine::AgentStatus;
use serde::{Deserialize, Serialize};

use minion_raft::SharedState;

use crate::clock::now_ms;
use crate::proposer::Proposer;

/// Decisions kept per pool.
pub const DECISIONS_KEPT: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    pub queues: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// `conservative`, `aggressive` or `cost_optimized`; `policy` fields override it.
    #[serde(default)]
    pub preset: Option<Preset>,
    #[serde(default)]
    pub policy: Option<Policy>,
}

impl PoolConfig {
    pub fn effective_policy(&self) -> Policy {
        self.policy.unwrap_or_else(|| self.preset.unwrap_or(Preset::Conservative).policy())
    }
}

struct PoolState {
    config: PoolConfig,
    scaler: Autoscaler,
    decisions: VecDeque<Decision>,
    /// Counter readings at the previous evaluation, for arrival and completion rates.
    last_counts: Option<(u64, u64, u64)>,
}

#[derive(Clone, Default)]
pub struct Autoscalers {
    pools: Arc<Mutex<BTreeMap<String, PoolState>>>,
}

#[derive(Debug, Serialize)]
pub struct PoolView {
    pub name: String,
    pub queues: Vec<String>,
    pub capabilities: Vec<String>,
    pub policy: Policy,
    pub desired: u32,
    pub current: u32,
    pub last_decision: Option<Decision>,
}

impl Autoscalers {
    pub fn new(pools: &[PoolConfig]) -> Self {
        let map = pools
            .iter()
            .map(|p| {
                let state = PoolState {
                    config: p.clone(),
                    scaler: Autoscaler::new(p.effective_policy()),
                    decisions: VecDeque::new(),
                    last_counts: None,
                };
                (p.name.clone(), state)
            })
            .collect();
        Autoscalers { pools: Arc::new(Mutex::new(map)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PoolState>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn views(&self) -> Vec<PoolView> {
        self.lock()
            .values()
            .map(|p| {
                let last = p.decisions.back().copied();
                PoolView {
                    name: p.config.name.clone(),
                    queues: p.config.queues.clone(),
                    capabilities: p.config.capabilities.clone(),
                    policy: p.scaler.policy,
                    desired: last.map(|d| d.desired).unwrap_or(p.scaler.policy.min_workers),
                    current: last.map(|d| d.signals.current).unwrap_or(0),
                    last_decision: last,
                }
            })
            .collect()
    }

    pub fn decisions(&self, pool: &str, limit: usize) -> Option<Vec<Decision>> {
        let g = self.lock();
        let p = g.get(pool)?;
        Some(p.decisions.iter().rev().take(limit).copied().collect())
    }

    /// One evaluation of every pool from the applied state. Returns (pool, decision) pairs.
    pub fn evaluate(&self, state: &SharedState, interval_s: f64) -> Vec<(String, Decision)> {
        let mut made = Vec::new();
        let now = now_ms();
        let g = state.read();
        let engine = &g.engine;
        let mut pools = self.lock();
        for p in pools.values_mut() {
            let mut s = Signals { now_ms: now, ..Signals::default() };
            let (mut submitted, mut finished) = (0u64, 0u64);
            for q in &p.config.queues {
                let st = engine.queue_stats(q);
                s.ready += st.ready;
                s.delayed += st.delayed;
                s.in_flight += st.leased;
                s.oldest_ready_age_ms = s.oldest_ready_age_ms.max(st.oldest_ready_age_ms);
                finished += st.succeeded + st.dead + st.cancelled;
                submitted += st.ready + st.delayed + st.leased + st.failed + st.succeeded + st.dead + st.cancelled;
            }
            let (mut busy, mut slots) = (0u64, 0u64);
            for a in engine.agents() {
                // Labelled members, or (for a pool that names capabilities) unlabelled agents
                // that have all of them.
                let in_pool = match a.labels.get("pool") {
                    Some(l) => *l == p.config.name,
                    None => !p.config.capabilities.is_empty() && a.has_capabilities(&p.config.capabilities),
                };
                if !in_pool || a.status != AgentStatus::Active {
                    continue;
                }
                s.current += 1;
                busy += a.stats.in_flight as u64;
                slots += a.max_concurrency as u64;
                if a.stats.in_flight == 0 {
                    s.idle_agents += 1;
                }
            }
            s.utilization = if slots == 0 {
                if s.ready > 0 {
                    1.0
                } else {
                    0.0
                }
            } else {
                busy as f64 / slots as f64
            };
            if let Some((prev_sub, prev_fin, _)) = p.last_counts {
                s.arrival_per_s = submitted.saturating_sub(prev_sub) as f64 / interval_s;
                s.completion_per_s = finished.saturating_sub(prev_fin) as f64 / interval_s;
            }
            p.last_counts = Some((submitted, finished, now));
            let d = p.scaler.evaluate(s);
            if d.desired != d.previous {
                tracing::info!(pool = %p.config.name, previous = d.previous, desired = d.desired, rule = ?d.rule, "autoscaler decision");
            }
            metrics::gauge!("minion_autoscaler_desired_workers", "pool" => p.config.name.clone()).set(d.desired as f64);
            metrics::gauge!("minion_autoscaler_current_workers", "pool" => p.config.name.clone())
                .set(d.previous as f64);
            metrics::counter!("minion_autoscaler_decisions_total", "pool" => p.config.name.clone(), "rule" => format!("{:?}", d.rule).to_lowercase())
                .increment(1);
            if p.decisions.len() == DECISIONS_KEPT {
                p.decisions.pop_front();
            }
            p.decisions.push_back(d);
            made.push((p.config.name.clone(), d));
        }
        made
    }

    /// Evaluate on the leader every `interval`; POST each decision to the webhook, if any.
    pub async fn run(self, leader: Proposer, state: SharedState, webhook: Option<String>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        loop {
            tick.tick().await;
            if !leader.is_leader() || self.lock().is_empty() {
                continue;
            }
            let made = self.evaluate(&state, interval.as_secs_f64());
            if let Some(url) = webhook.clone() {
                let http = http.clone();
                // Off the evaluation loop: a slow receiver delays no decision.
                tokio::spawn(async move {
                    for (pool, d) in made {
                        let body = serde_json::json!({ "pool": pool, "decision": d });
                        match http.post(&url).json(&body).send().await {
                            Ok(r) if r.status().is_success() => {}
                            Ok(r) => {
                                tracing::warn!(status = %r.status(), %url, "autoscaler webhook refused a decision")
                            }
                            Err(e) => tracing::warn!(error = %e, %url, "autoscaler webhook unreachable"),
                        }
                    }
                });
            }
        }
    }
}

//! Dispatch: which of several waiting agents gets a task that just became ready.
//!
//! Pure selection over candidates and their statistics. The small amount of memory the strategies
//! need (round-robin cursors, smooth-weighted-round-robin credits, the random generator) lives in a
//! [`Dispatcher`] owned by the leader; it is not replicated, since a new leader starting its
//! rotation afresh breaks no guarantee.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::{OutcomeStats, ANY_CAPABILITY};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Waiting agents in turn, by agent id.
    #[default]
    RoundRobin,
    /// Fewest in-flight tasks relative to capacity.
    LeastLoaded,
    /// Uniformly at random.
    Random,
    /// Highest success rate × throughput on the task's required capabilities.
    CapabilityBest,
    /// Lowest completion-latency EWMA (agents without history first, to learn them).
    LatencyBased,
    /// Smooth weighted round robin; weights from observed success rate and throughput.
    WeightedRoundRobin,
}

impl Strategy {
    pub const ALL: [Strategy; 6] = [
        Strategy::RoundRobin,
        Strategy::LeastLoaded,
        Strategy::Random,
        Strategy::CapabilityBest,
        Strategy::LatencyBased,
        Strategy::WeightedRoundRobin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastLoaded => "least_loaded",
            Strategy::Random => "random",
            Strategy::CapabilityBest => "capability_best",
            Strategy::LatencyBased => "latency_based",
            Strategy::WeightedRoundRobin => "weighted_round_robin",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// One waiting agent as the strategies see it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub agent_id: &'a str,
    pub in_flight: u32,
    /// Lease slots in all (≥ 1).
    pub capacity: u32,
    pub overall: &'a OutcomeStats,
    /// Statistics per capability, for `capability_best`.
    pub by_capability: Option<&'a BTreeMap<String, OutcomeStats>>,
}

/// Throughput proxy: completions per second implied by the latency EWMA (1 ms floor), in ppm.
fn rate_ppm(s: &OutcomeStats) -> u64 {
    1_000_000_000 / s.latency_ewma_ms.max(1)
}

/// success (ppm) × rate — an agent that is both reliable and fast scores highest. Agents without
/// history score as if they had one quick success, so they get tried.
fn score(s: &OutcomeStats) -> u128 {
    let rate = if s.completed == 0 { 1_000_000 } else { rate_ppm(s) };
    s.success_ppm() as u128 * rate as u128
}

/// Weight for smooth weighted round robin: success rate × speed relative to 1 s, in 1..=1000.
pub fn wrr_weight(s: &OutcomeStats) -> i64 {
    if s.completed + s.failed == 0 {
        return 100;
    }
    let speed = 1_000 / s.latency_ewma_ms.clamp(1, 1_000) as i64; // 1..=1000 per second
    let w = s.success_ppm() as i64 * speed / 1_000_000 * 10;
    w.clamp(1, 1_000)
}

/// Leader-local strategy memory.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    /// Per queue: the agent id picked last by round robin.
    rr_last: BTreeMap<String, String>,
    /// Per queue and agent: smooth-WRR current weight.
    wrr_current: BTreeMap<String, BTreeMap<String, i64>>,
    rng: u64,
    /// Selections made per strategy, for metrics.
    pub selections: BTreeMap<Strategy, u64>,
}

impl Dispatcher {
    pub fn new(seed: u64) -> Self {
        Dispatcher {
            rr_last: BTreeMap::new(),
            wrr_current: BTreeMap::new(),
            rng: seed | 1,
            selections: BTreeMap::new(),
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Index into `candidates` of the agent that gets a task of `queue` requiring `capabilities`.
    /// Candidates must be eligible (capable, active, with a free slot); `None` when there are none.
    pub fn pick(
        &mut self,
        queue: &str,
        strategy: Strategy,
        capabilities: &[String],
        candidates: &[Candidate<'_>],
    ) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let chosen = match strategy {
            Strategy::RoundRobin => self.round_robin(queue, candidates),
            Strategy::LeastLoaded => self.least_loaded(queue, candidates),
            Strategy::Random => (self.next_random() % candidates.len() as u64) as usize,
            Strategy::CapabilityBest => capability_best(capabilities, candidates),
            Strategy::LatencyBased => latency_based(candidates),
            Strategy::WeightedRoundRobin => self.weighted_round_robin(queue, candidates),
        };
        *self.selections.entry(strategy).or_default() += 1;
        if matches!(strategy, Strategy::RoundRobin | Strategy::LeastLoaded) {
            match self.rr_last.get_mut(queue) {
                Some(last) => {
                    last.clear();
                    last.push_str(candidates[chosen].agent_id);
                }
                None => {
                    self.rr_last.insert(queue.to_string(), candidates[chosen].agent_id.to_string());
                }
            }
        }
        Some(chosen)
    }

    /// The first candidate (in agent id order) after the one picked last time, wrapping around.
    fn round_robin(&self, queue: &str, candidates: &[Candidate<'_>]) -> usize {
        let last = self.rr_last.get(queue).map(String::as_str);
        let mut best_after: Option<usize> = None;
        let mut smallest: usize = 0;
        for (i, c) in candidates.iter().enumerate() {
            if c.agent_id < candidates[smallest].agent_id {
                smallest = i;
            }
            if last.is_some_and(|l| c.agent_id > l) && best_after.is_none_or(|b| c.agent_id < candidates[b].agent_id) {
                best_after = Some(i);
            }
        }
        best_after.unwrap_or(smallest)
    }

    /// Lowest in-flight/capacity; ties rotate round-robin so equal agents share evenly.
    fn least_loaded(&self, queue: &str, candidates: &[Candidate<'_>]) -> usize {
        // a.in_flight / a.capacity compared without division.
        let less = |a: &Candidate<'_>, b: &Candidate<'_>| {
            (a.in_flight as u64 * b.capacity.max(1) as u64) < (b.in_flight as u64 * a.capacity.max(1) as u64)
        };
        let mut min = 0;
        for (i, c) in candidates.iter().enumerate().skip(1) {
            if less(c, &candidates[min]) {
                min = i;
            }
        }
        let tied: Vec<usize> = (0..candidates.len()).filter(|&i| !less(&candidates[min], &candidates[i])).collect();
        let subset: Vec<Candidate<'_>> = tied.iter().map(|&i| candidates[i]).collect();
        tied[self.round_robin(queue, &subset)]
    }

    fn weighted_round_robin(&mut self, queue: &str, candidates: &[Candidate<'_>]) -> usize {
        if !self.wrr_current.contains_key(queue) {
            self.wrr_current.insert(queue.to_string(), BTreeMap::new());
        }
        let Some(current) = self.wrr_current.get_mut(queue) else { return 0 };
        // Forget agents that stopped waiting (amortised: only when the map has grown well past
        // the candidate set), so a returning agent starts even.
        if current.len() > 2 * candidates.len() + 16 {
            current.retain(|id, _| candidates.iter().any(|c| c.agent_id == id));
        }
        let mut total = 0i64;
        let mut best = 0usize;
        let mut best_value = i64::MIN;
        for (i, c) in candidates.iter().enumerate() {
            let w = wrr_weight(c.overall);
            total += w;
            let v = match current.get_mut(c.agent_id) {
                Some(v) => v,
                None => current.entry(c.agent_id.to_string()).or_insert(0),
            };
            *v += w;
            if *v > best_value || (*v == best_value && c.agent_id < candidates[best].agent_id) {
                best_value = *v;
                best = i;
            }
        }
        if let Some(v) = current.get_mut(candidates[best].agent_id) {
            *v -= total;
        }
        best
    }
}

fn capability_best(capabilities: &[String], candidates: &[Candidate<'_>]) -> usize {
    let stats_for = |c: &Candidate<'_>| -> u128 {
        let Some(map) = c.by_capability else { return score(c.overall) };
        if capabilities.is_empty() {
            return map.get(ANY_CAPABILITY).map(score).unwrap_or_else(|| score(&OutcomeStats::default()));
        }
        // The weakest of the required capabilities decides.
        capabilities
            .iter()
            .map(|cap| map.get(cap).map(score).unwrap_or_else(|| score(&OutcomeStats::default())))
            .min()
            .unwrap_or(0)
    };
    let mut best = 0;
    let mut best_score = stats_for(&candidates[0]);
    for (i, c) in candidates.iter().enumerate().skip(1) {
        let s = stats_for(c);
        if s > best_score || (s == best_score && c.agent_id < candidates[best].agent_id) {
            best = i;
            best_score = s;
        }
    }
    best
}

fn latency_based(candidates: &[Candidate<'_>]) -> usize {
    let key = |c: &Candidate<'_>| if c.overall.completed == 0 { 0 } else { c.overall.latency_ewma_ms.max(1) };
    let mut best = 0;
    for (i, c) in candidates.iter().enumerate().skip(1) {
        let b = &candidates[best];
        if key(c) < key(b) || (key(c) == key(b) && c.agent_id < b.agent_id) {
            best = i;
        }
    }
    best
}

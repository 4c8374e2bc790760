//! Leader-side dispatch and agent liveness.
//!
//! - **Liveness** stays on the leader: heartbeats (and claims) update an in-memory map; only
//!   transitions (registered, draining, dead) go through the raft log. A new leader has no
//!   heartbeat history, so it gives every agent a full timeout from the moment it took over
//!   before declaring it dead.
//! - **Dispatch**: a claim that finds nothing waits in the hub. When tasks become ready, the
//!   queue's strategy picks which waiting agent gets them, and the leader proposes that agent's
//!   claim.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minion_engine::{AgentStatus, Candidate, Command, Dispatcher, Outcome, OutcomeStats, Strategy, TaskRecord};
use tokio::sync::oneshot;

use minion_raft::SharedState;

use crate::clock::now_ms;
use crate::clock::LeaderClock;
use crate::proposer::{ProposeError, Proposer};

/// A claim waiting for work.
struct Waiter {
    id: u64,
    agent_id: String,
    queues: Vec<String>,
    capabilities: Vec<String>,
    max: u32,
    /// After this the waiter is not queued again.
    deadline: tokio::time::Instant,
    tx: oneshot::Sender<Vec<TaskRecord>>,
}

#[derive(Default)]
struct HubState {
    waiters: Vec<Waiter>,
    next_id: u64,
    /// agent id → when this node last heard from it.
    last_seen: HashMap<String, Instant>,
    /// When this node last became leader; heartbeat timeouts count from no earlier than this.
    leader_since: Option<Instant>,
}

/// Waiting claims, dispatch and liveness, on the handles they need: the proposer, the applied
/// state they read, and the leader's clock. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    hub: Arc<Mutex<HubState>>,
    dispatcher: Arc<Mutex<Dispatcher>>,
    proposer: Proposer,
    state: SharedState,
    clock: Arc<LeaderClock>,
}

/// When agents are declared dead, and when dead ones are forgotten.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub heartbeat_timeout_ms: u64,
    /// 0: never.
    pub forget_after_ms: u64,
}

/// What a registered claim gets back. Dropping it (the request went away) withdraws the waiter;
/// tasks claimed for it afterwards find the receiver gone and are released unused.
pub struct Registration {
    pub id: u64,
    pub rx: oneshot::Receiver<Vec<TaskRecord>>,
    hub: Hub,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.withdraw(self.id);
    }
}

impl Hub {
    pub fn new(proposer: Proposer, state: SharedState, clock: Arc<LeaderClock>) -> Hub {
        Hub { hub: Arc::default(), dispatcher: Arc::new(Mutex::new(Dispatcher::new(now_ms()))), proposer, state, clock }
    }

    /// Propose a claim in a task of its own and wait for its answer, up to the commit timeout. The
    /// task keeps waiting for the claim's outcome after that: if the caller gave up (the commit
    /// timed out, or the HTTP request went away) and the claim commits anyway, the leased tasks are
    /// released unused instead of holding the agent's slots until their leases expire.
    async fn claim_detached(&self, cmd: Command) -> Result<minion_engine::Response, ProposeError> {
        let (tx, rx) = oneshot::channel();
        let p = self.proposer.clone();
        tokio::spawn(async move {
            let res = p.propose_to_outcome(cmd).await;
            if let Err(Ok(Ok(Outcome::Claimed(tasks)))) = tx.send(res) {
                release_unused(&p, tasks).await;
            }
        });
        let limit = self.proposer.commit_timeout_ms();
        match tokio::time::timeout(Duration::from_millis(limit), rx).await {
            Ok(r) => r.map_err(|_| ProposeError::Closed)?,
            Err(_) => Err(ProposeError::Timeout(limit)),
        }
    }

    /// A claim from an agent: lease what is ready now, or else wait in the hub up to `wait` for the
    /// queues' strategy to hand this agent work. An empty list when the wait ran out.
    pub async fn claim(
        &self,
        agent_id: &str,
        queues: &[String],
        capabilities: &[String],
        max: u32,
        wait: Duration,
    ) -> Result<minion_engine::Response, ProposeError> {
        let hub = self;
        hub.seen(agent_id);
        let deadline = tokio::time::Instant::now() + wait;
        let cmd = Command::Claim {
            agent_id: agent_id.to_string(),
            queues: queues.to_vec(),
            capabilities: capabilities.to_vec(),
            max,
        };
        match self.claim_detached(cmd).await? {
            Ok(Outcome::Claimed(tasks)) if tasks.is_empty() && !wait.is_zero() => {}
            answered => return Ok(answered),
        }
        let mut reg = hub.register(agent_id, queues, capabilities, max, deadline);
        let tasks = tokio::select! {
            got = &mut reg.rx => got.unwrap_or_default(),
            _ = tokio::time::sleep_until(deadline) => {
                if hub.withdraw(reg.id) {
                    Vec::new()
                } else {
                    // Picked just as the deadline passed: its claim is in flight. Wait for it briefly;
                    // if it comes later, the leases are released unused.
                    match tokio::time::timeout(Duration::from_secs(5), &mut reg.rx).await {
                        Ok(Ok(tasks)) => tasks,
                        _ => Vec::new(),
                    }
                }
            }
        };
        Ok(Ok(Outcome::Claimed(tasks)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn seen(&self, agent_id: &str) {
        self.lock().last_seen.insert(agent_id.to_string(), Instant::now());
    }

    pub fn last_seen_ms_ago(&self, agent_id: &str) -> Option<u64> {
        self.lock().last_seen.get(agent_id).map(|t| t.elapsed().as_millis() as u64)
    }

    pub fn register(
        &self,
        agent_id: &str,
        queues: &[String],
        capabilities: &[String],
        max: u32,
        deadline: tokio::time::Instant,
    ) -> Registration {
        let (tx, rx) = oneshot::channel();
        let mut g = self.lock();
        g.next_id += 1;
        let id = g.next_id;
        g.waiters.push(Waiter {
            id,
            agent_id: agent_id.into(),
            queues: queues.into(),
            capabilities: capabilities.into(),
            max,
            deadline,
            tx,
        });
        Registration { id, rx, hub: self.clone() }
    }

    /// Remove a waiter at its deadline. False when it was already handed work.
    pub fn withdraw(&self, id: u64) -> bool {
        let mut g = self.lock();
        let before = g.waiters.len();
        g.waiters.retain(|w| w.id != id);
        g.waiters.len() != before
    }

    pub fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }

    /// Wake every waiter with nothing so that it returns at once (leadership lost, shutdown).
    pub fn release_all(&self) {
        let waiters = std::mem::take(&mut self.lock().waiters);
        for w in waiters {
            let _ = w.tx.send(Vec::new());
        }
    }

    pub fn selections(&self) -> BTreeMap<minion_engine::Strategy, u64> {
        self.dispatcher.lock().unwrap_or_else(|p| p.into_inner()).selections.clone()
    }

    /// One dispatch pass: for each queue with waiters and ready tasks, let the queue's strategy
    /// pick waiters, one per ready task, and propose their claims. Returns how many claims were
    /// proposed.
    pub async fn dispatch_once(&self) -> usize {
        let picked_at = Instant::now();
        let assignments: Vec<(String, Strategy, Waiter)> = {
            let g_state = self.state.read();
            let engine = &g_state.engine;
            let now = self.clock.now();
            let mut hub = self.lock();
            let mut dispatcher = self.dispatcher.lock().unwrap_or_else(|p| p.into_inner());
            let mut chosen = Vec::new();
            let queues: Vec<String> = {
                let mut qs: Vec<String> = hub.waiters.iter().flat_map(|w| w.queues.iter().cloned()).collect();
                qs.sort();
                qs.dedup();
                qs
            };
            for queue in queues {
                let mut ready = engine.queue_stats(&queue).ready;
                let strategy = engine.queue_settings(&queue).strategy;
                while ready > 0 {
                    // Eligible: waiting on this queue, alive and active, able to take a ready task.
                    let eligible: Vec<usize> = hub
                        .waiters
                        .iter()
                        .enumerate()
                        .filter(|(_, w)| w.queues.contains(&queue))
                        .filter(|(_, w)| match engine.agent(&w.agent_id) {
                            Some(a) => a.status == AgentStatus::Active && a.free_slots() > 0,
                            None => true,
                        })
                        .filter(|(_, w)| {
                            let caps =
                                engine.agent(&w.agent_id).map(|a| a.capabilities.as_slice()).unwrap_or(&w.capabilities);
                            engine.has_claimable(std::slice::from_ref(&queue), caps, now)
                        })
                        .map(|(i, _)| i)
                        .collect();
                    if eligible.is_empty() {
                        break;
                    }
                    let default_stats = OutcomeStats::default();
                    let candidates: Vec<Candidate<'_>> = eligible
                        .iter()
                        .map(|&i| {
                            let w = &hub.waiters[i];
                            match engine.agent(&w.agent_id) {
                                Some(a) => Candidate {
                                    agent_id: &a.id,
                                    in_flight: a.stats.in_flight,
                                    capacity: a.max_concurrency,
                                    overall: &a.stats.overall,
                                    by_capability: Some(&a.stats.by_capability),
                                },
                                None => Candidate {
                                    agent_id: &w.agent_id,
                                    in_flight: 0,
                                    capacity: w.max.max(1),
                                    overall: &default_stats,
                                    by_capability: None,
                                },
                            }
                        })
                        .collect();
                    let head_caps: Vec<String> = Vec::new();
                    let Some(pick) = dispatcher.pick(&queue, strategy, &head_caps, &candidates) else { break };
                    let idx = eligible[pick];
                    let w = hub.waiters.remove(idx);
                    ready = ready.saturating_sub(w.max as u64);
                    chosen.push((queue.clone(), strategy, w));
                }
            }
            chosen
        };
        let n = assignments.len();
        for (queue, strategy, w) in assignments {
            let hub = self.clone();
            tokio::spawn(async move {
                if w.tx.is_closed() {
                    return;
                }
                // The claim names the queue the strategy chose for; the waiter keeps all its queues.
                let cmd = Command::Claim {
                    agent_id: w.agent_id.clone(),
                    queues: vec![queue],
                    capabilities: w.capabilities.clone(),
                    max: w.max,
                };
                // Waits past the commit timeout: leases whose waiter has gone are released.
                match hub.proposer.propose_to_outcome(cmd).await {
                    Ok(Ok(Outcome::Claimed(tasks))) if !tasks.is_empty() => {
                        // From the strategy's pick to the lease committed and handed over.
                        metrics::histogram!("minion_dispatch_latency_seconds", "strategy" => strategy.as_str())
                            .record(picked_at.elapsed().as_secs_f64());
                        if let Err(tasks) = w.tx.send(tasks) {
                            release_unused(&hub.proposer, tasks).await;
                        }
                    }
                    Ok(Err(_)) | Err(_) => {
                        let _ = w.tx.send(Vec::new());
                    }
                    _ => {
                        // Someone else took the task first: wait again, unless the poll is over.
                        if tokio::time::Instant::now() >= w.deadline || w.tx.is_closed() {
                            let _ = w.tx.send(Vec::new());
                        } else {
                            hub.lock().waiters.push(w);
                        }
                    }
                }
            });
        }
        n
    }

    /// The dispatch loop: a pass after every applied batch and at least every 100 ms.
    pub async fn run(self) {
        loop {
            let changed = self.state.changed().notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.proposer.is_leader() && self.waiting() > 0 {
                self.dispatch_once().await;
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Liveness: every second, declare dead the agents not heard from within the timeout.
    pub async fn run_liveness(self, liveness: Liveness) {
        let timeout = Duration::from_millis(liveness.heartbeat_timeout_ms);
        let mut was_leader = false;
        let mut interval =
            tokio::time::interval(Duration::from_millis((liveness.heartbeat_timeout_ms / 4).clamp(50, 1_000)));
        loop {
            interval.tick().await;
            let leader = self.proposer.is_leader();
            // (Waiters are released on losing leadership by `Node::run_leadership`, at once.)
            if leader && !was_leader {
                self.lock().leader_since = Some(Instant::now());
            }
            was_leader = leader;
            if !leader {
                continue;
            }
            // Lock order everywhere: state, then hub. Copy what is needed from the hub first.
            let (since, last_seen) = {
                let mut hub = self.lock();
                let now = Instant::now();
                // An agent long-polling right now is alive.
                let polling: Vec<String> = hub.waiters.iter().map(|w| w.agent_id.clone()).collect();
                for id in polling {
                    hub.last_seen.insert(id, now);
                }
                (hub.leader_since.unwrap_or(now), hub.last_seen.clone())
            };
            let dead: Vec<(String, u64)> = {
                let g = self.state.read();
                g.engine
                    .agents()
                    .filter(|a| a.status != AgentStatus::Dead)
                    .filter(|a| {
                        let last = last_seen.get(&a.id).copied().map_or(since, |t| t.max(since));
                        last.elapsed() > timeout
                    })
                    .map(|a| (a.id.clone(), a.incarnation))
                    .collect()
            };
            if !dead.is_empty() {
                tracing::warn!(agents = ?dead, "agents missed their heartbeats; releasing their leases");
                if let Err(e) = self.proposer.propose(Command::AgentsDead { agents: dead }).await {
                    tracing::warn!(error = %e, "could not record dead agents");
                }
            }
            let forget = self.forgettable(liveness.forget_after_ms);
            if !forget.is_empty() {
                tracing::info!(agents = ?forget, "removing agents dead for agent_forget_ms");
                if let Err(e) = self.proposer.propose(Command::ForgetAgents { agents: forget }).await {
                    tracing::warn!(error = %e, "could not remove long-dead agents");
                }
            }
        }
    }

    /// Agents dead for `agent_forget_ms` (at most a bounded number per
    /// round), and, as a side effect, drop liveness entries of ids the registry no longer holds
    /// and that are not waiting in a claim right now.
    fn forgettable(&self, after: u64) -> Vec<(String, u64)> {
        const FORGET_PER_ROUND: usize = 1_000;
        let g = self.state.read();
        let mut hub = self.lock();
        let waiting: std::collections::HashSet<String> = hub.waiters.iter().map(|w| w.agent_id.clone()).collect();
        hub.last_seen.retain(|id, _| waiting.contains(id) || g.engine.agent(id).is_some());
        if after == 0 {
            return Vec::new();
        }
        // The engine's clock moves only with log entries; an idle cluster has none, so the
        // leader's own clock decides when (the removal itself is checked again on apply).
        let clock = g.engine.clock().max(self.clock.now());
        g.engine
            .agents()
            .filter(|a| a.status == AgentStatus::Dead && clock.saturating_sub(a.updated_ms) >= after)
            .take(FORGET_PER_ROUND)
            .map(|a| (a.id.clone(), a.incarnation))
            .collect()
    }
}

/// Give back leases whose claim never reached its agent.
async fn release_unused(proposer: &Proposer, tasks: Vec<TaskRecord>) {
    for t in tasks {
        let Some(token) = t.lease.as_ref().map(|l| l.token) else { continue };
        tracing::info!(task_id = t.id, "releasing a lease whose claimant went away");
        if let Err(e) = proposer.propose(Command::Release { task_id: t.id, lease_token: token }).await {
            tracing::warn!(task_id = t.id, error = %e, "could not release an unused lease; it will expire");
        }
    }
}
